"""The language model side: load a local RoBERTa folder, or train (and cache) a small one offline.

:func:`train_small_lm` / :func:`cached_small_lm` are the one builder of the small text LMs: the RoBERTa masked
LM (TEASEL, the fusion heads' text encoder) and the GPT-2 next-token LM (DeepMLF's decoder).

No model hub is reachable, so the default path trains a byte-level BPE tokenizer (``tokenizers``) and a small
RoBERTa masked LM on the corpus's training transcripts, and caches both under
``$AUDIOREP_HOME/teasel/lm-<hash>`` (the hash covers the transcripts and the LM settings, so a changed corpus
or config gets its own LM). ``text_model=PATH`` (``--text-model``) takes a real local ``roberta-base`` folder instead.
"""

from __future__ import annotations

import dataclasses
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
from ..train.task import TrainTask
from .teasel_config import SmallRobertaConfig
from .text import SmallGPT2Config, load_decoder, load_encoder, load_local

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4, in its order


def load_lm(path: str | os.PathLike):
    """A local RoBERTa folder -> ``(tokenizer, RobertaForMaskedLM)``, offline."""
    from transformers import RobertaForMaskedLM

    tok, model = load_local(path, RobertaForMaskedLM, "RoBERTa masked LM")
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


# What a cached small GPT-2 folder holds, beyond its settings; part of the folder's name, so a folder written
# in an older format is never reused. 2: the tokenizer is built with vocab=/merges= (format 1, under
# transformers 5, had an empty vocabulary: every transcript one token, a garbage decoder).
GPT2_CACHE_FORMAT = 2


def _cache_key(texts: Sequence[str], cfg: SmallRobertaConfig | SmallGPT2Config) -> str:
    """Hash of the transcripts, the settings and (GPT-2) :data:`GPT2_CACHE_FORMAT`: the cached folder's name."""
    settings = dataclasses.asdict(cfg)
    if isinstance(cfg, SmallGPT2Config):
        settings["cache_format"] = GPT2_CACHE_FORMAT
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for t in texts:
        h.update(t.encode() + b"\n")
    return h.hexdigest()[:12]


class SmallLMTask(TrainTask):
    """Small-LM training as a :class:`~audiorep.train.Trainer` task: a seeded permutation of the tokenised
    transcripts per epoch, each batch cut to its longest row; masked-LM (RoBERTa, BERT masking drawn from the
    same generator right after the permutation) or next-token (GPT-2, padding ignored) loss."""

    def __init__(self, ids: torch.Tensor, am: torch.Tensor, batch_size: int, seed: int, tok=None,
                 mlm: bool = True):
        self.ids, self.am, self.batch_size, self.tok, self.mlm = ids, am, batch_size, tok, mlm  # (N, L), (N, L)
        self.name = "small LM (masked)" if mlm else "small LM (next token)"  # progress bar and logs
        self.generator = torch.Generator().manual_seed(seed)

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.ids) / self.batch_size)

    def train_batches(self, epoch: int, rank: int, world: int):
        from .teasel import mask_tokens

        perm = torch.randperm(len(self.ids), generator=self.generator)
        for i in range(0, len(self.ids), self.batch_size):
            b = perm[i : i + self.batch_size]
            width = int(self.am[b].sum(1).max())
            ids, am = self.ids[b, :width], self.am[b, :width]  # (B, W)
            if self.mlm:
                x, labels = mask_tokens(ids, am, self.tok.all_special_ids, self.tok.mask_token_id, len(self.tok), 0.15,
                                        self.generator)
            else:
                x, labels = ids, ids.masked_fill(am == 0, -100)
            yield {"input_ids": x, "attention_mask": am, "labels": labels}

    def prepare(self, batch: dict, step: int, device: torch.device):
        # the LM's loss is a token mean per batch: one count per batch
        return {k: v.to(device) for k, v in batch.items()}, 1.0, batch["input_ids"].numel()

    def forward(self, runner, batch: dict) -> tuple[torch.Tensor, None]:
        return runner(**batch).loss, None


def train_small_lm(texts: Sequence[str], cfg: SmallRobertaConfig | SmallGPT2Config, out_dir: str | os.PathLike,
                   device: str = "cpu") -> Path:
    """Tokenizer + small LM trained on ``texts`` -> a loadable folder, written atomically (temp + rename).

    ``SmallRobertaConfig``: byte-level BPE + RoBERTa, masked LM, cosine schedule (6 % warm-up). ``SmallGPT2Config``:
    byte-level BPE + GPT-2, next-token loss at a constant rate. Both AdamW (decay 0.01 on every parameter),
    clipped at 1.0, on the shared Trainer.
    """
    from ..train.distributed import DistContext
    from ..train.optim import OptimConfig, build_optimizer
    from ..train.trainer import TrainConfig, Trainer

    if not texts:
        raise ConfigError("train_small_lm: no transcripts to train on")
    mlm = not isinstance(cfg, SmallGPT2Config)
    out_dir = Path(out_dir)
    with atomic_directory(out_dir) as tmp:
        torch.manual_seed(cfg.seed)
        if mlm:
            tok = train_tokenizer(texts, cfg.vocab_size, tmp)
            model = _roberta(tok, cfg)
            enc = tok(list(texts), truncation=True, max_length=cfg.max_positions - 2, padding=True,
                      return_tensors="pt")
        else:
            tok = _gpt2_tokenizer(texts, cfg.vocab_size, tmp)
            model = _gpt2(tok, cfg)
            enc = tok([t + tok.eos_token for t in texts], truncation=True, max_length=cfg.max_positions,
                      padding=True, return_tensors="pt")
        model.train()
        task = SmallLMTask(enc["input_ids"], enc["attention_mask"], cfg.batch_size, cfg.seed, tok, mlm)
        optim = OptimConfig(lr=cfg.lr, weight_decay=0.01, grad_clip=1.0, schedule="cosine" if mlm else "constant",
                            warmup_ratio=0.06 if mlm else 0.0)
        train = TrainConfig(epochs=cfg.epochs, seed=cfg.seed, precision="fp32", progress=False)
        ctx = DistContext(device=torch.device(device))
        trainer = Trainer(model, task, None, train, optim, None, ctx,
                          optimizer=build_optimizer(None, optim, [{"params": list(model.parameters())}]))
        logs = trainer.fit()
        model.save_pretrained(str(tmp))
        if mlm:
            loss_ema = None
            for e in logs:
                loss_ema = e.loss if loss_ema is None else 0.95 * loss_ema + 0.05 * e.loss
            log.info("small LM: %d steps, final MLM loss (EMA) %.3f", len(logs), loss_ema)
            info = {"small_lm": cfg.to_dict(), "steps": len(logs), "final_mlm_loss_ema": loss_ema,
                    "num_texts": len(texts)}
        else:
            final = logs[-1].loss if logs else float("nan")
            log.info("small GPT-2: final next-token loss %.3f", final)
            info = {"small_gpt2": dataclasses.asdict(cfg), "final_loss": final, "num_texts": len(texts)}
        (tmp / "audiorep_lm.json").write_text(json.dumps(info, indent=2) + "\n")
    return out_dir


def _roberta(tok, cfg: SmallRobertaConfig):
    from transformers import RobertaConfig, RobertaForMaskedLM

    rc = RobertaConfig(vocab_size=len(tok), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
                       num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                       max_position_embeddings=cfg.max_positions, pad_token_id=tok.pad_token_id,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, type_vocab_size=1)
    return RobertaForMaskedLM(rc)


def _gpt2_tokenizer(texts: Sequence[str], vocab_size: int, out_dir: Path):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2TokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=True)
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    bpe.save_model(str(out_dir))
    # vocab=/merges= as for RoBERTa: transformers 5 ignores vocab_file=/merges_file= here and gives an empty
    # vocabulary, every transcript one token and a NaN next-token loss
    tok = GPT2TokenizerFast(vocab=str(out_dir / "vocab.json"), merges=str(out_dir / "merges.txt"),
                            add_prefix_space=True)
    tok.pad_token = tok.eos_token
    tok.save_pretrained(str(out_dir))
    return tok


def _gpt2(tok, cfg: SmallGPT2Config):
    from transformers import GPT2Config, GPT2LMHeadModel

    gc = GPT2Config(vocab_size=len(tok), n_embd=cfg.hidden_size, n_layer=cfg.num_layers, n_head=cfg.num_heads,
                    n_positions=cfg.max_positions, bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    return GPT2LMHeadModel(gc)


def cached_small_lm(texts: Sequence[str], cfg: SmallRobertaConfig | SmallGPT2Config, device: str = "cpu") -> Path:
    """The folder of the small LM for these transcripts and settings, trained first when missing
    (``$AUDIOREP_HOME/teasel/lm-<hash>`` for RoBERTa, ``$AUDIOREP_HOME/fusion/gpt2-<hash>`` for GPT-2, whose
    hash also covers :data:`GPT2_CACHE_FORMAT`)."""
    from ..weights.cache import cache_dir

    where = "fusion/gpt2" if isinstance(cfg, SmallGPT2Config) else "teasel/lm"
    folder = cache_dir() / f"{where}-{_cache_key(texts, cfg)}"
    if not (folder / "config.json").is_file():
        log.info("training the small %s on %d transcripts -> %s", type(cfg).__name__, len(texts), folder)
        train_small_lm(texts, cfg, folder, device)
    return folder


def ensure_lm(lm: str | None, texts: Sequence[str], cfg: SmallRobertaConfig, device: str = "cpu"):
    """``lm`` folder if given; else the cached small LM for ``texts`` (trained first when missing).

    Returns ``(tokenizer, RobertaForMaskedLM, folder)``.
    """
    if lm:
        tok, model = load_lm(lm)
        return tok, model, Path(lm)
    folder = cached_small_lm(texts, cfg, device)
    tok, model = load_lm(folder)
    return tok, model, folder


def encoder_for(name: str, train_texts: Sequence[str], device: str = "cpu"):
    """``name`` = local folder or ``"teasel-small"`` -> ``(tokenizer, encoder model, where)``."""
    if name != "teasel-small":
        tok, model = load_encoder(name)
        return tok, model, name
    tok, mlm, folder = ensure_lm(None, list(train_texts), SmallRobertaConfig(), device)
    return tok, mlm.roberta, str(folder)


def decoder_for(name: str, train_texts: Sequence[str], cfg: SmallGPT2Config | None = None):
    """``name`` = local folder or ``"small-gpt2"`` (trained once on ``train_texts`` and cached) ->
    ``(tokenizer, causal LM, where)``."""
    if name != "small-gpt2":
        tok, model = load_decoder(name)
        return tok, model, name
    folder = cached_small_lm(list(train_texts), cfg or SmallGPT2Config())
    tok, model = load_decoder(folder)
    return tok, model, str(folder)
