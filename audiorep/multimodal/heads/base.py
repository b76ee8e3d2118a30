"""The fusion-head registry: what each head is built from and what it needs, filled by the head files themselves.

A fusion head is one file in this folder: a :class:`~audiorep.multimodal.common.FusionHead` subclass decorated
with :func:`register_head`, naming its settings dataclass (``head_args`` of a FusionConfig) and the parts the
runner must make for it. The fusion runner, the result table, the package's exports and the CLI's choices and
help read :data:`HEADS`, so adding a head is adding that file (plus its YAML under recipes/configs/fusion/).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, TypeVar

from ...errors import ConfigError

# the parts a head's constructor can take, by keyword; the runner makes only those a head asks for
NEEDS = {
    "text": "a TextEncoder over the transcripts (a text model, or MMSA's text features): keyword text_encoder",
    "decoder_lm": "a GPT-2-style decoder LM and its tokenizer: keywords lm, tokenizer",
}


@dataclass(frozen=True)
class HeadSpec:
    """One registered fusion head."""

    name: str  # what FusionConfig.head and `audiorep sentiment train --head` take
    head: type  # the FusionHead subclass; built as head(config, **parts)
    config: type  # its settings dataclass; audio_dim / vision_dim fields are filled from the data
    needs: frozenset[str]  # keys of NEEDS the constructor takes
    summary: str  # one line for the CLI help
    row: int  # place in the result table (lower first; the TEASEL rows sit at 1 and 2)

    def check_args(self, head_args: dict[str, Any]) -> set[str]:
        """The config's field names; ConfigError naming any ``head_args`` key that is not one of them."""
        names = {f.name for f in fields(self.config)}
        unknown = sorted(set(head_args) - names)
        if unknown:
            raise ConfigError(f"head_args: unknown {self.config.__name__} field(s) {unknown}; known: {sorted(names)}")
        return names

    def make_config(self, base: dict[str, Any], head_args: dict[str, Any]) -> Any:
        """``base`` (data-given sizes, dropped when the config has no such field) + ``head_args`` -> config;
        ConfigError naming any unknown ``head_args`` key."""
        names = self.check_args(head_args)
        return self.config(**{**{k: v for k, v in base.items() if k in names}, **head_args})


HEADS: dict[str, HeadSpec] = {}
T = TypeVar("T", bound=type)


def register_head(name: str, config: type, needs: tuple[str, ...] = ("text",), summary: str = "",
                  row: int = 50) -> Callable[[T], T]:
    """Class decorator: add a fusion head to :data:`HEADS`."""

    def add(cls: T) -> T:
        if not name or name in HEADS:
            raise ConfigError(f"fusion head {cls.__qualname__}: needs a unique name, got {name!r}")
        unknown = sorted(set(needs) - set(NEEDS))
        if unknown:
            raise ConfigError(f"fusion head {name!r}: unknown needs {unknown}; known: {sorted(NEEDS)}")
        HEADS[name] = HeadSpec(name, cls, config, frozenset(needs), summary or cls.__name__, row)
        return cls

    return add
