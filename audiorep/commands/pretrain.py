"""``audiorep pretrain --config FILE [--data PATH] [--out DIR] [--resume] [key=value ...]``.

Multi-GPU / multi-node: launch the same command under torchrun, e.g.
``torchrun --nproc_per_node=8 -m audiorep.cli pretrain --config recipes/configs/pretrain/tera-base.yaml``.
The last stdout line of a finished run is the final model folder (loadable with ``audiorep.load``).
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain", help="masked acoustic pretraining (Mockingjay / AALBERT / TERA)",
        description="Pretrain a Mockingjay-family encoder by reconstructing altered log-mel frames. "
                    "Settings come from a YAML config; key=value arguments override single fields "
                    "(e.g. optim.lr=1e-4 train.max_steps=5000 data.batch_size=16) and are type-checked.",
    )
    p.add_argument("--config", required=True, help="YAML config (see recipes/configs/pretrain/)")
    p.add_argument("--data", default=None,
                   help="training data: bundled corpus name, corpus folder, .jsonl manifest or LibriSpeech root "
                        "(overrides data.train)")
    p.add_argument("--out", default=None, help="run folder (overrides out_dir; default exp/<name>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the run folder")
    p.add_argument("--overwrite", action="store_true", help="delete old checkpoints in the run folder and start over")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, dotted keys")
    p.set_defaults(func=run, overrides_anywhere=True)  # also after options: a=1 --out D b=2 (cli.parse_args)


def run(args: argparse.Namespace) -> int:
    import logging

    from ..pretrain.config import load_config
    from ..pretrain.run import pretrain

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data.train={args.data}")
    if args.out is not None:
        overrides.append(f"out_dir={args.out}")
    cfg = load_config(args.config, overrides)
    res = pretrain(cfg, resume=args.resume, overwrite=args.overwrite)
    if res.final_dir is None:  # a non-zero rank, or a run stopped early
        return 0
    err = sys.stderr
    print(f"run folder: {res.run_dir}", file=err)
    if res.first_loss is not None:
        print(f"masked L1 loss: {res.first_loss:.4f} at step 1 -> {res.last_loss:.4f} (mean of the last logged intervals, see metrics.csv and loss.png)", file=err)
    if res.s3prl_checkpoint is not None:
        print(f"s3prl checkpoint: {res.s3prl_checkpoint}", file=err)
    print(res.final_dir)
    return 0
