"""Frame-level label files: the one-line-per-utterance format LibriSpeech phone probes use.

``converted_aligned_phones.txt`` holds one utterance per line, ``utt_id idx idx idx ...``: one integer class
per 10 ms frame. The class names live in a separate list file (``phones.txt``), one name per line, line
number = class index. The bundled corpus and LibriSpeech alignments use the same reader.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import torch

from ..errors import ConfigError
from ..fileio import atomic_write_text

IGNORE_INDEX = -100  # padding value for frame labels; what torch's cross-entropy ignores by default


def read_frame_labels(path: str | os.PathLike, num_classes: int | None = None) -> dict[str, torch.Tensor]:
    """Read a ``utt_id idx idx ...`` file into ``{utt_id: LongTensor (T,)}``.

    With ``num_classes`` every index must lie in ``[0, num_classes)``. Raises ConfigError naming the file and
    line for non-integer labels, empty rows, out-of-range classes and duplicate ids.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such frame-label file")
    out: dict[str, torch.Tensor] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            utt_id, vals = parts[0], parts[1:]
            where = f"{path}:{lineno}"
            if not vals:
                raise ConfigError(f"{where}: utterance {utt_id!r} has no frame labels")
            try:
                labels = torch.tensor([int(v) for v in vals], dtype=torch.long)  # (T,)
            except ValueError as exc:
                raise ConfigError(f"{where}: frame labels must be integers ({exc})") from exc
            if (labels < 0).any() or (num_classes is not None and (labels >= num_classes).any()):
                bad = labels[(labels < 0) | (labels >= (num_classes or 1 << 62))][0].item()
                raise ConfigError(f"{where}: class {bad} outside [0, {num_classes})")
            if utt_id in out:
                raise ConfigError(f"{where}: duplicate utterance id {utt_id!r}")
            out[utt_id] = labels
    return out


def write_frame_labels(labels: Mapping[str, Sequence[int] | torch.Tensor], path: str | os.PathLike) -> Path:
    """Write ``{utt_id: frame classes}`` in the one-line-per-utterance format, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for utt_id, seq in labels.items():
        if any(c.isspace() for c in utt_id) or not utt_id:
            raise ConfigError(f"{path}: utterance id {utt_id!r} must be non-empty without whitespace")
        vals = seq.tolist() if isinstance(seq, torch.Tensor) else list(seq)
        if not vals:
            raise ConfigError(f"{path}: utterance {utt_id!r} has no frame labels")
        lines.append(utt_id + " " + " ".join(str(int(v)) for v in vals))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def read_label_names(path: str | os.PathLike) -> list[str]:
    """Read a class list (one name per line; line number = index). ConfigError for duplicates or blanks."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such label list file")
    names = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    while names and not names[-1]:
        names.pop()
    for i, n in enumerate(names):
        if not n:
            raise ConfigError(f"{path}:{i + 1}: empty class name")
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: duplicate class names")
    return names


def write_label_names(names: Sequence[str], path: str | os.PathLike) -> Path:
    """Write a class list, one name per line, atomically."""
    path = Path(path)
    atomic_write_text(path, "\n".join(names) + "\n")
    return path


def num_frames(num_samples: int, hop_length: int = 160) -> int:
    """Frames the feature front end makes from ``num_samples`` (centered STFT): ``S // hop + 1``."""
    return num_samples // hop_length + 1


