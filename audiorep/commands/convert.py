"""``audiorep convert CKPT DIR``: an s3prl checkpoint -> an audiorep model folder.

``audiorep convert MODEL --to s3prl OUT.ckpt``: an audiorep model (registered name or folder) -> an s3prl
checkpoint that s3prl's ``mockingjay_local`` / ``tera_local`` upstreams load.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert an s3prl Mockingjay/TERA/AALBERT checkpoint to a model folder",
                       description="Read an s3prl states-*.ckpt (without executing pickled code) and write "
                                   "config.json + model.safetensors, loadable with audiorep.load(DIR).")
    p.add_argument("ckpt", type=Path, help="s3prl checkpoint file (with --to s3prl: an audiorep model name or folder)")
    p.add_argument("out", type=Path,
                   help="output folder: new or empty (an audiorep model folder is replaced only with --overwrite); "
                        "with --to s3prl: the .ckpt file to write")
    p.add_argument("--to", choices=("audiorep", "s3prl"), default="audiorep",
                   help="audiorep (default): s3prl checkpoint -> model folder; s3prl: model -> s3prl checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the config.json and model.safetensors of an existing audiorep model folder "
                        "(with --to s3prl: an existing checkpoint file)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.to == "s3prl":
        return _to_s3prl(args)
    from ..weights.convert import convert_to_folder

    out = convert_to_folder(args.ckpt, args.out, overwrite=args.overwrite)
    print(out)
    return 0


def _to_s3prl(args: argparse.Namespace) -> int:
    """Export a Mockingjay/TERA/AALBERT model in s3prl's checkpoint layout."""
    from ..errors import ConfigError
    from ..weights.loading import load
    from ..models.mockingjay import MockingjayModel
    from ..weights.s3prl import export_s3prl_checkpoint

    source = str(args.ckpt)
    if args.out.is_dir():
        raise ConfigError(f"{args.out}: is a folder; --to s3prl writes one checkpoint file (e.g. out.ckpt)")
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"{args.out}: already exists; pass --overwrite to replace it, or choose another file")
    model = load(source)
    if not isinstance(model, MockingjayModel):
        raise ConfigError(f"{source}: a {type(model).__name__}; s3prl's layout holds Mockingjay/TERA/AALBERT models")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    export_s3prl_checkpoint(model, args.out)
    print(args.out)
    return 0
