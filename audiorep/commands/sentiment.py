"""``audiorep sentiment train|merge|table|reference|collect-teasel``: the multimodal sentiment heads over seeds.

    audiorep sentiment train --config recipes/configs/fusion/selfmm.yaml seeds=[0] epochs=2
    audiorep sentiment train --head dmd mmsa=/data/MOSI/Processed/unaligned_50.pkl text_features=true
    audiorep sentiment merge exp/fusion/synth exp/fusion/synth/seeds/dmd-s0/dmd.json exp/fusion/synth/seeds/dmd-s1/dmd.json
    audiorep sentiment collect-teasel exp/fusion/synth/teasel.json exp/teasel/ft-s0 exp/teasel/ft-s1
    audiorep sentiment table exp/fusion/synth

``train`` prints the per-seed test metrics and the mean ± std summary and writes ``<out_dir>/<head>.json``;
``table`` prints the markdown table over every ``*.json`` in a folder.
"""

from __future__ import annotations

import argparse

from ..multimodal.heads import HEADS
from . import add_config_args, flag_overrides, print_config, start_logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sentiment", help=f"multimodal sentiment heads ({', '.join(HEADS)}) and tables",
                       description="Train and evaluate speech + transcript sentiment heads over several seeds, "
                                   "merge per-seed results, collect TEASEL runs, print the result table.")
    ssub = p.add_subparsers(dest="sentiment_command", metavar="ACTION", required=True)

    t = ssub.add_parser("train", help="train + evaluate one head over the config's seeds",
                        description="Train + evaluate a multimodal sentiment head over several seeds (FusionConfig).")
    add_config_args(t, "YAML FusionConfig (recipes/configs/fusion/)", "seeds=[0,1] head_args.d=16")
    t.add_argument("--head", choices=tuple(HEADS), default=None,
                   help="overrides the config's head: " + "; ".join(f"{n}: {s.summary}" for n, s in HEADS.items()))
    t.add_argument("--out", default=None, help="result folder (overrides out_dir)")
    t.set_defaults(func=run_train)

    m = ssub.add_parser("merge", help="merge result JSONs of one head run as separate processes (e.g. per seed)")
    m.add_argument("out", help="folder that gets <head>.json")
    m.add_argument("results", nargs="+", help="result JSONs of the same head")
    m.set_defaults(func=run_merge)

    c = ssub.add_parser("collect-teasel", help="TEASEL fine-tuning runs (one per seed) -> one result JSON")
    c.add_argument("out", help="result JSON to write (e.g. exp/fusion/synth/teasel.json)")
    c.add_argument("runs", nargs="+", help="TEASEL run folders holding finetune_results.json")
    c.set_defaults(func=run_collect_teasel)

    tb = ssub.add_parser("table", help="markdown table (mean ± std over seeds) of the result JSONs in a folder")
    tb.add_argument("folder", nargs="?", default="exp/fusion", help="folder of <head>.json results")
    tb.set_defaults(func=run_table)

    r = ssub.add_parser("reference", help="reference rows: constant predictor and the words-only oracle")
    r.add_argument("data", nargs="?", default="synth", help="corpus (bundled name or folder)")
    r.set_defaults(func=run_reference)


def run_train(args: argparse.Namespace) -> int:
    from ..multimodal.fusion_run import load_fusion_config, run

    cfg = load_fusion_config(args.config, flag_overrides({"head": args.head, "out_dir": args.out}) + args.overrides)
    if args.print_config:
        return print_config(cfg)
    start_logging()
    res = run(cfg)
    for r in res["runs"]:
        print(f"seed {r['seed']}: " + " ".join(f"{k}={v:.4f}" for k, v in r["test"].items()))
    for k, (mean, std) in res["summary"].items():
        print(f"{k}: {mean:.4f} ± {std:.4f}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from ..multimodal.fusion_run import merge_results

    res = merge_results(args.out, args.results)
    print(f"{res['head']}: {len(res['runs'])} run(s) -> {args.out}/{res['head']}.json")
    return 0


def run_collect_teasel(args: argparse.Namespace) -> int:
    from ..multimodal.table import collect_teasel

    res = collect_teasel(args.out, args.runs)
    print(f"{res['head']}: {len(res['runs'])} run(s) -> {args.out}")
    return 0


def run_table(args: argparse.Namespace) -> int:
    from ..multimodal.table import table

    print(table(args.folder))
    return 0


def run_reference(args: argparse.Namespace) -> int:
    from ..multimodal.table import reference_table

    print(reference_table(args.data))
    return 0
