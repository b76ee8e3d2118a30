"""DeepMLF (Georgiou et al., 2025): learnable fusion tokens inside a frozen decoder LM, fused over several layers.

The text (left-padded, so the last real token sits just before them) is followed by ``n`` learnable fusion
tokens (N(0, 0.02) init) that go through the frozen GPT-2-style LM with everything else. After each chosen LM
layer an MM block rewrites the hidden states:

    x = x_q + sigmoid(a1) * CrossAttn(LN(x_q), av)               (fusion tokens only; K/V = AV encoder states)
    h = [text; x] + sigmoid(a2) * MLP(LN([text; x]))              (MLP + LN copied from that LM block's FFN)

The gates ``a1``/``a2`` start at ``gate_init``: 0 as published, i.e. sigmoid = 0.5 (half open). For
"closed-ish" gates that let the LM start unchanged, set ``gate_init`` negative (e.g. -4 -> 0.018); both are tested.

The audio(-visual) encoder is a small transformer over the projected audio (and vision, each with a learned
modality embedding, concatenated in time). Head: [mean fusion tokens; last text token; mean AV] -> Linear(64)
-> BatchNorm -> ReLU -> Linear(1). Loss, as the published code computes it (efthymisgeo/deepmlf, MSALM trainer):

    task L1 + aux_fusion_weight * mean over fusion tokens of L1(linear head on that token)
            + aux_text_weight * L1(linear head on the last text token) + aux_av_weight * L1(linear head on mean AV)
            + lm_weight * next-token loss on the transcript (the last real token predicts end-of-text)

Only the fusion parts (tokens, MM blocks, AV encoder, heads) train; every LM parameter is frozen, but the LM's
own dropout stays on in training as published (``lm_dropout``). The README's "What differs from the published
code" lists the differences that remain.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from .base import register_head
from ..common import CrossLayer, FusionHead, FusionOutput, l1, lengths_to_mask, masked_mean, sinusoid_positions


@dataclass
class DeepMLFConfig:
    """DeepMLF settings. Loss weights default to the published GPT-2 runs (MOSEI, SIMS); :func:`deepmlf_mosi`
    and :func:`deepmlf_mosei` give the published settings."""

    audio_dim: int = 5  # input audio feature size
    vision_dim: int | None = None  # None = audio-only encoder
    num_fusion_tokens: int = 8  # learnable tokens appended after the text
    fusion_layers: list[int] = field(default_factory=lambda: [1])  # 0-based LM layers followed by an MM block
    av_dim: int = 32  # AV encoder width (published: 30 with 6 heads, 3 layers; smaller here for CPU runs)
    av_heads: int = 4
    av_layers: int = 2
    mm_heads: int = 4  # heads of the gated cross-attention (must divide the LM width)
    gate_init: float = 0.0  # a1, a2 initial value: 0 = published (gate 0.5); negative = closed-ish
    dropout: float = 0.1
    head_dim: int = 64  # width of the regression head
    # auxiliary L1 heads, one weight each (published l_bn / l_t / l_av: 1 / 1 / 1 MOSEI and SIMS, 0.4 / 0.8 / 0.8 MOSI)
    aux_fusion_weight: float = 1.0  # a prediction per fusion token, L1 averaged: every token must carry the label
    aux_text_weight: float = 1.0  # prediction from the last text token: keeps the text path predictive on its own
    aux_av_weight: float = 1.0  # prediction from the mean AV state: keeps the AV encoder predictive on its own
    lm_weight: float = 0.0  # gamma of the next-token loss on the transcript (published: MOSEI 1.1, SIMS 1, MOSI off)
    lm_dropout: bool = True  # the frozen LM's dropout stays on in training, as published; False = LM in eval mode
    max_tokens: int = 64  # transcripts are cut to this many tokens (published: 50)


def deepmlf_mosei(**overrides) -> DeepMLFConfig:
    """The published CMU-MOSEI run on GPT-2 base (12 layers): 12 fusion tokens after layers 3,5,7-11, AV encoder
    d 30 / 6 heads / 3 layers over MMSA features (audio 74-d, vision 35-d), aux weights 1, LM loss 1.1."""
    return DeepMLFConfig(**{"audio_dim": 74, "vision_dim": 35, "num_fusion_tokens": 12,
                            "fusion_layers": [3, 5, 7, 8, 9, 10, 11], "av_dim": 30, "av_heads": 6, "av_layers": 3,
                            "mm_heads": 12, "lm_weight": 1.1, "max_tokens": 50, **overrides})


def deepmlf_mosi(**overrides) -> DeepMLFConfig:
    """The published CMU-MOSI loss settings: 8 fusion tokens, aux weights 0.4 (fusion) / 0.8 (text) / 0.8 (AV),
    no LM loss, MMSA features (audio 5-d, vision 20-d). The published MOSI run fuses into SmolLM2-1.7B
    (layers 11,14,17,20,23 of 24), which this GPT-2-only head cannot load: the fusion layers here are the
    MOSEI run's GPT-2 ones."""
    return deepmlf_mosei(**{"audio_dim": 5, "vision_dim": 20, "num_fusion_tokens": 8, "aux_fusion_weight": 0.4,
                            "aux_text_weight": 0.8, "aux_av_weight": 0.8, "lm_weight": 0.0, **overrides})


def aux_token_loss(token_preds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Published fusion-token auxiliary loss: the L1 of every token's own prediction, averaged over tokens and
    batch. ``token_preds`` (B, n), ``labels`` (B,) -> scalar. (The L1 of the mean prediction would let tokens
    err in opposite directions.)"""
    if token_preds.dim() != 2 or token_preds.shape[0] != labels.reshape(-1).shape[0]:
        raise ValueError(f"aux_token_loss: token_preds must be (B, n) for {labels.reshape(-1).shape[0]} labels; "
                         f"got {tuple(token_preds.shape)}")
    return (token_preds.float() - labels.reshape(-1, 1).float()).abs().mean()


def next_token_targets(ids: torch.Tensor, attention_mask: torch.Tensor, eos_id: int | None) -> torch.Tensor:
    """Next-token targets (B, L) for left-padded ``ids`` (B, L): position p predicts ids[p + 1]; the last real
    token predicts ``eos_id`` (end of text), as in the published loss; padding positions get -100 (ignored).

    The published code pads on the right and scores the last real token against the next position, which is
    the pad = end-of-text token (id 0 when the transcript filled the window); here it is always ``eos_id``.
    """
    if eos_id is None:
        raise ConfigError("DeepMLF: lm_weight > 0 needs a tokenizer with an end-of-text (eos) token")
    nxt = torch.cat([ids[:, 1:], ids.new_full((ids.shape[0], 1), int(eos_id))], 1)  # (B, L)
    return nxt.masked_fill(attention_mask == 0, -100)


class MMBlock(nn.Module):
    """Gated cross-attention from the fusion tokens to the AV states + gated FFN over the whole sequence."""

    def __init__(self, d_model: int, d_av: int, heads: int, lm_block: nn.Module | None, gate_init: float,
                 dropout: float):
        super().__init__()
        self.ln_q = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True, kdim=d_av, vdim=d_av)
        self.gate_attn = nn.Parameter(torch.tensor(float(gate_init)))
        self.gate_mlp = nn.Parameter(torch.tensor(float(gate_init)))
        if lm_block is not None and hasattr(lm_block, "mlp") and hasattr(lm_block, "ln_2"):
            # start from the LM's own FFN: the block then begins as "one more pass of a familiar FFN"
            self.ln_ff = copy.deepcopy(lm_block.ln_2)
            self.mlp = copy.deepcopy(lm_block.mlp)
            self.ln_ff.requires_grad_(True)
            self.mlp.requires_grad_(True)
        else:
            self.ln_ff = nn.LayerNorm(d_model)
            self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, h: torch.Tensor, n_fusion: int, av: torch.Tensor, av_mask: torch.Tensor) -> torch.Tensor:
        text, xq = h[:, :-n_fusion], h[:, -n_fusion:]  # (B, L, H), (B, n, H)
        a, _ = self.attn(self.ln_q(xq), av, av, key_padding_mask=~av_mask, need_weights=False)  # (B, n, H)
        x = xq + torch.sigmoid(self.gate_attn) * a
        h = torch.cat([text, x], 1)  # (B, L+n, H)
        out = self.mlp(self.ln_ff(h))
        if isinstance(out, tuple):
            out = out[0]
        return h + torch.sigmoid(self.gate_mlp) * out


class AVEncoder(nn.Module):
    """Small transformer over projected audio (+ vision) frames; modality embeddings tell the streams apart."""

    def __init__(self, audio_dim: int, vision_dim: int | None, d: int, heads: int, layers: int, dropout: float):
        super().__init__()
        self.a_in = nn.Linear(audio_dim, d)
        self.v_in = nn.Linear(vision_dim, d) if vision_dim is not None else None
        self.modality = nn.Parameter(torch.zeros(2, d))
        self.layers = nn.ModuleList([CrossLayer(d, heads, dropout) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)

    def forward(self, audio, audio_lens, vision=None, vision_lens=None) -> tuple[torch.Tensor, torch.Tensor]:
        xa = self.a_in(audio.float()) + self.modality[0] + sinusoid_positions(audio.shape[1], self.modality.shape[1],
                                                                              audio.device)  # (B, Ta, d)
        ma = lengths_to_mask(audio_lens.to(audio.device), audio.shape[1])  # (B, Ta)
        if self.v_in is not None:
            if vision is None:
                raise ValueError("DeepMLF was built with a vision stream but got no vision features")
            xv = self.v_in(vision.float()) + self.modality[1] + sinusoid_positions(
                vision.shape[1], self.modality.shape[1], vision.device)  # (B, Tv, d)
            mv = lengths_to_mask(vision_lens.to(vision.device), vision.shape[1])
            x, m = torch.cat([xa, xv], 1), torch.cat([ma, mv], 1)  # (B, Ta+Tv, d)
        else:
            x, m = xa, ma
        x = x * m.unsqueeze(-1)
        for layer in self.layers:
            x = layer(x, m)
        return self.ln(x) * m.unsqueeze(-1), m


def _decoder_body(lm: nn.Module) -> nn.Module:
    """The transformer body of a GPT-2-style model (GPT2LMHeadModel.transformer or GPT2Model itself)."""
    body = getattr(lm, "transformer", lm)
    if not (hasattr(body, "h") and hasattr(body, "wte")):
        raise ConfigError(f"DeepMLF needs a GPT-2-style decoder (blocks in .h, embeddings in .wte); got "
                          f"{type(lm).__name__}")
    return body


@register_head("deepmlf", DeepMLFConfig, needs=("decoder_lm",), row=30,
               summary="DeepMLF: fusion tokens + gated cross-attention inside a frozen GPT-2-style LM")
class DeepMLF(FusionHead):
    """DeepMLF over a frozen GPT-2-style decoder LM (``transformers``) and its tokenizer; see the module doc."""

    def __init__(self, cfg: DeepMLFConfig, lm: nn.Module, tokenizer: Any):
        super().__init__()
        self.cfg = cfg
        self.lm = lm
        self.body = _decoder_body(lm)
        lm.requires_grad_(False)  # frozen: only the fusion parts learn
        self.tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"  # the fusion tokens then follow the last real token directly
        H = int(self.body.config.hidden_size)
        n_layers = len(self.body.h)
        bad = [i for i in cfg.fusion_layers if not 0 <= i < n_layers]
        if bad or not cfg.fusion_layers:
            raise ConfigError(f"DeepMLF: fusion_layers {cfg.fusion_layers} must be non-empty indices in "
                              f"0..{n_layers - 1} (the LM has {n_layers} layers)")
        self.hidden_size = H
        self.fusion_tokens = nn.Parameter(torch.randn(cfg.num_fusion_tokens, H) * 0.02)  # (n, H)
        self.av = AVEncoder(cfg.audio_dim, cfg.vision_dim, cfg.av_dim, cfg.av_heads, cfg.av_layers, cfg.dropout)
        self.mm = nn.ModuleDict({str(i): MMBlock(H, cfg.av_dim, cfg.mm_heads, self.body.h[i], cfg.gate_init,
                                                 cfg.dropout) for i in cfg.fusion_layers})
        self.head = nn.Sequential(nn.Linear(2 * H + cfg.av_dim, cfg.head_dim), nn.BatchNorm1d(cfg.head_dim),
                                  nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.head_dim, 1))
        self.aux = nn.ModuleDict({"F": nn.Linear(H, 1), "T": nn.Linear(H, 1), "AV": nn.Linear(cfg.av_dim, 1)})
        self._ctx: dict[str, Any] | None = None
        for i in cfg.fusion_layers:
            self.body.h[i].register_forward_hook(self._make_hook(str(i)))

    # the text side: the LM stays frozen, so it is not a TextEncoder with trainable weights
    @property
    def text_encoder(self):  # type: ignore[override]
        return None

    def text_parameters(self) -> list[nn.Parameter]:
        return []

    def batch_text(self, raw_text, features=None) -> dict[str, torch.Tensor]:
        """Left-padded token ids of the transcripts (text features are not used: the LM reads tokens)."""
        enc = self.tokenizer(list(raw_text), truncation=True, max_length=self.cfg.max_tokens, padding=True,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def train(self, mode: bool = True) -> "DeepMLF":
        """Train mode for the fusion parts; the frozen LM follows unless ``cfg.lm_dropout`` is False (the
        published code trains with GPT-2's dropout on: noise the fusion parts must be robust to)."""
        super().train(mode)
        if not self.cfg.lm_dropout:
            self.lm.eval()
        return self

    def _make_hook(self, key: str):
        def hook(module, args, output):
            if self._ctx is None:
                return output
            h = output[0] if isinstance(output, tuple) else output  # (B, L+n, H)
            h = self.mm[key](h, self.cfg.num_fusion_tokens, self._ctx["av"], self._ctx["av_mask"])
            return (h,) + tuple(output[1:]) if isinstance(output, tuple) else h
        return hook

    def gates(self) -> dict[str, tuple[float, float]]:
        """sigmoid(a1), sigmoid(a2) per MM block."""
        return {k: (torch.sigmoid(b.gate_attn).item(), torch.sigmoid(b.gate_mlp).item()) for k, b in self.mm.items()}

    def forward(self, text, audio, audio_lens, vision=None, vision_lens=None, labels=None, index=None) -> FusionOutput:
        cfg = self.cfg
        ids, am = text["input_ids"], text["attention_mask"]  # (B, L) left-padded
        B, L = ids.shape
        n = cfg.num_fusion_tokens
        av, av_mask = self.av(audio, audio_lens, vision, vision_lens)  # (B, Tav, d_av), (B, Tav)
        tok = self.body.wte(ids)  # (B, L, H)
        x = torch.cat([tok, self.fusion_tokens.unsqueeze(0).expand(B, n, -1)], 1)  # (B, L+n, H)
        mask = torch.cat([am, am.new_ones(B, n)], 1)  # (B, L+n)
        pos = (mask.long().cumsum(1) - 1).clamp(min=0)  # (B, L+n): left padding does not shift positions
        self._ctx = {"av": av, "av_mask": av_mask}
        try:
            hs = self.body(inputs_embeds=x, attention_mask=mask, position_ids=pos).last_hidden_state  # (B, L+n, H)
        finally:
            self._ctx = None
        tokens = hs[:, -n:]  # (B, n, H)
        fusion = tokens.mean(1)  # (B, H)
        last_text = hs[:, L - 1]  # (B, H): left padding puts the last real token at L-1
        av_mean = masked_mean(av, av_mask)  # (B, d_av)
        pred = self.head(torch.cat([fusion, last_text, av_mean], -1)).squeeze(-1)  # (B,)
        aux = {"F": self.aux["F"](tokens).squeeze(-1), "T": self.aux["T"](last_text).squeeze(-1),  # (B, n), (B,)
               "AV": self.aux["AV"](av_mean).squeeze(-1)}  # (B,)
        out = FusionOutput(pred=pred, extras={"aux": aux})
        if labels is None:
            return out
        y = labels.float().to(pred.device)
        losses = {"task": l1(pred, y), "aux_fusion": aux_token_loss(aux["F"], y), "aux_text": l1(aux["T"], y),
                  "aux_av": l1(aux["AV"], y)}
        total = (losses["task"] + cfg.aux_fusion_weight * losses["aux_fusion"]
                 + cfg.aux_text_weight * losses["aux_text"] + cfg.aux_av_weight * losses["aux_av"])
        if cfg.lm_weight > 0:
            head = getattr(self.lm, "lm_head", None)
            if head is None:
                raise ConfigError("DeepMLF: lm_weight > 0 needs an LM with an lm_head (e.g. GPT2LMHeadModel)")
            logits = head(hs[:, :L])  # (B, L, V): every text position predicts the token after it
            losses["lm"] = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                           next_token_targets(ids, am, self.tokenizer.eos_token_id).reshape(-1),
                                           ignore_index=-100)
            total = total + cfg.lm_weight * losses["lm"]
        losses["total"] = total
        out.losses = losses
        return out
