"""``audiorep convert CKPT DIR``: an s3prl checkpoint -> an audiorep model folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an s3prl Mockingjay/TERA/AALBERT checkpoint to a model folder",
                       description="Read an s3prl states-*.ckpt (without executing pickled code) and write "
                                   "config.json + model.safetensors, loadable with audiorep.load(DIR).")
    p.add_argument("ckpt", type=Path, help="s3prl checkpoint file")
    p.add_argument("out", type=Path,
                   help="output folder: new or empty (an audiorep model folder is replaced only with --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the config.json and model.safetensors of an existing audiorep model folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import convert_to_folder

    out = convert_to_folder(args.ckpt, args.out, overwrite=args.overwrite)
    print(out)
    return 0
