"""Pieces every fusion head shares: masks, masked pooling, the packed-LSTM sub-network, the text side.

The one head API (see :class:`FusionHead`): ``head(text, audio, audio_lens, vision=None, vision_lens=None,
labels=None, index=None) -> FusionOutput(pred (B,), losses {name: scalar}, extras)``. ``text`` is what the
head's :class:`TextEncoder` made with :meth:`TextEncoder.batch` (token ids for a ``transformers`` model, or
pre-extracted text features such as MMSA's BERT arrays). ``losses["total"]`` is present when labels are given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ConfigError


def lengths_to_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) valid lengths -> (B, T) bool, True on valid steps."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of (B, T, D) where mask (B, T) is True; an all-padding row gives zeros."""
    m = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, D)


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the batch (MMSA trains every sentiment head with L1)."""
    return (pred.reshape(-1).float() - target.reshape(-1).float()).abs().mean()


@dataclass
class FusionOutput:
    """What every head returns: predictions (B,), named scalar losses (``total`` when labels were given), and
    head-specific tensors (features, gates, edge weights) for hooks and tests."""

    pred: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)


class FusionHead(nn.Module):
    """Base class: holds the text encoder and the hook the trainer calls after each optimiser step."""

    text_encoder: "TextEncoder"

    @property
    def uses_vision(self) -> bool:
        """True when the head was built with a vision stream (``cfg.vision_dim`` set)."""
        return getattr(getattr(self, "cfg", None), "vision_dim", None) is not None

    def on_train_batch_end(self, out: FusionOutput, labels: torch.Tensor, index: torch.Tensor, epoch: int) -> None:
        """Called after every training step with the batch's sample indices; Self-MM updates its labels here."""

    def setup_train_set(self, labels: torch.Tensor) -> None:
        """Called once with the (N,) training labels before training (Self-MM sizes its label store)."""

    def text_parameters(self) -> list[nn.Parameter]:
        """Parameters of the pretrained text model (they get their own, smaller learning rate)."""
        return [p for p in self.text_encoder.parameters() if p.requires_grad]

    def batch_text(self, raw_text: Sequence[str], features: Sequence[torch.Tensor] | None = None
                   ) -> dict[str, torch.Tensor]:
        """One batch of transcripts (or text feature arrays) -> the ``text`` argument of :meth:`forward`."""
        return self.text_encoder.batch(raw_text, features)


class LSTMSubNet(nn.Module):
    """Self-MM's audio / vision sub-network: 1-layer LSTM over packed sequences -> last hidden -> dropout -> Linear.

    Packing matters: the last hidden state of a padded sequence run without packing is the state after the
    padding, not after the last real frame.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, num_layers=1, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        lens = lengths.clamp(min=1, max=x.shape[1]).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.rnn(packed)  # h: (1, B, hidden), in the original batch order
        return self.out(self.dropout(h[-1]))  # (B, out_dim)


class TextEncoder(nn.Module):
    """The text side of a head: a ``transformers`` encoder (+ its tokenizer) or pre-extracted features.

    - model mode: :meth:`batch` tokenises raw transcripts (right padding); :meth:`forward` returns the model's
      last hidden states. Position 0 is the [CLS]/<s> token.
    - feature mode (``model=None``): :meth:`batch` pads given (L, D) feature arrays, e.g. MMSA's BERT features
      whose position 0 is BERT's [CLS]; nothing is trained on the text side.
    """

    def __init__(self, model: nn.Module | None = None, tokenizer: Any = None, feature_dim: int | None = None,
                 max_tokens: int = 64, trainable: bool = True):
        super().__init__()
        if model is None and feature_dim is None:
            raise ConfigError("TextEncoder: give a transformers model + tokenizer, or feature_dim for text features")
        if model is not None and tokenizer is None:
            raise ConfigError("TextEncoder: a text model needs its tokenizer")
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens  # longer transcripts are cut (MMSA uses 50 BERT tokens)
        self.hidden_size = int(model.config.hidden_size) if model is not None else int(feature_dim)
        if model is not None and not trainable:
            model.requires_grad_(False)

    def batch(self, raw_text: Sequence[str], features: Sequence[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Transcripts (or feature arrays) of one batch -> the dict :meth:`forward` takes."""
        if self.model is None:
            if features is None:
                raise ConfigError("TextEncoder: feature mode needs the text feature arrays of the batch")
            feats = [torch.as_tensor(f, dtype=torch.float32) for f in features]
            lens = torch.tensor([max(1, f.shape[0]) for f in feats], dtype=torch.long)
            return {"features": nn.utils.rnn.pad_sequence(feats, batch_first=True), "lengths": lens}  # (B, L, D)
        enc = self.tokenizer(list(raw_text), truncation=True, max_length=self.max_tokens, padding=True,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, text: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (states (B, L, H), mask (B, L) bool)."""
        if self.model is None:
            x = text["features"]  # (B, L, D)
            return x, lengths_to_mask(text["lengths"].to(x.device), x.shape[1])
        am = text["attention_mask"]
        out = self.model(input_ids=text["input_ids"], attention_mask=am)
        return out.last_hidden_state, am.bool()  # (B, L, H), (B, L)


def sinusoid_positions(T: int, d: int, device=None) -> torch.Tensor:
    """(T, d) sinusoidal position table (Vaswani et al.), for the small from-scratch transformers here."""
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]  # (T, 1)
    i = torch.arange(0, d, 2, device=device, dtype=torch.float32)  # (d/2,)
    angle = pos / torch.pow(10000.0, i / d)  # (T, d/2)
    pe = torch.zeros(T, d, device=device)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d // 2])
    return pe


class CrossLayer(nn.Module):
    """Pre-LN transformer layer whose queries come from one sequence and keys/values from another
    (MulT's cross-modal layer); with ``source=None`` it is ordinary self-attention."""

    def __init__(self, d: int, heads: int, dropout: float = 0.1, kdim: int | None = None):
        super().__init__()
        self.ln_q = nn.LayerNorm(d)
        self.ln_kv = nn.LayerNorm(kdim or d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True, kdim=kdim, vdim=kdim)
        self.ln_ff = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, x_mask: torch.Tensor, source: torch.Tensor | None = None,
                source_mask: torch.Tensor | None = None) -> torch.Tensor:
        q = self.ln_q(x)  # (B, Tq, d)
        kv = q if source is None else self.ln_kv(source)  # (B, Tk, dk)
        kv_mask = x_mask if source is None else source_mask
        a, _ = self.attn(q, kv, kv, key_padding_mask=~kv_mask, need_weights=False)  # (B, Tq, d)
        x = x + self.drop(a)
        x = x + self.drop(self.ff(self.ln_ff(x)))
        return x * x_mask.unsqueeze(-1).to(x.dtype)  # keep padding at zero
