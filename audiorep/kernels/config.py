"""The kernel switches, read once, and the one function that turns them into a module's kernel choice.

Switches (environment variables, read on first use into one :class:`KernelConfig`):

* ``AUDIOREP_ATTENTION`` -- what ``"auto"`` attention means (``auto``, ``sdpa``, ``reference``, ``triton``);
  handy to A/B a whole model run.
* ``AUDIOREP_FUSED_OPS`` -- backend of the post-LN residual step ``LayerNorm(x + dropout(y))``
  (``auto``, ``torch``, ``triton``).
* ``AUDIOREP_CPU_FUSION=0`` -- turns off the CPU inference fast path (fused oneDNN linears and valid-frame
  packing), to A/B it or rule it out when debugging.
* ``AUDIOREP_PACKED_TRAINING=0`` -- turns off packed training steps on CPU (encoder, prediction head and loss
  on the valid frames only, attention per utterance); training then runs on the padded batch.
* ``AUDIOREP_ONEDNN_TRAINING=0`` -- training (autograd) linears on CPU run ``F.linear`` instead of oneDNN's
  GEMMs forward and backward (``fused.dense``), and long utterances' attention keeps its batched math path
  instead of oneDNN one head at a time (``cpu_attention.py``).
* ``TRITON_INTERPRET=1`` -- Triton's own switch: its kernels run on CPU tensors (tests).

A module calls :func:`choose` when it is built and keeps the :class:`KernelChoice`; nothing reads the
environment per call. :func:`use_kernels` swaps the config for the modules built inside it (tests,
benchmarks that compare the fast path with the plain one in one process).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from typing import Iterator, Mapping

from ..errors import ConfigError
from .capabilities import HAVE_ONEDNN_LINEAR

ATTENTION_BACKENDS = ("auto", "sdpa", "reference", "triton")
LAYER_NORM_BACKENDS = ("auto", "torch", "triton")


@dataclass(frozen=True)
class KernelConfig:
    """Process-wide kernel switches (see the module doc for the environment variables behind each)."""

    attention: str = "auto"  # replaces "auto" attention in every module built while this config holds
    layer_norm: str = "auto"  # post-LN residual step: "auto" = measured winner on CUDA, torch elsewhere
    cpu_fusion: bool = True  # CPU inference fast path: oneDNN-fused linears + packing of valid frames
    triton_interpret: bool = False  # Triton kernels may take CPU tensors (its interpreter; tests only)
    packed_training: bool = True  # CPU training steps run on valid frames only (no padding in any op)
    onednn_training: bool = True  # CPU fp32 training GEMMs (linears, long attention) in oneDNN: MKL is slow on AMD

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_BACKENDS:
            raise ConfigError(f"attention backend must be one of {', '.join(ATTENTION_BACKENDS)}, "
                              f"got {self.attention!r}")
        if self.layer_norm not in LAYER_NORM_BACKENDS:
            raise ConfigError(f"layer-norm backend must be one of {', '.join(LAYER_NORM_BACKENDS)}, "
                              f"got {self.layer_norm!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "KernelConfig":
        """The switches as the environment sets them (``os.environ`` unless given)."""
        env = os.environ if environ is None else environ
        for var, allowed in (("AUDIOREP_ATTENTION", ATTENTION_BACKENDS), ("AUDIOREP_FUSED_OPS", LAYER_NORM_BACKENDS)):
            if env.get(var) and env[var] not in allowed:
                raise ConfigError(f"{var}={env[var]!r}: must be one of {', '.join(allowed)}")
        return cls(
            attention=env.get("AUDIOREP_ATTENTION", "auto") or "auto",
            layer_norm=env.get("AUDIOREP_FUSED_OPS", "auto") or "auto",
            cpu_fusion=env.get("AUDIOREP_CPU_FUSION", "1") != "0",
            triton_interpret=env.get("TRITON_INTERPRET") == "1",
            packed_training=env.get("AUDIOREP_PACKED_TRAINING", "1") != "0",
            onednn_training=env.get("AUDIOREP_ONEDNN_TRAINING", "1") != "0",
        )


_config: KernelConfig | None = None  # read lazily, so a test's conftest can set TRITON_INTERPRET first


def kernel_config() -> KernelConfig:
    """The switches in force: the environment's, read once on first use, unless :func:`use_kernels` holds."""
    global _config
    if _config is None:
        _config = KernelConfig.from_env()
    return _config


@contextlib.contextmanager
def use_kernels(**changes) -> Iterator[KernelConfig]:
    """Within the block, the config is the current one with ``changes`` applied (e.g. ``cpu_fusion=False``).

    Modules record their choice when built, so build them inside the block; the old config comes back after.
    """
    global _config
    before = kernel_config()
    _config = dataclasses.replace(before, **changes)
    try:
        yield _config
    finally:
        _config = before


@dataclass(frozen=True)
class KernelChoice:
    """The kernels one module runs, fixed when it is built (see :func:`choose`)."""

    attention: str  # backend handed to kernels.attention; "auto" still resolves per device/dtype/length
    layer_norm: str  # backend handed to kernels.add_layer_norm for the post-LN residual steps
    cpu_fast_path: bool  # on CPU under no_grad in eval mode: pack valid frames, fuse linears where possible
    onednn_linear: bool  # this torch build has the fused oneDNN linear op (the fast path fuses only then)
    packed_training: bool = False  # on CPU with autograd on: run padded batches packed (valid frames only)
    onednn_training: bool = False  # CPU fp32 under autograd: linears and long attention run oneDNN's GEMMs


def choose(attention: str = "auto") -> KernelChoice:
    """A module's kernels: ``attention`` as asked ("auto" = the config's attention switch), plus the switches.

    The one place where the switches become decisions; every module calls it from ``__init__``.
    """
    if attention not in ATTENTION_BACKENDS:
        raise ValueError(f"attention backend must be one of {ATTENTION_BACKENDS}, got {attention!r}")
    cfg = kernel_config()
    return KernelChoice(
        attention=cfg.attention if attention == "auto" else attention,
        layer_norm=cfg.layer_norm,
        cpu_fast_path=cfg.cpu_fusion,
        onednn_linear=cfg.cpu_fusion and HAVE_ONEDNN_LINEAR,
        packed_training=cfg.packed_training,
        onednn_training=cfg.onednn_training and HAVE_ONEDNN_LINEAR,
    )
