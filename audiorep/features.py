"""FeatureConfig and the log-mel front end: waveform batch -> (B, T, n_mels) CMVN features + frame lengths.

Every utterance is processed as if it were alone: the STFT's reflect padding happens at each utterance's
own end (not at the batch's), level normalisation and CMVN use valid samples/frames only. So padding never
changes an utterance's features — s3prl's batched features do depend on it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import AudioError, ConfigError
from .validate import check_bool, check_choice, check_float, check_int


@dataclass
class FeatureConfig:
    """How waveforms become encoder inputs. Saved with every model so weights never meet the wrong front end."""

    sample_rate: int = 16000  # the rate the encoder was trained at; inputs at other rates are refused
    kind: str = "mel"  # "mel" (log-mel inputs) or "linear" (log power spectrum: Mockingjay-large's target)
    n_mels: int = 80  # mel bins; the published models use 80
    win_ms: float = 25.0  # analysis window; 25 ms = 400 samples at 16 kHz
    hop_ms: float = 10.0  # frame shift; 10 ms = one encoder frame = one phone-label frame
    n_freq: int = 201  # one-sided STFT bins; n_fft = 2 * (n_freq - 1) = 400, as in s3prl
    f_min: float = 0.0  # lowest mel filter edge (Hz)
    f_max: float | None = None  # highest mel filter edge; None = Nyquist
    target_db: float | None = -25.0  # RMS level each waveform is scaled to before the STFT; None = off
    log: bool = True  # log(x + log_eps) on the power features
    log_eps: float = 1e-10  # s3prl's offset; keeps silence finite
    cmvn: bool = True  # per-utterance mean/variance normalisation over valid frames
    cmvn_eps: float = 1e-10  # added to the (unbiased) std, as s3prl does

    def __post_init__(self) -> None:
        # types and bounds checked where config.json / YAML / s3prl configs are parsed (see audiorep.validate)
        own = "FeatureConfig"
        check_choice(own, "kind", self.kind, ("mel", "linear"))
        check_int(own, "sample_rate", self.sample_rate, 1, 1_000_000)
        check_int(own, "n_mels", self.n_mels, 1, 4_096)
        check_int(own, "n_freq", self.n_freq, 2, 32_769)  # n_fft up to 65536
        check_float(own, "win_ms", self.win_ms, 0.0, 10_000.0, low_open=True)
        check_float(own, "hop_ms", self.hop_ms, 0.0, 10_000.0, low_open=True)
        check_float(own, "f_min", self.f_min, 0.0)
        check_float(own, "f_max", self.f_max, 0.0, optional=True)
        check_float(own, "target_db", self.target_db, -200.0, 200.0, optional=True)
        check_bool(own, "log", self.log)
        check_float(own, "log_eps", self.log_eps, 0.0, 1.0, low_open=True)
        check_bool(own, "cmvn", self.cmvn)
        check_float(own, "cmvn_eps", self.cmvn_eps, 0.0, 1.0)
        if self.hop_length <= 0 or self.win_length <= 0 or self.win_length > self.n_fft:
            raise ConfigError(
                f"FeatureConfig: need 0 < win_length ({self.win_length}) <= n_fft ({self.n_fft}) and hop > 0"
            )

    @property
    def win_length(self) -> int:
        return round(self.win_ms * self.sample_rate / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.hop_ms * self.sample_rate / 1000)

    @property
    def n_fft(self) -> int:
        return 2 * (self.n_freq - 1)

    @property
    def dim(self) -> int:
        """Size of one feature frame."""
        return self.n_mels if self.kind == "mel" else self.n_freq

    def num_frames(self, num_samples: torch.Tensor | int) -> torch.Tensor | int:
        """Frames produced for a waveform of ``num_samples`` (centred STFT: one frame per hop, plus one)."""
        return num_samples // self.hop_length + 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureConfig":
        return _from_dict(cls, d, "feature config")


def _from_dict(cls, d: dict[str, Any], what: str):
    """Build a dataclass from a dict, naming unknown keys instead of raising a bare TypeError."""
    if not isinstance(d, dict):
        raise ConfigError(f"{what}: expected a mapping, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{what}: unknown field(s) {unknown}; valid fields are {sorted(names)}")
    return cls(**d)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """HTK mel -> Hz: the inverse of mel = 2595 log10(1 + f / 700)."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """(n_freqs, n_mels) triangular HTK-mel filters on a one-sided STFT grid, unnormalised (peak 1).

    Filter ``m`` rises linearly from mel point ``m`` to ``m + 1`` and falls to ``m + 2``, with the
    ``n_mels + 2`` points spaced evenly in mel between ``f_min`` and ``f_max`` (default Nyquist). This
    is the filterbank s3prl's front end uses (torchaudio's ``melscale_fbanks`` with ``norm=None`` and
    ``mel_scale="htk"``); tests check the two agree within 1e-6 where torchaudio loads.
    """
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ConfigError(f"mel filterbank: need 0 <= f_min ({f_min}) < f_max ({f_max}) <= sample_rate / 2")
    # float32 throughout with the edge mels from Python floats: the same rounding as the filterbank the
    # published checkpoints were trained with, so features stay bit-for-bit where it matters.
    freqs = torch.linspace(0, sample_rate // 2, n_freqs)  # (F,) STFT bin centres
    mel_lo = 2595.0 * math.log10(1.0 + f_min / 700.0)
    mel_hi = 2595.0 * math.log10(1.0 + f_max / 700.0)
    edges = mel_to_hz(torch.linspace(mel_lo, mel_hi, n_mels + 2))  # (M + 2,) in Hz
    gaps = edges[1:] - edges[:-1]  # (M + 1,)
    offset = edges[None, :] - freqs[:, None]  # (F, M + 2): distance from each bin to each edge
    rising = -offset[:, :-2] / gaps[:-1]  # (F, M): 0 at the left edge, 1 at the centre
    falling = offset[:, 2:] / gaps[1:]  # (F, M): 1 at the centre, 0 at the right edge
    return torch.minimum(rising, falling).clamp_min(0.0)  # (F, M)


def reflect_indices(lengths: torch.Tensor, pad: int, out_len: int) -> torch.Tensor:
    """(B, out_len) gather indices that reflect-pad each utterance by ``pad`` at its own start and end.

    Position j of row b reads sample ``reflect(j - pad)`` of utterance b; reflection repeats for
    utterances shorter than ``pad`` (torch.stft would refuse them), and positions past the padded
    utterance read index 0 (their frames are discarded anyway).
    """
    L = lengths[:, None]  # (B, 1)
    i = torch.arange(out_len, device=lengths.device)[None, :] - pad  # (1, out_len)
    period = (2 * (L - 1)).clamp_min(1)  # (B, 1); a 1-sample utterance reflects onto itself
    m = torch.remainder(i, period)  # (B, out_len), in [0, period)
    idx = torch.where(m < L, m, period - m)
    idx = torch.where(L == 1, torch.zeros_like(idx), idx)
    return idx.clamp_(min=0)


class FeatureExtractor(nn.Module):
    """Batched log-mel (or log-linear) front end with per-utterance level normalisation and CMVN."""

    def __init__(self, config: FeatureConfig | None = None):
        super().__init__()
        self.config = config or FeatureConfig()
        c = self.config
        self.register_buffer("window", torch.hann_window(c.win_length), persistent=False)
        if c.kind == "mel":
            fb = mel_filterbank(
                n_freqs=c.n_freq,
                n_mels=c.n_mels,
                sample_rate=c.sample_rate,
                f_min=c.f_min,
                f_max=c.f_max if c.f_max is not None else c.sample_rate / 2,
            )  # (F, M)
            self.register_buffer("mel_fb", fb, persistent=False)
        else:
            self.mel_fb = None

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor, traceable: bool = False,
                dft_basis: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """wavs (B, S) float zero-padded, lengths (B,) samples -> features (B, T, D), frame lengths (B,).

        Frames past an utterance's length are zero. ``traceable`` takes the same arithmetic with no branch on
        the data (always masked, reflect padding by one gather, both RMS formulas), so that ``torch.export``
        and ONNX export record one graph valid for every batch; the eager path picks cheaper ops per batch.
        ``dft_basis`` (:func:`dft_basis`) computes the spectrum as framed samples times that DFT matrix instead of
        an FFT: what the ONNX export uses, because onnxruntime's STFT op is far less accurate.
        """
        c = self.config
        wavs = wavs.float()
        B, S = wavs.shape
        pad = c.n_fft // 2
        # A batch of equal-length utterances (and every single utterance) needs no masks at all; the
        # masked path below costs ~15 extra passes over the samples, which is most of the front end's time.
        full = False if traceable else bool((lengths == S).all())
        if not full:
            valid = torch.arange(S, device=wavs.device) < lengths[:, None]  # (B, S)
            wavs = torch.where(valid, wavs, 0.0)  # padding may hold anything; from here on it is 0
        if c.target_db is not None:
            # Same level for every utterance, from valid samples only (padding would lower the RMS).
            ms = wavs.square().sum(1) / lengths.clamp_min(1)  # (B,)
            rms = ms.sqrt()  # (B,)
            if traceable or not bool(torch.isfinite(ms).all()):
                # A finite sample beyond ~1e19 overflows the float32 square: the scale would be 0 and the
                # utterance would come out as silence. Take the RMS of the waveform over its peak instead.
                peak = wavs.abs().amax(1)  # (B,)
                rel = (wavs / peak.clamp_min(1e-30)[:, None]).square().sum(1) / lengths.clamp_min(1)  # (B,)
                rms = torch.where(torch.isfinite(ms), rms, peak * rel.sqrt())  # (B,)
            scale = (10.0 ** (c.target_db / 20.0)) / (rms + 1e-10)  # (B,)
            wavs = wavs * scale[:, None]  # (B, S)
        if traceable:
            padded = torch.gather(wavs, 1, reflect_indices(lengths, pad, S + 2 * pad))  # (B, S + n_fft)
        else:
            padded = reflect_pad(wavs, lengths, pad, full)  # (B, S + n_fft)
        if dft_basis is not None:
            power = dft_power(padded, dft_basis, c.n_fft, c.hop_length)  # (B, T, F) in the basis's dtype
        else:
            power = self._stft_power(padded).transpose(1, 2)  # (B, T, F)
        feats = power @ self.mel_fb.to(power.dtype) if self.mel_fb is not None else power  # (B, T, D)
        if feats.dtype == torch.float64:  # the export's float64 DFT path rounds once, before log amplifies quiet bins
            feats = feats.float()
        if c.log:
            feats = torch.log(feats + c.log_eps)
        frame_lens = c.num_frames(lengths)  # (B,)
        T = feats.shape[1]
        fmask = None
        if not full:
            fmask = (torch.arange(T, device=feats.device) < frame_lens[:, None]).unsqueeze(-1)  # (B, T, 1)
            feats = feats * fmask
        if c.cmvn:
            feats = cmvn(feats, fmask, frame_lens, c.cmvn_eps)
        if c.target_db is None and not traceable and not bool(torch.isfinite(feats).all()):
            # without level normalisation, samples far outside [-1, 1] overflow the power spectrum
            bad = (~torch.isfinite(feats)).flatten(1).any(1).nonzero().flatten().tolist()  # utterance indices
            raise AudioError(f"utterance(s) {bad}: features overflow (samples far outside [-1, 1]); scale the "
                             "audio to [-1, 1] or use a feature config with target_db")
        return feats, frame_lens

    def _stft_power(self, padded: torch.Tensor) -> torch.Tensor:
        """(B, S + n_fft) padded waveforms -> (B, F, T) power spectrum by torch.stft."""
        c = self.config
        spec = torch.stft(padded, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                          window=self.window, center=False, return_complex=True)  # (B, F, T)
        return torch.view_as_real(spec).square().sum(-1)  # (B, F, T): re^2 + im^2


def dft_basis(window: torch.Tensor, n_fft: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n_fft, 2 F) real DFT matrix with the window folded in, [cos | -sin], F = n_fft // 2 + 1.

    Built in float64; ``dtype=torch.float32`` rounds it once, so frames @ basis differs from
    ``torch.stft(..., center=False)`` by float32 rounding only; ``torch.float64`` keeps it (then
    :func:`dft_power` and the mel product run in float64). A window shorter than n_fft sits in the frame's
    centre, as torch.stft puts it.
    """
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    angle = (2.0 * math.pi / n_fft) * torch.outer(n, k)  # (n_fft, F)
    win = torch.zeros(n_fft, dtype=torch.float64)
    off = (n_fft - window.shape[0]) // 2
    win[off:off + window.shape[0]] = window.detach().double().cpu()
    return torch.cat([win[:, None] * angle.cos(), -win[:, None] * angle.sin()], 1).to(dtype)  # (n_fft, 2F)


def dft_power(padded: torch.Tensor, basis: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Power spectrum of (B, S) padded waveforms as frames @ :func:`dft_basis`: (B, T, F), in the basis's dtype.

    Plain Gather and MatMul ops, which every ONNX runtime computes as accurately as its GEMM.
    """
    n_frames = (padded.shape[1] - n_fft) // hop + 1
    idx = torch.arange(n_frames, device=padded.device)[:, None] * hop + torch.arange(n_fft, device=padded.device)
    frames = padded[:, idx].to(basis.dtype)  # (B, T, n_fft)
    re, im = (frames @ basis).chunk(2, dim=-1)  # (B, T, F) each
    return re.square() + im.square()  # (B, T, F)


def reflect_pad(wavs: torch.Tensor, lengths: torch.Tensor, pad: int, full: bool) -> torch.Tensor:
    """(B, S) -> (B, S + 2 pad): each utterance reflect-padded at its own start and end.

    One ``F.pad`` handles every start and every utterance that fills the batch; only the ``pad``
    samples after each shorter utterance's end are rewritten (a (B, pad) gather instead of one over
    the whole batch). Utterances no longer than ``pad`` fall back to the general gather.
    """
    B, S = wavs.shape
    if S <= pad or bool((lengths <= pad).any()):
        idx = reflect_indices(lengths, pad, S + 2 * pad)  # (B, S + 2 pad)
        return torch.gather(wavs, 1, idx)
    padded = torch.nn.functional.pad(wavs[:, None], (pad, pad), mode="reflect")[:, 0]  # (B, S + 2 pad)
    if not full:
        # Positions L + pad + k (k < pad) read sample reflect(L + k) = L - 2 - k of utterance b.
        k = torch.arange(pad, device=wavs.device)  # (pad,)
        src = (lengths[:, None] - 2 - k).clamp_min(0)  # (B, pad); lengths > pad here, so >= 0 anyway
        dst = lengths[:, None] + pad + k  # (B, pad)
        padded.scatter_(1, dst, torch.gather(wavs, 1, src))
    return padded


def cmvn(feats: torch.Tensor, fmask: torch.Tensor | None, frame_lens: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-utterance mean/variance normalisation over valid frames (unbiased std, s3prl's convention).

    ``fmask`` (B, T, 1) marks valid frames (None: all are); padding must already be zero.
    A one-frame utterance has no variance: it normalises to zeros instead of NaN.
    """
    n = frame_lens.to(feats.dtype)[:, None, None]  # (B, 1, 1)
    mean = feats.sum(1, keepdim=True) / n  # (B, 1, D); padding is already zero
    centred = feats - mean  # (B, T, D)
    if fmask is not None:
        centred = centred * fmask
    var = centred.square().sum(1, keepdim=True) / (n - 1).clamp_min(1)  # (B, 1, D)
    return centred / (var.sqrt() + eps)
