"""End to end on GPU, per attention backend: pretraining-step throughput and long-utterance extraction.

    python benchmarks/e2e_gpu.py                 # GPU: AALBERT-base and Mockingjay-base, backends auto/sdpa/triton/reference
    python benchmarks/e2e_gpu.py --cpu-smoke     # no GPU: tiny model, tiny batch, TRITON_INTERPRET=1

1. **Pretraining step** (frames/s): features (B, T, 80) of ragged lengths -> 15% of valid frames zeroed ->
   encoder -> spectrogram prediction head -> masked L1 on the altered frames -> backward -> grad clip 5 ->
   AdamW step, under bf16 autocast with fp32 weights. Data loading and the feature front end are excluded
   (pretraining reads cached features), so this is the model's compute alone. frames/s counts valid frames.
2. **Extraction of one long utterance in one piece** (default 2 minutes = 12,001 frames; s3prl would chunk
   it): waveform -> log-mel -> encoder, no grad, wall time and peak memory, bf16 autocast and fp32.

Every line of output names the device, dtype and the attention backend actually resolved for the shapes
run; results go to benchmarks/results/e2e_<device>.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

DESCRIPTION = "End to end on GPU, per attention backend: pretraining-step throughput and long-utterance extraction."

PRESETS = ("aalbert-base", "mockingjay-base", "mockingjay-large", "tera-base")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["aalbert-base", "mockingjay-base"], choices=PRESETS)
    p.add_argument("--backends", nargs="+", default=["auto", "sdpa", "triton", "reference"],
                   choices=["auto", "sdpa", "triton", "reference"])
    p.add_argument("--batch", type=int, default=16, help="utterances per pretraining step")
    p.add_argument("--max-frames", type=int, default=1500, help="longest utterance in a step (frames, 10 ms)")
    p.add_argument("--ragged", type=float, default=0.5, help="lengths uniform in [(1-ragged) T, T]")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--extract-seconds", type=float, default=120.0)
    p.add_argument("--extract-dtypes", nargs="+", default=["bf16", "fp32"], choices=["bf16", "fp32"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="no GPU: tiny model and shapes under TRITON_INTERPRET=1 (timings meaningless)")
    args = p.parse_args(argv)
    if args.cpu_smoke:
        args.batch, args.max_frames, args.steps, args.warmup, args.extract_seconds = 2, 32, 1, 0, 0.3
        args.extract_dtypes = ["fp32"]
    return args


def build(name: str, backend: str, smoke: bool):
    from audiorep.models.mockingjay import MockingjayModel, SpecPredictionHead
    from audiorep.registry import get_spec

    spec = get_spec(name)
    overrides = {"attention_backend": backend}
    if smoke:
        overrides.update(hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2)
    cfg = dataclasses.replace(spec.config(), **overrides)
    model = MockingjayModel(cfg, spec.features())
    return model, SpecPredictionHead(cfg)


def resolved_backend(backend: str, hidden: int, heads: int, T: int, device, dtype, training: bool) -> str:
    """What audiorep.kernels would run for one layer's q of this shape."""
    import torch

    from audiorep.kernels import resolve_backend

    q = torch.empty(1, heads, T, hidden // heads, device=device, dtype=dtype, requires_grad=training)
    with torch.set_grad_enabled(training):
        return resolve_backend(q, backend, torch.tensor([T], device=device))


def train_step_bench(name, backend, args, device, bench):
    import torch

    torch.manual_seed(args.seed)
    model, head = build(name, backend, args.cpu_smoke)
    model, head = model.to(device).train(), head.to(device).train()
    params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01)
    gen = torch.Generator().manual_seed(args.seed)
    B, T = args.batch, args.max_frames
    lo = max(1, int((1 - args.ragged) * T))
    lens = torch.randint(lo, T + 1, (B,), generator=gen)
    lens[0] = T
    lens = lens.to(device)
    feats = torch.randn(B, T, model.config.input_dim, generator=gen).to(device)  # (B, T, 80)
    valid = torch.arange(T, device=device)[None, :] < lens[:, None]  # (B, T)
    altered = valid & (torch.rand(B, T, generator=gen).to(device) < 0.15)  # (B, T) frames to reconstruct
    inputs = feats.masked_fill(altered[..., None], 0.0)
    amp = device.type == "cuda"

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            hidden = model.encode(inputs, lens).last_hidden_state  # (B, T, H)
            pred = head(hidden).float()  # (B, T, 80)
        m = altered[..., None].float()
        loss = ((pred - feats).abs() * m).sum() / (m.sum() * feats.shape[-1]).clamp_min(1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        return loss

    ms = bench.time_fn(step, device, args.warmup, args.steps)
    peak = bench.peak_memory_mb(step, device)
    hid, heads = model.config.hidden_size, model.config.num_heads
    return {
        "kind": "train_step", "model": name, "backend": backend,
        "resolved": resolved_backend(backend, hid, heads, T, device, torch.bfloat16 if amp else torch.float32, True),
        "dtype": "bf16-autocast" if amp else "fp32", "batch": B, "max_frames": T,
        "valid_frames": int(lens.sum()), "step_ms": ms, "frames_per_s": float(lens.sum()) / (ms * 1e-3),
        "peak_mib": peak,
    }


def extract_bench(name, backend, dtype_name, args, device, bench):
    import torch

    torch.manual_seed(args.seed)
    model, _ = build(name, backend, args.cpu_smoke)
    model = model.to(device).eval()
    S = int(args.extract_seconds * model.sample_rate)
    wav = (0.1 * torch.randn(1, S, generator=torch.Generator().manual_seed(args.seed))).to(device)  # (1, S)
    use_bf16 = dtype_name == "bf16"

    def run():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            return model(wav).last_hidden_state

    out = run()
    frames = out.shape[1]
    reps = 1 if args.cpu_smoke else 3
    ms = bench.time_fn(run, device, 0 if args.cpu_smoke else 1, reps)
    peak = bench.peak_memory_mb(run, device)
    hid, heads = model.config.hidden_size, model.config.num_heads
    q_dtype = torch.bfloat16 if use_bf16 else torch.float32
    return {
        "kind": "extract", "model": name, "backend": backend,
        "resolved": resolved_backend(backend, hid, heads, frames, device, q_dtype, False),
        "dtype": dtype_name, "seconds": args.extract_seconds, "frames": frames, "ms": ms, "peak_mib": peak,
        "finite": bool(torch.isfinite(out).all()),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run as bench  # the benchmark harness

    device = bench.kernel_device(args.cpu_smoke, "e2e_gpu.py")
    if device is None:
        return 0
    import torch

    env = bench.kernel_environment(device, torch.bfloat16)
    bench.print_environment(env)

    rows = []
    for name in args.models:
        for backend in args.backends:
            jobs = [("train", None)] + [("extract", d) for d in args.extract_dtypes]
            for kind, d in jobs:
                try:
                    if kind == "train":
                        row = train_step_bench(name, backend, args, device, bench)
                    else:
                        row = extract_bench(name, backend, d, args, device, bench)
                except Exception as exc:  # OOM for the naive reference on 2-minute inputs, etc.
                    row = {"kind": kind if kind == "extract" else "train_step", "model": name, "backend": backend,
                           "dtype": d, "error": bench.failure_text(exc, device)}
                rows.append(row)
                print(json.dumps(row), flush=True)

    md = [f"# End-to-end benchmark — {env['device']}\n",
          f"torch {env['torch']}, triton {env['triton']}, CUDA {env['cuda']}, {env['date_utc']}.\n"]
    if args.cpu_smoke:
        md.append("**CPU smoke run under TRITON_INTERPRET=1 with a tiny model: timings are meaningless.**\n")
    md.append(f"\n## Pretraining step (batch {args.batch}, lengths in [{1 - args.ragged:.2f}·{args.max_frames}, "
              f"{args.max_frames}] frames, bf16 autocast, AdamW, masked L1)\n\n")
    train = [r for r in rows if r["kind"] == "train_step"]
    md.append(bench.markdown_table(
        ["model", "backend", "resolved", "step ms", "valid frames/s", "peak MiB", "note"],
        [[r["model"], r["backend"], r.get("resolved"), r.get("step_ms"), r.get("frames_per_s"), r.get("peak_mib"),
          r.get("error", "")] for r in train]))
    md.append(f"\n## Extraction of one {args.extract_seconds:g} s utterance in one piece (no chunking)\n\n")
    ext = [r for r in rows if r["kind"] == "extract"]
    md.append(bench.markdown_table(
        ["model", "backend", "resolved", "dtype", "frames", "ms", "peak MiB", "note"],
        [[r["model"], r["backend"], r.get("resolved"), r.get("dtype"), r.get("frames"), r.get("ms"),
          r.get("peak_mib"), r.get("error", "")] for r in ext]))

    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="audiorep_e2e_smoke_")) if args.cpu_smoke
                           else bench.RESULTS)
    js, mdp = bench.write_results(out_dir, f"e2e_{bench.slug(env['device'])}", {"environment": env, "rows": rows},
                                  "".join(md))
    print(f"wrote {js} and {mdp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
