"""Input alteration for masked acoustic pretraining: time spans (Mockingjay), frequency bands and noise (TERA).

Two steps, both vectorised over the batch (no Python loop over utterances or frames):

1. :func:`make_plan` decides *what* to alter from frame lengths and per-utterance keys only — no features
   needed, so a trainer can count the altered elements of a whole global batch before any forward pass.
2. :func:`apply_plan` alters a feature batch; :meth:`MaskPlan.loss_mask` gives the positions the loss sees.

Randomness comes from :mod:`audiorep.pretrain.rng` keyed by utterance, so an utterance's alteration does
not depend on its batch, its DDP rank or the RNG history (resume and multi-process runs reproduce it).

Differences from s3prl's ``pretrain/mockingjay/task.py`` (on purpose):
- every utterance of at least ``span`` frames gets at least one span (s3prl rounds 0.15 * T / 7 down to
  zero spans for T < 24 frames and then asserts on an all-zero loss mask);
- utterances shorter than a span get no time span instead of crashing;
- padding is never touched (s3prl's noise is added to padded frames too);
- noise is decided per utterance (s3prl draws one dice for the whole batch);
- random-frame replacement draws a random valid frame per altered frame (s3prl copies random spans).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import ConfigError
from ..validate import PROB, check_ranges, ints, reals
from .rng import hash_key, random_bits, random_normal, random_uniform, string_key

# stream ids: independent random numbers from the same utterance key
_S_STARTS, _S_MODE, _S_SOURCE, _S_FWIDTH, _S_FSTART, _S_NOISE_FLAG, _S_NOISE = range(1, 8)


@dataclass
class MaskingConfig:
    """How inputs are altered. Defaults: Mockingjay/AALBERT time masking; TERA adds frequency and noise."""

    time_proportion: float = 0.15  # fraction of valid frames covered by time spans (before overlaps)
    span: int = 7  # consecutive frames per time span (70 ms)
    zero_prob: float = 0.8  # per utterance: chance its spans are zeroed
    random_prob: float = 0.1  # per utterance: chance its spans get random frames of the same utterance
    # the rest (1 - zero - random = 10%) leaves the spans unchanged but still predicts them
    freq_proportion: float = 0.0  # TERA: one band of up to this fraction of feature bins is zeroed (0.2)
    noise_proportion: float = 0.0  # TERA: fraction of utterances that get Gaussian noise (0.15)
    noise_std: float = 0.2  # std of that noise, in CMVN-normalised feature units

    def __post_init__(self) -> None:
        check_ranges(self, "masking", {
            "time_proportion": reals(0.0, 1.0, "(a fraction of the frames)"), "zero_prob": PROB,
            "random_prob": PROB, "freq_proportion": reals(0.0, 1.0, "(a fraction of the feature bins)"),
            "noise_proportion": reals(0.0, 1.0, "(a fraction of the utterances)"),
            "span": ints(1, 10**6, "frames"), "noise_std": reals(0.0, 100.0, "(CMVN feature units)"),
        })
        if self.zero_prob + self.random_prob > 1.0 + 1e-9:
            raise ConfigError(
                f"MaskingConfig: zero_prob + random_prob must be <= 1, got {self.zero_prob} + {self.random_prob}"
            )
        if self.span < 1:
            raise ConfigError(f"MaskingConfig.span must be >= 1, got {self.span}")
        if self.noise_std < 0:
            raise ConfigError(f"MaskingConfig.noise_std must be >= 0, got {self.noise_std}")
        if self.time_proportion == 0 and self.freq_proportion == 0:
            raise ConfigError("MaskingConfig: time_proportion and freq_proportion are both 0; nothing to predict")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_maskable(config: MaskingConfig, longest_frames: int, where: str) -> None:
    """ConfigError when not one utterance of at most ``longest_frames`` frames can be altered.

    Time spans need an utterance of at least ``span`` frames; without frequency bands nothing else is
    predicted, so every step would have a loss of exactly 0 and the run would return its initial weights.
    """
    if config.freq_proportion > 0 or config.time_proportion == 0 or longest_frames >= config.span:
        return
    raise ConfigError(f"masking.span={config.span} frames is longer than {where} ({longest_frames} frames): no "
                      "time span fits in any utterance and frequency masking is off, so there is nothing to "
                      "predict; use a shorter span or longer utterances")


def tera_masking(**overrides) -> MaskingConfig:
    """TERA's time + frequency + magnitude alteration (the ``T_F_M`` checkpoints)."""
    return MaskingConfig(**{"freq_proportion": 0.2, "noise_proportion": 0.15, **overrides})


@dataclass
class MaskPlan:
    """What to alter in a (B, T, D) feature batch; every tensor is on the batch's device."""

    keys: torch.Tensor  # (B,) int64 per-utterance random keys
    valid: torch.Tensor  # (B, T) bool, inside the utterance
    time_mask: torch.Tensor  # (B, T) bool, frames inside a chosen span (predicted whatever the mode)
    mode: torch.Tensor  # (B,) int64: 0 zero, 1 random frames, 2 unchanged
    source: torch.Tensor  # (B, T) int64: frame copied into t when mode is 1
    freq_mask: torch.Tensor  # (B, D) bool, the zeroed band
    noise: torch.Tensor  # (B,) bool, utterances that get Gaussian noise
    noise_std: float

    def loss_mask(self, dim: int | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(B, T, dim) 0/1 mask of the target elements the loss averages over.

        ``dim`` is the target size; it may differ from the input size (linear-spectrum targets) only when no
        frequency band is masked, since a band of input bins has no counterpart in another front end.
        """
        D = self.freq_mask.shape[1]
        dim = D if dim is None else dim
        m = self.time_mask[:, :, None].expand(-1, -1, dim)  # (B, T, dim)
        if bool(self.freq_mask.any()):
            if dim != D:
                raise ConfigError(f"frequency masking needs the target size ({dim}) to equal the input size ({D})")
            m = m | (self.freq_mask[:, None, :] & self.valid[:, :, None])  # (B, T, D)
        return m.to(dtype)

    def altered_count(self, dim: int | None = None) -> torch.Tensor:
        """Number of target elements in the loss (a scalar tensor), without building the (B, T, D) mask."""
        D = self.freq_mask.shape[1]
        dim = D if dim is None else dim
        nt = self.time_mask.sum(1)  # (B,)
        nv = self.valid.sum(1)  # (B,)
        nf = self.freq_mask.sum(1)  # (B,)
        if bool((nf > 0).any()) and dim != D:
            raise ConfigError(f"frequency masking needs the target size ({dim}) to equal the input size ({D})")
        return (nt * dim + nf * (nv - nt)).sum()


def utterance_keys(ids: Sequence[str], seed: int, step: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(B,) int64 keys: one per utterance id, changing with the seed and the training step."""
    ids_t = torch.tensor([string_key(str(i)) for i in ids], dtype=torch.int64)  # (B,)
    return hash_key(int(seed), int(step), ids_t).to(device)  # (B,)


def make_plan(frame_lens: torch.Tensor, num_frames: int, dim: int, config: MaskingConfig,
              keys: torch.Tensor) -> MaskPlan:
    """Choose spans, modes, bands and noise for utterances with ``frame_lens`` (B,) padded to ``num_frames``."""
    device = frame_lens.device
    B, T, c = frame_lens.shape[0], int(num_frames), config
    L = frame_lens.to(torch.int64)  # (B,)
    keys = keys.to(device=device, dtype=torch.int64)
    t = torch.arange(T, device=device)  # (T,)
    valid = t[None, :] < L[:, None]  # (B, T)

    # ---- time spans: n_b starts drawn without replacement from [0, L - span] (overlaps allowed) ----
    n_cand = (L - c.span + 1).clamp_min(0)  # (B,) possible starts
    n_spans = torch.round(L.to(torch.float64) * c.time_proportion / c.span).to(torch.int64)  # (B,)
    n_spans = torch.minimum(n_spans.clamp_min(1 if c.time_proportion > 0 else 0), n_cand)  # (B,) 0 if too short
    cand = t[None, :] < n_cand[:, None]  # (B, T)
    score = torch.where(cand, random_bits(keys, t[None, :], _S_STARTS), torch.full_like(cand, 1 << 40, dtype=torch.int64))
    ranked, _ = torch.sort(score, dim=1)  # (B, T)
    thresh = ranked.gather(1, (n_spans - 1).clamp_min(0)[:, None])  # (B, 1): n-th smallest score
    starts = cand & (score <= thresh) & (n_spans[:, None] > 0)  # (B, T)
    csum = torch.cumsum(starts.to(torch.int32), dim=1)  # (B, T)
    before = torch.nn.functional.pad(csum, (c.span, 0))[:, :T]  # (B, T): starts up to t - span
    time_mask = (csum - before) > 0  # (B, T) covered by a start in (t - span, t]

    zeros1 = torch.zeros(1, 1, device=device, dtype=torch.int64)  # one counter per utterance
    u_mode = random_uniform(keys, zeros1, _S_MODE)[:, 0]  # (B,)
    mode = torch.where(u_mode < c.zero_prob, 0, torch.where(u_mode < c.zero_prob + c.random_prob, 1, 2))
    u_src = random_uniform(keys, t[None, :], _S_SOURCE)  # (B, T)
    source = (u_src * L[:, None].clamp_min(1)).to(torch.int64).clamp_max(T - 1)  # (B, T), within [0, L)

    # ---- one frequency band per utterance, width uniform in [0, floor(D * p)] ----
    d = torch.arange(dim, device=device)
    max_w = int(dim * c.freq_proportion)
    if max_w > 0:
        width = (random_uniform(keys, zeros1, _S_FWIDTH)[:, 0] * (max_w + 1)).to(torch.int64)  # (B,)
        fstart = (random_uniform(keys, zeros1, _S_FSTART)[:, 0] * (dim - width + 1)).to(torch.int64)  # (B,)
        freq_mask = (d[None, :] >= fstart[:, None]) & (d[None, :] < (fstart + width)[:, None])  # (B, D)
    else:
        freq_mask = torch.zeros(B, dim, dtype=torch.bool, device=device)

    noise = random_uniform(keys, zeros1, _S_NOISE_FLAG)[:, 0] < c.noise_proportion  # (B,)
    return MaskPlan(keys=keys, valid=valid, time_mask=time_mask, mode=mode, source=source,
                    freq_mask=freq_mask, noise=noise, noise_std=c.noise_std)


def apply_plan(feats: torch.Tensor, plan: MaskPlan) -> torch.Tensor:
    """Altered copy of ``feats`` (B, T, D); positions outside ``plan.valid`` are returned unchanged."""
    B, T, D = feats.shape
    if plan.valid.shape != (B, T) or plan.freq_mask.shape != (B, D):
        raise ValueError(f"plan for {tuple(plan.valid.shape)} x {plan.freq_mask.shape[1]} does not fit feats {tuple(feats.shape)}")
    tm = plan.time_mask[:, :, None]  # (B, T, 1)
    randomised = torch.gather(feats, 1, plan.source[:, :, None].expand(-1, -1, D))  # (B, T, D)
    x = torch.where(tm & (plan.mode == 1)[:, None, None], randomised, feats)  # (B, T, D)
    x = x.masked_fill(tm & (plan.mode == 0)[:, None, None], 0.0)
    x = x.masked_fill(plan.freq_mask[:, None, :], 0.0)
    if bool(plan.noise.any()) and plan.noise_std > 0:
        counters = torch.arange(T * D, device=feats.device).view(1, T, D)  # (1, T, D)
        eps = random_normal(plan.keys, counters, _S_NOISE).to(feats.dtype)  # (B, T, D)
        x = x + plan.noise_std * eps * plan.noise[:, None, None]
    return torch.where(plan.valid[:, :, None], x, feats)  # padding untouched


def alter(feats: torch.Tensor, frame_lens: torch.Tensor, config: MaskingConfig, keys: torch.Tensor,
          targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One call: ``(altered inputs (B, T, D), targets (B, T, D'), loss mask (B, T, D'))``.

    ``targets`` defaults to the clean ``feats``; pass another front end's frames (e.g. linear spectrum)
    to predict those instead.
    """
    plan = make_plan(frame_lens, feats.shape[1], feats.shape[2], config, keys)
    targets = feats if targets is None else targets
    return apply_plan(feats, plan), targets, plan.loss_mask(targets.shape[-1], dtype=targets.dtype)
