"""Pretraining-step throughput, audiorep vs s3prl's own Mockingjay, same config and batch, in one run.

    python benchmarks/pretrain_step.py                     # CPU, mockingjay-base, 4 utterances of 3-5 s
    python benchmarks/pretrain_step.py --model aalbert-base --batch 8 --max-frames 400
    python benchmarks/run.py pretrain_step                 # through the shared runner
    python benchmarks/pretrain_step.py --bf16                              # CPU: adds bf16-autocast rows for both
    python benchmarks/pretrain_step.py --device cuda --bf16 --compile   # on a GPU (adds s3prl fp16 autocast)

A step is forward + backward + grad clip 5 + AdamW over encoder and prediction head:

- audiorep: ``MaskedAcousticModel.reconstruction_error`` (encoder + ``SpecPredictionHead`` + mask-multiply
  L1), as the trainer runs it: on CPU packed, i.e. every encoder op on the valid frames only, attention per
  utterance, and the head and loss on the altered frames only (the only ones the loss reads); the
  "audiorep padded" row is the same step with packing switched off
  (``use_kernels(packed_training=False)``), every op on the padded (B, T) batch;
- s3prl 0.4.18: ``TransformerModel`` + ``TransformerSpecPredictionHead`` + ``nn.L1Loss`` on
  ``masked_select`` (what ``pretrain/mockingjay/pretrain_expert.py`` runs).

Two rows per side: the model step with the alteration precomputed, and the step including each library's
own alteration of the batch (audiorep's vectorised ``make_plan``/``apply_plan``; s3prl's
``generate_masked_acoustic_model_data``, a Python loop over utterances). Feature extraction and data
loading are excluded from both. Throughput counts valid (unpadded) frames. Timings interleave the two
sides round by round so a shared, busy CPU slows both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DESCRIPTION = "pretraining step (fwd+bwd+clip+AdamW) frames/s: audiorep vs s3prl Mockingjay, same config and batch"
PRESETS = ("mockingjay-base", "aalbert-base", "tera-base", "mockingjay-large")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="mockingjay-base", choices=PRESETS, help="architecture preset (both sides)")
    p.add_argument("--batch", type=int, default=4, help="utterances per step")
    p.add_argument("--max-frames", type=int, default=500, help="longest utterance (10 ms frames)")
    p.add_argument("--min-frames", type=int, default=300, help="shortest utterance (lengths spread evenly)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per contender (default 5, quick 2)")
    p.add_argument("--bf16", action="store_true",
                   help="GPU: audiorep under bf16 autocast (adds s3prl fp16 row); "
                        "CPU: adds a bf16-autocast row per side")
    p.add_argument("--compile", action="store_true", help="also time audiorep with torch.compile")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: elapsed time (the real figure on an idle machine); cpu: this process's CPU time, "
                        "stable on a machine shared with other jobs (use with --threads 1)")


def _s3prl_config(cfg) -> dict:
    return {
        "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
        "hidden_act": "gelu", "intermediate_size": cfg.intermediate_size, "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attn_dropout, "initializer_range": cfg.initializer_range,
        "layer_norm_eps": cfg.layer_norm_eps, "share_layer": cfg.share_layers, "pre_layer_norm": False,
    }


def _interleaved_cpu(fns: dict, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Like _timing.interleaved, but measuring process CPU seconds: other jobs on a shared machine steal
    wall time, not CPU time (with one torch thread there is no spin-waiting to inflate it)."""
    import time

    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            t0 = time.process_time()
            fns[n]()
            times[n].append(time.process_time() - t0)
    return times


def run(args: argparse.Namespace) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    from _timing import gemm_roofline, interleaved, median, paired_ratios, roofline_columns, spread

    from audiorep import registry
    from audiorep.features import FeatureExtractor
    from audiorep.kernels import resolve_backend, use_kernels
    from audiorep.models.mockingjay import MockingjayModel, SpecPredictionHead
    from audiorep.pretrain.model import MaskedAcousticModel
    from audiorep.train.optim import adamw_options as _adamw_options
    from audiorep.pretrain.masking import MaskingConfig, apply_plan, make_plan, utterance_keys

    try:
        from s3prl.pretrain.mockingjay.task import generate_masked_acoustic_model_data
        from s3prl.upstream.mockingjay.model import TransformerConfig, TransformerModel, TransformerSpecPredictionHead
    except ImportError as exc:
        raise SystemExit(f"s3prl is needed for this comparison: pip install --no-deps s3prl==0.4.18 ({exc})")

    device = torch.device(getattr(args, "device", "cpu") or "cpu")
    quick = bool(getattr(args, "quick", False))
    steps = args.steps or (2 if quick else 5)
    B, T_max = args.batch, (min(args.max_frames, 120) if quick else args.max_frames)
    T_min = min(args.min_frames, T_max)
    cfg = registry.get_spec(args.model).config()
    cfg.output_dim = None  # both sides predict the 80 log-mel input frames
    if quick:
        cfg.num_layers = 1

    torch.manual_seed(0)
    lengths = torch.linspace(T_max, T_min, B).round().long()  # (B,) frames, ragged
    samples = (lengths - 1) * 160
    wavs = torch.randn(B, int(samples.max())) * (torch.arange(int(samples.max()))[None, :] < samples[:, None])
    feats, flens = FeatureExtractor()(wavs, samples)  # (B, T, 80), (B,)
    feats, flens = feats.to(device), flens.to(device)
    T = feats.shape[1]
    valid_frames = int(flens.sum())
    mcfg = MaskingConfig()
    adamw_options = _adamw_options(device)

    # ---- audiorep ----
    # "audiorep": the training step as the trainer runs it (on CPU: packed, valid frames only);
    # "audiorep padded": the same weights with packing switched off (every op on the padded (B, T) batch);
    # "audiorep torch GEMMs" (CPU): packed, with linear layers and attention on torch's own ops (MKL), no oneDNN.
    def build(packed: bool, onednn: bool = True):
        with use_kernels(packed_training=packed, onednn_training=onednn):
            torch.manual_seed(0)
            enc = MockingjayModel(cfg).to(device).train()
            head = SpecPredictionHead(cfg).to(device).train()
        mam = MaskedAcousticModel(enc, mcfg, head=head)
        params = list(enc.parameters()) + list(head.parameters())
        return mam, params, torch.optim.AdamW(params, lr=2e-4, weight_decay=0.01, **adamw_options)

    keys = utterance_keys([f"u{i}" for i in range(B)], 0, 0, device)
    plan = make_plan(flens, T, 80, mcfg, keys)
    a_inputs = apply_plan(feats, plan)
    cuda_bf16 = args.bf16 and device.type == "cuda"  # CUDA: every audiorep row under bf16 autocast
    cpu_bf16 = args.bf16 and device.type == "cpu"  # CPU: extra bf16 rows for both sides, fp32 rows stay

    def autocast(bf16: bool):
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def model_step(mam, params, opt, inputs=None, p=None, bf16=cuda_bf16):
        inputs = a_inputs if inputs is None else inputs
        p = plan if p is None else p
        with autocast(bf16):
            total, count = mam.reconstruction_error(inputs, feats, flens, p)
        (total / count.clamp_min(1.0)).backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    packed_side, padded_side = build(True), build(False)
    a_model_step = lambda: model_step(*packed_side)  # noqa: E731
    a_padded_step = lambda: model_step(*padded_side)  # noqa: E731
    torch_gemm_side = (build(True, onednn=False)
                       if device.type == "cpu" and packed_side[0].encoder.kernels.onednn_training else None)

    def a_full_step():
        p = make_plan(flens, T, 80, mcfg, keys)
        model_step(*packed_side, apply_plan(feats, p), p)

    # ---- s3prl ----
    s_cfg = TransformerConfig(_s3prl_config(cfg))
    s_enc = TransformerModel(s_cfg, 80).to(device).train()
    s_head = TransformerSpecPredictionHead(s_cfg, 80).to(device).train()
    s_params = list(s_enc.parameters()) + list(s_head.parameters())
    s_opt = torch.optim.AdamW(s_params, lr=2e-4, weight_decay=0.01)
    l1 = torch.nn.L1Loss()
    task_cfg = {"mask_proportion": 0.15, "mask_consecutive_min": 7, "mask_consecutive_max": 7,
                "mask_allow_overlap": True, "mask_bucket_ratio": 1.5, "mask_frequency": 0.0,
                "noise_proportion": 0.0, "position_encoding_size": cfg.hidden_size}
    s_data = generate_masked_acoustic_model_data([feats.cpu()], task_cfg)

    def s_model_step(data=None, fp16=False, bf16=False):
        spec_masked, pos_enc, mask_label, attn_mask, spec_target = [t.to(device) for t in (data or s_data)]
        pos_enc = pos_enc.expand(spec_masked.size(0), *pos_enc.size())
        ctx = torch.autocast(device.type, dtype=torch.float16) if fp16 else autocast(bf16)
        with ctx:
            hidden = s_enc(spec_masked, pos_enc, attn_mask, output_all_encoded_layers=False)
            pred, _ = s_head(hidden)
            loss = l1(pred.masked_select(mask_label), spec_target.masked_select(mask_label))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(s_params, 5.0)
        s_opt.step()
        s_opt.zero_grad(set_to_none=True)

    def s_full_step():
        s_model_step(generate_masked_acoustic_model_data([feats.cpu()], task_cfg))

    fns = {"audiorep": a_model_step, "audiorep padded": a_padded_step, "s3prl": s_model_step,
           "audiorep +alteration": a_full_step, "s3prl +alteration": s_full_step}
    if torch_gemm_side is not None:
        fns["audiorep torch GEMMs"] = lambda: model_step(*torch_gemm_side)
    if args.compile:  # the padded batch: static shapes, no per-utterance loop for the compiler to break on
        padded_side[0].encoder.encode = torch.compile(padded_side[0].encoder.encode)
        fns["audiorep padded compiled"] = a_padded_step
    if device.type == "cuda":
        fns["s3prl fp16 autocast"] = lambda: s_model_step(fp16=True)
    if cpu_bf16:  # the same torch.autocast around each library's step; weights and optimizer stay fp32
        fns["audiorep bf16 autocast"] = lambda: model_step(*packed_side, bf16=True)
        fns["s3prl bf16 autocast"] = lambda: s_model_step(bf16=True)
    if args.clock == "cpu":
        times = _interleaved_cpu(fns, steps, warmup=1 if not args.compile else 2)
    else:
        times = interleaved(fns, repeats=steps, warmup=1 if not args.compile else 2, device=str(device))

    # The roofline: the best GEMM rate on the model's own shapes, measured now with the same clock (fp32; on
    # CUDA also bf16, which the reduced-precision rows are measured against).
    from audiorep.kernels.flops import gemm_shapes, train_step_flops

    flops = train_step_flops(cfg, flens.tolist()).total  # useful work: valid frames, whole utterances
    shapes = gemm_shapes(cfg, valid_frames, head=True)
    roofs = {"float32": gemm_roofline(shapes, str(device), "float32", clock=args.clock)}
    if device.type == "cuda" or cpu_bf16:
        roofs["bfloat16"] = gemm_roofline(shapes, str(device), "bfloat16", clock=args.clock)

    base = median(times["s3prl"])
    base_full = median(times["s3prl +alteration"])
    rows = []
    a_dtype = "bf16 autocast" if cuda_bf16 else "float32"
    for name, ts in times.items():
        m = median(ts)
        ref = base_full if name.endswith("+alteration") else base
        dtype = ("fp16 autocast" if "fp16" in name else "bf16 autocast" if "bf16" in name
                 else a_dtype if name.startswith("audiorep") else "float32")
        roof = roofs["float32" if dtype == "float32" else "bfloat16"]
        rows.append({"contender": name, "dtype": dtype,
                     "step_ms": m * 1e3, "frames_per_s": valid_frames / m, "spread": spread(ts),
                     "speedup_vs_s3prl": ref / m, **roofline_columns(flops, m, roof["gflops"])})
    ratio = base / median(times["audiorep"])
    paired, paired_lo, paired_hi = paired_ratios(times["s3prl"], times["audiorep"])
    ratio_full = base_full / median(times["audiorep +alteration"])
    backend = resolve_backend(torch.empty(1, 1, 1, 1, device=device))
    notes = [
        f"{args.model}: {cfg.num_layers} layer(s){' (shared)' if cfg.share_layers else ''}, hidden {cfg.hidden_size}, "
        f"{cfg.num_heads} heads, FFN {cfg.intermediate_size}, dropout {cfg.dropout}; batch {B} utterances of "
        f"{T_min}-{T_max} frames ({valid_frames} valid frames, padded to {T}); {steps} timed steps each, medians "
        f"of {'process CPU time' if args.clock == 'cpu' else 'wall time'}",
        f"audiorep / s3prl step throughput: {ratio:.2f}x (model step), {ratio_full:.2f}x (including alteration); "
        f"per round (both timed in the same round): median {paired:.2f}x, range {paired_lo:.2f}-{paired_hi:.2f}x "
        f"over {len(times['audiorep'])} rounds",
        "s3prl loss uses masked_select over its own masks; audiorep a 0/1 mask multiply; AdamW(2e-4, wd 0.01) "
        "and grad clip 5 on both (audiorep: the fused implementation on CPU, as build_optimizer picks it)",
        "audiorep = the step as training runs it (on CPU packed: valid frames only, attention per utterance, "
        "prediction head on altered frames only; on CPU the encoder's linear layers, and the attention of "
        "utterances with at least 2^20 scores, run oneDNN's GEMMs forward and backward); audiorep padded = same "
        "weights and step with packing off (AUDIOREP_PACKED_TRAINING=0); audiorep torch GEMMs = packed, linear "
        "layers and attention on torch's ops, i.e. the GEMM library s3prl uses (AUDIOREP_ONEDNN_TRAINING=0)",
        f"gflops_s = {flops / 1e9:.1f} GFLOP per step (audiorep.kernels.flops.train_step_flops: GEMMs + attention, "
        "forward and backward, valid frames only, the same useful work credited to every contender; the head is "
        "counted on every valid frame, as s3prl and the padded row compute it, ~3% of the step) / step time; "
        "roofline_pct = that as a share of the best GEMM rate measured in this run on the model's own shapes "
        "with the same clock, over torch.mm and oneDNN: " + "; ".join(
            f"{k} {r['gflops']:.1f} GFLOP/s ({r['library']}, {r['shape']}; best per library: "
            + ", ".join(f"{lib} {g:.0f}" for lib, g in r["by_library"].items()) + ")" for k, r in roofs.items())
        + ("; fp16 and bf16 rows are measured against the bf16 rate" if "bfloat16" in roofs else ""),
    ]
    if "audiorep torch GEMMs" in times:
        t_gemm = median(times["audiorep torch GEMMs"])
        notes.append(f"GEMM library: audiorep on torch's GEMMs / s3prl {base / t_gemm:.2f}x; oneDNN's GEMMs then "
                     f"make the step {t_gemm / median(times['audiorep']):.2f}x faster on this CPU")
    if cpu_bf16:
        b_ratio = median(times["s3prl bf16 autocast"]) / median(times["audiorep bf16 autocast"])
        notes.append(f"bf16 rows: torch.autocast(cpu, bfloat16) around each library's forward and loss (fp32 "
                     f"weights, AdamW and clipping); audiorep / s3prl at bf16: {b_ratio:.2f}x; audiorep bf16 / "
                     f"s3prl fp32: {base / median(times['audiorep bf16 autocast']):.2f}x (speedup_vs_s3prl is "
                     "against the fp32 s3prl row)")
    return {
        "rows": rows,
        "columns": ["contender", "dtype", "step_ms", "frames_per_s", "speedup_vs_s3prl", "gflops_s", "roofline_pct",
                    "spread"],
        "meta": {"device": str(device), "dtype": a_dtype, "attention_backend": backend, "model": args.model,
                 "clock": args.clock, "gflop_per_step": round(flops / 1e9, 2),
                 **{f"gemm_roofline_{k}_gflops": round(r["gflops"], 1) for k, r in roofs.items()},
                 "batch": B, "frames": f"{T_min}-{T_max}", "ratio_model_step": round(ratio, 3),
                 "ratio_model_step_paired": [round(paired, 3), round(paired_lo, 3), round(paired_hi, 3)],
                 "ratio_with_alteration": round(ratio_full, 3)},
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    """Standalone: run, print the table, write benchmarks/results/pretrain_step[-quick].{json,md}."""
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    p = argparse.ArgumentParser(description=DESCRIPTION)
    add_arguments(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="1 layer, short utterances, 2 steps (smoke run)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from run import environment, markdown

    result = run(args)
    result["meta"] = {**environment(args.device), "quick": args.quick, **result["meta"]}
    stem = "pretrain_step-quick" if args.quick else "pretrain_step"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"name": "pretrain_step", "description": DESCRIPTION,
                                                       **result}, indent=2, default=str) + "\n")
    md = markdown("pretrain_step", DESCRIPTION, result)
    (args.out / f"{stem}.md").write_text(md)
    print(md)
    print(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
