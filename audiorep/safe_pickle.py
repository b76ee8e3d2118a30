"""A restricted unpickler for torch checkpoints: builds tensors and plain containers, refuses any other code.

``torch.load(..., weights_only=False)`` on a file someone handed you runs whatever the pickle names. This
module is passed to ``torch.load`` as its ``pickle_module`` so every class lookup goes through an allow-list.
"""

from __future__ import annotations

import _compat_pickle
import os
import pickle
from typing import Any

from .errors import CheckpointError

# (module, name) pairs a tensor checkpoint legitimately needs; nothing here runs user-controlled code.
_ALLOWED: set[tuple[str, str]] = {
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("argparse", "Namespace"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch.nn.parameter", "Parameter"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
_TORCH_DTYPES = {
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "float", "double", "half", "long", "int",
}
# Old s3prl checkpoints pickled their optimiser/scheduler objects from a top-level `optimizers` module.
# We never need those sections, so such objects become inert placeholders instead of imported code.
_OPAQUE_MODULES = ("optimizers", "s3prl.optimizers")


# Protocol-2 pickles (torch.save's default) cannot hold bytes directly: they store each bytes object as
# ``_codecs.encode(<str>, "latin1")``. The real ``encode`` takes any codec and any object, so nested calls
# through e.g. hex or base64 grow a 1 KB pickle exponentially; this stand-in does only what numpy's
# pickles need: latin-1 of a string the file itself holds, which has the string's length.
_LATIN1 = {"latin1", "latin-1", "latin_1", "iso-8859-1", "iso8859-1", "l1"}
_MAX_ENCODED_CHARS = 1 << 34  # 16 GiB: a bound on principle; a str in the file is at most the file's size


def _codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    if not isinstance(obj, str) or not isinstance(encoding, str) or encoding.lower() not in _LATIN1:
        raise pickle.UnpicklingError(f"refusing codecs.encode({type(obj).__name__}, {encoding!r}): only latin-1 "
                                     "strings are plain data")
    if errors != "strict" or len(obj) > _MAX_ENCODED_CHARS:
        raise pickle.UnpicklingError("refusing codecs.encode outside the plain latin-1 form numpy pickles use")
    return obj.encode("latin-1")


class _NdarrayClass:
    """What the pickle sees as ``numpy.ndarray``: only a token for :func:`_reconstruct`.

    Calling the real class with a shape from the file (``ndarray((10**12,))``) would allocate it.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("refusing numpy.ndarray(...): arrays are rebuilt only the way numpy pickles them")


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's own ``_reconstruct`` as its pickles call it: an empty ndarray that ``__setstate__`` fills."""
    import numpy as np

    if subtype is not _NdarrayClass or tuple(shape) != (0,):
        raise pickle.UnpicklingError("refusing numpy _reconstruct other than numpy's own (ndarray, (0,), ...)")
    try:
        from numpy._core.multiarray import _reconstruct as real  # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct as real

    return real(np.ndarray, (0,), dtype)


def _bytearray(*args: Any) -> bytearray:
    """``bytearray`` of a bytes/str payload (how protocol 2-4 pickle one), not of a size from the file."""
    if not args or not isinstance(args[0], (bytes, str)) or len(args) > 2:
        raise pickle.UnpicklingError("refusing bytearray(...) other than of a bytes or latin-1 string payload")
    return bytearray(*args)


def _bytes(*args: Any) -> bytes:
    """``bytes()`` (how protocol 2 pickles an empty bytes object) or ``bytes`` of a payload; never of a size."""
    if args and (not isinstance(args[0], (bytes, str)) or len(args) > 2):
        raise pickle.UnpicklingError("refusing bytes(...) other than empty or of a bytes or latin-1 string payload")
    return bytes(*args)


# (module, name) -> the bounded stand-in the unpickler hands out instead of the real callable
_REPLACED: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): _codecs_encode,
    ("codecs", "encode"): _codecs_encode,
    ("numpy", "ndarray"): _NdarrayClass,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("builtins", "bytearray"): _bytearray,
    ("builtins", "bytes"): _bytes,
}


class OpaqueObject:
    """Stands in for a legacy optimiser/scheduler object; keeps its pickled state as a dict, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<opaque {getattr(self, 'qualname', '?')}>"


def _opaque(qualname: str) -> type:
    return type("Opaque", (OpaqueObject,), {"qualname": qualname})


class Unpickler(pickle.Unpickler):
    """pickle.Unpickler whose class lookups are limited to the allow-list above."""

    source = "checkpoint"  # named in errors
    error: type[Exception] = CheckpointError  # raised for a refused global

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (protocol <= 2 pickles say __builtin__.set): what pickle itself would map them to
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        if (module, name) in _REPLACED:
            return _REPLACED[(module, name)]
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "torch" and (name in _TORCH_DTYPES or name.endswith("Storage")):
            return super().find_class(module, name)
        if module.split(".")[0] in _OPAQUE_MODULES or module.startswith(_OPAQUE_MODULES):
            return _opaque(f"{module}.{name}")
        raise self.error(
            f"{self.source}: refusing to unpickle {module}.{name}: the file holds an object that is not plain "
            "data (arrays, tensors, dicts, lists, numbers, strings). audiorep never executes pickled code; if you "
            "trust the file, re-save its plain contents (e.g. torch.save(state_dict)) with the tool that made it."
        )


def _named(source: str, error: type[Exception]) -> type[Unpickler]:
    return type("NamedUnpickler", (Unpickler,), {"source": source, "error": error})


def restricted_load(file: Any, source: str, error: type[Exception] = CheckpointError, **kwargs: Any) -> Any:
    """Unpickle plain data (numpy arrays, containers, scalars) from an open file; ``error`` names ``source``."""
    return _named(source, error)(file, **kwargs).load()


# torch.save stores its zip records uncompressed, so their declared sizes add up to about the file's size. A
# record deflated by someone else may legitimately shrink a little; one that claims far more than the file
# holds is a zip bomb: torch's reader allocates each record's declared size before inflating it.
_ZIP_SLACK_BYTES = 64 << 20
_ZIP_MAX_RATIO = 4


def _check_zip_sizes(path: str) -> None:
    """CheckpointError when a zip checkpoint's records declare more bytes than the file could hold."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return
        size = os.path.getsize(path)
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return  # torch.load says what is wrong with it
    declared = sum(max(i.file_size, 0) for i in infos)
    limit = _ZIP_MAX_RATIO * size + _ZIP_SLACK_BYTES
    if declared > limit:
        worst = max(infos, key=lambda i: i.file_size)
        raise CheckpointError(
            f"{path}: its zip records declare {declared / 1e6:.1f} MB uncompressed in a {size / 1e6:.1f} MB file "
            f"({worst.filename!r} alone {worst.file_size / 1e6:.1f} MB, compressed to {worst.compress_size} bytes); "
            "torch checkpoints are stored uncompressed, so this is not one (a zip bomb?); refused before reading")


def safe_torch_load(path: str) -> Any:
    """torch.load a checkpoint on CPU with the restricted unpickler; errors name the file."""
    import torch

    unpickler = _named(path, CheckpointError)

    class _Module:  # the pickle module torch.load uses: our Unpickler for both zip and legacy formats
        Unpickler = unpickler
        __name__ = __name__

        @staticmethod
        def load(file: Any, **kwargs: Any) -> Any:
            return unpickler(file, **kwargs).load()

    _check_zip_sizes(path)
    try:
        return torch.load(path, map_location="cpu", pickle_module=_Module, weights_only=False)
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except Exception as exc:  # truncated zip, not a torch file, ...
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint ({type(exc).__name__}: {exc})") from exc
