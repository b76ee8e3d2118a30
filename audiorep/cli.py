"""The ``audiorep`` console script: one sub-command per module in audiorep/commands/."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from .errors import AudiorepError, strip_worker_traceback
from .fileio import storage_error

# each name is a module audiorep.commands.<name> with register(subparsers) setting args.func
COMMANDS = ("extract", "convert", "data", "pretrain", "downstream")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="audiorep", description="Self-supervised speech representations.")
    parser.add_argument("--version", action="version", version=f"audiorep {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error (also: AUDIOREP_DEBUG=1)")
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
    """Run one sub-command; every failure ends in one line on stderr and an exit status.

    Exit 2: a usage error or a bad input (the library's own errors name the file or argument).
    Exit 1: anything unexpected, as ``audiorep COMMAND: internal error: Type: cause``; ``--debug`` or
    ``AUDIOREP_DEBUG=1`` adds the traceback. Exit 130: interrupted.
    """
    args = parse_args(build_parser(), argv)
    debug = args.debug or os.environ.get("AUDIOREP_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except AudiorepError as exc:
        if debug:
            traceback.print_exc()
        print(f"audiorep {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        # a full disk or a read-only folder met outside audiorep's own writers (a log line, a plot)
        err = storage_error(exc.filename or "a file", exc, doing=None)
        if err is exc:
            return _internal_error(args.command, exc, debug)
        if debug:
            traceback.print_exc()
        print(f"audiorep {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"audiorep {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence between a user and a traceback
        return _internal_error(args.command, exc, debug)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; ``key=value`` overrides may also come after options (``a=1 --out D b=2``).

    argparse fills a ``nargs="*"`` positional from one run of arguments only; for a command that sets
    ``overrides_anywhere`` the ``key=value`` words it leaves over join ``args.overrides`` instead of being
    refused.
    """
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "overrides_anywhere", False) and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides.extend(extra)
        extra = []
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _internal_error(command: str, exc: BaseException, debug: bool) -> int:
    """One line for an error that is a bug of audiorep's, not the user's; exit status 1."""
    if debug:
        traceback.print_exception(exc)
    hint = "" if debug else " (run with --debug or AUDIOREP_DEBUG=1 for the traceback)"
    print(f"audiorep {command}: internal error: {type(exc).__name__}: {_one_line(exc)}{hint}", file=sys.stderr)
    return 1


def _one_line(exc: BaseException) -> str:
    """The exception's message folded onto one line (a DataLoader worker's traceback dropped)."""
    return " ".join(strip_worker_traceback(str(exc)).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
