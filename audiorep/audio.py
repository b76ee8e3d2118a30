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
        _check_decoded(path, fmt, total, data.shape[0])
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


def _check_decoded(path: str, fmt: str, declared: int, decoded: int) -> None:
    """AudioError when a whole read decoded fewer frames than the file's own count (FLAC's STREAMINFO, an
    MP3's Xing/Info/VBRI header): libsndfile stops at the cut and says nothing.

    An MP3 without such a header has only an estimate from its size, so two MPEG frames of slack apply there.
    """
    slack = 0
    if fmt == "MP3":
        with open(path, "rb") as f:
            head = f.read(65_536)
        if not any(tag in head for tag in (b"Xing", b"Info", b"VBRI")):
            slack = 2 * 1152
    if decoded + slack < declared:
        raise AudioError(f"{path}: truncated: its {fmt} header declares {declared} frames but only {decoded} "
                         f"decode (an interrupted copy or download?)")


def _check_complete(path: str, fmt: str, frames_read: int) -> None:
    """AudioError for a file cut short: libsndfile reads what is there and says nothing.

    RIFF WAV / WAVEX / RF64, Sony Wave64, AIFF and Sun AU: the size (or frame count) the header declares
    against the frames present. Ogg: the last page must end the file and carry the end-of-stream flag.
    """
    parse = _DECLARED.get(fmt)
    if parse is not None:
        try:
            declared = parse(path)
        except (OSError, struct.error):
            declared = None  # a header libsndfile accepted but this reader cannot follow: nothing to compare
        if declared is not None and frames_read < declared:
            raise AudioError(f"{path}: truncated: its {fmt} header declares {declared} frames but the file holds "
                             f"{frames_read} (an interrupted copy or download?)")
    elif fmt == "OGG" and not _ogg_has_end(path):
        raise AudioError(f"{path}: truncated Ogg stream: it stops before its end-of-stream page after "
                         f"{frames_read} frames (an interrupted copy or download?)")


def _wav_declared_frames(path: str) -> int | None:
    """Frames the data chunk of a RIFF/WAVE (or RF64) header declares; None when unknown (streamed files write
    0 or ~4 GB). RF64 keeps the 64-bit data size in its ``ds64`` chunk and writes 0xFFFFFFFF in ``data``."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return None
        block_align, ds64_size = None, None
        for _ in range(64):  # a few chunks precede the data in any real file
            hdr = f.read(8)
            if len(hdr) < 8:
                return None
            cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == b"data":
                if size == 0xFFFFFFFF and ds64_size is not None:
                    size = ds64_size
                elif size >= 0x7FFFFFFF:
                    return None
                if not block_align or size == 0:
                    return None
                return size // block_align
            body = f.read(min(size, 64)) if cid in (b"fmt ", b"ds64") else b""
            if cid == b"fmt " and len(body) >= 14:
                block_align = struct.unpack("<H", body[12:14])[0]
            if cid == b"ds64" and len(body) >= 16:
                ds64_size = struct.unpack("<Q", body[8:16])[0]  # after the 64-bit RIFF size
            f.seek(size + (size & 1) - len(body), os.SEEK_CUR)  # chunks are padded to even sizes
    return None


def _w64_declared_frames(path: str) -> int | None:
    """Frames the data chunk of a Sony Wave64 file declares: chunks are a 16-byte GUID (whose first four bytes
    spell the RIFF name) and a 64-bit size that counts the 24-byte chunk header, padded to 8 bytes."""
    with open(path, "rb") as f:
        head = f.read(40)
        if len(head) < 40 or head[:4] != b"riff" or head[24:28] != b"wave":
            return None
        block_align = None
        for _ in range(64):
            hdr = f.read(24)
            if len(hdr) < 24:
                return None
            cid, size = hdr[:4], struct.unpack("<Q", hdr[16:])[0]
            if size < 24:
                return None
            if cid == b"data":
                return (size - 24) // block_align if block_align else None
            body = f.read(min(size - 24, 64)) if cid == b"fmt " else b""
            if cid == b"fmt " and len(body) >= 14:
                block_align = struct.unpack("<H", body[12:14])[0]
            f.seek(size - 24 - len(body) + (-size % 8), os.SEEK_CUR)
    return None


def _aiff_declared_frames(path: str) -> int | None:
    """``numSampleFrames`` of an AIFF/AIFC file's COMM chunk (big-endian)."""
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
            return None
        for _ in range(64):
            hdr = f.read(8)
            if len(hdr) < 8:
                return None
            cid, size = hdr[:4], struct.unpack(">I", hdr[4:])[0]
            if cid == b"COMM":
                body = f.read(6)
                return struct.unpack(">I", body[2:6])[0] if len(body) == 6 else None
            f.seek(size + (size & 1), os.SEEK_CUR)
    return None


# Sun/NeXT AU encodings -> bytes per sample (the ones libsndfile reads)
_AU_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}


def _au_declared_frames(path: str) -> int | None:
    """Frames a Sun AU header's data size declares; None for the "unknown size" marker of streamed files."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24:
        return None
    order = ">" if head[:4] == b".snd" else "<" if head[:4] == b"dns." else None
    if order is None:
        return None
    _, size, encoding, _, channels = struct.unpack(order + "5I", head[4:24])
    width = _AU_BYTES.get(encoding)
    if size == 0xFFFFFFFF or not width or not channels:
        return None
    return size // (width * channels)


_DECLARED = {"WAV": _wav_declared_frames, "WAVEX": _wav_declared_frames, "RF64": _wav_declared_frames,
             "W64": _w64_declared_frames, "AIFF": _aiff_declared_frames, "AU": _au_declared_frames}


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


MAX_CHANNELS_LIKE = 8  # a (B, S) batch with S <= this and B > S is read as a transposed (samples, channels) array


def batch_waveforms(
    wavs: WaveformBatch,
    wav_lens: torch.Tensor | Sequence[int] | None = None,
    *,
    name: str = "wavs",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn user input into a zero-padded float batch and its valid lengths.

    Accepts a list of 1-D waveforms, a 1-D waveform (one utterance) or a (B, S) tensor with optional
    ``wav_lens`` (whole sample counts). A 2-D input with at most ``MAX_CHANNELS_LIKE`` columns and more rows
    than columns is refused as a transposed (samples, channels) array. Returns ``(wavs (B, S) float32, lengths (B,) int64)`` on the input's device.
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
    if S <= MAX_CHANNELS_LIKE and B > S:
        # a few "samples" per row and many rows is a (samples, channels) array from an audio reader, which
        # would otherwise run as thousands of one-frame utterances
        raise AudioError(f"{name}: shape {tuple(wavs.shape)} looks like (samples, channels); expected (batch, "
                         f"samples): down-mix with .mean(dim=1) for one utterance, or pass .T for a batch")
    if wav_lens is None:
        lengths = torch.full((B,), S, dtype=torch.long, device=wavs.device)
    else:
        try:
            given = torch.as_tensor(np.asarray(wav_lens) if not isinstance(wav_lens, torch.Tensor) else wav_lens)
        except (TypeError, ValueError) as exc:
            raise AudioError(f"wav_lens: expected {B} sample counts, got {wav_lens!r:.80}") from exc
        if given.dtype == torch.bool or given.is_complex():
            raise AudioError(f"wav_lens: expected integer sample counts, got dtype {given.dtype}")
        if given.is_floating_point() and not bool((given == given.round()).all()):
            raise AudioError(f"wav_lens: lengths must be whole sample counts, got {given.reshape(-1).tolist()[:8]}")
        lengths = given.to(wavs.device).long().reshape(-1)
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
    ``orig`` (one ``conv1d``), so the cost is ``S * new/orig * (2 * width + orig)`` multiply-adds. That dense
    (new, 2 width + orig) filter bank grows with the product of the reduced rates (22,254 -> 16,000 Hz reduce
    to 11,127 / 8,000), so above ``MAX_POLYPHASE_ELEMENTS`` the same filter is applied sparsely instead: each
    output gathers only the ``2 width + 2`` inputs around its exact position (:func:`_resample_sparse`),
    in memory bounded by the chunk size, with the same weights and no approximation of the ratio.
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
    width = math.ceil(zero_crossings * orig / (min(orig, new) * rolloff))
    if new * (2 * width + orig) > MAX_POLYPHASE_ELEMENTS:
        return _resample_sparse(wav, orig, new, method, zero_crossings, float(rolloff), float(beta))
    kernel, width = _sinc_kernel(orig, new, method, zero_crossings, rolloff, beta, wav.device, wav.dtype)
    shape = wav.shape
    x = wav.reshape(-1, 1, shape[-1])  # (N, 1, S)
    x = torch.nn.functional.pad(x, (width, width + orig))  # (N, 1, S + 2 width + orig)
    y = torch.nn.functional.conv1d(x, kernel, stride=orig)  # (N, new, S // orig + 1)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)  # (N, new * (S // orig + 1)): phases interleaved
    out_len = -(-new * shape[-1] // orig)  # ceil
    return y[:, :out_len].reshape(*shape[:-1], out_len)


MAX_POLYPHASE_ELEMENTS = 2**22  # dense filter bank entries (32 MiB in float64) before the sparse path takes over
_SPARSE_CHUNK_ELEMENTS = 2**20  # gathered (input, weight) pairs per step of the sparse path
_SPARSE_TABLE_ELEMENTS = 2**23  # per-phase weight table kept when it is at most this big; else weights per chunk


def _sinc_weights(frac: torch.Tensor, width: int, cutoff: float, orig: int, method: str, zero_crossings: int,
                  beta: float) -> torch.Tensor:
    """(n, 2 width + 2) float64 weights of inputs ``floor(pos) - width .. floor(pos) + width + 1`` for outputs
    at input positions ``floor(pos) + frac`` (``frac`` (n,) in [0, 1)): the filter of :func:`_sinc_kernel_cpu`."""
    d = torch.arange(-width, width + 2, dtype=torch.float64)  # (D,)
    t = ((d[None, :] - frac[:, None]) * (cutoff / orig)).clamp(-zero_crossings, zero_crossings)  # (n, D)
    return _windowed_sinc(t, method, zero_crossings, beta) * (cutoff / orig)  # (n, D)


def _windowed_sinc(t: torch.Tensor, method: str, zero_crossings: int, beta: float) -> torch.Tensor:
    """sinc(t) times the Hann or Kaiser window over ``t`` in zero crossings (already clamped to the window)."""
    if method == "sinc_hann":
        window = torch.cos(t * math.pi / zero_crossings / 2) ** 2
    else:
        arg = (1 - (t / zero_crossings) ** 2).clamp_min(0).sqrt()
        window = torch.special.i0(beta * arg) / torch.special.i0(torch.tensor(beta, dtype=torch.float64))
    x = t * math.pi
    sinc = torch.where(x == 0, torch.ones_like(x), torch.sin(x) / torch.where(x == 0, torch.ones_like(x), x))
    return sinc * window


@functools.lru_cache(maxsize=8)
def _sparse_table(orig: int, new: int, method: str, zero_crossings: int, rolloff: float,
                  beta: float) -> torch.Tensor:
    """(new, D) float64 weights, one row per output phase (the phases repeat every ``new`` outputs)."""
    cutoff = min(orig, new) * rolloff
    width = math.ceil(zero_crossings * orig / cutoff)
    p = torch.arange(new, dtype=torch.int64)
    return _sinc_weights((p * orig % new).double() / new, width, cutoff, orig, method, zero_crossings, beta)


def _resample_sparse(wav: torch.Tensor, orig: int, new: int, method: str, zero_crossings: int, rolloff: float,
                     beta: float) -> torch.Tensor:
    """:func:`resample` for rates whose dense polyphase bank would be large: per output, gather the inputs
    its filter reaches and weight them, in chunks, so memory stays bounded whatever the rates."""
    cutoff = min(orig, new) * rolloff
    width = math.ceil(zero_crossings * orig / cutoff)
    D = 2 * width + 2
    shape = wav.shape
    S = shape[-1]
    x = wav.reshape(-1, S)  # (N, S)
    N = x.shape[0]
    out_len = -(-new * S // orig)  # ceil, as the dense path
    xp = torch.nn.functional.pad(x, (width + 1, width + 2))  # (N, S + D + 1): every gathered index exists
    table = None
    if new * D <= _SPARSE_TABLE_ELEMENTS:
        table = _sparse_table(orig, new, method, zero_crossings, rolloff, beta).to(device=wav.device,
                                                                                   dtype=wav.dtype)  # (new, D)
    offsets = torch.arange(1, D + 1, device=wav.device)  # (D,): d = -width .. width + 1, shifted by the pad
    out = torch.empty(N, out_len, dtype=wav.dtype, device=wav.device)
    step = max(1, _SPARSE_CHUNK_ELEMENTS // (D * N))
    for k0 in range(0, out_len, step):
        k = torch.arange(k0, min(out_len, k0 + step), dtype=torch.int64, device=wav.device)  # (n,)
        pos = k * orig  # exact input position times new
        base = pos // new  # (n,) floor of the input position
        if table is not None:
            w = table[k % new]  # (n, D)
        else:
            frac = (pos % new).double().cpu() / new
            w = _sinc_weights(frac, width, cutoff, orig, method, zero_crossings, beta).to(wav.device, wav.dtype)
        idx = base[:, None] + offsets[None, :]  # (n, D) into xp (xp[j + width + 1] = x[j])
        out[:, k0:k0 + k.numel()] = (xp[:, idx] * w).sum(-1)  # (N, n, D) -> (N, n)
    return out.reshape(*shape[:-1], out_len)


@functools.lru_cache(maxsize=32)
def _sinc_kernel_cpu(orig: int, new: int, method: str, zero_crossings: int, rolloff: float,
                     beta: float) -> tuple[torch.Tensor, int]:
    """(new, 1, K) float64 filters, one per output phase, and the one-sided width in input samples."""
    cutoff = min(orig, new) * rolloff  # in units of the reduced rates: the lower Nyquist, a bit below
    width = math.ceil(zero_crossings * orig / cutoff)
    taps = torch.arange(-width, width + orig, dtype=torch.float64) / orig  # (K,) input times, in output periods
    phase = -torch.arange(new, dtype=torch.float64)[:, None] / new  # (new, 1) output phase offsets
    t = ((phase + taps[None, :]) * cutoff).clamp(-zero_crossings, zero_crossings)  # (new, K), in zero crossings
    kernel = _windowed_sinc(t, method, zero_crossings, beta) * (cutoff / orig)  # (new, K); unit DC gain per phase
    return kernel[:, None, :], width  # (new, 1, K)


def _sinc_kernel(orig, new, method, zero_crossings, rolloff, beta, device, dtype):
    kernel, width = _sinc_kernel_cpu(orig, new, method, zero_crossings, float(rolloff), float(beta))
    return kernel.to(device=device, dtype=dtype), width
