"""The wav2vec 2.0 CNN feature encoder + feature projection as a frozen speech front end (TEASEL's, 20 ms frames).

Built from transformers' ``Wav2Vec2Model`` (a local checkpoint folder, offline, or a config with random
weights); only the convolutional feature encoder and its projection are kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..audio import WaveformBatch, batch_waveforms
from ..errors import CheckpointError


class Wav2Vec2CNNFrontEnd(nn.Module):
    """wav2vec 2.0 CNN feature encoder + feature projection (LayerNorm, Linear), frozen; 20 ms frames.

    ``source``: a local wav2vec2 checkpoint folder (``Wav2Vec2Model.from_pretrained``, offline), a
    ``transformers.Wav2Vec2Config`` (random weights), or None for the wav2vec2-base architecture at random init.
    """

    sample_rate = 16000

    def __init__(self, source: str | os.PathLike | Any | None = None, normalize_waveform: bool = True):
        super().__init__()
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        if source is None or isinstance(source, Wav2Vec2Config):
            config = source or Wav2Vec2Config()
            # only the CNN and projection are kept: build a 1-layer transformer to keep construction cheap
            w2v = Wav2Vec2Model(Wav2Vec2Config(**{**config.to_dict(), "num_hidden_layers": 1}))
            self.pretrained = False
            self.source = "random-init"
        else:
            path = Path(os.fspath(source)).expanduser()
            if not (path / "config.json").is_file():
                raise CheckpointError(f"{path}: not a wav2vec2 checkpoint folder (no config.json)")
            try:
                w2v = Wav2Vec2Model.from_pretrained(str(path))
            except Exception as exc:
                raise CheckpointError(f"{path}: cannot load a wav2vec2 model: {exc}") from exc
            self.pretrained = True
            self.source = str(path)
        self.w2v_config = w2v.config
        self.feature_extractor = w2v.feature_extractor
        self.feature_projection = w2v.feature_projection
        self._lengths = w2v._get_feat_extract_output_lengths
        # the receptive field of one output frame: shorter audio is zero-padded up to it instead of crashing
        rf = 1
        for k, s in reversed(list(zip(self.w2v_config.conv_kernel, self.w2v_config.conv_stride))):
            rf = (rf - 1) * s + k
        self.min_samples = rf
        self.normalize_waveform = normalize_waveform  # wav2vec2-base-960h's feature extractor normalises
        del w2v
        self.requires_grad_(False)
        self.eval()

    @property
    def output_dim(self) -> int:
        return int(self.w2v_config.hidden_size)

    def train(self, mode: bool = True) -> "Wav2Vec2CNNFrontEnd":
        return super().train(False)  # frozen: dropout and norms always in inference mode

    def frame_lengths(self, wav_lens: torch.Tensor) -> torch.Tensor:
        return self._lengths(wav_lens.clamp_min(self.min_samples)).long()

    @torch.no_grad()
    def frozen_features(self, wavs: WaveformBatch, wav_lens=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms at 16 kHz -> (features (B, T, 768), frame lengths (B,))."""
        wavs, lens = batch_waveforms(wavs, wav_lens)
        device = self.feature_projection.projection.weight.device
        wavs, lens = wavs.to(device), lens.to(device)
        # group norm (wav2vec2-base) normalises over time, so padding would leak into valid frames:
        # run such models one utterance at a time; layer-norm models (large/lv60) can batch
        per_utt = self.w2v_config.feat_extract_norm == "group" and bool((lens != lens.max()).any())
        items = [wavs[i, : lens[i]] for i in range(len(lens))] if per_utt else [wavs]
        item_lens = [lens[i : i + 1] for i in range(len(lens))] if per_utt else [lens]
        outs = []
        for w, l in zip(items, item_lens):
            w = w.reshape(-1, w.shape[-1])  # (b, S)
            if w.shape[1] < self.min_samples:
                w = nn.functional.pad(w, (0, self.min_samples - w.shape[1]))
            if self.normalize_waveform:
                valid = (torch.arange(w.shape[1], device=device) < l[:, None]).float()  # (b, S)
                n = valid.sum(1, keepdim=True)
                mean = (w * valid).sum(1, keepdim=True) / n
                var = (((w - mean) * valid) ** 2).sum(1, keepdim=True) / n
                w = (w - mean) / torch.sqrt(var + 1e-7) * valid
            z = self.feature_extractor(w).transpose(1, 2)  # (b, T, 512)
            z, _ = self.feature_projection(z)  # (b, T, 768)
            outs.append(z)
        frame_lens = self.frame_lengths(lens)
        T = int(frame_lens.max())
        feats = torch.zeros(len(lens), T, outs[0].shape[-1], device=device, dtype=outs[0].dtype)
        row = 0
        for z in outs:
            feats[row : row + z.shape[0], : min(T, z.shape[1])] = z[:, :T]
            row += z.shape[0]
        feats = feats * (torch.arange(T, device=device) < frame_lens[:, None]).unsqueeze(-1)  # zero padding
        return feats, frame_lens

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Nothing trainable on top of the frozen features."""
        return raw
