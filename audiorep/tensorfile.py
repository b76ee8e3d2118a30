"""A safetensors file written one tensor at a time: memory bounded by one tensor, not by the whole file.

safetensors puts its JSON header (names, shapes, byte offsets) before the data, so the usual
``safetensors.torch.save`` builds every tensor and the serialised copy in memory first. When every name
is known in advance (extraction knows its input list), the header's largest possible size is known too:
:class:`StreamingSafetensorsWriter` reserves that many bytes, appends each tensor's bytes as soon as it
is computed, and at the end writes the real header into the reserved space, padded with spaces (which
JSON and every safetensors reader accept; ``safetensors`` pads its own headers the same way). The file
is written under a temp name beside the target and renamed over it only when complete, so a crash leaves
the old file or none, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import torch

from .fileio import make_temp_file, pid_temp_prefix, storage_error

_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
           torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL"}
_MAX_RANK = 3  # extraction writes (T, H) or (L+1, T, H)
RESERVED = "__metadata__"  # the header key safetensors keeps for string metadata; no tensor may have it
_BIG = 10 ** 19  # more digits than any shape or byte offset can have


def _entry(dtype: str, shape: list[int], begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


class StreamingSafetensorsWriter:
    """Write tensors named from ``names`` into a safetensors file at ``path`` as they arrive.

    ``add(name, tensor)`` appends the tensor's bytes to the file at once (and flushes them), so the
    caller can drop it; ``close()`` writes the header and renames the file into place; ``abort()``
    removes the partial file. Names not added by ``close()`` are simply absent from the file.
    Use as a context manager: an exception inside the block aborts.
    """

    def __init__(self, path: str | os.PathLike, names: Iterable[str], metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self.names = list(dict.fromkeys(names))
        if RESERVED in self.names:
            raise ValueError(f"{RESERVED!r}: safetensors reserves this key for the file's metadata")
        self.metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        worst = {n: _entry("BOOL_", [_BIG] * _MAX_RANK, _BIG, _BIG) for n in self.names}
        worst["__metadata__"] = self.metadata
        self.header_room = -(-len(_dumps(worst)) // 8) * 8  # 8-byte aligned data start
        self.entries: dict[str, dict] = {}
        self.offset = 0  # bytes of tensor data written so far
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # the pid in the name lets a later run remove the leftovers of a killed one (remove_dead_temps)
            fd, self.tmp = make_temp_file(self.path.parent, prefix=pid_temp_prefix(self.path), suffix=".part")
        except OSError as exc:
            raise storage_error(self.path, exc) from exc
        self.file = os.fdopen(fd, "wb")
        self._write(b"\0" * (8 + self.header_room))  # placeholder until close()

    def _write(self, data) -> None:
        try:
            self.file.write(data)
        except OSError as exc:
            self.abort()
            raise storage_error(self.path, exc) from exc

    def add(self, name: str, tensor: torch.Tensor) -> None:
        """Append ``tensor`` (any device; written as its CPU bytes) under ``name``, one of the announced names."""
        if name not in self.names:
            raise KeyError(f"{name!r}: not among the names this file was opened for")
        if name in self.entries:
            raise KeyError(f"{name!r}: already written")
        if tensor.dtype not in _DTYPES or tensor.dim() > _MAX_RANK:
            raise ValueError(f"tensor {name!r}: dtype {tensor.dtype} / rank {tensor.dim()} not supported here")
        t = tensor.detach().cpu().contiguous()
        nbytes = t.numel() * t.element_size()
        # a uint8 view of the storage: bf16 has no numpy dtype, and a view costs no copy
        self._write(t.reshape(-1).view(torch.uint8).numpy().data if nbytes else b"")
        self.file.flush()
        self.entries[name] = _entry(_DTYPES[t.dtype], list(t.shape), self.offset, self.offset + nbytes)
        self.offset += nbytes

    def close(self) -> Path:
        """Write the header into its reserved room, sync, and move the file to ``path``; returns ``path``."""
        header = _dumps({**self.entries, "__metadata__": self.metadata}).encode()
        header += b" " * (self.header_room - len(header))
        try:
            self.file.seek(0)
            self.file.write(len(header).to_bytes(8, "little") + header)
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.abort()
            raise storage_error(self.path, exc) from exc
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file (the target is left as it was)."""
        if not self.file.closed:
            self.file.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def __enter__(self) -> "StreamingSafetensorsWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def _dumps(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"))
