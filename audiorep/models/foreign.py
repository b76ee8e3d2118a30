"""Speech encoders from transformers (``hf:``) and torchaudio (``torchaudio:``) behind the upstream contract.

``audiorep.load("hf:<repo id or local folder>")`` and ``audiorep.load("torchaudio:WAV2VEC2_BASE")`` return a
:class:`ForeignUpstream`: ``model(wavs, wav_lens)`` -> :class:`EncoderOutput` with ``num_layers + 1`` hidden
states (B, T, H), frame lengths from the model's own conv arithmetic, ``sample_rate``, ``frame_hop`` (samples per
frame), ``frame_rate``, ``hidden_size`` and ``num_layers``, so Featurizer, the probe CLI, the frozen-feature
cache and TEASEL's upstream front end take them like any audiorep upstream.

What the wrapper adds on top of the raw model, and why:

- **Input normalisation** as the model was trained: zero mean / unit variance per utterance over its valid
  samples (``do_normalize`` of a transformers feature extractor; ``_normalize_waveform`` of a torchaudio bundle).
  Padding is zero after normalising, as the transformers feature extractor leaves it.
- **Padding rules.** Models whose CNN has a group norm over time (``feat_extract_norm == "group"``:
  wav2vec2-base, HuBERT-base, WavLM-base(+)) see padding inside that norm, so a padded batch changes every
  frame of the shorter utterances; their feature extractors also return no attention mask. Such models are
  run one group of equal-length utterances at a time, without padding: the output for an utterance is then the
  same whatever it is batched with. Layer-norm models (wav2vec2-large / lv60, HuBERT- and WavLM-large) are padding-invariant
  and run as one padded batch with an attention mask. data2vec-audio has a layer-norm CNN but a stack of
  positional convolutions that carries padding into valid frames even with the mask (measured: an error of
  order 1), so it runs in equal-length groups too. ``padding_invariant`` says which rule applies.
- **Hidden states**: ``hidden_states[0]`` is the transformer's input (after the positional convolution),
  ``hidden_states[i]`` the output of layer ``i``; for pre-LN models the last entry is ``last_hidden_state``
  (after the encoder's final LayerNorm), as transformers 4.x and torchaudio's ``forward`` give it.
- **Short input**: audio shorter than one frame's receptive field (400 samples for wav2vec2) is zero-padded to
  it and gives one frame instead of a conv error.
- **Layer drop off**: with layer drop a training step skips layers and the hidden states would not line up with
  the weighted sum's weights, so it is set to 0 (finetune mode keeps dropout and SpecAugment).

Frames past ``lengths`` are zero in every hidden state, as for audiorep's own upstreams.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..audio import batch_waveforms, valid_mask
from ..errors import AudioError, CheckpointError, ConfigError, WeightsUnavailableError
from ..network import hf_endpoint, hub_library_offline, offline_reason, unreachable_reason
from .base import EncoderOutput

HF_PREFIX = "hf:"
TORCHAUDIO_PREFIX = "torchaudio:"
# transformers model types with the wav2vec2-style CNN + transformer layout this wrapper drives
HF_SPEECH_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer", "unispeech",
                   "unispeech-sat")
# of those, the ones whose only cross-frame layers before attention are the CNN and one positional conv: with a
# layer-norm CNN and an attention mask their output does not depend on padding (checked in the tests)
_HF_MASKABLE = ("wav2vec2", "hubert", "wavlm", "unispeech", "unispeech-sat")
# torchaudio's wav2vec2 CNN when a bundle does not spell it out: (channels, kernel, stride) per layer
_TORCHAUDIO_HOST = "https://download.pytorch.org"  # where torchaudio's bundles download their weights from
_TORCHAUDIO_DEFAULT_CONV = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2


def split_source(name: str | os.PathLike) -> tuple[str, str]:
    """``"hf:DIR"`` -> ``("hf", "DIR")``, ``"torchaudio:NAME"`` -> ``("torchaudio", "NAME")``, else ``("", name)``."""
    text = os.fspath(name)
    for prefix in (HF_PREFIX, TORCHAUDIO_PREFIX):
        if text.startswith(prefix):
            return prefix[:-1], text[len(prefix):]
    return "", text


def _receptive_field(kernels: Sequence[int], strides: Sequence[int]) -> int:
    """Input samples seen by one output frame of a stack of 1-D convolutions."""
    rf = 1
    for k, s in reversed(list(zip(kernels, strides))):
        rf = (rf - 1) * s + k
    return rf


class ForeignUpstream(nn.Module):
    """Base of the transformers / torchaudio wrappers: batching, normalisation, padding policy, output contract.

    Subclasses set ``model`` and implement :meth:`_encode` on an already normalised batch.
    """

    def __init__(self, source: str, sample_rate: int, conv_kernel: Sequence[int], conv_stride: Sequence[int],
                 hidden_size: int, num_layers: int, normalize: bool, norm_eps: float, padding_invariant: bool):
        super().__init__()
        self.source = source  # what was passed to audiorep.load, e.g. "hf:/models/w2v"
        self.sample_rate = int(sample_rate)
        self.frame_hop = 1  # input samples per output frame
        for s in conv_stride:
            self.frame_hop *= int(s)
        self.min_samples = _receptive_field(conv_kernel, conv_stride)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.normalize = bool(normalize)
        self.norm_eps = float(norm_eps)
        self.padding_invariant = bool(padding_invariant)

    @property
    def frame_rate(self) -> float:
        """Output frames per second (50 for the wav2vec2 family at 16 kHz)."""
        return self.sample_rate / self.frame_hop

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _encode(self, wavs: torch.Tensor, lens: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Normalised waveforms (b, S) + valid samples (b,) -> num_layers + 1 states (b, T, H), frames (b,)."""
        raise NotImplementedError

    def _normalise(self, wavs: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Zero mean, unit variance per utterance over its valid samples; padding stays zero. (B, S) -> (B, S)."""
        valid = valid_mask(lens, wavs.shape[1]).to(wavs.dtype)  # (B, S)
        n = valid.sum(1, keepdim=True)  # (B, 1)
        mean = (wavs * valid).sum(1, keepdim=True) / n
        var = (((wavs - mean) * valid) ** 2).sum(1, keepdim=True) / n
        return (wavs - mean) / torch.sqrt(var + self.norm_eps) * valid

    def forward(self, wavs, wav_lens=None, sample_rate: int | None = None) -> EncoderOutput:
        """Waveforms at :attr:`sample_rate` ((B, S) + lengths, or a list of 1-D tensors) -> EncoderOutput."""
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise AudioError(f"sample_rate {sample_rate} does not match the model's {self.sample_rate} Hz; "
                             f"resample first (audiorep.read_audio(path, {self.sample_rate}))")
        wavs, lens = batch_waveforms(wavs, wav_lens)
        device = self._device()
        wavs, lens = wavs.to(device), lens.to(device)  # (B, S), (B,)
        if self.normalize:
            wavs = self._normalise(wavs, lens)
        if wavs.shape[1] < self.min_samples:
            wavs = F.pad(wavs, (0, self.min_samples - wavs.shape[1]))  # (B, min_samples)
        lens = lens.clamp_min(self.min_samples)  # a too-short utterance counts as one zero-padded frame
        if self.padding_invariant or bool((lens == lens[0]).all()):
            groups = [torch.arange(len(lens), device=device)]
        else:  # equal-length groups, each run without padding (see the module doc)
            groups = [(lens == n).nonzero().flatten() for n in torch.unique(lens)]
        parts = []
        for idx in groups:
            n = int(lens[idx].max())
            parts.append((idx, *self._encode(wavs[idx, :n], lens[idx])))
        frames = torch.zeros(len(lens), dtype=torch.long, device=device)  # (B,)
        for idx, _, f in parts:
            frames[idx] = f.to(device).long()
        if len(parts) == 1 and len(parts[0][0]) == len(lens):
            states = parts[0][1]  # the whole batch in one run: already in order
        else:
            T = int(frames.max())
            states = []
            for k in range(len(parts[0][1])):
                ref = parts[0][1][k]
                full = ref.new_zeros(len(lens), T, ref.shape[-1])  # (B, T, H)
                for idx, hs, _ in parts:
                    full[idx, : hs[k].shape[1]] = hs[k][:, :T]
                states.append(full)
        keep = valid_mask(frames, states[0].shape[1]).unsqueeze(-1)  # (B, T, 1)
        states = tuple(h * keep.to(h.dtype) for h in states)  # frames past the length are zero
        return EncoderOutput(hidden_states=states, last_hidden_state=states[-1], lengths=frames)


# ------------------------------------------------------------------------------------------------ transformers


class HFSpeechUpstream(ForeignUpstream):
    """A transformers speech encoder (wav2vec2, HuBERT, WavLM, data2vec-audio, ...) as an audiorep upstream.

    ``use_attention_mask`` follows the model's feature extractor (``return_attention_mask``), or, without one,
    transformers' rule: a mask only for models without a group norm in the CNN.
    """

    def __init__(self, model: nn.Module, source: str, do_normalize: bool = True,
                 use_attention_mask: bool | None = None, sample_rate: int = 16000):
        cfg = model.config
        group_norm = getattr(cfg, "feat_extract_norm", "layer") == "group"
        if use_attention_mask is None:
            use_attention_mask = not group_norm
        super().__init__(source, sample_rate, cfg.conv_kernel, cfg.conv_stride, cfg.hidden_size,
                         cfg.num_hidden_layers, do_normalize, 1e-7,  # 1e-7: the feature extractor's epsilon
                         padding_invariant=use_attention_mask and not group_norm
                         and cfg.model_type in _HF_MASKABLE)
        self.model = model
        self.use_attention_mask = bool(use_attention_mask)

    def _encode(self, wavs, lens):
        attn = valid_mask(lens, wavs.shape[1]).long() if self.use_attention_mask else None  # (b, S)
        kwargs: dict[str, Any] = {}
        cfg = self.model.config
        frames = self.model._get_feat_extract_output_lengths(lens).long()  # (b,)
        if self.training and getattr(cfg, "mask_time_prob", 0) > 0 and int(frames.max()) <= cfg.mask_time_length:
            # SpecAugment cannot place a span longer than the input: skip it for such a short batch
            kwargs["mask_time_indices"] = torch.zeros(len(lens), int(frames.max()), dtype=torch.bool,
                                                      device=wavs.device)
        out = self.model(wavs, attention_mask=attn, output_hidden_states=True, **kwargs)
        states = list(out.hidden_states)  # num_layers + 1 of (b, T, H)
        if len(states) != self.num_layers + 1:
            raise CheckpointError(f"{self.source}: the model returned {len(states)} hidden states, expected "
                                  f"{self.num_layers + 1}")
        states[-1] = out.last_hidden_state  # pre-LN models: include the final LayerNorm
        return states, frames


def load_hf(source: str, pretrained: bool = True) -> HFSpeechUpstream:
    """``source``: a local folder (``save_pretrained`` output, read offline) or a hub repo id.

    ``pretrained=False`` builds the architecture from the config with random weights.
    """
    from ..optional import require

    transformers = require("transformers", "hf: upstreams")
    label = f"{HF_PREFIX}{source}"
    path = Path(source).expanduser()
    local = path.is_dir()
    if local and not (path / "config.json").is_file():
        raise CheckpointError(f"{label}: {path} holds no config.json (not a transformers model folder)")
    if not local and (path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1 or not source):
        raise CheckpointError(f"{label}: no such model folder")
    where = str(path) if local else source
    # a hub id with the network off or out of reach: the Hugging Face cache or one line, never a retrying request
    no_net = None if local else offline_reason() or unreachable_reason(hf_endpoint())
    files_only = local or no_net is not None
    with hub_library_offline(files_only):
        return _load_hf(transformers, label, where, path, local, files_only, no_net, pretrained)


def _load_hf(transformers: Any, label: str, where: str, path: Path, local: bool, files_only: bool,
             no_net: str | None, pretrained: bool) -> HFSpeechUpstream:
    try:
        config = transformers.AutoConfig.from_pretrained(where, local_files_only=files_only)
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, hub errors: one line naming the source
        if no_net:
            raise WeightsUnavailableError(f"{label}: not in the Hugging Face cache and {no_net}; go online, point "
                                          "HF_ENDPOINT at a reachable mirror, or load a local folder (hf:DIR)") from exc
        raise CheckpointError(f"{label}: cannot read a transformers config ({_first_line(exc)})") from exc
    if config.model_type not in HF_SPEECH_TYPES:
        raise ConfigError(f"{label}: a {config.model_type!r} model is not a supported speech encoder; "
                          f"supported model types: {', '.join(HF_SPEECH_TYPES)}")
    config.layerdrop = 0.0  # every layer runs every step: the weighted sum needs all hidden states
    declared = _declared_shapes(transformers, config, label)
    if pretrained and local:
        _check_declared_against_files(declared, path, getattr(config, "model_type", ""), label)
    try:
        if pretrained:
            with _quiet_transformers(transformers):  # what is off is raised below in one line, not logged
                model, info = transformers.AutoModel.from_pretrained(where, config=config,
                                                                     local_files_only=files_only,
                                                                     output_loading_info=True)
        else:
            model, info = transformers.AutoModel.from_config(config), {}
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{label}: cannot build the model ({_first_line(exc)})") from exc
    _check_loaded(model, info, label)
    if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
        # saved in float16/bfloat16: the wrapper feeds float32 waveforms and the rest of audiorep works in float32
        model = model.float()
    do_normalize, use_mask, sr = True, None, 16000  # transformers' Wav2Vec2FeatureExtractor defaults
    if not local or (path / "preprocessor_config.json").is_file():
        try:
            fe = transformers.AutoFeatureExtractor.from_pretrained(where, local_files_only=files_only)
            do_normalize = bool(getattr(fe, "do_normalize", True))
            use_mask = getattr(fe, "return_attention_mask", None)
            sr = getattr(fe, "sampling_rate", 16000)
        except Exception as exc:  # noqa: BLE001
            if local:
                raise CheckpointError(f"{label}: cannot read preprocessor_config.json ({_first_line(exc)})") from exc
    if isinstance(sr, bool) or not isinstance(sr, int) or not 1000 <= sr <= 10**6:
        # a rate of 0 would otherwise surface later as an error blamed on every audio file
        raise CheckpointError(f"{label}: preprocessor_config.json: sampling_rate must be an integer in "
                              f"[1000, 1000000] Hz, got {sr!r}")
    return HFSpeechUpstream(model, label, do_normalize, use_mask, sr).eval()


def _declared_shapes(transformers: Any, config: Any, label: str) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes ``config`` declares, from a model built on the meta device; CheckpointError past
    the parameter cap (a config.json alone may declare any size, and building it would allocate it all)."""
    from .base import declared_shapes
    from .mockingjay import MAX_PARAMETERS

    try:
        model_class = transformers.AutoModel._model_mapping[type(config)]
        shapes = declared_shapes(lambda: model_class(config))
    except Exception as exc:  # noqa: BLE001 - an inconsistent config: one line naming the source
        raise CheckpointError(f"{label}: config.json does not describe a buildable model ({_first_line(exc)})") from exc
    n = sum(math.prod(s) for s in shapes.values())
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"{label}: config.json declares {n:.3g} parameters, past audiorep's cap of "
                              f"{MAX_PARAMETERS:.3g}; refused before building it")
    return shapes


def _check_declared_against_files(declared: dict[str, tuple[int, ...]], folder: Path, model_type: str,
                                  label: str) -> None:
    """CheckpointError when config.json declares tensors the folder's safetensors files cannot fill: more values
    than the files hold in all, or a tensor of another shape. Read from the files' headers, before building."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return  # pytorch_model.bin: transformers reads it; the loading info below still applies
    found: dict[str, tuple[int, ...]] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                found.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
        except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError
            raise CheckpointError(f"{label}: cannot read {file.name} (truncated or corrupt?): "
                                  f"{_first_line(exc)}") from exc
    prefix = model_type.replace("-", "_") + "."  # checkpoints saved from a model with a head: "wav2vec2.encoder..."
    found = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in found.items()}
    n_declared = sum(math.prod(s) for s in declared.values())
    n_found = sum(math.prod(s) for s in found.values())
    # a little slack: a few small tensors (masked_spec_embed) are absent from some published checkpoints
    if n_declared > n_found + max(n_found // 100, 100_000):
        raise CheckpointError(f"{label}: config.json declares {n_declared:,} parameters but the weights files hold "
                              f"{n_found:,} values; config and weights do not belong together (refused before "
                              "building the model)")
    bad = [f"{k}: file {found[k]} vs config {v}" for k, v in declared.items() if k in found and found[k] != v]
    if bad:
        raise CheckpointError(f"{label}: weight shapes do not match config.json: {'; '.join(bad[:3])}"
                              f"{' ...' if len(bad) > 3 else ''}")


def _check_loaded(model: nn.Module, info: dict[str, Any], label: str) -> None:
    """CheckpointError when transformers filled tensors with random values (missing or mismatched keys) or a
    loaded tensor is NaN/inf: such a model runs, and its features are noise or NaN."""
    from .base import check_finite_weights

    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get("mismatched_keys") or [])
    if missing or mismatched:
        what = "; ".join(part for part in (
            f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} ({len(missing)} in all)"
            if missing else "",
            f"shape mismatch {', '.join(mismatched[:3])}" if mismatched else "") if part)
        raise CheckpointError(f"{label}: the weights do not fill the model its config describes: {what}; "
                              "transformers would have left those tensors random")
    check_finite_weights(dict(model.state_dict()), label)


class _quiet_transformers:
    """Silence transformers' logging for one call (its load report goes to stderr as a table)."""

    def __init__(self, transformers: Any) -> None:
        self.logging = transformers.utils.logging

    def __enter__(self) -> None:
        self.level = self.logging.get_verbosity()
        self.logging.set_verbosity_error()

    def __exit__(self, *exc: object) -> None:
        self.logging.set_verbosity(self.level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


# ------------------------------------------------------------------------------------------------ torchaudio


class TorchaudioUpstream(ForeignUpstream):
    """A ``torchaudio.models.Wav2Vec2Model`` (wav2vec2, HuBERT, WavLM bundles) as an audiorep upstream.

    torchaudio masks padded frames in the transformer from ``lengths``; its group-norm CNN (``extractor_mode
    == "group_norm"``, the base models) is not padding-invariant and runs in equal-length groups.
    """

    def __init__(self, model: nn.Module, source: str, params: dict[str, Any], sample_rate: int, normalize: bool):
        conv = params.get("extractor_conv_layer_config") or _TORCHAUDIO_DEFAULT_CONV
        super().__init__(source, sample_rate, [c[1] for c in conv], [c[2] for c in conv],
                         params["encoder_embed_dim"], params["encoder_num_layers"], normalize,
                         1e-5,  # torchaudio normalises with F.layer_norm's epsilon
                         padding_invariant=params.get("extractor_mode") == "layer_norm")
        self.model = model
        # WavLM's attention takes padding as key_padding_mask and refuses the 4-D mask the others take
        self.wavlm = params.get("encoder_num_buckets") is not None or "WavLM" in type(
            model.encoder.transformer.layers[0].attention).__name__

    def _encode(self, wavs, lens):
        feats, frames = self.model.feature_extractor(wavs, lens)  # (b, T, C), (b,)
        x, mask = self.model.encoder._preprocess(feats, frames)  # (b, T, H); mask zeroes padded frames
        tr = self.model.encoder.transformer
        x = tr._preprocess(x)  # positional conv (+ LayerNorm for post-LN models): hidden_states[0]
        states, bias = [x], None
        pad = None
        if self.wavlm:  # additive float mask, the type of WavLM's position bias: -inf on padded keys
            pad = torch.zeros(x.shape[:2], dtype=x.dtype, device=x.device).masked_fill(
                ~valid_mask(frames, x.shape[1]), float("-inf"))  # (b, T)
        for layer in tr.layers:  # no layer drop: every hidden state, every step
            if self.wavlm:
                x, bias = layer(x, None, position_bias=bias, key_padding_mask=pad)  # (b, T, H)
            else:
                x, bias = layer(x, mask, position_bias=bias)  # (b, T, H)
            states.append(x)
        if not tr.layer_norm_first:  # torchaudio's flag is inverted: False = pre-LN layers + a final LayerNorm
            states[-1] = tr.layer_norm(states[-1])
        return states, frames


def torchaudio_bundles() -> list[str]:
    """Names in ``torchaudio.pipelines`` that are speech-encoder bundles (wav2vec2 / HuBERT / WavLM)."""
    from ..optional import require

    pipelines = require("torchaudio.pipelines", "torchaudio: upstreams")
    return sorted(n for n in dir(pipelines) if isinstance(getattr(pipelines, n), pipelines.Wav2Vec2Bundle))


def load_torchaudio(name: str, pretrained: bool = True, **overrides: Any) -> TorchaudioUpstream:
    """A ``torchaudio.pipelines`` bundle by name (e.g. ``WAV2VEC2_BASE``, ``HUBERT_BASE``, ``WAVLM_BASE_PLUS``).

    ``pretrained=False`` builds the bundle's architecture with random weights; ``overrides`` replace factory
    arguments of ``torchaudio.models.wav2vec2_model`` / ``wavlm_model`` (e.g. ``encoder_num_layers=2`` for a
    small test model; random weights only).
    """
    from ..optional import require

    pipelines = require("torchaudio.pipelines", "torchaudio: upstreams")
    utils = require("torchaudio.pipelines._wav2vec2.utils", "torchaudio: upstreams")
    label = f"{TORCHAUDIO_PREFIX}{name}"
    bundle = getattr(pipelines, name, None)
    if not isinstance(bundle, pipelines.Wav2Vec2Bundle):
        raise ConfigError(f"{label}: not a speech-encoder bundle of torchaudio.pipelines; known: "
                          f"{', '.join(torchaudio_bundles())}")
    if overrides and pretrained:
        raise ConfigError(f"{label}: architecture overrides {sorted(overrides)} need pretrained=False")
    params = {**bundle._params, **overrides}
    try:
        model = utils._get_model(bundle._model_type, params)
    except TypeError as exc:
        raise ConfigError(f"{label}: bad architecture override ({_first_line(exc)})") from exc
    if pretrained:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(bundle._path)
        no_net = None if cached.is_file() else offline_reason() or unreachable_reason(_TORCHAUDIO_HOST)
        if no_net:
            raise WeightsUnavailableError(f"{label}: the pretrained weights are not in {cached.parent} and {no_net}; "
                                          "load with pretrained=False for random weights, or put the file there")
        try:
            state = bundle._get_state_dict(None)  # torchaudio's own download + cache (torch.hub)
        except Exception as exc:  # noqa: BLE001 - URLError, OSError, ...
            raise CheckpointError(f"{label}: cannot get the pretrained weights ({_first_line(exc)}); "
                                  "load with pretrained=False for random weights") from exc
        model.load_state_dict(state)
    model.aux = None  # the CTC head of *_ASR_* bundles is not part of the encoder
    return TorchaudioUpstream(model, label, params, int(bundle.sample_rate), bundle._normalize_waveform).eval()


def load_foreign(name: str, pretrained: bool = True) -> ForeignUpstream:
    """``"hf:..."`` or ``"torchaudio:..."`` -> the wrapped encoder (what :func:`audiorep.load` calls)."""
    scheme, rest = split_source(name)
    if scheme == "hf":
        return load_hf(rest, pretrained=pretrained)
    if scheme == "torchaudio":
        return load_torchaudio(rest, pretrained=pretrained)
    raise ConfigError(f"{name}: expected an hf: or torchaudio: source")
