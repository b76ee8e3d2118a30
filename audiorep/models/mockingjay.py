"""Mockingjay / TERA / Audio ALBERT: one config family, one encoder, and the spectrogram prediction head.

AALBERT is the Mockingjay encoder with ``share_layers=True`` (one layer applied N times; optionally a
factorized input projection through ``embedding_size``). TERA is the same encoder; it differs only in how
it is pretrained (frequency and noise alteration), which lives in audiorep.pretrain.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..audio import WaveformBatch
from ..errors import ConfigError
from ..features import FeatureConfig, FeatureExtractor, _from_dict
from ..kernels import BACKENDS, choose, key_padding_mask
from ..kernels.cpu_dropout import dropout_scale_mask
from ..kernels.fused import cpu_inference
from ..layers import SinusoidalPositions, TransformerLayer
from ..registry import ModelSpec, register_architecture, register_model
from ..validate import check_bool, check_choice, check_float, check_int
from .base import EncoderOutput, PretrainableEncoder, PretrainedModel


# Upper bounds far above any published or sensible model (Mockingjay-large: 12 layers of 768), low enough
# that a corrupt or hostile config cannot make a load allocate or loop without end.
_SIZE_LIMITS = {"input_dim": 65_536, "hidden_size": 65_536, "num_layers": 1_024, "num_heads": 1_024,
                "intermediate_size": 262_144, "embedding_size": 65_536, "output_dim": 65_536}
MAX_PARAMETERS = 4_000_000_000  # 16 GB of fp32 weights


@dataclass
class MockingjayConfig:
    """Architecture of a Mockingjay-family encoder (defaults: the published 3-layer base model)."""

    input_dim: int = 80  # feature frame size; must equal the FeatureConfig's dim
    hidden_size: int = 768  # model width H
    num_layers: int = 3  # 3 = base, 12 = large
    num_heads: int = 12  # head dim 64 at H = 768
    intermediate_size: int = 3072  # FFN width (4H)
    dropout: float = 0.1  # hidden dropout; the published "drop1" checkpoints use 0.1
    attn_dropout: float = 0.1  # dropout on attention probabilities
    layer_norm_eps: float = 1e-12  # BERT's value; the checkpoints were trained with it
    share_layers: bool = False  # AALBERT: one layer's weights reused at every depth
    embedding_size: int | None = None  # ALBERT-style factorized input: input_dim -> E -> H; None = direct
    output_dim: int | None = None  # prediction-head target size; None = input_dim (80 log-mel, 201 linear)
    initializer_range: float = 0.02  # std of the normal init of linear weights
    attention_backend: str = "auto"  # see audiorep.kernels.attention; recorded when the model is built
    # Not in the published models (False there): a learned per-head penalty on |i - j| added to the attention
    # scores (ALiBi-style, slopes learned). With sinusoidal positions alone, small models on little data keep
    # attending uniformly for thousands of steps and never use the frames next to a hidden span.
    distance_bias: bool = False

    def __post_init__(self) -> None:
        # Types and upper bounds are checked here, where every config.json, YAML file and s3prl checkpoint
        # is parsed: a string size would fail deep in a forward pass, and num_layers=1e9 with shared
        # layers builds one layer and then loops for ever.
        own = "MockingjayConfig"
        for name, high in _SIZE_LIMITS.items():
            check_int(own, name, getattr(self, name), 1, high, optional=name in ("embedding_size", "output_dim"))
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"MockingjayConfig: hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}"
            )
        for name in ("dropout", "attn_dropout"):
            check_float(own, name, getattr(self, name), 0.0, 1.0, high_open=True)
        check_float(own, "layer_norm_eps", self.layer_norm_eps, 0.0, 1.0, low_open=True)
        check_float(own, "initializer_range", self.initializer_range, 0.0, 10.0)
        check_bool(own, "share_layers", self.share_layers)
        check_bool(own, "distance_bias", self.distance_bias)
        check_choice(own, "attention_backend", self.attention_backend, BACKENDS)
        if self.parameter_estimate > MAX_PARAMETERS:
            raise ConfigError(f"MockingjayConfig: about {self.parameter_estimate / 1e9:.1f}e9 parameters "
                              f"(hidden_size {self.hidden_size}, intermediate_size {self.intermediate_size}, "
                              f"{1 if self.share_layers else self.num_layers} distinct layer(s)); the limit is "
                              f"{MAX_PARAMETERS / 1e9:g}e9")

    @property
    def parameter_estimate(self) -> int:
        """Encoder parameters, roughly (the weight matrices): what building the model will allocate."""
        H, I = self.hidden_size, self.intermediate_size
        layers = 1 if self.share_layers else self.num_layers
        E = self.embedding_size
        return layers * (4 * H * H + 2 * H * I) + self.input_dim * (E or H) + (E or 0) * H

    @property
    def target_dim(self) -> int:
        return self.output_dim or self.input_dim

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MockingjayConfig":
        return _from_dict(cls, d, "model config")


# ---- presets: small functions over the one config, not copied dicts ----

def mockingjay_config(**overrides: Any) -> MockingjayConfig:
    """The full factory: published base settings with any field overridden."""
    return MockingjayConfig(**overrides)


def mockingjay_base(**overrides: Any) -> MockingjayConfig:
    """Mockingjay base: 3 layers, 768 wide (21,327,360 encoder parameters)."""
    return mockingjay_config(**{"num_layers": 3, **overrides})


def mockingjay_large(**overrides: Any) -> MockingjayConfig:
    """Mockingjay large: 12 layers (85,118,208 encoder parameters); the released one predicts 201-bin linear."""
    return mockingjay_config(**{"num_layers": 12, **overrides})


def aalbert_base(**overrides: Any) -> MockingjayConfig:
    """Audio ALBERT base: 3 applications of one shared layer (7,151,616 encoder parameters)."""
    return mockingjay_config(**{"num_layers": 3, "share_layers": True, **overrides})


def tera_base(**overrides: Any) -> MockingjayConfig:
    """TERA base: the Mockingjay base encoder (TERA differs in its pretraining alterations)."""
    return mockingjay_base(**overrides)


@register_architecture
class MockingjayModel(PretrainableEncoder, PretrainedModel):
    """Waveforms -> log-mel features -> transformer encoder -> every layer's hidden states."""

    architecture = "mockingjay"
    config_class = MockingjayConfig
    tiny_config = {"hidden_size": 32, "num_heads": 2, "intermediate_size": 64, "num_layers": 2}

    def __init__(self, config: MockingjayConfig | None = None, feature_config: FeatureConfig | None = None):
        super().__init__()
        config = config or MockingjayConfig()
        feature_config = feature_config or FeatureConfig()
        if config.input_dim != feature_config.dim:
            raise ConfigError(
                f"model input_dim {config.input_dim} does not match the feature front end's dim "
                f"{feature_config.dim} ({feature_config.kind})"
            )
        self.config = config
        self.features = FeatureExtractor(feature_config)
        H = config.hidden_size
        E = config.embedding_size
        self.input_proj = nn.Linear(config.input_dim, E or H)
        self.embed_proj = nn.Linear(E, H) if E else None
        self.positions = SinusoidalPositions(H)
        self.input_norm = nn.LayerNorm(H, eps=config.layer_norm_eps)
        self.input_dropout = nn.Dropout(config.dropout)
        n_distinct = 1 if config.share_layers else config.num_layers
        self.kernels = choose(config.attention_backend)  # the layers record the same choice
        self.layers = nn.ModuleList(
            TransformerLayer(H, config.num_heads, config.intermediate_size, config.dropout,
                             config.attn_dropout, config.layer_norm_eps, config.attention_backend,
                             config.distance_bias)
            for _ in range(n_distinct)
        )
        self.apply(lambda m: init_weights(m, config.initializer_range))

    # ---- the public surface (feature_config, sample_rate, extract_features: WaveformUpstream) ----
    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    def forward(self, wavs: WaveformBatch, wav_lens=None, sample_rate: int | None = None) -> EncoderOutput:
        """Encode waveforms at ``self.sample_rate``: a (B, S) tensor (+ wav_lens) or a list of 1-D tensors."""
        feats, lengths = self.extract_features(wavs, wav_lens, sample_rate)
        return self.encode(feats, lengths)

    def reduced_precision(self, dtype: torch.dtype = torch.bfloat16) -> "MockingjayModel":
        """Cast the encoder (not the feature front end) to ``dtype`` for inference; returns self.

        The STFT and mel filterbank stay fp32 and frames are cast as they enter the input projection, so
        only the transformer runs in ``dtype`` (faster on CPUs with bf16 GEMMs, at ~1e-2 absolute error on
        unit-variance hidden states; ``benchmarks/extract.py --bf16`` measures both). For training keep
        fp32 weights and use autocast (``train.precision``) instead.
        """
        if dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"reduced_precision: dtype must be float32 or bfloat16, got {dtype}")
        self.to(dtype)
        self.features.float()
        return self

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        """Feature frames (B, T, D) -> input embeddings (B, T, H): projection + positions, LayerNorm, dropout."""
        x = self.input_proj(feats.to(self.input_proj.weight.dtype))  # (B, T, E or H)
        if self.embed_proj is not None:
            x = self.embed_proj(x)  # (B, T, H)
        x = x + self.positions(x.shape[1]).to(x.dtype)  # (B, T, H)
        return self.input_dropout(self.input_norm(x))

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor | None = None,
               traceable: bool = False) -> EncoderOutput:
        """Run the encoder on feature frames (B, T, D) with valid frame counts (B,).

        Every position past a length is zero in every returned hidden state. ``traceable`` always takes the
        masked batched path (no branch on the lengths' values), for torch.export and ONNX export.
        """
        if feats.dim() != 3 or feats.shape[-1] != self.config.input_dim:
            raise ValueError(
                f"feats: expected (B, T, {self.config.input_dim}), got shape {tuple(feats.shape)}"
            )
        B, T, _ = feats.shape
        if lengths is None:
            lengths = torch.full((B,), T, dtype=torch.long, device=feats.device)
        keep = (torch.arange(T, device=feats.device) < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
        all_valid = False if traceable else bool((lengths == T).all())
        if not all_valid and self.packs(feats):
            return self._encode_packed(feats, lengths, keep)
        attn_lens = None if all_valid else lengths
        attn_mask = None if all_valid else key_padding_mask(lengths, T)  # built once for all layers
        x = self.embed(feats)  # (B, T, H)
        hidden = [x]
        for i in range(self.config.num_layers):
            layer = self.layers[0 if self.config.share_layers else i]
            x = layer(x, attn_lens, attn_mask)  # (B, T, H)
            hidden.append(x)
        if not all_valid:
            hidden = [h * keep for h in hidden]
        return EncoderOutput(hidden_states=tuple(hidden), last_hidden_state=hidden[-1], lengths=lengths)

    @property
    def target_dim(self) -> int:
        return self.config.target_dim

    def reconstruction_head(self) -> nn.Module:
        return SpecPredictionHead(self.config)

    def attention_probabilities(self, hidden_states: tuple[torch.Tensor, ...], lengths: torch.Tensor
                                ) -> list[torch.Tensor]:
        return [self.layers[0 if self.config.share_layers else i].attn.probabilities(hidden_states[i], lengths)
                for i in range(self.config.num_layers)]  # (B, nh, T, T) each

    def s3prl_exportable(self) -> bool:
        return not self.config.embedding_size and not self.config.distance_bias  # neither exists in s3prl

    def packs(self, x: torch.Tensor) -> bool:
        """Whether a padded batch ``x`` runs packed (valid frames only) right now.

        On CPU: in inference under no_grad (the ``cpu_fusion`` switch) and in training steps, i.e. with
        autograd on (the ``packed_training`` switch). CUDA keeps the padded batch until packing is measured there.
        """
        if x.device.type != "cpu":
            return False
        if self.kernels.cpu_fast_path and cpu_inference(x, self.training):
            return True
        return self.kernels.packed_training and torch.is_grad_enabled()

    def embed_packed(self, feats: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """:meth:`embed` for packed frames: feats (N, D) at in-utterance positions (N,) -> (N, H)."""
        x = self.input_proj(feats.to(self.input_proj.weight.dtype))  # (N, E or H)
        if self.embed_proj is not None:
            x = self.embed_proj(x)  # (N, H)
        table = self.positions(int(positions.max()) + 1 if positions.numel() else 1)  # (T, H)
        x = self.input_norm(x + table.index_select(0, positions).to(x.dtype))  # (N, H)
        p = self.input_dropout.p if self.training else 0.0
        if p > 0.0 and x.device.type == "cpu":  # the cheaper CPU mask, as in the packed layers
            return x * dropout_scale_mask(tuple(x.shape), p, x.dtype, x.device)
        return self.input_dropout(x)

    def encode_packed(self, feats: torch.Tensor, lens: list[int], positions: torch.Tensor) -> list[torch.Tensor]:
        """Every hidden state of utterances packed back to back: feats (N, D), N = sum(lens) -> [(N, H)] * (L + 1).

        ``positions`` (N,) is each frame's index within its utterance. Training and inference alike; every
        op except attention is frame-wise, and attention runs per utterance, so nothing is spent on padding.
        """
        x = self.embed_packed(feats, positions)  # (N, H)
        hidden = [x]
        for i in range(self.config.num_layers):
            layer = self.layers[0 if self.config.share_layers else i]
            x = layer.forward_packed(x, lens)  # (N, H)
            hidden.append(x)
        return hidden

    def _encode_packed(self, feats: torch.Tensor, lengths: torch.Tensor, keep: torch.Tensor) -> EncoderOutput:
        """A padded batch run on its valid frames only, packed back to back, then scattered back to (B, T, H).

        s3prl (and the batched path) spend every GEMM on padding too; here a batch of 10 s and 5 s
        utterances costs what 15 s costs. Same arithmetic per frame as the batched path.
        """
        B, T, D = feats.shape
        rows = keep.reshape(B * T).nonzero().squeeze(1)  # (N,) flat indices of valid frames
        packed = self.encode_packed(feats.reshape(B * T, D).index_select(0, rows), lengths.tolist(), rows % T)
        H = self.config.hidden_size
        hidden = [h.new_zeros(B * T, H).index_copy(0, rows, h).view(B, T, H) for h in packed]  # (B, T, H) each
        return EncoderOutput(hidden_states=tuple(hidden), last_hidden_state=hidden[-1], lengths=lengths)


class SpecPredictionHead(nn.Module):
    """Pretraining head: hidden states (B, T, H) -> reconstructed frames (B, T, target_dim)."""

    def __init__(self, config: MockingjayConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.out = nn.Linear(config.hidden_size, config.target_dim)
        self.apply(lambda m: init_weights(m, config.initializer_range))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(nn.functional.gelu(self.dense(hidden))))  # (B, T, target_dim)


def init_weights(module: nn.Module, std: float) -> None:
    """BERT init: normal(0, std) linear weights, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# The published s3prl checkpoints of this family.
register_model(ModelSpec(
    "mockingjay-base", mockingjay_base,
    url="https://www.dropbox.com/s/7f9z6dzc7oix6qv/states-1000000.ckpt?dl=1",
    description="Mockingjay base, 3 layers, log-mel 80 in/out, time alteration, LibriSpeech 960 h, 1M steps",
))
register_model(ModelSpec(
    "mockingjay-large", lambda: mockingjay_large(output_dim=201),
    repo_id="s3prl/mockingjay",
    filename="mockingjay_logMelLinearLarge_T_AdamW_b32_500k_360hr_drop1/states-500000.ckpt",
    description="Mockingjay large, 12 layers, log-mel 80 in, 201-bin linear target, LibriSpeech 360 h, 500k steps",
))
register_model(ModelSpec(
    "aalbert-base", aalbert_base,
    repo_id="s3prl/audio_albert",
    filename="audio_albert_logMelBase_T_share_AdamW_b32_1m_960hr_drop1/states-1000000.ckpt",
    description="Audio ALBERT base, one shared layer x3, log-mel 80, time alteration, LibriSpeech 960 h, 1M steps",
))
register_model(ModelSpec(
    "tera-base", tera_base,
    repo_id="s3prl/tera",
    filename="tera_logMelBase_T_F_M_AdamW_b32_1m_960hr_drop1/states-1000000.ckpt",
    description="TERA base, 3 layers, log-mel 80, time+frequency+magnitude alteration, LibriSpeech 960 h, 1M steps",
))
