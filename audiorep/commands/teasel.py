"""``audiorep teasel lm|pretrain|finetune``: TEASEL's small LM, LAA pretraining and sentiment fine-tuning.

    audiorep teasel lm --config recipes/configs/teasel/pretrain.yaml          # build/cache the default small LM
    audiorep teasel pretrain --config recipes/configs/teasel/pretrain.yaml front_end=upstream upstream=exp/a/final
    audiorep teasel finetune --config recipes/configs/teasel/finetune.yaml --text-model /models/roberta-base seed=1

``lm`` prints the LM folder; ``pretrain`` / ``finetune`` print a JSON summary of the results.
"""

from __future__ import annotations

import argparse

from . import add_config_args, flag_overrides, print_config, start_logging

STAGES = {
    "lm": "build/cache the default small LM (or check a local one)",
    "pretrain": "LAA pretraining: masked LM with a speech prefix, only the LAA trains",
    "finetune": "sentiment regression on <s> (MMSA metrics)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("teasel", help="TEASEL: small LM, LAA pretraining, sentiment fine-tuning",
                       description="TEASEL (speech prefix tokens for a RoBERTa LM): one stage per action, "
                                   "settings from one TeaselRunConfig.")
    tsub = p.add_subparsers(dest="teasel_command", metavar="STAGE", required=True)
    for stage, what in STAGES.items():
        s = tsub.add_parser(stage, help=what, description=f"TEASEL {stage}: {what}.")
        add_config_args(s, "YAML TeaselRunConfig (recipes/configs/teasel/*.yaml)", "small_lm.epochs=3 lr=2e-5")
        s.add_argument("--text-model", default=None,
                       help="local RoBERTa folder (e.g. roberta-base) instead of the cached small LM (text_model)")
        s.add_argument("--out", default=None, help="where checkpoints and results go (out_dir)")
        s.set_defaults(func=run, stage=stage)


def run(args: argparse.Namespace) -> int:
    import json

    from ..multimodal.teasel_config import load_run_config

    cfg = load_run_config(args.config,
                          flag_overrides({"text_model": args.text_model, "out_dir": args.out}) + args.overrides)
    if args.print_config:
        return print_config(cfg)
    start_logging(fmt="%(asctime)s %(name)s: %(message)s")
    if args.stage == "lm":
        from ..data import get_corpus
        from ..multimodal.lm import ensure_lm

        texts = [u.text for u in get_corpus(cfg.data).manifest(cfg.train_split) if u.text.strip()]
        _, _, folder = ensure_lm(cfg.text_model_folder, texts, cfg.small_lm, cfg.device)
        print(folder)
        return 0
    from ..multimodal.teasel_run import run_finetune, run_pretrain

    res = run_pretrain(cfg) if args.stage == "pretrain" else run_finetune(cfg)
    summary = {k: res[k] for k in ("front_end", "steps", "dev_mlm_loss_before", "dev_mlm_loss_after", "best_epoch",
                                   "test", "laa_parameters", "trainable_parameters", "seconds") if k in res}
    print(json.dumps(summary, indent=2))
    return 0
