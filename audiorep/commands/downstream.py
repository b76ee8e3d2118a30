"""``audiorep downstream``: train + evaluate a probe head on an upstream; ``audiorep downstream probe-table``.

    audiorep downstream --task phone --upstream exp/aalbert-synth/final --mode weighted-sum
    audiorep downstream --task speaker --upstream logmel --mode last --head mean-linear
    audiorep downstream --config recipes/configs/downstream/phone.yaml --set epochs=5
    audiorep downstream probe-table --models exp/mockingjay-synth/final exp/aalbert-synth/final --out exp/probe

stdout gets the test metrics as ``key: value`` lines (and the run folder last); progress goes to stderr.
"""

from __future__ import annotations

import argparse

MODES = ("weighted-sum", "finetune", "last", "layer")
FUSION_HEADS = ("selfmm", "dmd", "deepmlf")  # audiorep.multimodal: speech + transcript sentiment heads
HEAD_CHOICES = ("linear", "mlp", "mean-linear", "mean-mlp", "frame-linear") + FUSION_HEADS + ("teasel",)


def _has_teasel() -> bool:
    import importlib.util

    return importlib.util.find_spec("audiorep.multimodal") is not None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "downstream", help="probe / fine-tune an upstream on phone, speaker or sentiment tasks",
        description="Train a small head on an upstream's features (weighted sum of hidden states, one layer, or "
                    "fine-tuning the upstream), early-stop on dev, and evaluate the best dev checkpoint on test once. "
                    "Frozen modes cache the upstream's hidden states once per split, so epochs only cost the head.",
    )
    p.add_argument("--config", default=None, help="YAML DownstreamConfig (see recipes/configs/downstream/)")
    p.add_argument("--task", choices=("phone", "speaker", "sentiment"), default=None)
    p.add_argument("--upstream", default=None,
                   help="registered name, model folder, s3prl checkpoint, or 'logmel' (features, no encoder)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="weighted-sum (frozen, learned softmax over hidden states), finetune, last, layer")
    p.add_argument("--layer", type=int, default=None,
                   help="hidden state for --mode layer (0 = input embedding, -1 = last); with finetune: "
                        "use this state instead of the weighted sum")
    p.add_argument("--head", choices=HEAD_CHOICES if _has_teasel() else HEAD_CHOICES[:-1], default=None,
                   help="phone: linear | mlp; speaker: mean-linear | mean-mlp | frame-linear; "
                        "sentiment: mean-linear | mean-mlp | selfmm | dmd | deepmlf (fusion heads with the transcript, "
                        "audiorep.multimodal; --set takes FusionConfig fields, seeds 0 1 2 by default) | teasel "
                        "(speech prefix tokens into a RoBERTa with the transcript, audiorep.multimodal; the upstream is its "
                        "front end) (default: the task's linear probe)")
    p.add_argument("--data", default=None, help="corpus: 'synth' (bundled), a folder of manifests, or a manifest")
    p.add_argument("--out", default=None, help="run folder (default exp/downstream/<task>-<upstream>-<mode>-<head>)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="head learning rate")
    p.add_argument("--upstream-lr", type=float, default=None, help="upstream learning rate (finetune)")
    p.add_argument("--max-utts", type=int, default=None, help="seeded subset of each split (quick runs)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--layer-norm", action="store_true", help="layer-norm each hidden state before the weighted sum")
    p.add_argument("--cache-dir", default=None, help="keep frozen-mode feature caches here (shared across runs)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--overwrite", action="store_true", help="delete a previous run in --out and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any DownstreamConfig field, type-checked (e.g. --set patience=8 --set dropout=0.2)")
    p.set_defaults(func=run)
    psub = p.add_subparsers(dest="downstream_command", metavar="probe-table")
    q = psub.add_parser("probe-table", help="the grid {log-mel, upstreams} x {modes} x {phone, speaker}",
                        description="Run every (upstream, mode, task) probe on one corpus and write probe_table.md, "
                                    "results.json, layer-weight bar charts and learning curves under --out.")
    q.add_argument("--models", nargs="*", default=None, metavar="NAME=PATH",
                   help="upstreams as NAME=PATH or PATH (default: the bundled-corpus pretraining outputs under exp/)")
    q.add_argument("--modes", nargs="+", default=["weighted-sum", "finetune", "last"], choices=MODES[:3])
    q.add_argument("--tasks", nargs="+", default=["phone", "speaker"], choices=("phone", "speaker", "sentiment"))
    q.add_argument("--data", default="synth")
    q.add_argument("--out", default="exp/probe_table")
    q.add_argument("--epochs", type=int, default=8, help="max epochs for frozen modes")
    q.add_argument("--finetune-epochs", type=int, default=2, help="max epochs for finetune (upstream runs each step)")
    q.add_argument("--finetune-train-utts", type=int, default=160,
                   help="finetune cells train on this many training utterances (0 = all; the upstream runs every step)")
    q.add_argument("--max-utts", type=int, default=None, help="seeded subset of each split")
    q.add_argument("--lr", type=float, default=None, help="head learning rate (default: DownstreamConfig's)")
    q.add_argument("--head", dest="heads", action="append", default=[], metavar="TASK=HEAD",
                   help="probe head per task (default phone=linear speaker=mean-mlp sentiment=mean-mlp)")
    q.add_argument("--keep-cache", action="store_true", help="keep the on-disk hidden-state caches")
    q.add_argument("--device", default="auto")
    q.add_argument("--no-progress", action="store_true")
    q.set_defaults(func=run_probe_table)


def run(args: argparse.Namespace) -> int:
    import logging

    from ..probe.run import load_config, run_downstream

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.head in FUSION_HEADS:
        return _run_fusion(args)
    flags = {
        "task": args.task, "upstream": args.upstream, "mode": args.mode, "layer": args.layer, "head": args.head,
        "data": args.data, "out_dir": args.out, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "upstream_lr": args.upstream_lr, "max_utts": args.max_utts, "device": args.device,
        "cache_dir": args.cache_dir,
    }
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None]
    if args.layer_norm:
        overrides.append("layer_norm=true")
    if args.no_progress:
        overrides.append("progress=false")
    overrides += args.overrides
    cfg = load_config(args.config, overrides)
    if cfg.head == "teasel":
        return _run_teasel(cfg)
    res = run_downstream(cfg, resume=args.resume, overwrite=args.overwrite)
    for k, v in res.test.items():
        print(f"test_{k}: {v:.4f}" if isinstance(v, float) else f"test_{k}: {v}")
    from ..probe.tasks import build_task

    primary = build_task(cfg.task, cfg.head).primary
    print(f"best_dev_{primary}: {res.best_dev[primary]:.4f}")
    print(f"best_epoch: {res.best_epoch}")
    print(f"epochs_run: {res.epochs_run}")
    print("layer_weights: " + " ".join(f"{w:.3f}" for w in res.layer_weights))
    print(f"run_dir: {res.out_dir}")
    return 0


def _check_sentiment_head(head: str, task: str, mode: str) -> None:
    """The fusion and TEASEL heads read speech + transcript with the upstream frozen."""
    from ..errors import ConfigError

    if task != "sentiment":
        raise ConfigError(f"--head {head} is a sentiment head (speech + transcript); task is {task!r}")
    if mode == "finetune":
        raise ConfigError(f"--head {head} keeps the upstream frozen: use --mode weighted-sum, last or layer")


def _run_fusion(args: argparse.Namespace) -> int:
    """Sentiment with a fusion head (Self-MM / DMD / DeepMLF) over the FusionConfig's seeds; only the flags given
    on the command line override the FusionConfig defaults (the probe defaults, e.g. lr 1e-2, do not apply)."""
    import torch

    from ..multimodal import load_fusion_config
    from ..multimodal import run as run_fusion

    _check_sentiment_head(args.head, args.task or "sentiment", args.mode or "last")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    flags = {"head": args.head, "data": args.data, "upstream": args.upstream, "mode": args.mode,
             "layer": args.layer, "out_dir": args.out, "epochs": args.epochs, "batch_size": args.batch_size,
             "lr": args.lr, "max_utts": args.max_utts, "device": device}
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None] + args.overrides
    res = run_fusion(load_fusion_config(args.config, overrides))
    for k, (mean, std) in res["summary"].items():
        print(f"test_{k}: {mean:.4f} ± {std:.4f}")
    print(f"seeds: {' '.join(str(r['seed']) for r in res['runs'])}")
    return 0


def _run_teasel(cfg) -> int:
    """Sentiment with TEASEL's head (audiorep.multimodal.run_finetune); the upstream becomes its speech front end."""
    import torch

    from ..multimodal import TeaselRunConfig, run_finetune

    _check_sentiment_head("teasel", cfg.task, cfg.mode)
    layer = None if cfg.mode == "weighted-sum" else (-1 if cfg.mode == "last" else cfg.layer)
    front = {"front_end": "wav2vec2"} if cfg.upstream == "wav2vec2" else {
        "front_end": "upstream", "upstream": cfg.upstream, "upstream_layer": layer}
    tcfg = TeaselRunConfig(corpus=cfg.data, train_split=cfg.train_split, dev_split=cfg.dev_split,
                           test_split=cfg.test_split, seed=cfg.seed, batch_size=cfg.batch_size, epochs=cfg.epochs,
                           device=("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto"
                           else cfg.device,
                           output_dir=str(cfg.run_dir()), **front)
    res = run_finetune(tcfg)
    for k, v in res["test"].items():
        print(f"test_{k}: {v:.4f}")
    print(f"best_epoch: {res['best_epoch']}")
    print(f"run_dir: {tcfg.output_dir}")
    return 0


def run_probe_table(args: argparse.Namespace) -> int:
    import logging

    from ..probe.table import default_models, parse_models, probe_table

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from ..errors import ConfigError

    bad = [h for h in args.heads if "=" not in h]
    if bad:
        raise ConfigError(f"--head {bad[0]!r}: expected TASK=HEAD, e.g. speaker=mean-linear")
    models = parse_models(args.models) if args.models else default_models()
    table = probe_table(models, modes=args.modes, tasks=args.tasks, data=args.data, out_dir=args.out,
                        epochs=args.epochs, finetune_epochs=args.finetune_epochs, max_utts=args.max_utts,
                        finetune_train_utts=args.finetune_train_utts or None, device=args.device,
                        progress=not args.no_progress, keep_cache=args.keep_cache,
                        heads=dict(h.split("=", 1) for h in args.heads if "=" in h),
                        overrides={"lr": args.lr} if args.lr is not None else None)
    print(table.markdown)
    print(f"written: {table.out_dir}")
    return 0
