"""The language model side: load a local RoBERTa folder, or train (and cache) a small one offline.

No model hub is reachable, so the default path trains a byte-level BPE tokenizer (``tokenizers``) and a small
RoBERTa masked LM on the corpus's training transcripts, and caches both under
``$AUDIOREP_HOME/teasel/lm-<hash>`` (the hash covers the transcripts and the LM settings, so a changed corpus
or config gets its own LM). ``text_model=PATH`` (``--text-model``) takes a real local ``roberta-base`` folder instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Sequence

import torch

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_directory
from .teasel_config import SmallLMConfig

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4, in its order


def load_lm(path: str | os.PathLike):
    """A local RoBERTa folder -> ``(tokenizer, RobertaForMaskedLM)``, offline."""
    from transformers import AutoTokenizer, RobertaForMaskedLM

    path = Path(os.fspath(path)).expanduser()
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: not a RoBERTa model folder (no config.json)")
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
        model = RobertaForMaskedLM.from_pretrained(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load a RoBERTa tokenizer + masked LM: {exc}") from exc
    if tok.mask_token_id is None or tok.pad_token_id is None:
        raise CheckpointError(f"{path}: tokenizer lacks <mask>/<pad> tokens")
    return tok, model


def train_tokenizer(texts: Sequence[str], vocab_size: int, out_dir: str | os.PathLike):
    """Byte-level BPE over ``texts`` saved as a RoBERTa tokenizer in ``out_dir``; returns the tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    if not texts:
        raise ConfigError("train_tokenizer: no transcripts to train on")
    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS,
                            show_progress=False)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bpe.save_model(str(out_dir))  # vocab.json + merges.txt
    tok = RobertaTokenizerFast(vocab=str(out_dir / "vocab.json"), merges=str(out_dir / "merges.txt"),
                               add_prefix_space=True)
    tok.save_pretrained(str(out_dir))
    return tok


def _cache_key(texts: Sequence[str], cfg: SmallLMConfig) -> str:
    h = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    for t in texts:
        h.update(t.encode() + b"\n")
    return h.hexdigest()[:12]


def train_small_lm(texts: Sequence[str], cfg: SmallLMConfig, out_dir: str | os.PathLike, device: str = "cpu"):
    """Train tokenizer + small RoBERTa MLM on ``texts``; writes a loadable folder atomically (temp + rename)."""
    from transformers import RobertaConfig, RobertaForMaskedLM

    from .teasel import mask_tokens

    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        torch.manual_seed(cfg.seed)
        tok = train_tokenizer(texts, cfg.vocab_size, tmp)
        rc = RobertaConfig(vocab_size=len(tok), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                           num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                           max_position_embeddings=cfg.max_positions, pad_token_id=tok.pad_token_id,
                           bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, type_vocab_size=1)
        model = RobertaForMaskedLM(rc).to(device).train()
        enc = tok(list(texts), truncation=True, max_length=cfg.max_positions - 2, padding=True, return_tensors="pt")
        ids, am = enc["input_ids"], enc["attention_mask"]
        g = torch.Generator().manual_seed(cfg.seed)
        steps = cfg.epochs * math.ceil(len(ids) / cfg.batch_size)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
        from transformers import get_cosine_schedule_with_warmup

        sched = get_cosine_schedule_with_warmup(opt, int(0.06 * steps), steps)
        step, loss_ema = 0, None
        for _ in range(cfg.epochs):
            perm = torch.randperm(len(ids), generator=g)
            for i in range(0, len(ids), cfg.batch_size):
                b = perm[i : i + cfg.batch_size]
                width = int(am[b].sum(1).max())
                x, labels = mask_tokens(ids[b, :width], am[b, :width], tok.all_special_ids, tok.mask_token_id,
                                        len(tok), 0.15, g)
                out = model(input_ids=x.to(device), attention_mask=am[b, :width].to(device), labels=labels.to(device))
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                loss_ema = out.loss.item() if loss_ema is None else 0.95 * loss_ema + 0.05 * out.loss.item()
        log.info("small LM: %d steps, final MLM loss (EMA) %.3f", step, loss_ema)
        model.save_pretrained(str(tmp))
        (tmp / "audiorep_lm.json").write_text(json.dumps({"small_lm": cfg.to_dict(), "steps": step,
                                                          "final_mlm_loss_ema": loss_ema,
                                                          "num_texts": len(texts)}, indent=2) + "\n")
    return out_dir


def default_lm_dir(texts: Sequence[str], cfg: SmallLMConfig) -> Path:
    """Where the cached small LM for these transcripts and settings lives."""
    from ..hub import cache_dir

    return cache_dir() / "teasel" / f"lm-{_cache_key(texts, cfg)}"


def ensure_lm(lm: str | None, texts: Sequence[str], cfg: SmallLMConfig, device: str = "cpu"):
    """``lm`` folder if given; else the cached small LM for ``texts`` (trained first when missing).

    Returns ``(tokenizer, RobertaForMaskedLM, folder)``.
    """
    if lm:
        tok, model = load_lm(lm)
        return tok, model, Path(lm)
    folder = default_lm_dir(texts, cfg)
    if not (folder / "config.json").is_file():
        log.info("training the default small RoBERTa on %d transcripts -> %s", len(texts), folder)
        train_small_lm(texts, cfg, folder, device)
    tok, model = load_lm(folder)
    return tok, model, folder
