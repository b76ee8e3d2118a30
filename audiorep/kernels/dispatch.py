"""The one attention entry point the encoders call; picks a backend and keeps the reference in reach.

Backends:

* ``"reference"`` -- fp32 PyTorch, materialises (T, T) scores; the ground truth (``reference.py``).
* ``"sdpa"`` -- ``torch.nn.functional.scaled_dot_product_attention`` with a key-padding mask; on CPU with
  dropout and no mask (packed training, one utterance per call) the same math with the cheaper dropout
  mask of ``cpu_dropout.py``, which also takes a score bias in training.
* ``"triton"`` -- the fused variable-length kernel (``triton_attention.py``, imported lazily).
* ``"auto"`` -- CPU: always SDPA. CUDA: the backend that ``benchmarks/attention.py`` measured fastest for
  this GPU, dtype, head dim, length class and pass (inference or training), read from ``tuned.json``
  beside this file; SDPA where nothing was measured. The ``attention`` switch of the kernel config
  (``AUDIOREP_ATTENTION``, see ``config.py``) replaces "auto" everywhere (handy to A/B a whole model run).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .capabilities import TRITON_DTYPES, TRITON_HEAD_DIMS
from .config import ATTENTION_BACKENDS as BACKENDS, kernel_config
from .reference import attention_reference

TUNED_PATH = Path(__file__).with_name("tuned.json")
# Length classes the measured table is keyed by: upper bounds (exclusive) in frames. The benchmark's
# points (500, 1000, 1500, 3000, 6000) fall into these; anything longer uses the last class.
T_CLASSES = ((768, "T<768"), (2048, "T<2048"), (4096, "T<4096"), (None, "T>=4096"))


def t_class(T: int) -> str:
    """Name of the length class a sequence length falls into."""
    for bound, name in T_CLASSES:
        if bound is None or T < bound:
            return name
    raise AssertionError("unreachable")


@functools.lru_cache(maxsize=1)
def load_tuned(path: str = str(TUNED_PATH)) -> dict:
    """The measured table (empty when the file is missing or unreadable: auto then means SDPA)."""
    try:
        with open(path, encoding="utf-8") as fh:
            table = json.load(fh)
    except (OSError, ValueError):
        return {"entries": []}
    return table if isinstance(table.get("entries"), list) else {"entries": []}


# Snapshot read once at import so that resolving "auto" does no file I/O and torch.compile can trace it
# (guards on the length class instead of graph-breaking); a re-benchmarked file counts from the next process.
_TABLE: dict = load_tuned()
_DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32"}


def _device_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def _device_capability(index: int) -> str:
    return "sm_%d%d" % torch.cuda.get_device_capability(index)


# What torch.compiler.assume_constant_result sets, set by hand: calling the decorator at import would
# import torch._dynamo, and with it triton, on `import audiorep`. Dynamo then calls these once while
# tracing and bakes the answer in, instead of graph-breaking on the CUDA query.
_device_name._dynamo_marked_constant = True  # type: ignore[attr-defined]
_device_capability._dynamo_marked_constant = True  # type: ignore[attr-defined]


def _device_key(index: int) -> tuple[str, str]:
    return _device_name(index), _device_capability(index)


def measured_best(key: dict, device_name: str, capability: str, table: dict | None = None) -> str | None:
    """``best`` of the tuned.json entry whose fields equal ``key`` ("op" defaults to "attention"), or None.

    An entry measured on the same GPU model wins; otherwise one from the same architecture (sm_XY)."""
    fallback = None
    for e in (_TABLE if table is None else table)["entries"]:
        if any(e.get(k, "attention" if k == "op" else None) != v for k, v in key.items()):
            continue
        if e.get("device") == device_name:
            return e.get("best")
        if e.get("capability") == capability and fallback is None:
            fallback = e.get("best")
    return fallback


def tuned_choice(device_name: str, capability: str, dtype: torch.dtype, head_dim: int, T: int,
                 mode: str, table: dict | None = None) -> str | None:
    """The measured best attention backend for this shape class, or None when nothing was measured."""
    key = {"op": "attention", "dtype": _DTYPE_NAMES.get(dtype), "head_dim": head_dim, "t_class": t_class(T),
           "mode": mode}
    return measured_best(key, device_name, capability, table)


def auto_choice(q: torch.Tensor, device_index: int) -> str:
    """"auto" for a CUDA q: the measured winner for its class, SDPA where none was measured."""
    mode = "fwd_bwd" if (torch.is_grad_enabled() and q.requires_grad) else "fwd"
    name, cap = _device_key(device_index)
    best = tuned_choice(name, cap, q.dtype, q.shape[-1], q.shape[2], mode)
    if best == "triton":
        return "triton" if q.dim() == 4 and q.dtype in TRITON_DTYPES and q.shape[-1] in TRITON_HEAD_DIMS else "sdpa"
    return best if best in ("sdpa", "reference") else "sdpa"


def resolve_backend(q: torch.Tensor, backend: str = "auto", lengths: torch.Tensor | None = None,
                    attn_mask: torch.Tensor | None = None) -> str:
    """The backend a call will actually use (benchmarks print this)."""
    cfg = kernel_config()
    if backend == "auto":
        backend = cfg.attention
    if backend not in BACKENDS:
        raise ConfigError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if not q.is_cuda:
            return "sdpa"
        if attn_mask is not None and lengths is None:
            return "sdpa"  # an arbitrary mask: only SDPA/reference take one
        return auto_choice(q, q.device.index or 0)
    if backend == "triton" and not q.is_cuda and not cfg.triton_interpret:
        raise ValueError("attention backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 for tests)")
    return backend


def key_padding_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, 1, 1, T) bool mask for SDPA: True where a key may be attended."""
    return (torch.arange(T, device=lengths.device)[None, :] < lengths[:, None])[:, None, None, :]


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    backend: str = "auto",
    attn_mask: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    onednn: bool = False,
) -> torch.Tensor:
    """Bidirectional attention over padded sequences.

    q, k, v: (B, H, T, D); lengths: (B,) valid frames or None (all valid). Keys past a length get no
    weight. Query rows past a length are not meaningful: the reference and Triton backends return zeros,
    SDPA returns the attention over valid keys; callers ignore them. ``attn_mask`` may pass a precomputed
    ``key_padding_mask(lengths, T)`` so a stack of layers builds it once (the Triton kernel uses
    ``lengths`` directly and skips padded tiles instead).

    ``bias`` (broadcastable to (B, H, T, T)) is added to the scores before the softmax (a learned position
    bias). The Triton kernel takes no bias, so such calls go to SDPA whatever ``backend`` says, or, on CPU in
    training with no mask, to the same math in ``cpu_dropout.py``.

    ``onednn`` (a module's ``KernelChoice.onednn_training``): that CPU training math runs its GEMMs in oneDNN,
    one head at a time (``cpu_attention.py``), for one long fp32 utterance outside autocast.
    """
    if bias is not None:
        if attn_mask is None and lengths is not None:
            attn_mask = key_padding_mask(lengths, q.shape[2])
        if attn_mask is None and q.device.type == "cpu" and torch.is_grad_enabled() and (
                q.requires_grad or bias.requires_grad):
            # Training: SDPA would take its math path anyway (a bias with a gradient has no fused kernel).
            # Inference keeps SDPA, whose CPU kernel never stores the (T, T) scores of a long utterance.
            return _cpu_training_attention(q, k, v, dropout_p, bias, onednn)
        if attn_mask is not None:
            bias = bias.masked_fill(~attn_mask, float("-inf"))  # (B, H, T, T)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), dropout_p=dropout_p)
    which = resolve_backend(q, backend, lengths, attn_mask)
    if which == "reference":
        return attention_reference(q, k, v, lengths, dropout_p)
    if which == "triton":
        if attn_mask is not None and lengths is None:
            raise ValueError("attention backend 'triton' takes per-sequence lengths, not an arbitrary attn_mask")
        from . import triton_attention  # lazy: never imported by `import audiorep`

        return triton_attention.attention(q, k, v, lengths, dropout_p)
    if attn_mask is None and lengths is not None:
        attn_mask = key_padding_mask(lengths, q.shape[2])
    if dropout_p > 0.0 and attn_mask is None and q.device.type == "cpu":
        # SDPA would take its math fallback here, with a Bernoulli draw per score; same math, cheaper mask
        return _cpu_training_attention(q, k, v, dropout_p, None, onednn)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)


def _cpu_training_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float,
                            bias: torch.Tensor | None, onednn: bool) -> torch.Tensor:
    """The unmasked CPU math path: oneDNN one head at a time where allowed and long enough to gain, else
    ``attention_dropout``."""
    from .cpu_attention import MIN_SCORES, headwise_attention
    from .fused import onednn_fp32

    if onednn and q.shape[0] == 1 and q.shape[1] * q.shape[2] * k.shape[2] >= MIN_SCORES and onednn_fp32(q):
        return headwise_attention(q, k, v, dropout_p, bias)
    from .cpu_dropout import attention_dropout

    return attention_dropout(q, k, v, dropout_p, bias)
