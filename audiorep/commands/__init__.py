"""Sub-commands of the ``audiorep`` CLI; each module defines ``register(subparsers)``.

Commands that read a config share one shape (:func:`add_config_args`): ``--config FILE``, ``key=value``
overrides anywhere on the line (the fields of that config, dotted for nested ones, type-checked), and
``--print-config`` (:func:`print_config`), all through :mod:`audiorep.config`.
"""

from __future__ import annotations

import argparse
from typing import Any

OVERRIDES_HELP = ("key=value words anywhere on the line override single config fields (dotted for nested ones, "
                  "e.g. {example}); values are read as YAML and type-checked against the config.")


def add_config_args(p: argparse.ArgumentParser, config_help: str, example: str, required: bool = False) -> None:
    """Give command parser ``p`` the shared config interface: --config, key=value overrides, --print-config."""
    p.add_argument("--config", default=None, required=required, help=config_help)
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (file + flags + overrides) as YAML and exit")
    p.takes_overrides = True  # see audiorep.cli.CommandParser
    p.set_defaults(overrides=[])
    p.epilog = OVERRIDES_HELP.format(example=example)


def print_config(cfg: Any) -> int:
    """``--print-config``: the resolved config as YAML on stdout; exit status 0."""
    from ..config import to_yaml

    print(to_yaml(cfg), end="")
    return 0


def start_logging(level: int | None = None, fmt: str = "%(levelname)s %(name)s: %(message)s") -> None:
    """Library log lines on stderr for a command's run (INFO unless ``level`` says otherwise)."""
    import logging

    logging.basicConfig(level=logging.INFO if level is None else level, format=fmt)


def flag_overrides(flags: dict[str, Any]) -> list[str]:
    """Command-line flags that set config fields -> ``key=value`` overrides (flags not given, i.e. None, skipped)."""
    return [f"{k}={v}" for k, v in flags.items() if v is not None]
