"""`hdml demo`: train and evaluate on the embedded open-set digit-instances (or the digits)."""

from __future__ import annotations

import argparse
from typing import Any

from ..demo import DemoSettings, demo_overrides, run_demo
from .options import add_command, add_settings_options


def add_parser(commands: Any) -> None:
    parser = add_command(
        commands,
        "demo",
        run,
        DemoSettings,
        lambda args: demo_overrides(quick=args.quick),
        help="train and evaluate on digit-instances, unseen test identities (CPU, minutes)",
        description="Train HDML and a node-loss-only baseline on the embedded open-set "
        "digit-instances (every scikit-learn digit image an identity in augmented views through 6 "
        "camera styles; --set data.dataset=digits for the closed-set digits), evaluate Re-ID and "
        "clustering of the unseen test identities against distance ranking, k-reciprocal "
        "re-ranking, cosine-similarity propagation and k-means told the true K, and write "
        "results.json, embeddings.npz, run_info.json and plots.",
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


def run(args: argparse.Namespace, settings: DemoSettings) -> int:
    """`hdml demo`."""
    run_demo(args.out, settings)
    return 0
