"""The ``audiorep`` console script (also ``python -m audiorep.cli``, e.g. under torchrun): the only entry point,
one sub-command per module in audiorep/commands/."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import traceback

from .errors import AudiorepError, strip_worker_traceback
from .fileio import storage_error

# each name is a module audiorep.commands.<name> with register(subparsers) setting args.func
COMMANDS = ("extract", "convert", "push", "data", "pretrain", "downstream", "superb", "sentiment", "teasel",
            "export")

_OVERRIDE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=")  # a config override: dotted.key=value


class CommandParser(argparse.ArgumentParser):
    """An argparse parser whose commands take ``key=value`` config overrides anywhere on the line.

    A command that reads a config sets ``takes_overrides`` (see :func:`audiorep.commands.add_config_args`); every
    ``dotted.key=value`` word that is not the value of an option is collected, in order, into ``args.overrides``,
    so ``train.max_steps=60 --out D train.seed=1`` works as well as the overrides at the end.
    """

    takes_overrides = False

    def parse_known_args(self, args=None, namespace=None):  # noqa: D102 - argparse's own contract
        if not self.takes_overrides:
            return super().parse_known_args(args, namespace)
        words = list(sys.argv[1:] if args is None else args)
        subcommands = {name for a in self._actions if isinstance(a, argparse._SubParsersAction) for name in a.choices}
        keep: list[str] = []
        overrides: list[str] = []
        i = 0
        while i < len(words):
            word = words[i]
            if word == "--" or word in subcommands:  # the rest belongs to a nested command or is literal
                keep += words[i:]
                break
            if word.startswith("-") and len(word) > 1:
                keep.append(word)
                action = self._option_string_actions.get(word)
                n = 0 if action is None or "=" in word else action.nargs
                n = 1 if n is None else n
                if isinstance(n, int):
                    keep += words[i + 1:i + 1 + n]
                    i += n
                else:  # "?", "*", "+": the following plain words, up to the next option or override; an
                    # option whose values are NAME=VALUE pairs itself (metavar with "=") takes them up to the next option
                    pairs = "=" in str(action.metavar or "")
                    while i + 1 < len(words) and not words[i + 1].startswith("-") and (
                            pairs or not _OVERRIDE.match(words[i + 1])):
                        keep.append(words[i + 1])
                        i += 1
            elif _OVERRIDE.match(word):
                overrides.append(word)
            else:
                keep.append(word)
            i += 1
        ns, extras = super().parse_known_args(keep, namespace)
        # a nested command (``downstream probe-table``) has collected its own; the words before it come first
        ns.overrides = overrides + list(getattr(ns, "overrides", None) or [])
        return ns, extras


def build_parser() -> argparse.ArgumentParser:
    from .version import __version__

    parser = CommandParser(prog="audiorep", description="Self-supervised speech representations.")
    parser.add_argument("--version", action="version", version=f"audiorep {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an unexpected error (also: AUDIOREP_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=CommandParser)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; every failure ends in one line on stderr and an exit status.

    Exit 2: a usage error or a bad input (the library's own errors name the file or argument).
    Exit 1: anything unexpected, as ``audiorep COMMAND: internal error: Type: cause``; ``--debug`` or
    ``AUDIOREP_DEBUG=1`` adds the traceback. Exit 130: interrupted.
    """
    args = build_parser().parse_args(argv)
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
