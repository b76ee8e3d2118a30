"""The manifest: one JSON object per utterance, the single format every corpus reader produces.

A manifest line looks like::

    {"id": "spk01-0003", "path": "wav/spk01-0003.flac", "num_samples": 41280, "sample_rate": 16000,
     "speaker": "spk01", "text": "the garden looks lovely", "labels": {"sentiment": 1.6}}

Paths are stored relative to the manifest's folder when the audio lives below it (so a corpus folder can be
moved or shipped inside the package) and are absolute after reading. A manifest whose paths point outside
its folder (absolute, or climbing out with ``..``) must say so in a line before its rows::

    # audiorep: allow_outside_paths

(:func:`write_manifest` writes it when needed), so a manifest that came with a download cannot make a
run read arbitrary files of the machine without anyone having asked for it. Frame-level labels (phones) are not
inlined: they live in a ``converted_aligned_phones.txt``-style file (see :mod:`audiorep.data.labels`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import ConfigError
from ..fileio import atomic_write_text

_REQUIRED = ("id", "path", "num_samples", "sample_rate", "speaker")
ALLOW_OUTSIDE_LINE = "# audiorep: allow_outside_paths"
_ALLOW_OUTSIDE = re.compile(r"^#\s*audiorep:\s*allow_outside_paths\s*$")


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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


MAX_INT_DIGITS = 30  # far past any sample count or label; a 400-digit integer overflows every float it meets
MAX_SAMPLES = 2**40  # samples in one utterance (two years at 16 kHz): anything larger is a corrupt row
MAX_SAMPLE_RATE = 10**7  # Hz
MAX_JSON_DEPTH = 64  # nesting of a row's labels


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _check_finite_labels(value: Any, where: str, key: str, depth: int = 0) -> None:
    """Task labels are numbers, strings, lists or objects; a non-finite number is never a label."""
    if depth > MAX_JSON_DEPTH:
        raise ConfigError(f"{where}: label {key.split('.')[0].split('[')[0]!r} is nested deeper than "
                          f"{MAX_JSON_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: label {key!r} is {value}, not a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite_labels(v, where, f"{key}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite_labels(v, where, f"{key}[{i}]", depth + 1)


def _parse_row(obj: Any, where: str, base: Path, allow_outside: bool = True) -> Utterance:
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
    for key, high in (("num_samples", MAX_SAMPLES), ("sample_rate", MAX_SAMPLE_RATE)):
        v = obj[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= high:
            raise ConfigError(f"{where}: field {key!r} must be a positive integer (at most {high}), got {v!r}")
    text = obj.get("text", "")
    if not isinstance(text, str):
        raise ConfigError(f"{where}: field 'text' must be a string, got {type(text).__name__}")
    labels = obj.get("labels", {})
    if not isinstance(labels, dict):
        raise ConfigError(f"{where}: field 'labels' must be an object, got {type(labels).__name__}")
    _check_finite_labels(labels, where, "labels")
    path = Path(obj["path"])
    if not path.is_absolute():
        path = base / path
    path = Path(os.path.normpath(str(path)))
    if not allow_outside and os.path.commonpath([base, path]) != str(base):
        how = "is absolute" if Path(obj["path"]).is_absolute() else "climbs out of it"
        raise ConfigError(f"{where}: path {obj['path']!r} points outside the manifest's folder {base} ({how}); "
                          f"if that is intended, put the line '{ALLOW_OUTSIDE_LINE}' before the rows")
    if not allow_outside:
        real = os.path.realpath(path)  # a symlink below the folder may lead anywhere: judge where it ends
        if os.path.commonpath([base, real]) != str(base):
            raise ConfigError(f"{where}: path {obj['path']!r} leads through a symbolic link to {real}, outside the "
                              f"manifest's folder {base}; if that is intended, put the line "
                              f"'{ALLOW_OUTSIDE_LINE}' before the rows")
    return Utterance(
        id=obj["id"],
        path=str(path),
        num_samples=obj["num_samples"],
        sample_rate=obj["sample_rate"],
        speaker=obj["speaker"],
        text=text,
        labels=dict(labels),
    )


def read_manifest(path: str | os.PathLike, allow_outside: bool = False) -> list[Utterance]:
    """Read a UTF-8 JSON-lines manifest into Utterances with absolute paths.

    Blank lines and lines starting with ``#`` are ignored. Raises :class:`ConfigError` naming the file and
    line for text that is not UTF-8, malformed JSON (NaN and Infinity included), missing/ill-typed
    fields, non-finite labels, duplicate ids, and paths outside the manifest's folder unless the file
    allows them (see the module doc) or ``allow_outside`` is set. The audio itself is not opened.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such manifest file")
    base = path.resolve().parent
    utts: list[Utterance] = []
    seen: dict[str, int] = {}
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                                  "save the manifest as UTF-8") from None
            if not line or line.startswith("#"):
                if not utts and _ALLOW_OUTSIDE.match(line):
                    allow_outside = True
                continue
            try:
                obj = json.loads(line, parse_constant=_reject_constant, parse_int=_bounded_int)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
            except RecursionError:  # the decoder recurses once per nesting level
                raise ConfigError(f"{where}: nested too deeply to be a manifest row") from None
            except ValueError as exc:
                raise ConfigError(f"{where}: not valid JSON ({exc})") from exc
            utt = _parse_row(obj, where, base, allow_outside)
            if utt.id in seen:
                raise ConfigError(f"{where}: duplicate utterance id {utt.id!r} (first on line {seen[utt.id]})")
            seen[utt.id] = lineno
            utts.append(utt)
    return utts


def write_manifest(utts: Iterable[Utterance], path: str | os.PathLike) -> Path:
    """Write Utterances as a JSON-lines manifest, atomically (temp file + ``os.replace``).

    Paths under the manifest's folder are stored relative to it so the folder stays relocatable; others stay
    absolute, and the file then starts with the ``allow_outside_paths`` line. Returns the path written.
    Raises ConfigError for duplicate ids and non-finite labels.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.resolve().parent
    lines = []
    seen: set[str] = set()
    outside = False
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
                outside = True
        elif ".." in p.parts:
            outside = True
        try:
            lines.append(json.dumps(row, ensure_ascii=False, sort_keys=False, allow_nan=False))
        except ValueError:
            raise ConfigError(f"{path}: utterance {utt.id!r} has a NaN or infinite label") from None
    if outside:  # the writer chose these paths: say so, or read_manifest would refuse them
        lines.insert(0, ALLOW_OUTSIDE_LINE)
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return path


def seeded_subset(utts: list[Utterance], n: int | None, seed: int = 0, keep_order: bool = False) -> list[Utterance]:
    """``n`` utterances drawn at random with ``seed``, in id order (``keep_order``: in their order in ``utts``,
    which SUPERB's ER folds depend on); all of them when ``n`` is None or covers them.

    What ``max_utts`` means in every runner (probe, fusion): a random draw rather than the first ``n``, because
    manifests are often sorted by speaker or session and a prefix would hold only a few of them. The same
    ``n`` and ``seed`` give the same utterances in every runner, so a quick fusion run and a quick probe see
    the same data.
    """
    import random

    if n is None or len(utts) <= n:
        return utts
    picked = random.Random(f"audiorep-downstream:{seed}").sample(range(len(utts)), n)
    if keep_order:
        return [utts[i] for i in sorted(picked)]
    return sorted((utts[i] for i in picked), key=lambda u: u.id)
