"""Attention alone on ragged speech batches: Triton kernel vs SDPA vs the naive reference.

    python benchmarks/attention.py                      # GPU: bf16, 12 heads, head dim 64, T = 500..6000
    python benchmarks/attention.py --write-tuned        # ... and record the winners in audiorep/kernels/tuned.json
    python benchmarks/attention.py --cpu-smoke          # no GPU: tiny shapes under TRITON_INTERPRET=1

Backends timed (all on the same q, k, v: strided slices of one fused QKV tensor, as the encoders pass them):

* ``triton``       -- audiorep's varlen kernel (skips padded tiles);
* ``sdpa``         -- ``F.scaled_dot_product_attention`` with the key-padding mask: what backend "sdpa" runs
                      in the encoders (a boolean mask rules out the flash kernel, so PyTorch picks
                      memory-efficient attention);
* ``sdpa_flash_padded`` -- SDPA forced to the flash kernel with **no mask**, computing over the padding:
                      not a correct result for ragged batches, but the speed FlashAttention-2 gives on the
                      padded tensor -- the bar a fused kernel must reach;
* ``flash_varlen`` -- ``torch.nn.attention.varlen.varlen_attn`` on packed valid tokens (packing not timed);
                      the strongest baseline when it exists;
* ``reference``    -- fp32 PyTorch with a materialised (T, T) score matrix.

FLOP convention: counted on **valid tokens only**: forward = 4 * H * D * sum_b L_b^2 (QK^T and PV, 2 FLOPs
per multiply-add); backward = 2.5 x forward (five matmuls to two); forward+backward = 3.5 x forward. So a
backend that computes the padding gets no credit for it. Peak memory is the allocation peak during one
call above what was allocated before it (inputs excluded).

Only backends the dispatch can run (triton, sdpa, reference) and that pass the accuracy check enter
``tuned.json``; per (device, dtype, head dim, length class, pass) the one with the smallest summed time
over the class's points wins.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

DESCRIPTION = "Attention alone on ragged speech batches: Triton kernel vs SDPA vs the naive reference."

BACKENDS = ("triton", "sdpa", "sdpa_flash_padded", "flash_varlen", "reference")
DISPATCHABLE = ("triton", "sdpa", "reference")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[500, 1000, 1500, 3000, 6000],
                   help="max frames per batch; each batch holds ragged lengths up to this")
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16")
    p.add_argument("--tokens", type=int, default=48_000,
                   help="padded tokens per batch: batch size = max(1, tokens // T) (about 8 min of speech)")
    p.add_argument("--ragged", type=float, default=0.5,
                   help="lengths are drawn uniformly from [(1-ragged) T, T]; the first is T")
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--write-tuned", action="store_true",
                   help="merge the winners into audiorep/kernels/tuned.json (what backend='auto' reads)")
    p.add_argument("--tuned-path", type=Path, default=None, help="table to write (default: the package's tuned.json)")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="no GPU: run every code path on tiny shapes under TRITON_INTERPRET=1 (timings meaningless)")
    args = p.parse_args(argv)
    if args.cpu_smoke:
        args.lengths, args.heads, args.head_dim, args.tokens = [24, 40], 2, 16, 96
        args.reps, args.warmup = 1, 1
    return args


def ragged_lengths(T: int, B: int, ragged: float, gen):
    import torch

    lo = max(1, int(round((1 - ragged) * T)))
    lens = torch.randint(lo, T + 1, (B,), generator=gen)
    lens[0] = T  # the batch is padded to exactly T
    return lens


def make_case(T, args, device, dtype, gen):
    import torch

    B = max(1, args.tokens // T)
    lens = ragged_lengths(T, B, args.ragged, gen).to(device)
    qkv = torch.randn(B, T, 3, args.heads, args.head_dim, generator=gen).to(device, dtype)  # (B, T, 3, H, D)
    return B, lens, qkv


def backend_fn(name, q, k, v, lens, attn_mask):
    """A callable returning the attention output for this backend (packing for varlen done here, untimed)."""
    import torch
    import torch.nn.functional as F

    from audiorep.kernels import attention, attention_reference

    if name == "triton":
        return lambda: attention(q, k, v, lens, backend="triton")
    if name == "sdpa":
        return lambda: attention(q, k, v, lens, backend="sdpa", attn_mask=attn_mask)
    if name == "reference":
        return lambda: attention_reference(q, k, v, lens)
    if name == "sdpa_flash_padded":
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def run():
            with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                return F.scaled_dot_product_attention(q, k, v)
        return run
    if name == "flash_varlen":
        from torch.nn.attention.varlen import varlen_attn

        valid = torch.arange(q.shape[2], device=q.device)[None, :] < lens[:, None]  # (B, T)
        pack = lambda x: x.transpose(1, 2)[valid].detach().requires_grad_(x.requires_grad)  # (N, H, D)  # noqa: E731
        qp, kp, vp = pack(q), pack(k), pack(v)
        cu = torch.zeros(len(lens) + 1, dtype=torch.int32, device=q.device)
        cu[1:] = torch.cumsum(lens, 0)
        max_len = int(lens.max())
        run = lambda: varlen_attn(qp, kp, vp, cu, cu, max_len, max_len)  # noqa: E731
        run.inputs = (qp, kp, vp)
        return run
    raise ValueError(name)


def accuracy(T, args, device, dtype, gen):
    """Max errors vs the fp32 reference on a 2-utterance batch (lengths T and about T/2), valid rows only.

    Returns {backend: {"out": e, "grad": e}} for triton and sdpa and whether triton meets the 2x rule."""
    import torch

    from audiorep.kernels import attention, attention_reference, key_padding_mask

    lens = torch.tensor([T, T // 2 + 1], device=device)
    base = torch.randn(2, T, 3, args.heads, args.head_dim, generator=gen).to(device, dtype)
    valid = (torch.arange(T, device=device)[None, :] < lens[:, None])[:, None, :, None]  # (B, 1, T, 1)
    grad = torch.randn(2, args.heads, T, args.head_dim, generator=gen).to(device) * valid
    res = {}
    for name in ("reference", "triton", "sdpa"):
        src = base.float() if name == "reference" else base
        qkv = src.detach().clone().requires_grad_()
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        if name == "reference":
            out = attention_reference(q, k, v, lens)
        else:
            out = attention(q, k, v, lens, backend=name, attn_mask=key_padding_mask(lens, T) if name == "sdpa" else None)
        (out.float() * grad).sum().backward()
        res[name] = ((out.float() * valid).detach(), qkv.grad.float())
    errs = {}
    for name in ("triton", "sdpa"):
        errs[name] = {"out": (res[name][0] - res["reference"][0]).abs().max().item(),
                      "grad": (res[name][1] - res["reference"][1]).abs().max().item()}
    floor = 1e-3 if dtype != torch.float32 else 1e-5
    ok = all(errs["triton"][w] <= 2 * errs["sdpa"][w] + floor for w in ("out", "grad"))
    return errs, ok


def measure(T, args, device, dtype, gen, bench):
    import torch

    from audiorep.kernels import key_padding_mask

    B, lens, qkv = make_case(T, args, device, dtype, gen)
    flops_fwd = 4.0 * args.heads * args.head_dim * float((lens.double() ** 2).sum())
    rows = []
    for name in args.backends:
        row = {"T": T, "B": B, "mean_len": float(lens.float().mean()), "backend": name}
        try:
            if name in ("sdpa_flash_padded", "flash_varlen") and device.type != "cuda":
                raise RuntimeError("needs CUDA")
            x = qkv.detach().clone().requires_grad_()
            q, k, v = (x[:, :, i].transpose(1, 2) for i in range(3))  # (B, H, T, D) strided views
            mask = key_padding_mask(lens, T)
            fn = backend_fn(name, q, k, v, lens, mask)
            inputs = getattr(fn, "inputs", (x,))
            with torch.no_grad():
                row["fwd_ms"] = bench.time_fn(fn, device, args.warmup, args.reps)
                row["fwd_peak_mib"] = bench.peak_memory_mb(fn, device)
            out = fn()
            g = torch.randn_like(out)
            del out

            def fwd_bwd():
                o = fn()
                torch.autograd.grad(o, inputs, g)

            row["fwd_bwd_ms"] = bench.time_fn(fwd_bwd, device, args.warmup, args.reps)
            row["fwd_bwd_peak_mib"] = bench.peak_memory_mb(fwd_bwd, device)
            row["fwd_tflops"] = flops_fwd / (row["fwd_ms"] * 1e-3) / 1e12
            row["fwd_bwd_tflops"] = 3.5 * flops_fwd / (row["fwd_bwd_ms"] * 1e-3) / 1e12
        except Exception as exc:  # OOM on the naive reference at long T, missing kernels, ...
            row["error"] = bench.failure_text(exc, device)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows, flops_fwd


def choose_winners(rows, correct_by_T, env, head_dim):
    """Per (length class, pass): the dispatchable, accurate backend with the least summed time."""
    from audiorep.kernels.dispatch import t_class

    entries = []
    classes = sorted({t_class(r["T"]) for r in rows})
    for cls in classes:
        for mode, key in (("fwd", "fwd_ms"), ("fwd_bwd", "fwd_bwd_ms")):
            Ts = sorted({r["T"] for r in rows if t_class(r["T"]) == cls})
            totals = {}
            for name in DISPATCHABLE:
                if name == "triton" and not all(correct_by_T.get(T, False) for T in Ts):
                    continue
                ms = [r.get(key) for r in rows if r["backend"] == name and r["T"] in Ts]
                if len(ms) == len(Ts) and all(m is not None for m in ms):
                    totals[name] = sum(ms)
            if not totals:
                continue
            best = min(totals, key=totals.get)
            entries.append({
                "device": env["device"], "capability": env["capability"], "dtype": env["dtype"],
                "head_dim": head_dim, "t_class": cls, "mode": mode, "best": best,
                "summed_ms": {n: round(t, 4) for n, t in totals.items()}, "points_T": Ts,
                "torch": env["torch"], "triton": env["triton"], "date_utc": env["date_utc"],
                "source": "benchmarks/attention.py",
            })
    return entries


def merge_tuned(path: Path, new_entries: list[dict], bench) -> None:
    key = lambda e: (e.get("device"), e.get("dtype"), e.get("head_dim"), e.get("t_class"), e.get("mode"))  # noqa: E731
    bench.merge_tuned(path, new_entries, key, note=(
        "Measured by benchmarks/attention.py --write-tuned; read by audiorep.kernels.dispatch for "
        "backend='auto' on CUDA (same GPU model first, then same sm_XY). Shape classes with no entry "
        "use SDPA. Do not edit by hand."))


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run as bench  # the benchmark harness

    device = bench.kernel_device(args.cpu_smoke, "attention.py")
    if device is None:
        return 0
    import torch

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    env = bench.kernel_environment(device, dtype)
    env.update(heads=args.heads, head_dim=args.head_dim, tokens_per_batch=args.tokens, ragged=args.ragged)
    bench.print_environment(env)
    gen = torch.Generator().manual_seed(args.seed)

    all_rows, correct_by_T, accuracy_by_T = [], {}, {}
    for T in args.lengths:
        try:
            errs, ok = accuracy(T, args, device, dtype, gen)
        except Exception as exc:
            errs, ok = {"error": f"{type(exc).__name__}: {exc}"[:300]}, False
        correct_by_T[T], accuracy_by_T[T] = ok, errs
        print(json.dumps({"T": T, "accuracy": errs, "triton_within_2x": ok}), flush=True)
        rows, _ = measure(T, args, device, dtype, gen, bench)
        all_rows += rows

    entries = choose_winners(all_rows, correct_by_T, env, args.head_dim)
    payload = {"environment": env, "flop_convention": "valid tokens only: fwd = 4*H*D*sum(L^2); fwd+bwd = 3.5*fwd",
               "accuracy": {str(k): v for k, v in accuracy_by_T.items()},
               "triton_within_2x": {str(k): v for k, v in correct_by_T.items()},
               "rows": all_rows, "winners": entries}
    md = [f"# Attention benchmark — {env['device']}\n",
          f"dtype {env['dtype']}, {args.heads} heads, head dim {args.head_dim}, ~{args.tokens} padded tokens per "
          f"batch, lengths uniform in [{1 - args.ragged:.2f} T, T]; torch {env['torch']}, triton {env['triton']}, "
          f"CUDA {env['cuda']}. TFLOP/s on valid tokens (fwd = 4·H·D·ΣL², fwd+bwd = 3.5× fwd). Peak = extra "
          f"allocation during one call.\n"]
    if args.cpu_smoke:
        md.append("**CPU smoke run under TRITON_INTERPRET=1: timings are meaningless.**\n")
    headers = ["T", "B", "mean L", "backend", "fwd ms", "fwd TFLOP/s", "fwd+bwd ms", "fwd+bwd TFLOP/s",
               "fwd peak MiB", "fwd+bwd peak MiB", "note"]
    md.append(bench.markdown_table(headers, [
        [r["T"], r["B"], r["mean_len"], r["backend"], r.get("fwd_ms"), r.get("fwd_tflops"), r.get("fwd_bwd_ms"),
         r.get("fwd_bwd_tflops"), r.get("fwd_peak_mib"), r.get("fwd_bwd_peak_mib"), r.get("error", "")]
        for r in all_rows]))
    md.append("\n## Accuracy vs fp32 reference (valid rows; triton must stay within 2x SDPA's error)\n\n")
    md.append(bench.markdown_table(["T", "triton out", "triton grad", "sdpa out", "sdpa grad", "within 2x"], [
        [T, e.get("triton", {}).get("out"), e.get("triton", {}).get("grad"), e.get("sdpa", {}).get("out"),
         e.get("sdpa", {}).get("grad"), correct_by_T[T]] for T, e in accuracy_by_T.items()]))
    md.append("\n## What backend='auto' picks from this run\n\n")
    md.append(bench.markdown_table(["length class", "pass", "best", "summed ms per backend"],
                                   [[e["t_class"], e["mode"], e["best"], e["summed_ms"]] for e in entries]))

    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="audiorep_bench_smoke_")) if args.cpu_smoke
                           else bench.RESULTS)
    stem = f"attention_{bench.slug(env['device'])}_{env['dtype']}_d{args.head_dim}"
    js, mdp = bench.write_results(out_dir, stem, payload, "".join(md))
    print(f"wrote {js} and {mdp}")
    if args.write_tuned:
        if args.cpu_smoke and args.tuned_path is None:
            print("--write-tuned ignored for --cpu-smoke unless --tuned-path is given (CPU timings are not a measurement)")
        else:
            from audiorep.kernels.dispatch import TUNED_PATH

            path = args.tuned_path or TUNED_PATH
            merge_tuned(path, entries, bench)
            print(f"merged {len(entries)} entries into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
