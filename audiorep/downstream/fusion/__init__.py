"""Multimodal sentiment heads over audiorep speech features: Self-MM, DMD, DeepMLF (+ a text-only baseline).

One API: ``head(text, audio (B, T, D), audio_lens, vision=None, vision_lens=None, labels=None, index=None)
-> FusionOutput(pred (B,), losses, extras)``. Entry points: :func:`run` (a :class:`FusionConfig`: data,
head, seeds -> metrics mean ± std) and :func:`build_head`; ``python -m audiorep.downstream.fusion`` on the
command line.
"""

from .common import FusionHead, FusionOutput, LSTMSubNet, TextEncoder
from .data import FusionSplit, corpus_splits, load_mmsa_splits
from .deepmlf import DeepMLF, DeepMLFConfig
from .dmd import DMD, DMDConfig, GDUnit, margin_loss, orthogonality_loss
from .selfmm import ULGM, SelfMM, SelfMMConfig
from .textonly import TextOnly
from .train import HEADS, FusionConfig, build_head, evaluate, load_fusion_config, run, summarize, train_one

__all__ = [
    "DMD", "DMDConfig", "DeepMLF", "DeepMLFConfig", "FusionConfig", "FusionHead", "FusionOutput", "FusionSplit",
    "GDUnit", "HEADS", "LSTMSubNet", "SelfMM", "SelfMMConfig", "TextEncoder", "TextOnly", "ULGM", "build_head",
    "corpus_splits", "evaluate", "load_fusion_config", "load_mmsa_splits", "margin_loss", "orthogonality_loss",
    "run", "summarize", "train_one",
]
