"""Read, validate and batch waveforms: everything before features works on what this file returns."""

from __future__ import annotations

import os
from typing import Sequence, Union

import functools
import math
import struct

import numpy as np
import torch

from .errors import AudioError

WaveformBatch = Union[torch.Tensor, np.ndarray, Sequence[torch.Tensor], Sequence[np.ndarray]]


def read_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Read an audio file as a mono float32 waveform.

    Multi-channel audio is down-mixed by averaging channels. With ``sample_rate`` the waveform is
    resampled to that rate with :func:`resample`.

    Returns ``(waveform (S,), sample_rate)``. Raises :class:`AudioError` naming the file when it is
    missing, not a file, unreadable, corrupt, truncated (a WAV holding fewer frames than its header
    declares, an Ogg stream without its end), empty or holds non-finite samples.
    """
    wav, sr, _ = read_audio_window(path)
    if sample_rate is not None and sample_rate != sr:
        if sample_rate <= 0:
            raise AudioError(f"{os.fspath(path)}: requested sample_rate must be positive, got {sample_rate}")
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, sr


def read_audio_window(path: str | os.PathLike, start: int = 0, frames: int | None = None
                      ) -> tuple[torch.Tensor, int, int]:
    """Frames ``start .. start + frames`` of an audio file (all of it by default), mono float32, at its own rate.

    Only the window is decoded (a 2 s crop of a 4 s Ogg file reads in half the time; the samples equal those
    of a whole read), so random crops for training need not decode what they drop. Returns ``(waveform (n,),
    sample_rate, frames in the file)``, with the checks of :func:`read_audio`; a window that runs past the
    end of the file is an AudioError.
    """
    import soundfile as sf

    path = os.fspath(path)
    if os.path.isdir(path):
        raise AudioError(f"{path}: a folder, not an audio file")
    if not os.path.exists(path):
        raise AudioError(f"{path}: no such audio file")
    if not os.path.isfile(path):
        raise AudioError(f"{path}: not a regular file")
    try:
        with sf.SoundFile(path) as f:
            fmt, sr, total = f.format, f.samplerate, f.frames
            stop = total if frames is None else start + frames
            if start < 0 or stop > total or stop < start:
                raise AudioError(f"{path}: frames {start}..{stop} asked for, the file holds {total}")
            if start:
                f.seek(start)
            data = f.read(stop - start, dtype="float32", always_2d=True)  # (n, C)
    except AudioError:
        raise
    except Exception as exc:  # soundfile raises RuntimeError/LibsndfileError/TypeError by format
        raise AudioError(f"{path}: cannot read audio ({type(exc).__name__}: {exc})") from exc
    if start == 0 and frames is None:
        total = data.shape[0]  # what was decoded, not what a header claims
    elif data.shape[0] < stop - start:
        raise AudioError(f"{path}: frames {start}..{stop} asked for, but the file stops after "
                         f"{start + data.shape[0]} of the {total} it declares")
    # libsndfile counts a WAV's frames from the data actually present, so this also catches a cut-short file
    _check_complete(path, fmt, total)
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file holds no samples" if total == 0
                         else f"{path}: an empty window ({start}..{stop})")
    wav = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))  # (n,)
    if not torch.isfinite(wav).all():
        raise AudioError(f"{path}: the audio holds NaN or infinite samples")
    return wav, int(sr), int(total)


def _check_complete(path: str, fmt: str, frames_read: int) -> None:
    """AudioError for a file cut short: libsndfile reads what is there and says nothing.

    WAV: the data chunk's declared size against the frames read. Ogg: the last page must end the
    file and carry the end-of-stream flag.
    """
    if fmt == "WAV":
        declared = _wav_declared_frames(path)
        if declared is not None and frames_read < declared:
            raise AudioError(f"{path}: truncated: its WAV header declares {declared} frames but the file holds "
                             f"{frames_read} (an interrupted copy or download?)")
    elif fmt == "OGG" and not _ogg_has_end(path):
        raise AudioError(f"{path}: truncated Ogg stream: it stops before its end-of-stream page after "
                         f"{frames_read} frames (an interrupted copy or download?)")


def _wav_declared_frames(path: str) -> int | None:
    """Frames the data chunk of a RIFF/WAVE header declares; None when unknown (streamed files write 0 or ~4 GB)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        for _ in range(64):  # a few chunks precede the data in any real file
            hdr = f.read(8)
            if len(hdr) < 8:
                return None
            cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == b"data":
                if not block_align or size == 0 or size >= 0x7FFFFFFF:
                    return None
                return size // block_align
            body = f.read(min(size, 64)) if cid == b"fmt " else b""
            if cid == b"fmt " and len(body) >= 14:
                block_align = struct.unpack("<H", body[12:14])[0]
            f.seek(size + (size & 1) - len(body), os.SEEK_CUR)  # chunks are padded to even sizes
    return None


def _ogg_has_end(path: str) -> bool:
    """True when the file ends exactly at an Ogg page flagged end-of-stream."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        f.seek(max(0, size - 65_536 - 282))  # an Ogg page is at most 27 + 255 + 255 * 255 bytes
        tail = f.read()
    i = len(tail)
    while (i := tail.rfind(b"OggS", 0, i)) >= 0:
        if len(tail) - i >= 27 and tail[i + 4] == 0:
            n_seg = tail[i + 26]
            lacing = tail[i + 27 : i + 27 + n_seg]
            if len(lacing) == n_seg and i + 27 + n_seg + sum(lacing) == len(tail):
                return bool(tail[i + 5] & 0x04)  # header_type bit 2: end of stream
    return False


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(num_frames, sample_rate, channels)`` of an audio file without decoding it; AudioError if unreadable."""
    import soundfile as sf

    path = os.fspath(path)
    try:
        info = sf.info(path)
    except Exception as exc:
        raise AudioError(f"{path}: cannot read audio header ({type(exc).__name__}: {exc})") from exc
    return int(info.frames), int(info.samplerate), int(info.channels)


def batch_waveforms(
    wavs: WaveformBatch,
    wav_lens: torch.Tensor | Sequence[int] | None = None,
    *,
    name: str = "wavs",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn user input into a zero-padded float batch and its valid lengths.

    Accepts a list of 1-D waveforms, a 1-D waveform (one utterance) or a (B, S) tensor with optional
    ``wav_lens``. Returns ``(wavs (B, S) float32, lengths (B,) int64)`` on the input's device.
    Raises :class:`AudioError` for wrong shapes, empty or non-finite audio and bad lengths.
    """
    if isinstance(wavs, np.ndarray):
        wavs = torch.from_numpy(wavs)
    if isinstance(wavs, (list, tuple)):
        if len(wavs) == 0:
            raise AudioError(f"{name}: empty list of waveforms")
        if wav_lens is not None:
            raise AudioError(f"{name}: pass wav_lens only with a padded (B, S) tensor, not with a list")
        items = []
        for i, w in enumerate(wavs):
            w = torch.as_tensor(w)
            if w.dim() != 1:
                raise AudioError(
                    f"{name}[{i}]: expected a 1-D waveform, got shape {tuple(w.shape)}"
                    + (" (down-mix channels first)" if w.dim() == 2 else "")
                )
            if w.numel() == 0:
                raise AudioError(f"{name}[{i}]: empty waveform (0 samples)")
            items.append(w)
        lengths = torch.tensor([w.numel() for w in items], dtype=torch.long, device=items[0].device)
        padded = torch.nn.utils.rnn.pad_sequence([w.float() for w in items], batch_first=True)  # (B, S)
        _check_finite(padded, lengths, name)
        return padded, lengths
    if not isinstance(wavs, torch.Tensor):
        raise AudioError(f"{name}: expected a tensor, array or list of waveforms, got {type(wavs).__name__}")
    if wavs.dim() == 1:
        wavs = wavs.unsqueeze(0)  # (1, S)
    if wavs.dim() != 2:
        raise AudioError(
            f"{name}: expected a (batch, samples) tensor or a list of 1-D waveforms, "
            f"got a {wavs.dim()}-D tensor of shape {tuple(wavs.shape)}"
        )
    if wavs.shape[0] == 0 or wavs.shape[1] == 0:
        raise AudioError(f"{name}: empty batch of shape {tuple(wavs.shape)}")
    if not wavs.is_floating_point():
        raise AudioError(f"{name}: expected float samples in [-1, 1], got dtype {wavs.dtype}")
    B, S = wavs.shape
    if wav_lens is None:
        lengths = torch.full((B,), S, dtype=torch.long, device=wavs.device)
    else:
        lengths = torch.as_tensor(wav_lens, device=wavs.device).long().reshape(-1)
        if lengths.numel() != B:
            raise AudioError(f"wav_lens: expected {B} lengths for a batch of {B}, got {lengths.numel()}")
        if (lengths < 1).any() or (lengths > S).any():
            raise AudioError(f"wav_lens: every length must lie in [1, {S}], got {lengths.tolist()}")
    wavs = wavs.float()
    _check_finite(wavs, lengths, name)
    return wavs, lengths


def _check_finite(wavs: torch.Tensor, lengths: torch.Tensor, name: str) -> None:
    """Raise AudioError naming the utterances whose valid samples hold NaN/inf."""
    valid = torch.arange(wavs.shape[1], device=wavs.device) < lengths[:, None]  # (B, S)
    bad = (~torch.isfinite(wavs) & valid).any(dim=1)  # (B,)
    if bad.any():
        idx = bad.nonzero().flatten().tolist()
        raise AudioError(f"{name}: utterance(s) {idx} hold NaN or infinite samples")


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, T) bool mask, True where a position is inside its utterance."""
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]


# Windowed-sinc resampling, two filters (benchmarks/resample.py measures both against torchaudio):
# - "sinc_kaiser" (default): Kaiser window (beta 14.77), 16 zero crossings, cut-off at 94.5% of the lower
#   Nyquist: the longer, steeper filter, for far lower in-band error and alias leakage than torchaudio's at a
#   comparable speed.
# - "sinc_hann": Hann window, 6 zero crossings, cut-off at 99%: torchaudio.functional.resample's default
#   filter (equal within float32 rounding).
# Error, leakage and speed of both per input rate: benchmarks/results/resample.md.
RESAMPLE_METHODS = {"sinc_kaiser": (16, 0.945), "sinc_hann": (6, 0.99)}  # method -> default (zero crossings, rolloff)


def resample(
    wav: torch.Tensor,
    orig_sr: int,
    new_sr: int,
    *,
    method: str = "sinc_kaiser",
    zero_crossings: int | None = None,
    rolloff: float | None = None,
    beta: float = 14.769656459379492,
) -> torch.Tensor:
    """Resample ``wav`` (..., S) from ``orig_sr`` to ``new_sr`` Hz with a polyphase windowed-sinc filter.

    The rates are reduced by their gcd; output phase ``p`` is one FIR filter applied with stride
    ``orig`` (one ``conv1d``), so the cost is ``S * new/orig * (2 * width + orig)`` multiply-adds.
    ``method`` picks the window: ``"sinc_kaiser"`` (default; ``beta``) or ``"sinc_hann"`` (torchaudio's
    default filter). ``zero_crossings`` (filter half-length in zero crossings) and ``rolloff`` (cut-off as
    a fraction of the lower Nyquist) default per method. The output has ``ceil(S * new / orig)`` samples.
    """
    if method not in RESAMPLE_METHODS:
        raise AudioError(f"resample: method must be one of {sorted(RESAMPLE_METHODS)}, got {method!r}")
    zero_crossings = RESAMPLE_METHODS[method][0] if zero_crossings is None else zero_crossings
    rolloff = RESAMPLE_METHODS[method][1] if rolloff is None else rolloff
    if orig_sr <= 0 or new_sr <= 0 or int(orig_sr) != orig_sr or int(new_sr) != new_sr:
        raise AudioError(f"resample: sample rates must be positive integers, got {orig_sr} -> {new_sr}")
    if zero_crossings < 1 or not 0.0 < rolloff <= 1.0:
        raise AudioError(f"resample: need zero_crossings >= 1 and 0 < rolloff <= 1, got {zero_crossings}, {rolloff}")
    if orig_sr == new_sr:
        return wav
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    kernel, width = _sinc_kernel(orig, new, method, zero_crossings, rolloff, beta, wav.device, wav.dtype)
    shape = wav.shape
    x = wav.reshape(-1, 1, shape[-1])  # (N, 1, S)
    x = torch.nn.functional.pad(x, (width, width + orig))  # (N, 1, S + 2 width + orig)
    y = torch.nn.functional.conv1d(x, kernel, stride=orig)  # (N, new, S // orig + 1)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)  # (N, new * (S // orig + 1)): phases interleaved
    out_len = -(-new * shape[-1] // orig)  # ceil
    return y[:, :out_len].reshape(*shape[:-1], out_len)


@functools.lru_cache(maxsize=32)
def _sinc_kernel_cpu(orig: int, new: int, method: str, zero_crossings: int, rolloff: float,
                     beta: float) -> tuple[torch.Tensor, int]:
    """(new, 1, K) float64 filters, one per output phase, and the one-sided width in input samples."""
    cutoff = min(orig, new) * rolloff  # in units of the reduced rates: the lower Nyquist, a bit below
    width = math.ceil(zero_crossings * orig / cutoff)
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig  # (K,) input times, in output periods
    phase = -torch.arange(new, dtype=torch.float64)[:, None] / new  # (new, 1) output phase offsets
    t = ((phase + taps[None, :]) * cutoff).clamp(-zero_crossings, zero_crossings)  # (new, K), in zero crossings
    if method == "sinc_hann":
        window = torch.cos(t * math.pi / zero_crossings / 2) ** 2  # (new, K)
    else:
        arg = (1 - (t / zero_crossings) ** 2).clamp_min(0).sqrt()
        window = torch.special.i0(beta * arg) / torch.special.i0(torch.tensor(beta, dtype=torch.float64))
    x = t * math.pi
    sinc = torch.where(x == 0, torch.ones_like(x), torch.sin(x) / torch.where(x == 0, torch.ones_like(x), x))
    kernel = sinc * window * (cutoff / orig)  # (new, K); unit DC gain per phase
    return kernel[:, None, :], width  # (new, 1, K)


def _sinc_kernel(orig, new, method, zero_crossings, rolloff, beta, device, dtype):
    kernel, width = _sinc_kernel_cpu(orig, new, method, zero_crossings, float(rolloff), float(beta))
    return kernel.to(device=device, dtype=dtype), width
