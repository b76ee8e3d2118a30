"""Text models for the fusion heads, offline.

- Encoder (Self-MM, DMD, text-only): a local ``transformers`` folder (BERT / RoBERTa: ``AutoModel`` +
  ``AutoTokenizer``), or ``"teasel-small"``: the small RoBERTa that :mod:`audiorep.multimodal` trains on the corpus's
  training transcripts and caches (shared with the TEASEL runs, so both compare on the same text model).
- Decoder (DeepMLF): a local GPT-2-style folder (``AutoModelForCausalLM``), or ``"small-gpt2"``: a byte-level BPE
  tokenizer + small GPT-2 trained by :func:`audiorep.multimodal.lm.train_small_lm` with next-token loss on the training transcripts, cached under
  ``$AUDIOREP_HOME/fusion/gpt2-<hash>`` (hash of transcripts, settings and the cache format), written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError


@dataclass
class SmallGPT2Config:
    """The offline default decoder LM for DeepMLF: tiny, because the bundled corpus has a few hundred sentences."""

    vocab_size: int = 1000  # BPE vocabulary incl. the special token
    hidden_size: int = 128  # LM width (= fusion token width)
    num_layers: int = 2  # DeepMLF then fuses after layer 0 and/or 1
    num_heads: int = 2
    max_positions: int = 96  # transcript tokens + fusion tokens
    epochs: int = 30  # next-token passes over the transcripts
    batch_size: int = 32
    lr: float = 1e-3  # from-scratch LM on tiny data
    seed: int = 0


def load_local(path: str | os.PathLike, model_class, what: str):
    """A local transformers folder -> ``(tokenizer, model_class model)``, offline; CheckpointError naming it
    (the fusion heads' encoder / decoder and TEASEL's RoBERTa all load through here)."""
    from transformers import AutoTokenizer

    path = Path(os.fspath(path)).expanduser()
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a transformers model folder (no config.json)")
    try:
        return AutoTokenizer.from_pretrained(str(path)), model_class.from_pretrained(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load a tokenizer + {what}: {exc}") from exc


def load_encoder(path: str | os.PathLike):
    """A local encoder folder -> ``(tokenizer, AutoModel)``, offline."""
    from transformers import AutoModel

    return load_local(path, AutoModel, "encoder")


def load_decoder(path: str | os.PathLike):
    """A local GPT-2-style folder -> ``(tokenizer, causal LM)``, offline."""
    from transformers import AutoModelForCausalLM

    return load_local(path, AutoModelForCausalLM, "causal LM")
