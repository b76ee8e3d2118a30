"""The pretraining network: front end -> alteration -> encoder -> prediction head -> masked reconstruction loss."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..features import FeatureConfig, FeatureExtractor
from ..models.base import PretrainableEncoder, PretrainedModel
from ..train.task import TrainTask
from .loss import masked_error_sum
from .masking import MaskingConfig, MaskPlan, apply_plan, make_plan, utterance_keys


class MaskedAcousticModel(nn.Module):
    """Encoder + its reconstruction head trained to rebuild clean frames at altered positions.

    The targets are the clean input features, or — with ``target_features`` (Mockingjay-large) — another
    front end's frames of the same waveforms, e.g. the 201-bin log linear spectrum.
    """

    def __init__(self, encoder: PretrainableEncoder, masking: MaskingConfig, loss: str = "l1",
                 target_features: FeatureConfig | None = None, head: nn.Module | None = None):
        super().__init__()
        if not isinstance(encoder, PretrainableEncoder) or not isinstance(encoder, PretrainedModel):
            raise ConfigError(f"{type(encoder).__name__} cannot be pretrained: its family does not declare "
                              "PretrainableEncoder")
        self.encoder = encoder
        self.head = head or encoder.reconstruction_head()
        self.masking = masking
        self.loss = loss
        self.target_features = FeatureExtractor(target_features) if target_features is not None else None
        target_dim = target_features.dim if target_features is not None else encoder.feature_config.dim
        if encoder.target_dim != target_dim:
            raise ConfigError(
                f"model.output_dim ({encoder.target_dim}) must equal the target front end's size ({target_dim})"
            )
        if target_dim != encoder.feature_config.dim and masking.freq_proportion > 0:
            raise ConfigError("frequency masking needs targets of the input's size; set masking.freq_proportion=0 "
                              "or drop target_features")
        if target_features is not None and target_features.sample_rate != encoder.feature_config.sample_rate:
            raise ConfigError("target_features.sample_rate must equal features.sample_rate")
        self.target_dim = target_dim

    def frame_lengths(self, wav_lens: torch.Tensor) -> torch.Tensor:
        return self.encoder.feature_config.num_frames(wav_lens)

    def plan(self, wav_lens: torch.Tensor, num_samples: int, keys: torch.Tensor) -> MaskPlan:
        """The alteration of a waveform batch, decided from lengths and keys alone (no features needed)."""
        fc = self.encoder.feature_config
        return make_plan(fc.num_frames(wav_lens), int(fc.num_frames(num_samples)), fc.dim, self.masking, keys)

    @torch.no_grad()
    def features(self, wavs: torch.Tensor, wav_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs (B, T, D), targets (B, T, D'), frame lengths (B,)), always in float32."""
        dev = wavs.device
        ctx = torch.autocast(device_type=dev.type, enabled=False)  # STFT and mel matmul stay fp32 under bf16 runs
        with ctx:
            feats, flens = self.encoder.features(wavs.float(), wav_lens)  # (B, T, D)
            targets = feats if self.target_features is None else self.target_features(wavs.float(), wav_lens)[0]
        return feats, targets, flens

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor, keys: torch.Tensor,
                plan: MaskPlan | None = None, reduction: str = "sum") -> torch.Tensor:
        """Loss over the altered elements: their error *sum* (``reduction="sum"``, for trainers that normalise
        over a global batch) or mean (``"mean"``)."""
        feats, targets, flens = self.features(wavs, wav_lens)
        if plan is None:
            plan = make_plan(flens, feats.shape[1], feats.shape[2], self.masking, keys)
        inputs = apply_plan(feats, plan)  # (B, T, D)
        total, count = self.reconstruction_error(inputs, targets, flens, plan)
        if reduction == "sum":
            return total
        return total / count.clamp_min(1.0)

    def reconstruction_error(self, inputs: torch.Tensor, targets: torch.Tensor, flens: torch.Tensor,
                             plan: MaskPlan) -> tuple[torch.Tensor, torch.Tensor]:
        """(error sum over the altered elements, their count) for altered inputs (B, T, D), targets (B, T, D').

        Where the encoder packs (CPU training steps and CPU inference), the encoder runs on the valid frames
        only and the head and loss on the frames the loss reads (about 15% of them; the head is frame-wise, so
        the other frames' predictions would only be multiplied by zero). Padded positions are never altered, so the
        sum is the padded path's.
        """
        mask = plan.loss_mask(self.target_dim, dtype=torch.float32)  # (B, T, D')
        B, T, D = inputs.shape
        if self.encoder.packs(inputs):
            rows = (torch.arange(T, device=inputs.device) < flens[:, None]).reshape(B * T).nonzero().squeeze(1)  # (N,)
            hidden = self.encoder.encode_packed(inputs.reshape(B * T, D).index_select(0, rows), flens.tolist(),
                                                rows % T)[-1]  # (N, H)
            mask = mask.reshape(B * T, -1).index_select(0, rows)  # (N, D')
            used = mask.amax(1).nonzero().squeeze(1)  # (M,) packed rows with at least one altered element
            pred = self.head(hidden.index_select(0, used))  # (M, D')
            targets = targets.reshape(B * T, -1).index_select(0, rows.index_select(0, used))  # (M, D')
            mask = mask.index_select(0, used)  # (M, D')
        else:
            pred = self.head(self.encoder.encode(inputs, flens).last_hidden_state)  # (B, T, D')
        return masked_error_sum(pred, targets, mask, self.loss), mask.sum()


class PretrainTask(TrainTask):
    """Glue for :class:`audiorep.train.Trainer`: keys per utterance and step, the plan, and its counts.

    With ``held_out`` (a callable returning :func:`~audiorep.pretrain.evaluate.reconstruction_report`'s
    dict), the trainer's ``eval_every`` also scores the model on held-out utterances during training; the
    rows go to ``heldout.csv`` beside the loss rows of ``metrics.csv``.
    """

    name = "pretrain"  # progress bar and logs
    dev_log = "heldout.csv"
    keeps_best = False  # the final weights are the model; the held-out rows are diagnostics
    show_metrics = ["model", "interpolation"]  # printed at each held-out check

    def __init__(self, model: MaskedAcousticModel, seed: int, held_out: Callable[[], dict] | None = None):
        self.model, self.seed = model, seed
        self.held_out = held_out
        L = model.encoder.num_layers
        self.log_metrics = ["model", "zero", "interpolation"] + [f"attn_dist_L{i + 1}" for i in range(L)]

    def evaluates(self) -> bool:
        return self.held_out is not None  # without held-out utterances there is nothing to score

    def evaluate(self) -> dict[str, float]:
        """Held-out L1 of the model and both references, and each layer's mean attended distance (frames)
        from hidden query frames."""
        rep = self.held_out()
        row = {k: rep[k] for k in ("model", "zero", "interpolation") if k in rep}
        for i, d in enumerate(rep["attention_distance"]["hidden_frames"]):
            row[f"attn_dist_L{i + 1}"] = d
        return row

    def keys(self, ids: Sequence[str], step: int, device: torch.device) -> torch.Tensor:
        return utterance_keys(ids, self.seed, step, device)

    def prepare(self, batch: dict[str, Any], step: int, device: torch.device
                ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
        wavs = batch["wavs"].to(device, non_blocking=True)  # (B, S)
        lens = batch["wav_lens"].to(device, non_blocking=True)  # (B,)
        ids = batch.get("id") or [str(i) for i in range(wavs.shape[0])]
        keys = self.keys(ids, step, device)  # (B,)
        plan = self.model.plan(lens, wavs.shape[1], keys)
        count = plan.altered_count(self.model.target_dim)
        frames = self.model.frame_lengths(lens).sum()
        return {"wavs": wavs, "wav_lens": lens, "keys": keys, "plan": plan}, count, frames
