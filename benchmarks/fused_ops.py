"""Fused dropout + residual + LayerNorm vs PyTorch eager (and torch.compile of the same reference), on GPU.

    python benchmarks/fused_ops.py                 # GPU: rows = 16 x 1500 frames, H = 768, p = 0.1
    python benchmarks/fused_ops.py --write-tuned   # ... and record the winner per dtype in tuned.json
    python benchmarks/fused_ops.py --cpu-smoke     # no GPU: tiny shapes under TRITON_INTERPRET=1

Cases: "amp" = fp32 residual stream + bf16 branch + fp32 LayerNorm weights (what bf16 autocast training
runs); "bf16" = everything bf16. Bandwidth is reported as the bytes the fused kernel must move (read x, y;
write out, z; backward reads dout, z, writes dx, dy) over the measured time, for both backends, so the
numbers compare time, not bytes actually moved.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

DESCRIPTION = "Fused dropout + residual + LayerNorm vs PyTorch eager (and torch.compile of the same reference), on GPU."


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=16 * 1500)
    p.add_argument("--hidden", type=int, default=768)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--cases", nargs="+", default=["amp", "bf16"], choices=["amp", "bf16", "fp32"])
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile comparison row")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--write-tuned", action="store_true")
    p.add_argument("--tuned-path", type=Path, default=None)
    p.add_argument("--cpu-smoke", action="store_true")
    args = p.parse_args(argv)
    if args.cpu_smoke:
        args.rows, args.hidden, args.reps, args.warmup, args.no_compile = 8, 48, 1, 1, True
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run as bench  # the benchmark harness

    device = bench.kernel_device(args.cpu_smoke, "fused_ops.py")
    if device is None:
        return 0
    import torch

    from audiorep.kernels import add_layer_norm, add_layer_norm_reference

    env = bench.kernel_environment(device, torch.bfloat16)
    bench.print_environment(env)
    N, H = args.rows, args.hidden
    dt = {"amp": (torch.float32, torch.bfloat16, torch.float32), "bf16": (torch.bfloat16,) * 3,
          "fp32": (torch.float32,) * 3}
    rows, entries = [], []
    for case in args.cases:
        xd, yd, wd = dt[case]
        g = torch.Generator().manual_seed(0)
        x = torch.randn(N, H, generator=g).to(device, xd).requires_grad_()
        y = torch.randn(N, H, generator=g).to(device, yd).requires_grad_()
        w = torch.ones(H, device=device, dtype=wd, requires_grad=True)
        b = torch.zeros(H, device=device, dtype=wd, requires_grad=True)
        fns = {"torch": lambda *a: add_layer_norm(*a, backend="torch"),
               "triton": lambda *a: add_layer_norm(*a, backend="triton")}
        if not args.no_compile:
            fns["torch_compile"] = torch.compile(add_layer_norm_reference)
        out_bytes = torch.empty(0, dtype=torch.promote_types(torch.promote_types(xd, yd), wd)).element_size()
        moved_fwd = N * H * (x.element_size() + y.element_size() + 2 * out_bytes)
        moved_bwd = N * H * (2 * out_bytes + x.element_size() + y.element_size())
        times = {}
        for name, fn in fns.items():
            row = {"case": case, "backend": name, "rows": N, "hidden": H, "dropout": args.dropout}
            try:
                dout = torch.randn(N, H, device=device)
                with torch.no_grad():
                    row["fwd_ms"] = bench.time_fn(lambda: fn(x, y, w, b, 1e-12, args.dropout), device,
                                                  args.warmup, args.reps)

                def fwd_bwd():
                    o = fn(x, y, w, b, 1e-12, args.dropout)
                    torch.autograd.grad(o, (x, y, w, b), dout.to(o.dtype))

                row["fwd_bwd_ms"] = bench.time_fn(fwd_bwd, device, args.warmup, args.reps)
                row["fwd_bwd_peak_mib"] = bench.peak_memory_mb(fwd_bwd, device)
                row["fwd_gbps"] = moved_fwd / (row["fwd_ms"] * 1e-3) / 1e9
                row["fwd_bwd_gbps"] = (moved_fwd + moved_bwd) / (row["fwd_bwd_ms"] * 1e-3) / 1e9
                times[name] = row["fwd_bwd_ms"]
            except Exception as exc:
                row["error"] = bench.failure_text(exc, device)
            rows.append(row)
            print(json.dumps(row), flush=True)
        dispatchable = {k: v for k, v in times.items() if k in ("torch", "triton")}
        if dispatchable:
            # the dtype dispatch sees is x's (the residual stream)
            entries.append({"op": "add_layer_norm", "device": env["device"], "capability": env["capability"],
                            "dtype": str(xd).replace("torch.", ""), "branch_dtype": str(yd).replace("torch.", ""),
                            "hidden": H, "best": min(dispatchable, key=dispatchable.get),
                            "fwd_bwd_ms": dispatchable, "torch": env["torch"], "triton": env["triton"],
                            "date_utc": env["date_utc"], "source": "benchmarks/fused_ops.py"})

    md = [f"# Fused dropout + residual + LayerNorm — {env['device']}\n\n",
          f"{N} rows x {H}, dropout {args.dropout}; torch {env['torch']}, triton {env['triton']}.\n"]
    if args.cpu_smoke:
        md.append("**CPU smoke run under TRITON_INTERPRET=1: timings are meaningless.**\n")
    md.append("\n" + bench.markdown_table(
        ["case", "backend", "fwd ms", "fwd+bwd ms", "fwd GB/s", "fwd+bwd GB/s", "peak MiB", "note"],
        [[r["case"], r["backend"], r.get("fwd_ms"), r.get("fwd_bwd_ms"), r.get("fwd_gbps"), r.get("fwd_bwd_gbps"),
          r.get("fwd_bwd_peak_mib"), r.get("error", "")] for r in rows]))
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="audiorep_fused_smoke_")) if args.cpu_smoke
                           else bench.RESULTS)
    js, mdp = bench.write_results(out_dir, f"fused_ops_{bench.slug(env['device'])}",
                                  {"environment": env, "rows": rows, "winners": entries}, "".join(md))
    print(f"wrote {js} and {mdp}")
    if args.write_tuned and not (args.cpu_smoke and args.tuned_path is None):
        from audiorep.kernels.dispatch import TUNED_PATH

        path = args.tuned_path or TUNED_PATH
        key = lambda e: (e.get("op"), e.get("device"), e.get("dtype"), e.get("branch_dtype"), e.get("hidden"))  # noqa: E731
        bench.merge_tuned(path, entries, key)
        print(f"merged {len(entries)} entries into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
