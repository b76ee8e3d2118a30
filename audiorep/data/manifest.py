"""The manifest: one JSON object per utterance, the single format every corpus reader produces.

A manifest line looks like::

    {"id": "spk01-0003", "path": "wav/spk01-0003.flac", "num_samples": 41280, "sample_rate": 16000,
     "speaker": "spk01", "text": "the garden looks lovely", "labels": {"sentiment": 1.6}}

Paths are stored relative to the manifest's folder when the audio lives below it (so a corpus folder can be
moved or shipped inside the package) and are absolute after reading. Frame-level labels (phones) are not
inlined: they live in a ``converted_aligned_phones.txt``-style file (see :mod:`audiorep.data.labels`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import ConfigError
from ..fileio import atomic_write_text

_REQUIRED = ("id", "path", "num_samples", "sample_rate", "speaker")


@dataclass
class Utterance:
    """One audio file and what is known about it."""

    id: str  # unique within a corpus; the key into frame-label files
    path: str  # absolute after read_manifest; relative to the manifest folder on disk
    num_samples: int  # length at sample_rate; lets samplers bucket by length without opening files
    sample_rate: int  # the file's own rate; datasets refuse (or resample) anything else
    speaker: str  # speaker label for speaker ID and for splitting by speaker
    text: str = ""  # transcript; empty when the corpus has none
    labels: dict[str, Any] = field(default_factory=dict)  # task labels, e.g. {"sentiment": -1.2}

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse_row(obj: Any, where: str, base: Path) -> Utterance:
    """Validate one decoded JSON row and build its Utterance; ConfigError naming ``where`` otherwise."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {missing} (required: {list(_REQUIRED)})")
    unknown = set(obj) - {f.name for f in dataclasses.fields(Utterance)}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
    for key in ("id", "path", "speaker"):
        if not isinstance(obj[key], str) or not obj[key]:
            raise ConfigError(f"{where}: field {key!r} must be a non-empty string, got {obj[key]!r}")
    for key in ("num_samples", "sample_rate"):
        v = obj[key]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"{where}: field {key!r} must be a positive integer, got {v!r}")
    text = obj.get("text", "")
    if not isinstance(text, str):
        raise ConfigError(f"{where}: field 'text' must be a string, got {type(text).__name__}")
    labels = obj.get("labels", {})
    if not isinstance(labels, dict):
        raise ConfigError(f"{where}: field 'labels' must be an object, got {type(labels).__name__}")
    path = Path(obj["path"])
    if not path.is_absolute():
        path = base / path
    return Utterance(
        id=obj["id"],
        path=os.path.normpath(str(path)),
        num_samples=obj["num_samples"],
        sample_rate=obj["sample_rate"],
        speaker=obj["speaker"],
        text=text,
        labels=dict(labels),
    )


def read_manifest(path: str | os.PathLike) -> list[Utterance]:
    """Read a JSON-lines manifest into Utterances with absolute paths.

    Blank lines and lines starting with ``#`` are ignored. Raises :class:`ConfigError` naming the file and
    line for malformed JSON, missing/ill-typed fields and duplicate ids. The audio itself is not opened.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such manifest file")
    base = path.resolve().parent
    utts: list[Utterance] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
            utt = _parse_row(obj, where, base)
            if utt.id in seen:
                raise ConfigError(f"{where}: duplicate utterance id {utt.id!r} (first on line {seen[utt.id]})")
            seen[utt.id] = lineno
            utts.append(utt)
    return utts


def write_manifest(utts: Iterable[Utterance], path: str | os.PathLike) -> Path:
    """Write Utterances as a JSON-lines manifest, atomically (temp file + ``os.replace``).

    Paths under the manifest's folder are stored relative to it so the folder stays relocatable; others stay
    absolute. Returns the path written. Raises ConfigError for duplicate ids.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    lines = []
    seen: set[str] = set()
    for utt in utts:
        if utt.id in seen:
            raise ConfigError(f"{path}: duplicate utterance id {utt.id!r}")
        seen.add(utt.id)
        row = utt.to_dict()
        p = Path(utt.path)
        if p.is_absolute():
            try:
                row["path"] = p.resolve().relative_to(base).as_posix()
            except ValueError:
                row["path"] = str(p)
        lines.append(json.dumps(row, ensure_ascii=False, sort_keys=False))
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return path
