"""Resampling to 16 kHz: audiorep's windowed-sinc filters vs torchaudio's, for quality and speed.

Quality, measured on pure tones (interior samples only, so the edges' zero padding does not count), in
dB relative to the tone, lower is better:
- ``err_1k_db`` / ``err_4k_db`` / ``err_7k_db``: error against the exact tone at 16 kHz (1 kHz, 3.9 kHz,
  7 kHz; 7 kHz lies in the filters' transition band below the 8 kHz Nyquist);
- ``alias_9k_db`` / ``alias_far_db``: what remains of a 9 kHz tone and of one 500 Hz below the input's
  Nyquist; both lie above the new 8 kHz Nyquist and must be removed, not folded back.
Speed: median seconds to resample 10 s of audio (one utterance), interleaved with the baseline, and the
achieved GFLOP/s against the best fp32 GEMM rate measured in the same run on the filter's own shape.
"""

from __future__ import annotations

import math

import torch

from _timing import gemm_roofline, interleaved, median, roofline_columns, spread

DESCRIPTION = "resampling 8/22.05/44.1/48 kHz -> 16 kHz: quality and speed of audiorep's filters vs torchaudio's"

METHODS = {
    "audiorep sinc_hann (default, 6 zero crossings)": dict(method="sinc_hann"),
    "audiorep sinc_kaiser (16 zero crossings, rolloff 0.945)": dict(method="sinc_kaiser", zero_crossings=16,
                                                                    rolloff=0.945),
}


def _tone(freq: float, sr: int, seconds: float) -> torch.Tensor:
    t = torch.arange(int(sr * seconds), dtype=torch.float64) / sr
    return torch.sin(2 * math.pi * freq * t).float()


def _db(x: float) -> float:
    return 20 * math.log10(max(x, 1e-12))


def _level_db(fn, sr: int, freq: float, reference: bool) -> float | None:
    """dB of the error against the exact 16 kHz tone (``reference``) or of what remains of the tone."""
    if freq >= sr / 2:
        return None  # the input cannot hold this tone
    edge = 400  # output samples skipped at each end
    y = fn(_tone(freq, sr, 0.5))
    if reference:
        y = y - _tone(freq, 16000, 0.5)[: y.numel()]
    return _db(y[edge:-edge].pow(2).mean().sqrt().item() / math.sqrt(0.5))


def _quality(fn, sr: int) -> dict:
    return {
        "err_1k_db": _level_db(fn, sr, 1000.0, True),
        "err_4k_db": _level_db(fn, sr, 3900.0, True),
        "err_7k_db": _level_db(fn, sr, 7000.0, True),
        "alias_9k_db": _level_db(fn, sr, 9000.0, False),
        "alias_far_db": _level_db(fn, sr, sr / 2 - 500.0, False) if sr / 2 - 500.0 > 8000 else None,
    }


def add_arguments(parser) -> None:
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the timed utterance")


def run(args) -> dict:
    from audiorep.audio import _sinc_kernel_cpu, resample
    from audiorep.optional import available

    seconds = 2.0 if args.quick else args.seconds
    repeats = 3 if args.quick else (args.repeats or 7)
    have_ta = available("torchaudio.functional")
    rows = []
    for sr in (8000, 22050, 44100, 48000):
        fns = {name: (lambda x, kw=kw: resample(x, sr, 16000, **kw)) for name, kw in METHODS.items()}
        if have_ta:
            import torchaudio.functional as AF

            fns["torchaudio (baseline)"] = lambda x: AF.resample(x, sr, 16000)
        wav = torch.randn(int(sr * seconds)) * 0.1
        times = interleaved({n: (lambda f=f: f(wav)) for n, f in fns.items()}, repeats, warmup=1)
        g = math.gcd(sr, 16000)
        orig, new = sr // g, 16000 // g
        base = median(times["torchaudio (baseline)"]) if have_ta else None
        for name, fn in fns.items():
            kw = METHODS.get(name, dict(method="sinc_hann"))
            kernel, _ = _sinc_kernel_cpu(orig, new, kw.get("method", "sinc_hann"), kw.get("zero_crossings", 6),
                                         float(kw.get("rolloff", 0.99)), 14.769656459379492)
            taps = kernel.shape[-1]
            steps = wav.numel() // orig + 1
            flops = 2 * steps * new * taps
            peak = gemm_roofline([(new, taps, steps)], repeats=5)["gflops"]
            s = median(times[name])
            rows.append({
                "from_hz": sr, "method": name, "median_s": s, "spread": spread(times[name]),
                "x_realtime": seconds / s, "speedup_vs_torchaudio": (base / s) if base else None,
                **_quality(fn, sr), "taps": taps,
                **roofline_columns(flops, s, peak), "gemm_roofline_gflops": peak,
            })
    notes = [
        f"{seconds:g} s of white noise per call, one utterance, float32; medians of {repeats} interleaved repeats.",
        "err_*_db / alias_*_db: see the module docstring; dB re the tone, lower is better; empty where the input rate cannot hold the tone.",
        "gemm_roofline_gflops: best fp32 rate of the filter's own (phases x taps) @ (taps x steps) product and its "
        "transposes in this run; with few phases (8 and 48 kHz: 1-3 rows) that product is bandwidth-bound, so "
        "the percentage says little there.",
    ]
    if not have_ta:
        notes.append("torchaudio does not load here: no baseline rows, speedup column empty.")
    return {"rows": rows, "notes": notes}
