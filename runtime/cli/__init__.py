"""`selfie-tvm`: one sub-command per verb, each in its own module."""

from __future__ import annotations

import argparse
import logging
import sys

from tuning.cli import compile as compile_cmd
from tuning.cli import tune as tune_cmd

from ..errors import SelfieTvmError
from . import background, hair, models, segment

COMMANDS = (segment, hair, background, models, compile_cmd, tune_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="selfie-tvm", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return args.run(args) or 0
    except SelfieTvmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
