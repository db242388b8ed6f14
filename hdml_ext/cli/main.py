"""The `hdml` parser and its dispatch to one module per sub-command."""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from . import calibrate, cluster, demo, embed, evaluate, export, train
from .options import FORMATTER, SETTINGS_HELP, UsageError, run_command

COMMANDS = (train, evaluate, embed, cluster, calibrate, export, demo)


def build_parser() -> argparse.ArgumentParser:
    """The `hdml` argument parser."""
    parser = argparse.ArgumentParser(
        prog="hdml",
        formatter_class=FORMATTER,
        epilog=SETTINGS_HELP,
        description="Hierarchical deep multi-task learning (HDML) for person Re-ID and face clustering.",
    )
    parser.add_argument(
        "--version", action="version", version=f"hdml_ext {__version__}", help="print the version and exit"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `hdml` command; returns the exit code (2 for bad arguments, 130 after
    Ctrl-C)."""
    args = build_parser().parse_args(argv)
    try:
        return run_command(args)
    except UsageError as error:
        args.command_parser.error(f"argument {error.option}: {error}")
    except KeyboardInterrupt:
        print(f"hdml {args.command}: interrupted", file=sys.stderr)
        return 130
    return 2
