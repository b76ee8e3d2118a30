"""TEASEL: a speech-prefixed RoBERTa. Speech -> frozen front end -> LAA -> 2 prefix vectors after ``<s>``.

Pieces (each usable alone):

- :class:`Wav2Vec2CNNFrontEnd`: the wav2vec 2.0 CNN feature encoder + its feature projection (LayerNorm,
  Linear 512 -> 768) built through ``transformers``; frozen. This is the paper's speech temporal encoder
  together with its eq. (1)-(2) normalisation and projection, exactly as the community reimplementation uses it.
- :class:`UpstreamFrontEnd`: any audiorep upstream (Mockingjay / AALBERT / TERA), frozen; one chosen hidden
  state or a learned softmax-weighted sum of all of them (the weights train with the LAA).
- :class:`LAA` (Lightweight Attentive Aggregation): optional LayerNorm + Linear input projection -> 2-layer
  BiGRU over packed sequences (padding never changes the states of valid steps, in either direction) ->
  per-direction attentive pooling ``u = sigmoid(W1 h)``, ``alpha = softmax_t(W2 u)`` over valid steps only,
  ``c = sum_t alpha_t h_t`` -> the two pooled vectors, LayerNorm-ed jointly -> (B, 2, H).
- :class:`TeaselModel`: a ``transformers`` RoBERTa whose embedding *output* (token + position + type embeddings,
  LayerNorm, dropout) gets the two prefix vectors inserted at positions 1-2, the attention mask extended by two
  ones after ``<s>``. Position ids are computed from the text alone, so text positions do not shift and the
  prefix consumes no position embedding. Heads: RoBERTa's MLM head (LAA pretraining) and a regression head on
  ``<s>`` (fine-tuning).

Parameter count at the defaults (H = 768, no input projection): 18,307,585 — the paper's ~18.31 M.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..audio import WaveformBatch
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write_bytes
from ..models.featurizer import weighted_layer_sum

from ..data.labels import IGNORE_INDEX  # CrossEntropyLoss skips it: every non-masked text position and the prefix

# ---------------------------------------------------------------------------------------------------------------
# config
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class LAAConfig:
    """Architecture of the LAA prefixer (defaults: the paper / reimplementation sizes)."""

    input_dim: int = 768  # front-end feature size (wav2vec2 feature projection output = 768)
    hidden_size: int = 768  # GRU width per direction = prefix size; must equal the LM's hidden size
    num_gru_layers: int = 2  # the paper's 2-layer BiGRU
    gru_dropout: float = 0.0  # between GRU layers; the reimplementation uses none
    attention_size: int | None = None  # width of W1 in u = sigmoid(W1 h); None = hidden_size
    share_aggregation: bool = True  # one (W1, W2) pair for both directions, as the reimplementation has it
    input_projection: bool | None = None  # LayerNorm + Linear(input_dim -> hidden) first; None = only if dims differ
    joint_norm: bool = True  # LayerNorm over both prefix tokens together ((2, H)); False = per token
    layer_norm_eps: float = 1e-5  # LayerNorm epsilon (RoBERTa's)

    def __post_init__(self) -> None:
        for name in ("input_dim", "hidden_size", "num_gru_layers"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"LAAConfig.{name} must be positive, got {getattr(self, name)}")
        if self.attention_size is not None and self.attention_size <= 0:
            raise ConfigError(f"LAAConfig.attention_size must be positive or None, got {self.attention_size}")
        if not 0.0 <= self.gru_dropout < 1.0:
            raise ConfigError(f"LAAConfig.gru_dropout must lie in [0, 1), got {self.gru_dropout}")
        if self.input_projection is False and self.input_dim != self.hidden_size:
            raise ConfigError(
                f"LAAConfig: input_projection=False needs input_dim == hidden_size, got {self.input_dim} "
                f"vs {self.hidden_size}"
            )

    @property
    def uses_input_projection(self) -> bool:
        return self.input_dim != self.hidden_size if self.input_projection is None else bool(self.input_projection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LAAConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"LAAConfig: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


# ---------------------------------------------------------------------------------------------------------------
# LAA
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class LAAOutput:
    prefix: torch.Tensor  # (B, 2, H): [forward-pooled, backward-pooled], normalised
    weights: torch.Tensor  # (B, 2, T): attention over time per direction; exactly 0 past each length


class AttentivePooling(nn.Module):
    """u = sigmoid(W1 h), alpha = softmax over valid t of W2 u, pooled = sum_t alpha_t h_t."""

    def __init__(self, hidden: int, attention: int):
        super().__init__()
        self.w1 = nn.Linear(hidden, attention)
        self.w2 = nn.Linear(attention, 1)

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, T, H), valid (B, T) bool -> pooled (B, H), weights (B, T)."""
        scores = self.w2(torch.sigmoid(self.w1(h))).squeeze(-1)  # (B, T)
        # -inf before the softmax gives padding an exact 0 weight (every row has >= 1 valid step)
        scores = scores.float().masked_fill(~valid, float("-inf"))
        alpha = torch.softmax(scores, dim=-1).to(h.dtype)  # (B, T)
        return torch.einsum("bt,bth->bh", alpha, h), alpha  # (B, H), (B, T)


class LAA(nn.Module):
    """Lightweight Attentive Aggregation: front-end frames (B, T, D) -> 2 prefix vectors (B, 2, H)."""

    # parameter groups by name, for freezing; see TeaselModel.set_trainable
    PARTS = ("input_proj", "gru", "aggregation", "prefix_norm")

    def __init__(self, config: LAAConfig | None = None):
        super().__init__()
        config = config or LAAConfig()
        self.config = config
        H = config.hidden_size
        if config.uses_input_projection:
            self.input_proj = nn.Sequential(
                nn.LayerNorm(config.input_dim, eps=config.layer_norm_eps), nn.Linear(config.input_dim, H)
            )
        else:
            self.input_proj = None
        self.gru = nn.GRU(H, H, num_layers=config.num_gru_layers, bidirectional=True, batch_first=True,
                          dropout=config.gru_dropout if config.num_gru_layers > 1 else 0.0)
        A = config.attention_size or H
        n_pool = 1 if config.share_aggregation else 2
        self.aggregation = nn.ModuleList(AttentivePooling(H, A) for _ in range(n_pool))
        norm_shape = (2, H) if config.joint_norm else (H,)
        self.prefix_norm = nn.LayerNorm(norm_shape, eps=config.layer_norm_eps)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> LAAOutput:
        """Front-end frames (B, T, D) with valid counts (B,) -> :class:`LAAOutput`."""
        return self.aggregate(self.trunk(feats, lengths), lengths)  # each part checks its own input

    def _check_lengths(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        B, T = x.shape[:2]
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=x.device)
        lengths = lengths.to(x.device).long()
        if (lengths < 1).any() or (lengths > T).any():
            raise ConfigError(f"LAA lengths must lie in [1, {T}], got {lengths.tolist()}")
        return lengths

    def trunk(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Input projection + BiGRU: frames (B, T, D) -> GRU states (B, T, 2H), zeros past each length.

        When both parts are frozen these states depend on the utterance alone, so fine-tuning can compute
        them once (see :meth:`TeaselModel.trunk_frozen`) and call :meth:`aggregate` each step.
        """
        if feats.dim() != 3 or feats.shape[-1] != self.config.input_dim:
            raise ConfigError(f"LAA input: expected (B, T, {self.config.input_dim}), got {tuple(feats.shape)}")
        T = feats.shape[1]
        lengths = self._check_lengths(feats, lengths)
        x = feats.to(self.gru.weight_ih_l0.dtype)
        if self.input_proj is not None:
            x = self.input_proj(x)  # (B, T, H)
        # packing makes the backward direction start at each utterance's last valid frame, not at padding
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, 2H), zeros past lengths
        return out

    def aggregate(self, states: torch.Tensor, lengths: torch.Tensor | None = None) -> LAAOutput:
        """Attentive pooling per direction + prefix norm: GRU states (B, T, 2H) -> :class:`LAAOutput`."""
        H = self.config.hidden_size
        if states.dim() != 3 or states.shape[-1] != 2 * H:
            raise ConfigError(f"LAA states: expected (B, T, {2 * H}), got {tuple(states.shape)}")
        lengths = self._check_lengths(states, lengths)
        valid = torch.arange(states.shape[1], device=states.device) < lengths[:, None]  # (B, T)
        pooled, weights = [], []
        for d, h in enumerate((states[..., :H], states[..., H:])):  # forward, backward streams (B, T, H)
            pool = self.aggregation[0 if self.config.share_aggregation else d]
            c, a = pool(h.to(self.gru.weight_ih_l0.dtype), valid)
            pooled.append(c)
            weights.append(a)
        prefix = self.prefix_norm(torch.stack(pooled, dim=1))  # (B, 2, H)
        return LAAOutput(prefix=prefix, weights=torch.stack(weights, dim=1))  # (B, 2, H), (B, 2, T)


# ---------------------------------------------------------------------------------------------------------------
# speech front ends: frozen_features() is the expensive frozen part (cacheable); forward() the trainable rest
# ---------------------------------------------------------------------------------------------------------------


class UpstreamFrontEnd(nn.Module):
    """An audiorep upstream (frozen) as TEASEL's speech encoder.

    ``layer``: an index into ``hidden_states`` (e.g. -1 = last layer), or ``None`` for a softmax-weighted sum
    of all hidden states with zero-initialised weights that train together with the LAA.
    """

    def __init__(self, upstream: nn.Module, layer: int | None = None):
        super().__init__()
        self.upstream = upstream
        self.upstream.requires_grad_(False)
        self.upstream.eval()
        n = int(upstream.num_layers) + 1
        if layer is not None and not -n <= layer < n:
            raise ConfigError(f"UpstreamFrontEnd: layer {layer} out of range for {n} hidden states")
        self.layer = layer
        self.layer_weights = nn.Parameter(torch.zeros(n)) if layer is None else None
        self.sample_rate = int(upstream.sample_rate)

    @property
    def output_dim(self) -> int:
        return int(self.upstream.hidden_size)

    def train(self, mode: bool = True) -> "UpstreamFrontEnd":
        super().train(mode)
        self.upstream.eval()  # frozen: no dropout inside the upstream
        return self

    @torch.no_grad()
    def frozen_features(self, wavs: WaveformBatch, wav_lens=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms -> (chosen layer (B, T, H) or all layers stacked (B, L+1, T, H), frame lengths (B,))."""
        out = self.upstream(wavs, wav_lens)
        if self.layer is not None:
            return out.hidden_states[self.layer], out.lengths
        return torch.stack(out.hidden_states, dim=1), out.lengths  # (B, L+1, T, H)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """(B, T, H) passes through; (B, L+1, T, H) -> the softmax-weighted sum (B, T, H)."""
        if self.layer_weights is None:
            return raw
        return weighted_layer_sum(self.layer_weights, raw, dim=1)  # (B, L+1, T, H) -> (B, T, H)


# ---------------------------------------------------------------------------------------------------------------
# the speech-prefixed LM
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TeaselOutput:
    hidden: torch.Tensor  # (B, L + P, H) last hidden states; P = 2 with audio, 0 text-only
    attention_mask: torch.Tensor  # (B, L + P) 1 = attend
    logits: torch.Tensor | None = None  # (B, L, V) MLM logits at the text positions (prefix removed)
    loss: torch.Tensor | None = None  # mlm_loss + mse_loss, whichever were asked for
    mlm_loss: torch.Tensor | None = None  # mean CE over positions with a label != -100
    mse_loss: torch.Tensor | None = None  # MSE of the <s> regression against targets
    prediction: torch.Tensor | None = None  # (B,) regression output on <s>
    laa_weights: torch.Tensor | None = None  # (B, 2, T) LAA attention over speech frames


class RegressionHead(nn.Module):
    """RoBERTa's sequence-classification head with one output: dropout, dense, tanh, dropout, linear on <s>."""

    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, cls: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(cls)))  # (B, H)
        return self.out(self.dropout(x)).squeeze(-1)  # (B,)


class TeaselModel(nn.Module):
    """RoBERTa with a 2-token speech prefix after ``<s>``.

    Args:
        roberta: a ``transformers.RobertaModel`` (any size; its hidden size fixes the LAA width).
        front_end: a :class:`Wav2Vec2CNNFrontEnd`, an :class:`UpstreamFrontEnd` or None (text-only model).
        laa_config: LAA architecture; ``input_dim``/``hidden_size`` are set from the front end and LM.
        lm_head: RoBERTa's MLM head (``RobertaForMaskedLM.lm_head``) for LAA pretraining, or None.
        regression: add a regression head on ``<s>`` (fine-tuning).
    """

    # trainable-part names for set_trainable()
    PARTS = ("front_end", "input_proj", "gru", "aggregation", "prefix_norm", "lm", "lm_head", "head")

    def __init__(self, roberta: nn.Module, front_end: nn.Module | None = None, laa_config: LAAConfig | None = None,
                 lm_head: nn.Module | None = None, regression: bool = False):
        super().__init__()
        self.roberta = roberta
        self.lm_head = lm_head
        self.front_end = front_end
        H = int(roberta.config.hidden_size)
        if front_end is not None:
            cfg = laa_config or LAAConfig()
            if cfg.hidden_size != H:
                cfg = dataclasses.replace(cfg, hidden_size=H)  # the prefix lives in the LM's embedding space
            if cfg.input_dim != front_end.output_dim:
                cfg = dataclasses.replace(cfg, input_dim=int(front_end.output_dim))
            self.laa: LAA | None = LAA(cfg)
        else:
            self.laa = None
        self.head = RegressionHead(H, float(roberta.config.hidden_dropout_prob)) if regression else None

    # ---- building ----
    @property
    def num_prefix(self) -> int:
        return 0 if self.laa is None else 2

    def part_modules(self, part: str) -> list[nn.Module]:
        """Modules making up one named part (empty when absent)."""
        if part not in self.PARTS:
            raise ConfigError(f"unknown TEASEL part {part!r}; parts: {list(self.PARTS)}")
        if part == "lm":
            return [self.roberta]
        if part in ("lm_head", "head", "front_end"):
            m = getattr(self, part)
            return [m] if m is not None else []
        if self.laa is None:
            return []
        m = getattr(self.laa, part)
        return [m] if m is not None else []

    def set_trainable(self, parts: Iterable[str]) -> None:
        """Make exactly the named parts trainable and freeze everything else.

        The frozen front end's own weights never train (only an UpstreamFrontEnd's layer weights can).
        """
        parts = set(parts)
        for p in parts:
            if p not in self.PARTS:
                raise ConfigError(f"unknown TEASEL part {p!r}; parts: {list(self.PARTS)}")
        self.requires_grad_(False)
        for p in parts:
            for m in self.part_modules(p):
                if p == "front_end":
                    if getattr(m, "layer_weights", None) is not None:
                        m.layer_weights.requires_grad_(True)
                else:
                    m.requires_grad_(True)

    def laa_state_dict(self) -> dict[str, torch.Tensor]:
        """The LAA weights plus any trainable front-end weights (what LAA pretraining produces)."""
        state = {f"laa.{k}": v for k, v in self.laa.state_dict().items()} if self.laa is not None else {}
        if self.front_end is not None and getattr(self.front_end, "layer_weights", None) is not None:
            state["front_end.layer_weights"] = self.front_end.layer_weights
        return state

    # ---- forward pieces ----
    @property
    def trunk_frozen(self) -> bool:
        """True when nothing before the LAA aggregation trains (front end, input projection, BiGRU), so each
        utterance's GRU states are fixed and :meth:`trunk_states` can be computed once, outside the loop."""
        if self.laa is None or self.front_end is None:
            return False
        return not any(p.requires_grad for m in (self.front_end, self.laa.input_proj, self.laa.gru)
                       if m is not None for p in m.parameters())

    def trunk_states(self, raw: torch.Tensor, frame_lens: torch.Tensor) -> torch.Tensor:
        """Frozen front-end output -> LAA GRU states (B, T, 2H) (front-end layer mix, projection, BiGRU)."""
        if self.laa is None or self.front_end is None:
            raise ConfigError("this TEASEL model is text-only (no front end): no speech prefix")
        return self.laa.trunk(self.front_end(raw), frame_lens)

    def speech_prefix(self, raw: torch.Tensor | None, frame_lens: torch.Tensor,
                      states: torch.Tensor | None = None) -> LAAOutput:
        """Frozen front-end output (B, T, D) or (B, L+1, T, D) + frame lengths -> LAA prefix (B, 2, H).

        ``states``: GRU states from :meth:`trunk_states` computed earlier (only valid while the trunk is
        frozen); when given, ``raw`` is not used.
        """
        if states is None:
            states = self.trunk_states(raw, frame_lens)  # (B, T, 2H)
        elif self.laa is None:
            raise ConfigError("this TEASEL model is text-only (no front end): no speech prefix")
        return self.laa.aggregate(states, frame_lens)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              prefix: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Text ids (B, L) -> RoBERTa embedding output with the prefix at positions 1..P, and the extended mask.

        Positions come from the text ids alone (RoBERTa counts from padding_idx + 1 over non-pad tokens), so
        inserting the prefix shifts no text position and uses no position embedding.
        """
        emb = self.roberta.embeddings(input_ids=input_ids)  # (B, L, H)
        mask = attention_mask.to(emb.device).long()  # (B, L)
        if prefix is None:
            return emb, mask
        B = input_ids.shape[0]
        if prefix.shape[0] != B or prefix.shape[-1] != emb.shape[-1]:
            raise ConfigError(f"prefix {tuple(prefix.shape)} does not fit text embeddings {tuple(emb.shape)}")
        prefix = prefix.to(emb.dtype)
        x = torch.cat([emb[:, :1], prefix, emb[:, 1:]], dim=1)  # (B, L + P, H)
        ones = torch.ones(B, prefix.shape[1], dtype=mask.dtype, device=mask.device)
        return x, torch.cat([mask[:, :1], ones, mask[:, 1:]], dim=1)  # (B, L + P, H), (B, L + P)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               prefix: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run RoBERTa's encoder on the (prefixed) embeddings -> (hidden (B, L + P, H), mask (B, L + P))."""
        from transformers.masking_utils import create_bidirectional_mask

        x, mask = self.embed(input_ids, attention_mask, prefix)
        attn = create_bidirectional_mask(config=self.roberta.config, inputs_embeds=x, attention_mask=mask)
        hidden = self.roberta.encoder(x, attention_mask=attn).last_hidden_state  # (B, L + P, H)
        return hidden, mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, raw: torch.Tensor | None = None,
                frame_lens: torch.Tensor | None = None, mlm_labels: torch.Tensor | None = None,
                targets: torch.Tensor | None = None, states: torch.Tensor | None = None) -> TeaselOutput:
        """One pass. ``raw``/``frame_lens``: frozen front-end features (from ``front_end.frozen_features``), or
        ``states``/``frame_lens``: precomputed GRU states (:meth:`trunk_states`, frozen trunk only);
        ``mlm_labels`` (B, L) with -100 at unscored positions -> MLM loss; ``targets`` (B,) -> MSE on <s>."""
        laa_out = None
        if self.laa is not None:
            if (raw is None and states is None) or frame_lens is None:
                raise ConfigError("TEASEL with a speech front end needs raw features (or GRU states) and frame_lens")
            if states is not None and not self.trunk_frozen:
                raise ConfigError("precomputed GRU states given but the LAA trunk trains: pass raw features")
            laa_out = self.speech_prefix(raw, frame_lens, states)
        hidden, mask = self.encode(input_ids, attention_mask, laa_out.prefix if laa_out is not None else None)
        out = TeaselOutput(hidden=hidden, attention_mask=mask,
                           laa_weights=laa_out.weights if laa_out is not None else None)
        P = self.num_prefix
        if mlm_labels is not None:
            if self.lm_head is None:
                raise ConfigError("MLM labels given but the model has no lm_head")
            text_hidden = torch.cat([hidden[:, :1], hidden[:, 1 + P :]], dim=1)  # (B, L, H) prefix removed
            out.logits = self.lm_head(text_hidden)  # (B, L, V)
            out.mlm_loss = mlm_loss(out.logits, mlm_labels)
        if self.head is not None:
            out.prediction = self.head(hidden[:, 0])  # (B,)
            if targets is not None:
                out.mse_loss = nn.functional.mse_loss(out.prediction.float(),
                                                      targets.to(out.prediction.device).float())
        losses = [x for x in (out.mlm_loss, out.mse_loss) if x is not None]
        out.loss = sum(losses) if losses else None
        return out


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over positions whose label is not -100 (masked tokens only; padding never counts)."""
    labels = labels.to(logits.device)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                       ignore_index=IGNORE_INDEX)


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: Iterable[int], mask_id: int,
                vocab_size: int, prob: float = 0.15, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: ``prob`` of the non-special, non-pad tokens are picked; of those 80% -> ``<mask>``, 10% ->
    a random non-special token, 10% unchanged. Returns ``(masked ids (B, L), labels (B, L))`` with labels -100
    everywhere except the picked positions. Every sequence with a candidate gets at least one pick, so a batch
    of short transcripts never yields an empty (NaN) loss.
    """
    if not 0.0 < prob < 1.0:
        raise ConfigError(f"mlm probability must lie in (0, 1), got {prob}")
    g = generator
    special = torch.tensor(sorted(set(int(i) for i in special_ids)), device=input_ids.device)
    cand = attention_mask.bool() & ~torch.isin(input_ids, special)  # (B, L)
    pick = (torch.rand(input_ids.shape, generator=g, device=input_ids.device) < prob) & cand
    none = ~pick.any(1) & cand.any(1)
    if none.any():  # force one random candidate in sequences that got no pick
        noise = torch.rand(input_ids.shape, generator=g, device=input_ids.device).masked_fill(~cand, -1.0)
        forced = nn.functional.one_hot(noise.argmax(1), input_ids.shape[1]).bool() & none[:, None]
        pick = pick | forced
    labels = torch.where(pick, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
    r = torch.rand(input_ids.shape, generator=g, device=input_ids.device)
    ids = input_ids.clone()
    ids[pick & (r < 0.8)] = mask_id
    to_random = pick & (r >= 0.8) & (r < 0.9)
    allowed = torch.ones(vocab_size, dtype=torch.bool, device=input_ids.device)
    allowed[special[special < vocab_size]] = False
    pool = allowed.nonzero().flatten()  # non-special ids
    idx = torch.randint(len(pool), (int(to_random.sum()),), generator=g, device=input_ids.device)
    ids[to_random] = pool[idx]
    return ids, labels


# ---------------------------------------------------------------------------------------------------------------
# LAA checkpoints (safetensors + JSON config, written atomically)
# ---------------------------------------------------------------------------------------------------------------


def save_laa(model: TeaselModel, path: str | os.PathLike, extra_meta: dict[str, Any] | None = None) -> Path:
    """Write the LAA (+ trainable front-end weights) to ``path`` (.safetensors) with its config in the header."""
    from safetensors.torch import save

    if model.laa is None:
        raise ConfigError("save_laa: the model has no LAA (text-only)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.laa_state_dict().items()}
    meta = {"format": "audiorep-laa", "laa": json.dumps(model.laa.config.to_dict()),
            "extra": json.dumps(extra_meta or {})}
    atomic_write_bytes(path, save(state, metadata=meta))
    return path


def load_laa(model: TeaselModel, path: str | os.PathLike) -> dict[str, Any]:
    """Load an LAA checkpoint written by :func:`save_laa` into ``model``; returns its extra metadata."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such LAA checkpoint")
    if model.laa is None:
        raise ConfigError(f"{path}: cannot load an LAA into a text-only TEASEL model")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read LAA checkpoint (truncated or corrupt?): {exc}") from exc
    if meta.get("format") != "audiorep-laa":
        raise CheckpointError(f"{path}: not an audiorep LAA checkpoint")
    saved = LAAConfig.from_dict(json.loads(meta["laa"]))
    if saved != model.laa.config:
        raise CheckpointError(f"{path}: LAA config {saved} does not match the model's {model.laa.config}")
    own = model.laa_state_dict()
    if set(own) != set(state):
        raise CheckpointError(f"{path}: tensors {sorted(set(state) ^ set(own))[:6]} do not match the model")
    model.laa.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("laa.")})
    if "front_end.layer_weights" in state:
        with torch.no_grad():
            model.front_end.layer_weights.copy_(state["front_end.layer_weights"])
    return json.loads(meta.get("extra", "{}"))


def count_parameters(module: nn.Module | None, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with requires_grad)."""
    if module is None:
        return 0
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
