"""``audiorep pretrain --config FILE [--data PATH] [--out DIR] [--resume] [--print-config] [key=value ...]``.

Multi-GPU / multi-node: launch the same command under torchrun, e.g.
``torchrun --nproc_per_node=8 -m audiorep.cli pretrain --config recipes/configs/pretrain/tera-base.yaml``.
The last stdout line of a finished run is the final model folder (loadable with ``audiorep.load``).
"""

from __future__ import annotations

import argparse
import sys

from . import add_config_args, flag_overrides, print_config, start_logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain", help="masked acoustic pretraining (Mockingjay / AALBERT / TERA)",
        description="Pretrain a Mockingjay-family encoder by reconstructing altered log-mel frames. "
                    "Settings come from a YAML config; key=value arguments override single fields "
                    "(e.g. optim.lr=1e-4 train.max_steps=5000 data.batch_size=16) and are type-checked.",
    )
    add_config_args(p, "YAML PretrainConfig (see recipes/configs/pretrain/)",
                    "optim.lr=1e-4 train.max_steps=5000", required=True)
    p.add_argument("--data", default=None,
                   help="training data: bundled corpus name, corpus folder, .jsonl manifest or LibriSpeech root "
                        "(overrides data.train)")
    p.add_argument("--out", default=None, help="run folder (overrides out_dir; default exp/<name>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    p.add_argument("--overwrite", action="store_true", help="delete old checkpoints in the run folder and start over")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pretrain.config import load_config
    from ..pretrain.run import pretrain

    cfg = load_config(args.config, flag_overrides({"data.train": args.data, "out_dir": args.out}) + args.overrides)
    if args.print_config:
        return print_config(cfg)
    start_logging()
    res = pretrain(cfg, resume=args.resume, overwrite=args.overwrite)
    if res.final_dir is None:  # a non-zero rank, or a run stopped early
        return 0
    err = sys.stderr
    print(f"run folder: {res.run_dir}", file=err)
    if res.first_loss is not None:
        print(f"masked L1 loss: {res.first_loss:.4f} at step 1 -> {res.last_loss:.4f} (mean of the last logged intervals, see metrics.csv{' and ' + res.loss_png.name if res.loss_png else ''})", file=err)
    if res.s3prl_checkpoint is not None:
        print(f"s3prl checkpoint: {res.s3prl_checkpoint}", file=err)
    print(res.final_dir)
    return 0
