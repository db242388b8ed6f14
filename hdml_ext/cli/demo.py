"""`hdml demo`: train and evaluate on scikit-learn's digits."""

from __future__ import annotations

import argparse
from typing import Any

from ..engine.demo import DemoSettings, demo_overrides, run_demo
from .options import add_command, add_settings_options, print_settings, settings_of


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "demo",
        run,
        help="train and evaluate on scikit-learn's digits (CPU, minutes)",
        description="Train HDML and a node-loss-only baseline on scikit-learn's digits, "
        "evaluate Re-ID and clustering on the held-out images against "
        "baselines, write results.json and plots.",
    )
    parser.add_argument(
        "--out", metavar="DIR", default="results/demo", help="output folder (default results/demo)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run with tiny settings (about 40 s on a 2-core CPU), not meaningful numbers",
    )
    add_settings_options(parser)


def run(args: argparse.Namespace) -> int:
    """`hdml demo`."""
    settings = settings_of(args, DemoSettings, demo_overrides(quick=args.quick))
    if args.print_config:
        return print_settings(settings)
    run_demo(args.out, settings)
    return 0
