"""The one frozen-feature cache: a frozen upstream's per-utterance outputs on disk, keyed by what produced them.

The probe runs, the fusion heads' data and TEASEL all run a frozen upstream once per utterance and reuse the
outputs across runs. A file's key hashes the upstream's weights (every tensor of its state dict), its feature
config, and whatever else the caller says shaped the outputs (layer, mode, pooling, the utterances), so
retrained or swapped weights never meet stale features. Files are safetensors dicts ``{utterance id:
tensor}``, written atomically (a crash leaves the old file or the new one).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ..fileio import atomic_write_bytes

log = logging.getLogger(__name__)


def weights_hash(module: nn.Module) -> str:
    """sha256 over every state-dict entry's name, dtype, shape and bytes: changes when any one weight does."""
    h = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        _hash_entry(h, name, value)
    return h.hexdigest()


def _hash_entry(h, name: str, value: Any) -> None:
    """One state-dict entry into ``h``. Dynamic int8 linears hold a dtype and a (weight, bias) tuple of
    quantised tensors: their integers, scales and zero points are hashed, so int8 and fp32 never share a key."""
    if isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            _hash_entry(h, f"{name}.{i}", v)
        return
    if not isinstance(value, torch.Tensor):
        h.update(f"{name}={value!r}".encode())
        return
    t = value.detach().cpu()
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
    if t.is_quantized:
        scales = t.q_per_channel_scales() if t.qscheme() in (torch.per_channel_affine,
                                                               torch.per_channel_symmetric) else t.q_scale()
        h.update(repr(scales.tolist() if isinstance(scales, torch.Tensor) else scales).encode())
        t = t.int_repr()
    h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes: any dtype, bf16 too


def feature_cache_key(upstream: nn.Module, **ident: Any) -> str:
    """16 hex digits naming the outputs of ``upstream``: its weights, its feature config and ``ident``
    (layer, mode, pooling, corpus, utterances, ...: anything else that changes what is cached)."""
    fc = getattr(upstream, "feature_config", None)
    desc = {"weights": weights_hash(upstream), "features": fc.to_dict() if hasattr(fc, "to_dict") else fc,
            "class": type(upstream).__name__, "ident": getattr(upstream, "cache_ident", None), **ident}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:16]


FINGERPRINT_BLOCK = 65536  # bytes hashed at each end of an audio file: its header and its last samples


def file_fingerprint(path: str | os.PathLike) -> str:
    """Size, mtime and a hash of the first and last :data:`FINGERPRINT_BLOCK` bytes of ``path``.

    Audio edited in place at the same length changes the mtime (and, unless the edit is in the middle
    of a long file and the mtime was put back, the hashed bytes); reading the whole corpus on every run
    would cost as much as a cache miss on a large one. An unreadable file gets a fingerprint of its own,
    so the cache misses and the read that follows reports the file.
    """
    try:
        st = os.stat(path)
        h = hashlib.sha256()
        with open(path, "rb") as f:
            h.update(f.read(FINGERPRINT_BLOCK))
            if st.st_size > FINGERPRINT_BLOCK:
                f.seek(max(FINGERPRINT_BLOCK, st.st_size - FINGERPRINT_BLOCK))
                h.update(f.read(FINGERPRINT_BLOCK))
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    return f"{st.st_size}:{st.st_mtime_ns}:{h.hexdigest()[:16]}"


def utterance_ident(utts: Iterable[Any]) -> str:
    """A short hash of a split's utterances (id, path, length and each file's :func:`file_fingerprint`)
    for :func:`feature_cache_key`: audio changed in place never meets its old features."""
    h = hashlib.sha256()
    for u in utts:
        h.update(f"{u.id}:{u.path}:{u.num_samples}:{file_fingerprint(u.path)}\n".encode())
    return h.hexdigest()[:16]


def cache_file(folder: str | os.PathLike, name: str, key: str) -> Path:
    """Where the features ``name`` (a split, say) with ``key`` live under ``folder``."""
    return Path(folder) / f"{name}-{key}.safetensors"


def load_features(path: str | os.PathLike | None, ids: Iterable[str]) -> dict[str, torch.Tensor] | None:
    """The stored ``{id: tensor}`` when ``path`` holds every id in ``ids``; None when it is absent or short,
    or unreadable (cut short, overwritten): then a one-line warning, and the caller rebuilds it."""
    if path is None or not Path(path).is_file():
        return None
    from safetensors.torch import load_file

    try:
        stored = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ...: any unreadable cache is rebuilt
        log.warning("%s: unreadable feature cache (%s); computing it again", path, str(exc).splitlines()[0][:120])
        return None
    return stored if all(i in stored for i in ids) else None


def save_features(path: str | os.PathLike | None, features: Mapping[str, torch.Tensor]) -> None:
    """Write ``{id: tensor}`` to ``path`` atomically (no-op for ``path=None``, a memory-only cache)."""
    if path is None:
        return
    from safetensors.torch import save

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(path), save({k: v.contiguous() for k, v in features.items()}))
