"""The ``tbptt`` command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import tbptt


def build_parser() -> argparse.ArgumentParser:
    """The ``tbptt`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="tbptt",
        description=(
            "Train recurrent networks with exact full and truncated backpropagation "
            "through time, TBPTT(k1, k2): a gradient every k1 steps, flowing back k2 steps."
        ),
    )
    parser.add_argument("--version", action="version", version=f"tbptt {tbptt.__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tbptt`` command; returns the exit code."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
    return 0
