"""Text models for the fusion heads, offline.

- Encoder (Self-MM, DMD, text-only): a local ``transformers`` folder (BERT / RoBERTa: ``AutoModel`` +
  ``AutoTokenizer``), or ``"teasel-small"``: the small RoBERTa that :mod:`audiorep.multimodal` trains on the corpus's
  training transcripts and caches (shared with the TEASEL runs, so both compare on the same text model).
- Decoder (DeepMLF): a local GPT-2-style folder (``AutoModelForCausalLM``), or ``"small-gpt2"``: a byte-level BPE
  tokenizer + small GPT-2 trained here with next-token loss on the training transcripts, cached under
  ``$AUDIOREP_HOME/fusion/gpt2-<hash>`` (hash of transcripts and settings), written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_directory

log = logging.getLogger(__name__)


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


def _load_local(path: str | os.PathLike, model_class, what: str):
    """A local transformers folder -> ``(tokenizer, model_class model)``, offline; CheckpointError naming it."""
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

    return _load_local(path, AutoModel, "encoder")


def encoder_for(name: str, train_texts: Sequence[str], device: str = "cpu"):
    """``name`` = local folder or ``"teasel-small"`` -> ``(tokenizer, encoder model, where)``."""
    if name != "teasel-small":
        tok, model = load_encoder(name)
        return tok, model, name
    try:
        from .teasel_config import SmallLMConfig
        from .lm import ensure_lm
    except ImportError as exc:  # the TEASEL package is what trains and caches this LM
        raise ConfigError(f"text_model 'teasel-small' needs audiorep.multimodal ({exc}); give a local encoder "
                          "folder instead") from exc
    tok, mlm, folder = ensure_lm(None, list(train_texts), SmallLMConfig(), device)
    return tok, mlm.roberta, str(folder)


def _key(texts: Sequence[str], cfg: SmallGPT2Config) -> str:
    h = hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode())
    for t in texts:
        h.update(t.encode() + b"\n")
    return h.hexdigest()[:12]


def train_small_gpt2(texts: Sequence[str], cfg: SmallGPT2Config, out_dir: str | os.PathLike) -> Path:
    """Tokenizer + small GPT-2 trained on ``texts`` (next-token loss) -> a loadable folder (temp + rename)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    if not texts:
        raise ConfigError("train_small_gpt2: no transcripts to train on")
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        torch.manual_seed(cfg.seed)
        bpe = ByteLevelBPETokenizer(add_prefix_space=True)
        bpe.train_from_iterator(list(texts), vocab_size=cfg.vocab_size, min_frequency=1,
                                special_tokens=["<|endoftext|>"], show_progress=False)
        bpe.save_model(str(tmp))
        tok = GPT2TokenizerFast(vocab_file=str(tmp / "vocab.json"), merges_file=str(tmp / "merges.txt"),
                                add_prefix_space=True)
        tok.pad_token = tok.eos_token
        tok.save_pretrained(str(tmp))
        gc = GPT2Config(vocab_size=len(tok), n_embd=cfg.hidden_size, n_layer=cfg.num_layers, n_head=cfg.num_heads,
                        n_positions=cfg.max_positions, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
        model = GPT2LMHeadModel(gc).train()
        enc = tok([t + tok.eos_token for t in texts], truncation=True, max_length=cfg.max_positions,
                  padding=True, return_tensors="pt")
        ids, am = enc["input_ids"], enc["attention_mask"]
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
        g = torch.Generator().manual_seed(cfg.seed)
        loss_v = float("nan")
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(ids), generator=g)
            for i in range(0, len(ids), cfg.batch_size):
                b = perm[i : i + cfg.batch_size]
                w = int(am[b].sum(1).max())
                labels = ids[b, :w].masked_fill(am[b, :w] == 0, -100)
                loss = model(input_ids=ids[b, :w], attention_mask=am[b, :w], labels=labels).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                loss_v = loss.item()
        log.info("small GPT-2: final next-token loss %.3f", loss_v)
        model.save_pretrained(str(tmp))
        (tmp / "audiorep_lm.json").write_text(json.dumps({"small_gpt2": dataclasses.asdict(cfg),
                                                          "final_loss": loss_v, "num_texts": len(texts)}) + "\n")
    return out_dir


def load_decoder(path: str | os.PathLike):
    """A local GPT-2-style folder -> ``(tokenizer, causal LM)``, offline."""
    from transformers import AutoModelForCausalLM

    return _load_local(path, AutoModelForCausalLM, "causal LM")


def decoder_for(name: str, train_texts: Sequence[str], cfg: SmallGPT2Config | None = None):
    """``name`` = local folder or ``"small-gpt2"`` (trained once on ``train_texts`` and cached) ->
    ``(tokenizer, causal LM, where)``."""
    if name != "small-gpt2":
        tok, model = load_decoder(name)
        return tok, model, name
    from ..hub import cache_dir

    cfg = cfg or SmallGPT2Config()
    folder = cache_dir() / "fusion" / f"gpt2-{_key(train_texts, cfg)}"
    if not (folder / "config.json").is_file():
        log.info("training the small GPT-2 on %d transcripts -> %s", len(train_texts), folder)
        train_small_gpt2(train_texts, cfg, folder)
    tok, model = load_decoder(folder)
    return tok, model, str(folder)
