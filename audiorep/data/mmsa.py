"""MMSA feature pickles (``aligned_50.pkl`` / ``unaligned_50.pkl`` for MOSI, MOSEI, SIMS).

Each pickle is ``{"train": {...}, "valid": {...}, "test": {...}}``; a split dict holds ``text`` (N, L, 768)
BERT features, ``text_bert`` (N, 3, L) ids/mask/segments, ``audio`` (N, La, Da), ``vision`` (N, Lv, Dv),
``audio_lengths`` / ``vision_lengths``, ``regression_labels`` (N,), ``raw_text`` and ``id``.

The pickles are opened with a restricted unpickler that only rebuilds numpy arrays and plain containers,
so a file from the internet cannot run code. Published pickles disagree with their own ``*_lengths``
fields, so valid lengths are measured from the arrays (last non-zero frame) and the stored ones are only
compared against (see :attr:`MMSASplit.length_mismatches`).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..safe_pickle import restricted_load
from ..errors import ConfigError

SPLITS = {"train": "train", "valid": "dev", "test": "test"}
REQUIRED = ("audio", "vision", "text", "regression_labels")


@dataclass
class MMSASplit:
    """One split of an MMSA pickle with validated shapes and measured lengths."""

    ids: list[str]  # "video$_$clip" identifiers as stored
    raw_text: list[str]  # transcripts
    text: np.ndarray  # (N, L, Dt) BERT features (float32)
    text_bert: np.ndarray | None  # (N, 3, L) token ids / attention mask / segment ids, if stored
    audio: np.ndarray  # (N, La, Da) acoustic features (float32)
    vision: np.ndarray  # (N, Lv, Dv) visual features (float32)
    audio_lengths: np.ndarray  # (N,) valid audio frames, measured from the array
    vision_lengths: np.ndarray  # (N,) valid vision frames, measured from the array
    text_lengths: np.ndarray  # (N,) valid tokens (from text_bert's mask, else from text)
    labels: np.ndarray  # (N,) regression labels (float32)
    length_mismatches: dict[str, int] = field(default_factory=dict)  # stored vs measured disagreements

    def __len__(self) -> int:
        return len(self.labels)


def _measured_lengths(x: np.ndarray) -> np.ndarray:
    """(N,) index of the last frame with any non-zero value, + 1 (at least 1)."""
    nz = np.abs(x).reshape(x.shape[0], x.shape[1], -1).max(axis=2) > 0  # (N, L)
    last = np.where(nz.any(axis=1), x.shape[1] - np.argmax(nz[:, ::-1], axis=1), 1)  # (N,)
    return last.astype(np.int64)


_KINDS = {"U": "a string", "S": "a bytes", "O": "an object (ragged?)", "c": "a complex", "M": "a datetime"}


def _numeric(x: Any, what: str, ndim: int | None) -> np.ndarray:
    """``x`` as a numeric (bool/int/float) array of ``ndim`` dimensions (any: None), none of them empty;
    ConfigError otherwise. A pickle can hold anything where an array belongs."""
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # numpy >= 1.24 refuses ragged nested lists
        raise ConfigError(f"{what}: not a regular array (rows of different lengths?)") from exc
    if arr.dtype.kind not in "biuf":
        raise ConfigError(f"{what}: expected a numeric array, got {_KINDS.get(arr.dtype.kind, 'a ' + arr.dtype.name)} "
                          "array")
    if ndim is not None and arr.ndim != ndim:
        raise ConfigError(f"{what}: expected {ndim} dimensions, got shape {arr.shape}")
    if 0 in arr.shape:
        raise ConfigError(f"{what}: empty (shape {arr.shape})")
    return arr


def _as_float(x: Any, what: str, ndim: int) -> np.ndarray:
    arr = _numeric(x, what, ndim).astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ConfigError(f"{what}: holds NaN or infinite values")
    return arr


def _strings(d: dict[str, Any], key: str, n: int, where: str) -> list[str] | None:
    """``d[key]`` as n strings (ids, transcripts), or None when absent."""
    if key not in d:
        return None
    value = d[key]
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or not hasattr(value, "__iter__"):
        raise ConfigError(f"{where}['{key}']: expected a list of {n} entries, got {type(value).__name__}")
    if getattr(value, "ndim", 1) != 1 or len(value) != n:
        raise ConfigError(f"{where}['{key}']: {len(value)} entries for {n} samples")
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in value]


def _parse_split(d: Any, where: str) -> MMSASplit:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a dict of arrays, got {type(d).__name__}")
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}; has {sorted(d)}")
    audio = _as_float(d["audio"], f"{where}['audio']", 3)  # (N, La, Da)
    vision = _as_float(d["vision"], f"{where}['vision']", 3)  # (N, Lv, Dv)
    text = _as_float(d["text"], f"{where}['text']", 3)  # (N, L, Dt)
    labels = _as_float(d["regression_labels"], f"{where}['regression_labels']", 1)  # (N,)
    N = labels.shape[0]
    for name, arr in (("audio", audio), ("vision", vision), ("text", text)):
        if arr.shape[0] != N:
            raise ConfigError(f"{where}['{name}']: {arr.shape[0]} samples but regression_labels has {N}")
    text_bert = None
    if "text_bert" in d:
        text_bert = _numeric(d["text_bert"], f"{where}['text_bert']", 3)
        if text_bert.shape[0] != N or text_bert.shape[1] != 3:
            raise ConfigError(f"{where}['text_bert']: expected shape (N={N}, 3, L), got {text_bert.shape}")
        text_bert = text_bert.astype(np.int64)
        text_lengths = text_bert[:, 1, :].sum(axis=1).clip(min=1)  # (N,) attention-mask sum
    else:
        text_lengths = _measured_lengths(text)
    mismatches = {}
    audio_lengths, vision_lengths = _measured_lengths(audio), _measured_lengths(vision)
    for name, measured in (("audio_lengths", audio_lengths), ("vision_lengths", vision_lengths)):
        if name in d:
            stored = _numeric(d[name], f"{where}['{name}']", None).reshape(-1)
            if stored.shape[0] != N:
                raise ConfigError(f"{where}['{name}']: {stored.shape[0]} entries for {N} samples")
            mismatches[name] = int((stored.astype(np.int64) != measured).sum())
    ids = _strings(d, "id", N, where) or [f"{i}" for i in range(N)]
    raw = _strings(d, "raw_text", N, where) or [""] * N
    return MMSASplit(ids, raw, text, text_bert, audio, vision, audio_lengths, vision_lengths,
                     text_lengths.astype(np.int64), labels, mismatches)


def read_mmsa_pickle(path: str | os.PathLike) -> dict[str, MMSASplit]:
    """Read and validate an MMSA pickle into ``{"train"|"dev"|"test": MMSASplit}`` (``valid`` -> ``dev``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such MMSA feature pickle")
    try:
        with open(path, "rb") as f:
            obj = restricted_load(io.BufferedReader(f), str(path), error=ConfigError, encoding="latin1")
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict) or not any(k in obj for k in SPLITS):
        raise ConfigError(f"{path}: expected a dict with train/valid/test, got "
                          f"{sorted(obj) if isinstance(obj, dict) else type(obj).__name__}")
    out = {}
    for key, name in SPLITS.items():
        if key in obj:
            out[name] = _parse_split(obj[key], f"{path}[{key!r}]")
    return out


class MMSADataset(Dataset):
    """Items of one MMSA split: ``text`` (L, Dt), ``audio`` (La', Da), ``vision`` (Lv', Dv) cut to their valid
    lengths, ``text_bert`` (3, L) if stored, ``label`` float, ``id``, ``raw_text``."""

    def __init__(self, split: MMSASplit):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.split
        item = {
            "id": s.ids[i],
            "raw_text": s.raw_text[i],
            "text": torch.from_numpy(s.text[i]),  # (L, Dt)
            "text_len": int(s.text_lengths[i]),
            "audio": torch.from_numpy(s.audio[i, : s.audio_lengths[i]]),  # (La', Da)
            "vision": torch.from_numpy(s.vision[i, : s.vision_lengths[i]]),  # (Lv', Dv)
            "label": float(s.labels[i]),
        }
        if s.text_bert is not None:
            item["text_bert"] = torch.from_numpy(s.text_bert[i])  # (3, L)
        return item


def collate_mmsa(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad an MMSA batch: ``audio`` (B, La, Da) + ``audio_lens``, ``vision`` + ``vision_lens``, ``text``
    (B, L, Dt) + ``text_lens``, ``text_bert`` (B, 3, L) if present, ``labels`` (B,), ids/raw_text lists."""
    pad = torch.nn.utils.rnn.pad_sequence
    out: dict[str, Any] = {
        "ids": [b["id"] for b in batch],
        "raw_text": [b["raw_text"] for b in batch],
        "labels": torch.tensor([b["label"] for b in batch], dtype=torch.float32),  # (B,)
        "text": torch.stack([b["text"] for b in batch]),  # (B, L, Dt)
        "text_lens": torch.tensor([b["text_len"] for b in batch], dtype=torch.long),
        "audio": pad([b["audio"] for b in batch], batch_first=True),  # (B, La, Da)
        "audio_lens": torch.tensor([b["audio"].shape[0] for b in batch], dtype=torch.long),
        "vision": pad([b["vision"] for b in batch], batch_first=True),  # (B, Lv, Dv)
        "vision_lens": torch.tensor([b["vision"].shape[0] for b in batch], dtype=torch.long),
    }
    if "text_bert" in batch[0]:
        out["text_bert"] = torch.stack([b["text_bert"] for b in batch])  # (B, 3, L)
    return out
