"""The ``audiorep`` console script: one sub-command per module in audiorep/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import AudiorepError

# each name is a module audiorep.commands.<name> with register(subparsers) setting args.func
COMMANDS = ("extract", "convert", "data", "pretrain", "downstream", "bench")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="audiorep", description="Self-supervised speech representations.")
    parser.add_argument("--version", action="version", version=f"audiorep {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"{__package__}.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AudiorepError as exc:
        print(f"audiorep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"audiorep {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
