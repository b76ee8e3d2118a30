"""A restricted unpickler for torch checkpoints: builds tensors and plain containers, refuses any other code.

``torch.load(..., weights_only=False)`` on a file someone handed you runs whatever the pickle names. This
module is passed to ``torch.load`` as its ``pickle_module`` so every class lookup goes through an allow-list.
"""

from __future__ import annotations

import pickle
from typing import Any

from ..errors import CheckpointError

# (module, name) pairs a tensor checkpoint legitimately needs; nothing here runs user-controlled code.
_ALLOWED: set[tuple[str, str]] = {
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
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
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("codecs", "encode"),  # how protocol-2 pickles of numpy arrays carry their raw bytes
}
_TORCH_DTYPES = {
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "float", "double", "half", "long", "int",
}
# Old s3prl checkpoints pickled their optimiser/scheduler objects from a top-level `optimizers` module.
# We never need those sections, so such objects become inert placeholders instead of imported code.
_OPAQUE_MODULES = ("optimizers", "s3prl.optimizers")


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

    try:
        return torch.load(path, map_location="cpu", pickle_module=_Module, weights_only=False)
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint file") from None
    except Exception as exc:  # truncated zip, not a torch file, ...
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint ({type(exc).__name__}: {exc})") from exc
