"""``python -m audiorep.multimodal.teasel_main {lm,pretrain,finetune} [--config YAML] [--lm PATH] [--set key=value ...]``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..errors import AudiorepError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m audiorep.multimodal.teasel_main", description="TEASEL: LM, LAA pretraining, fine-tuning")
    p.add_argument("stage", choices=["lm", "pretrain", "finetune"],
                   help="lm: build/cache the default small LM; pretrain: LAA masked LM; finetune: sentiment regression")
    p.add_argument("--config", help="YAML run config (recipes/configs/teasel/*.yaml)")
    p.add_argument("--lm", help="local RoBERTa folder (e.g. roberta-base) instead of the cached small LM")
    p.add_argument("--output-dir", help="where checkpoints and results go")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (YAML value; small_lm.epochs=3 nests); repeatable")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from .teasel_config import load_run_config

    overrides = list(args.set)
    if args.lm:
        overrides.append(f"lm={args.lm}")
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    try:
        cfg = load_run_config(args.config, overrides)
        if args.stage == "lm":
            from ..data import get_corpus
            from .lm import ensure_lm

            texts = [u.text for u in get_corpus(cfg.corpus).manifest(cfg.train_split) if u.text.strip()]
            _, _, folder = ensure_lm(cfg.lm, texts, cfg.small_lm, cfg.device)
            print(folder)
            return 0
        from .teasel_run import run_finetune, run_pretrain

        res = run_pretrain(cfg) if args.stage == "pretrain" else run_finetune(cfg)
    except AudiorepError as exc:
        print(f"audiorep.multimodal {args.stage}: error: {exc}", file=sys.stderr)
        return 2
    summary = {k: res[k] for k in ("front_end", "steps", "dev_mlm_loss_before", "dev_mlm_loss_after", "best_epoch",
                                   "test", "laa_parameters", "trainable_parameters", "seconds") if k in res}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
