"""``audiorep push MODEL REPO_ID``: publish an audiorep model on the Hugging Face hub.

MODEL is anything ``audiorep.load`` reads as an audiorep model (a registered name, a model folder, an s3prl
checkpoint, another ``hf-hub:`` repository); the repository then holds config.json + model.safetensors and loads
back with ``audiorep.load("hf-hub:REPO_ID")``.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="publish an audiorep model on the Hugging Face hub",
                       description="Upload MODEL's config.json + model.safetensors to the hub repository REPO_ID "
                                   "(created if missing) in one commit. The token comes from HF_TOKEN or "
                                   "`hf auth login`; HF_ENDPOINT selects another hub. Load it back with "
                                   "audiorep.load('hf-hub:REPO_ID').")
    p.add_argument("model", help="registered name, model folder, s3prl checkpoint or hf-hub:org/name")
    p.add_argument("repo_id", help="the hub repository, org/name")
    p.add_argument("--revision", default=None, help="branch to commit to (default: the repository's main branch)")
    p.add_argument("--private", action="store_true", help="create the repository private (if it is new)")
    p.add_argument("--message", default=None, help="commit message")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing directly")
    p.add_argument("--no-pretrained", action="store_true",
                   help="push a registered model's architecture with random weights (for tests of a pipeline)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..weights.hub import push_to_hub, split_hub_source
    from ..weights.loading import load
    from ..models.base import PretrainedModel

    split_hub_source(args.repo_id)  # a bad id must not cost a model load
    model = load(args.model, pretrained=not args.no_pretrained)
    if not isinstance(model, PretrainedModel):
        raise ConfigError(f"{args.model}: a transformers or torchaudio encoder, not an audiorep model; publish it "
                          "with its own library (transformers: model.push_to_hub)")
    url = push_to_hub(model, args.repo_id, revision=args.revision, private=True if args.private else None,
                      commit_message=args.message, create_pr=args.create_pr)
    print(url)
    return 0
