"""``audiorep downstream``: train + evaluate a probe head on an upstream; ``audiorep downstream probe-table``.

    audiorep downstream --task phone --upstream exp/aalbert-synth/final --mode weighted-sum
    audiorep downstream --task speaker --upstream logmel --mode last --head mean-linear
    audiorep downstream --config recipes/configs/downstream/phone.yaml epochs=5 patience=8
    audiorep downstream probe-table --models exp/mockingjay-synth/final exp/aalbert-synth/final --out exp/probe

stdout gets the test metrics as ``key: value`` lines (and the run folder last); progress goes to stderr.
Task names, their heads and the default head come from :data:`audiorep.probe.tasks.TASKS`; the speech +
transcript heads have their own commands (``audiorep sentiment train``, ``audiorep teasel``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models.featurizer import MODES
from ..probe.heads import HEADS
from ..probe.tasks import TASKS
from . import add_config_args, flag_overrides, print_config, start_logging


def _heads_help() -> str:
    """``task: head | head (default d)`` for every registered task."""
    return "; ".join(f"{name}: {' | '.join(cls.heads)} (default {cls.default_head})" for name, cls in TASKS.items())


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "downstream", help="probe / fine-tune an upstream on phone, speaker or sentiment tasks",
        description="Train a small head on an upstream's features (weighted sum of hidden states, one layer, or "
                    "fine-tuning the upstream), early-stop on dev, and evaluate the best dev checkpoint on test once. "
                    "Frozen modes cache the upstream's hidden states once per split, so epochs only cost the head.",
    )
    add_config_args(p, "YAML DownstreamConfig (see recipes/configs/downstream/)", "patience=8 dropout=0.2")
    p.add_argument("--task", choices=tuple(TASKS), default=None)
    p.add_argument("--upstream", default=None,
                   help="registered name, model folder, s3prl checkpoint, hf:<repo id or folder> (transformers), "
                        "torchaudio:<bundle>, or 'logmel' (features, no encoder)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="weighted-sum (frozen, learned softmax over hidden states), finetune, last, layer")
    p.add_argument("--layer", type=int, default=None,
                   help="hidden state for --mode layer (0 = input embedding, -1 = last); with finetune: "
                        "use this state instead of the weighted sum")
    p.add_argument("--head", choices=tuple(HEADS), default=None, help=_heads_help())
    p.add_argument("--data", default=None, help="corpus: 'synth' (bundled), a folder of manifests, or a manifest")
    p.add_argument("--out", default=None, help="run folder (default exp/downstream/<task>-<upstream>-<mode>-<head>)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="head learning rate")
    p.add_argument("--upstream-lr", type=float, default=None, help="upstream learning rate (finetune)")
    p.add_argument("--max-utts", type=int, default=None, help="seeded subset of each split (quick runs)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument("--layer-norm", action="store_true", help="layer-norm each hidden state before the weighted sum")
    p.add_argument("--feature-cache", default=None, metavar="DIR",
                   help="keep frozen-mode feature caches in this folder (shared across runs)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--overwrite", action="store_true", help="delete a previous run in --out and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    psub = p.add_subparsers(dest="downstream_command", metavar="probe-table")
    q = psub.add_parser("probe-table", help="the grid {log-mel, upstreams} x {modes} x {phone, speaker}",
                        description="Run every (upstream, mode, task) probe on one corpus and write probe_table.md, "
                                    "results.json, layer-weight bar charts and learning curves under --out.")
    q.add_argument("--models", nargs="*", default=None, metavar="NAME=PATH",
                   help="upstreams as NAME=PATH or PATH (default: the bundled-corpus pretraining outputs under exp/)")
    q.add_argument("--modes", nargs="+", default=["weighted-sum", "finetune", "last"], choices=MODES[:3])
    q.add_argument("--tasks", nargs="+", default=["phone", "speaker"], choices=tuple(TASKS))
    q.add_argument("--data", default="synth")
    q.add_argument("--out", default="exp/probe_table")
    q.add_argument("--epochs", type=int, default=None,
                   help="max epochs for frozen modes (default: the probe default, with its lr-halving and early-stopping rule)")
    q.add_argument("--finetune-epochs", type=int, default=2, help="max epochs for finetune (upstream runs each step)")
    q.add_argument("--finetune-train-utts", type=int, default=160,
                   help="finetune cells train on this many training utterances (0 = all; the upstream runs every step)")
    q.add_argument("--max-utts", type=int, default=None, help="seeded subset of each split")
    q.add_argument("--lr", type=float, default=None, help="head learning rate (default: DownstreamConfig's)")
    q.add_argument("--head", dest="heads", action="append", default=[], metavar="TASK=HEAD",
                   help="probe head per task (default: each task's table_head, "
                        + " ".join(f"{t}={c.table_head or c.default_head}" for t, c in TASKS.items()) + ")")
    q.add_argument("--contexts", nargs="*", type=int, default=[1, 2, 4, 8], metavar="K",
                   help="frames each side tried for the stacked log-mel floor (best on dev per task; none: no row)")
    q.add_argument("--keep-cache", action="store_true", help="keep the on-disk hidden-state caches")
    q.add_argument("--device", default="auto")
    q.add_argument("--no-progress", action="store_true")
    add_config_args(q, "YAML DownstreamConfig whose settings every cell takes (as recipes/configs/downstream/)",
                    "epochs=3 batch_size=8")
    q.set_defaults(func=run_probe_table)


def run(args: argparse.Namespace) -> int:
    from ..probe.run import load_config, run_downstream

    settings = {
        "task": args.task, "upstream": args.upstream, "mode": args.mode, "layer": args.layer, "head": args.head,
        "data": args.data, "out_dir": args.out, "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
        "upstream_lr": args.upstream_lr, "max_utts": args.max_utts, "device": args.device,
        "feature_cache": args.feature_cache, "layer_norm": True if args.layer_norm else None,
        "progress": False if args.no_progress else None,
    }
    cfg = load_config(args.config, flag_overrides(settings) + args.overrides)
    if args.print_config:
        return print_config(cfg)
    start_logging()
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


def run_probe_table(args: argparse.Namespace) -> int:
    import logging

    from ..probe.table import default_models, parse_models, probe_table

    start_logging(logging.WARNING)
    from ..errors import ConfigError

    bad = [h for h in args.heads if "=" not in h]
    if bad:
        raise ConfigError(f"--head {bad[0]!r}: expected TASK=HEAD, e.g. speaker=mean-linear")
    models = parse_models(args.models) if args.models else default_models()
    cell_settings = _cell_settings(args.config, args.overrides)
    if "epochs" in cell_settings:  # key=value epochs is the frozen cells' budget, as --epochs is
        args.epochs = cell_settings.pop("epochs")
    if args.lr is not None:
        cell_settings["lr"] = args.lr
    grid = dict(modes=list(args.modes), tasks=list(args.tasks), data=args.data, out_dir=args.out, epochs=args.epochs,
                finetune_epochs=args.finetune_epochs, max_utts=args.max_utts,
                finetune_train_utts=args.finetune_train_utts or None, device=args.device,
                progress=not args.no_progress, keep_cache=args.keep_cache, contexts=list(args.contexts),
                heads=dict(h.split("=", 1) for h in args.heads if "=" in h),
                overrides=cell_settings or None)
    if args.print_config:  # the grid's settings (each cell is a DownstreamConfig built from them)
        return print_config({"models": dict(models), **grid})
    from ..ownership import check_output_dir

    check_output_dir(Path(args.out))  # a file in the way: one line now, not after the first cell
    table = probe_table(models, **grid)
    print(table.markdown)
    print(f"written: {table.out_dir}")
    return 0


# what the grid itself sets in every cell: given in a config or key=value they would be silently replaced
_GRID_OWNED = {"task": "--tasks", "upstream": "--models", "mode": "--modes", "head": "--head TASK=HEAD",
               "data": "--data", "out_dir": "--out", "max_utts": "--max-utts", "max_train_utts": "--finetune-train-utts",
               "device": "--device", "progress": "--no-progress", "feature_cache": "(the table's own cache)"}


def _cell_settings(config: str | None, overrides: list[str]) -> dict:
    """``--config FILE`` + ``key=value`` -> the DownstreamConfig settings every cell takes, checked now (before
    any cell runs); a setting the grid owns is refused with the flag that sets it."""
    from ..config import apply_overrides, build, read_yaml
    from ..errors import ConfigError
    from ..probe.run import DownstreamConfig

    data = read_yaml(config) if config else {}
    data = apply_overrides(DownstreamConfig, data, overrides)
    owned = sorted(set(data) & set(_GRID_OWNED))
    if owned:
        raise ConfigError(f"probe-table: {owned[0]} is set per cell by the grid ({_GRID_OWNED[owned[0]]}); leave "
                          "it out of --config and key=value")
    build(DownstreamConfig, {**data, "task": "phone"}, "")  # every key and value checked before the first cell
    return data
