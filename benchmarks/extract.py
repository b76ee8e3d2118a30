"""Upstream feature extraction, audiorep vs s3prl: throughput (seconds of audio per wall second) on the
same random-weight s3prl checkpoint and the same waveforms, with the max abs difference of the outputs.

Both sides take a list of 1-D waveforms and return every layer's hidden states, in eval mode under
``torch.inference_mode()``, with the same thread count; calls alternate (interleaved repeats, medians).
The checkpoint is written by ``audiorep.weights.s3prl.export_s3prl_checkpoint`` and read back by both
s3prl's ``UpstreamExpert`` and ``audiorep.load`` (so the import path is exercised too).

What "difference" means: s3prl's batched output depends on padding and it cuts inputs longer than
1500 frames into independent chunks; audiorep does neither. So ``diff_batched`` (audiorep batch vs
s3prl batch) is only a like-for-like comparison for equal-length batches of <= 1500 frames, and
``diff_alone`` compares audiorep's batch with s3prl run on each utterance alone (its correct output),
for batches whose utterances are all <= 1500 frames.
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from pathlib import Path

import torch

from _timing import gemm_roofline, interleaved, median, roofline_columns, spread

DESCRIPTION = "upstream feature extraction throughput (audio s / wall s), audiorep vs s3prl (CPU; --device cuda)"

S3PRL_CHUNK = 1500  # frames: s3prl's task.sequence_length, above which it chunks


def add_arguments(parser) -> None:
    g = parser.add_argument_group("extract")
    g.add_argument("--model", default="mockingjay-base", help="audiorep preset whose architecture is benchmarked")
    g.add_argument("--seed", type=int, default=0, help="seed for weights and waveforms")
    g.add_argument("--profile", action="store_true",
                   help="also profile one call of each side (torch.profiler) and add a time breakdown")
    g.add_argument("--no-s3prl", action="store_true", help="time audiorep alone (s3prl not installed)")
    g.add_argument("--bf16", action="store_true",
                   help="also time audiorep with its encoder in bf16 (reduced_precision, as extract --precision bf16) "
                        "and report its error against fp32")
    g.add_argument("--batches", default=None,
                   help="comma-separated subset of " + ",".join(BATCHES)
                   + " (default: 8x10,4x30,mixed; --quick: quick,quick-mixed)")
    g.add_argument("--runtimes", action="store_true",
                   help="also time the deployment runtimes on the same weights: eager int8 (extract --precision "
                        "int8), onnxruntime fp32 and int8 (export --to onnx [--quantize int8]) and the torch.export "
                        "program (export --to torch); each with its error against eager fp32")
    g.add_argument("--eager", action="store_true",
                   help="also time audiorep with its CPU fast path off (AUDIOREP_CPU_FUSION=0), to show its effect")


BATCHES = {  # key -> (label, per-utterance seconds)
    "8x10": ("8 x 10 s", [10.0] * 8),
    "4x30": ("4 x 30 s", [30.0] * 4),
    "mixed": ("8 x 4-10 s (mixed)", [10.0, 9.1, 8.3, 7.4, 6.6, 5.7, 4.9, 4.0]),
    "quick": ("4 x 2 s", [2.0] * 4),
    "quick-mixed": ("3 x 1-3 s (mixed)", [3.0, 1.7, 1.0]),
}


def batches(args) -> list[tuple[str, list[float]]]:
    """(label, per-utterance seconds) of each batch to time."""
    if args.batches:
        keys = args.batches.split(",")
        unknown = [k for k in keys if k not in BATCHES]
        if unknown:
            raise SystemExit(f"--batches: unknown {unknown}; choose from {sorted(BATCHES)}")
    else:
        keys = ["quick", "quick-mixed"] if args.quick else ["8x10", "4x30", "mixed"]
    return [BATCHES[k] for k in keys]


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Perturb every parameter (biases and LayerNorm too, which BERT init leaves at 0/1) so a wrong
    mapping or a skipped bias shows up in the difference."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)


def build(args, workdir: Path):
    """Export a random-weight checkpoint and load it into both libraries."""
    import audiorep
    from audiorep.weights.s3prl import export_s3prl_checkpoint
    from audiorep.models.mockingjay import SpecPredictionHead

    torch.manual_seed(args.seed)
    src = audiorep.load(args.model, pretrained=False)
    randomise(src, args.seed)
    head = SpecPredictionHead(src.config)
    ckpt = workdir / "states-0.ckpt"
    export_s3prl_checkpoint(src, ckpt, head)
    ours = audiorep.load(str(ckpt)).eval()
    theirs = None
    if not args.no_s3prl:
        from s3prl.upstream.mockingjay.expert import UpstreamExpert

        with contextlib.redirect_stdout(io.StringIO()):  # s3prl prints its whole config
            theirs = UpstreamExpert(str(ckpt)).eval()
    return ours, theirs, ckpt


def max_diff(ours: tuple[torch.Tensor, ...], theirs, lengths: list[int], rows: list[int] | None = None) -> float:
    """Max abs difference over valid frames of every layer; ``theirs`` holds (b, T, H) tensors per layer."""
    worst = 0.0
    for i, n in enumerate(lengths):
        j = i if rows is None else rows[i]
        for a, b in zip(ours, theirs):
            worst = max(worst, (a[i, :n] - b[j, :n]).abs().max().item())
    return worst


def profile_breakdown(fn, label: str) -> list[dict]:
    """Self CPU time of one call grouped by what the op is doing (the categories the optimisation targets)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    groups: dict[str, float] = {}
    total = 0.0
    for ev in prof.key_averages():
        t = ev.self_cpu_time_total / 1e6
        total += t
        groups[category(ev.key)] = groups.get(category(ev.key), 0.0) + t
    return [{"side": label, "category": k, "self_cpu_s": v, "share": v / total}
            for k, v in sorted(groups.items(), key=lambda kv: -kv[1])]


_CATEGORIES = [
    ("linear (GEMM)", ("addmm", "aten::mm", "aten::linear", "mkldnn_linear", "linear_pointwise", "matmul")),
    ("attention", ("scaled_dot_product", "flash_attention", "bmm", "baddbmm", "softmax")),
    ("layer_norm", ("layer_norm",)),
    ("gelu", ("gelu",)),
    ("stft / fft", ("stft", "fft", "_fft")),
    ("copy / layout", ("copy_", "contiguous", "clone", "cat", "stack", "to_copy", "index", "gather", "pad",
                       "expand", "permute", "transpose", "view", "reshape", "unbind")),
]


def category(op: str) -> str:
    low = op.lower()
    for name, keys in _CATEGORIES:
        if any(k in low for k in keys):
            return name
    return "elementwise / other"


def run(args) -> dict:
    threads = torch.get_num_threads()
    repeats = args.repeats or (3 if args.quick else 5)
    g = torch.Generator().manual_seed(args.seed)
    rows, notes, tables = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        device = torch.device(args.device)
        ours, theirs, ckpt = build(args, Path(tmp))
        ours = ours.to(device)
        theirs = theirs.to(device) if theirs is not None else None
        plain = _eager_model(ckpt).to(device) if args.eager else None
        sr = ours.sample_rate
        from audiorep.kernels.flops import forward_flops, gemm_shapes

        # the roofline: the best fp32 GEMM rate on this model's own shapes, measured now, on this machine
        roof = gemm_roofline(gemm_shapes(ours.config, 2048), str(device), repeats=2 if args.quick else 3,
                             max_rows=512 if args.quick else 2048)
        print(f"  GEMM roofline: {roof['gflops']:.1f} GFLOP/s ({roof['library']}, {roof['shape']}, fp32)", flush=True)
        ours16 = roof16 = None
        if args.bf16:  # a second copy of the same weights, encoder cast to bf16 (front end stays fp32)
            ours16 = copy.deepcopy(ours).reduced_precision(torch.bfloat16)
            roof16 = gemm_roofline(gemm_shapes(ours.config, 2048), str(device), "bfloat16",
                                   repeats=2 if args.quick else 3, max_rows=512 if args.quick else 2048)
            print(f"  GEMM roofline: {roof16['gflops']:.1f} GFLOP/s ({roof16['library']}, {roof16['shape']}, bf16)",
                  flush=True)
        runtimes = build_runtimes(ours, Path(tmp)) if args.runtimes else {}
        for label, secs in batches(args):
            wavs = [0.1 * torch.randn(int(s * sr), generator=g).to(device) for s in secs]  # list of (S_i,)
            audio_s = sum(w.numel() for w in wavs) / sr
            with torch.inference_mode():
                ref = ours(wavs)
                frames = ref.lengths.tolist()
                fns = {"audiorep": lambda: ours(wavs)}
                if theirs is not None:
                    fns["s3prl"] = lambda: theirs(wavs)
                if args.eager:
                    fns["eager"] = lambda: plain(wavs)
                if ours16 is not None:
                    fns["bf16"] = lambda: ours16(wavs)
                for name, fn in runtimes.items():
                    fns[name] = (lambda fn=fn: fn(wavs))
                times = interleaved(fns, repeats=repeats, warmup=1, device=str(device))
                row = {"batch": label, "audio_s": audio_s, "max_frames": max(frames),
                       "audiorep_s": median(times["audiorep"]),
                       "audiorep_audio_s_per_s": audio_s / median(times["audiorep"]),
                       "audiorep_spread": spread(times["audiorep"])}
                flops = forward_flops(ours.config, frames).total  # valid frames, each utterance whole
                row["gflop"] = flops / 1e9
                row.update({f"audiorep_{k}": v for k, v in
                            roofline_columns(flops, row["audiorep_s"], roof["gflops"]).items()})
                if args.eager:
                    row.update({"eager_s": median(times["eager"]), "fast_path_gain": median(times["eager"])
                                / row["audiorep_s"]})
                if ours16 is not None:
                    t16, low = median(times["bf16"]), ours16(wavs)
                    errs = torch.cat([(a.float() - b.float())[i, :n].abs().reshape(-1)
                                      for a, b in zip(ref.hidden_states, low.hidden_states)
                                      for i, n in enumerate(frames)])
                    row.update({"bf16_s": t16, "bf16_gain": row["audiorep_s"] / t16,
                                "bf16_max_err": float(errs.max()), "bf16_mean_err": float(errs.mean()),
                                **{f"bf16_{k}": v for k, v in roofline_columns(flops, t16, roof16["gflops"]).items()}})
                for name, fn in runtimes.items():
                    t_rt, states = median(times[name]), fn(wavs)
                    errs = torch.cat([(torch.as_tensor(b)[i, :n].float() - a[i, :n].float()).abs().reshape(-1)
                                      for a, b in zip(ref.hidden_states, states) for i, n in enumerate(frames)])
                    row.update({f"{name}_s": t_rt, f"{name}_gain": row["audiorep_s"] / t_rt,
                                f"{name}_max_err": float(errs.max()), f"{name}_mean_err": float(errs.mean()),
                                **{f"{name}_{k}": v for k, v in roofline_columns(flops, t_rt, roof["gflops"]).items()}})
                if theirs is not None:
                    t_s3 = median(times["s3prl"])
                    row.update({"s3prl_s": t_s3, "s3prl_audio_s_per_s": audio_s / t_s3,
                                "s3prl_spread": spread(times["s3prl"]), "speedup": t_s3 / row["audiorep_s"]})
                    row.update({f"s3prl_{k}": v for k, v in roofline_columns(flops, t_s3, roof["gflops"]).items()})
                    batched = theirs(wavs)["hidden_states"]
                    row["diff_batched"] = max_diff(ref.hidden_states, batched, frames)
                    if max(frames) <= S3PRL_CHUNK:
                        alone = [theirs([w])["hidden_states"] for w in wavs]
                        row["diff_alone"] = max(max_diff(tuple(h[i:i + 1] for h in ref.hidden_states), a, [n])
                                                for i, (a, n) in enumerate(zip(alone, frames)))
                    else:
                        row["diff_alone"] = None
                if args.profile and theirs is not None and not tables:
                    for side, fn in fns.items():
                        tables[f"profile: {side}, {label}, one call"] = profile_breakdown(fn, side)
            rows.append(row)
            print(f"  {label}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                             for k, v in row.items() if k != "batch"), flush=True)
    notes += [
        f"median of {repeats} interleaved repeats after 1 warm-up call each; {threads} threads; eval mode, "
        "torch.inference_mode(); random-weight checkpoint from export_s3prl_checkpoint, random waveforms",
        "speedup = s3prl median time / audiorep median time (same batch, same thread count)",
        "diff_* = max abs difference over valid frames of all hidden states; diff_batched compares the two "
        "batched outputs (like-for-like only for equal-length batches of <= 1500 frames), diff_alone compares "
        "audiorep's batch with s3prl run on each utterance alone (left empty past 1500 frames, where s3prl chunks)",
        "spread = (max - min) / median of the repeats: the machine's noise",
        "gflop = useful FLOPs of one call (audiorep.kernels.flops.forward_flops: GEMMs + attention over valid "
        "frames, each utterance attending over itself whole); *_gflops_s = gflop / median time; *_roofline_pct = "
        f"that as a share of the best fp32 GEMM rate measured in this run on the model's own shapes, over torch.mm "
        f"and oneDNN ({roof['gflops']:.1f} GFLOP/s, {roof['library']}, {roof['shape']}). Both sides are credited "
        "the same useful FLOPs, so padding and s3prl's chunking past 1500 frames (less attention work, a different "
        "result) show as rate, not work",
    ]
    if args.eager:
        notes.append("eager_s = audiorep with AUDIOREP_CPU_FUSION=0 (no fused oneDNN linears, no valid-frame "
                     "packing); fast_path_gain = eager_s / audiorep_s")
    if args.bf16:
        notes.append("bf16_* = the same weights with the encoder cast to bf16 (MockingjayModel.reduced_precision, "
                     "what `audiorep extract --precision bf16` runs; STFT and mel stay fp32); bf16_gain = audiorep_s / "
                     "bf16_s; bf16_max_err / bf16_mean_err = abs difference from the fp32 hidden states over valid "
                     f"frames, all layers; bf16_roofline_pct against the best bf16 GEMM rate measured now "
                     f"({roof16['gflops']:.1f} GFLOP/s, {roof16['shape']})")
    if args.runtimes:
        notes.append("runtimes, same weights, all hidden states out: int8 = eager with dynamic int8 linears in the "
                      "layers (weights.export.quantize_int8, torch's quantize_dynamic; what extract --precision int8 "
                      "runs); onnx / onnx_int8 = onnxruntime (CPU provider, same thread count) on the file of "
                      "`audiorep export --to onnx` (front end in the graph) and its --quantize int8 variant; export = "
                      "the torch.export program (`--to torch`), plain kernels. *_gain = audiorep_s / *_s (audiorep = "
                      "eager fp32 with its CPU fast path); *_err = abs difference from eager fp32 over valid frames, "
                      "all layers; *_roofline_pct against the fp32 GEMM roofline")
    if theirs is None:
        notes.append("s3prl not run (--no-s3prl): no ratio, no difference")
    return {"rows": rows, "notes": notes, "tables": tables,
            "meta": {"model": args.model, "attention_backend": _backend(ours),
                     "gemm_roofline_gflops": round(roof["gflops"], 1), "gemm_roofline_shape": roof["shape"]}}


def build_runtimes(model, workdir: Path) -> dict:
    """name -> fn(list of waveforms) -> hidden states (each (B, T', H), T' >= the eager frames), for --runtimes."""
    import audiorep.weights.export as ex
    from audiorep.audio import batch_waveforms

    out = {"int8": lambda wavs, q=ex.quantize_int8(copy.deepcopy(model)): q(wavs).hidden_states}
    prog = torch.export.load(str(ex.export_program(model, workdir / "m.pt2"))).module()
    out["export"] = lambda wavs: prog(*batch_waveforms(wavs, None))[:-1]
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return out
    for name, quantize in (("onnx", None), ("onnx_int8", "int8")):
        # no arena: two sessions each keeping a 4 x 30 s batch's attention scores ran this machine out of memory
        sess = ex.onnx_session(ex.export_onnx(model, workdir / f"{name}.onnx", quantize=quantize),
                               threads=torch.get_num_threads(), memory_arena=False)

        def run_onnx(wavs, sess=sess):
            w, n = batch_waveforms(wavs, None)
            return sess.run(None, {"wavs": w.numpy(), "wav_lens": n.numpy()})[:-1]

        out[name] = run_onnx
    return out


def _eager_model(ckpt: Path):
    """The same checkpoint loaded with the CPU inference fast path switched off (plain eager ops, padded batch)."""
    import audiorep
    from audiorep.kernels import use_kernels

    with use_kernels(cpu_fusion=False):  # recorded by the modules when they are built
        return audiorep.load(str(ckpt)).eval()


def _backend(model) -> str:
    from audiorep.kernels import resolve_backend

    p = next(model.parameters())
    return resolve_backend(torch.empty(1, 1, 1, 1, device=p.device), model.config.attention_backend)
