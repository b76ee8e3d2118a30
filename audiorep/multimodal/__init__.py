"""Multimodal sentiment: MMSA metrics and data, the text LMs, TEASEL (LAA prefixer + RoBERTa), and the fusion heads
Self-MM, DMD, DeepMLF (+ a text-only baseline) over audiorep speech features. The fusion heads are one file each
in :mod:`.heads`, registered in :data:`HEADS` (config class, head class, needs); the exports below are the
built-in ones.

Fusion heads share one API: ``head(text, audio (B, T, D), audio_lens, vision=None, vision_lens=None, labels=None, index=None)
-> FusionOutput(pred (B,), losses, extras)``. Entry points: :func:`run` (a :class:`FusionConfig`: data,
head, seeds -> metrics mean ± std) and :func:`build_head`. TEASEL runs: :func:`run_pretrain` /
:func:`run_finetune` over a :class:`TeaselRunConfig`. Result tables: :mod:`.table`.
"""

from .common import FusionHead, FusionOutput, LSTMSubNet, TextEncoder
from .data import FusionSplit, corpus_splits, load_mmsa_splits
from .heads import HEADS, HeadSpec, register_head
from .heads.deepmlf import DeepMLF, DeepMLFConfig
from .heads.dmd import DMD, DMDConfig, GDUnit, margin_loss, orthogonality_loss
from .heads.selfmm import ULGM, SelfMM, SelfMMConfig
from .lm import ensure_lm, load_lm, train_small_lm, train_tokenizer
from .teasel_config import SmallRobertaConfig, TeaselRunConfig, load_run_config
from .teasel_run import build_front_end, build_model, run_finetune, run_pretrain
from .heads.textonly import TextOnly
from .fusion_run import (FusionConfig, build_head, evaluate, load_fusion_config, merge_results, run, summarize,
                         train_one)
from .table import collect_teasel, reference_rows, table

__all__ = [
    "DMD", "DMDConfig", "DeepMLF", "DeepMLFConfig", "FusionConfig", "FusionHead", "FusionOutput", "FusionSplit",
    "GDUnit", "HEADS", "HeadSpec", "register_head", "LSTMSubNet", "SelfMM", "SelfMMConfig", "TextEncoder",
    "TextOnly", "ULGM", "build_head",
    "corpus_splits", "evaluate", "load_fusion_config", "load_mmsa_splits", "margin_loss", "orthogonality_loss",
    "merge_results", "run", "summarize", "train_one", "collect_teasel", "reference_rows", "table",
    "SmallRobertaConfig", "TeaselRunConfig", "build_front_end", "build_model", "ensure_lm", "load_lm",
    "load_run_config",
    "run_finetune", "run_pretrain", "train_small_lm", "train_tokenizer",
]
