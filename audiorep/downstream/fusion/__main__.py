"""``python -m audiorep.downstream.fusion --head selfmm [--config X.yaml] [--set key=value ...]``.

Prints the per-seed test metrics and the mean ± std summary; writes ``<out_dir>/<head>.json``.
``python -m audiorep.downstream.fusion table exp/fusion`` prints the markdown table over every ``*.json`` there.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

COLUMNS = [("MAE", "MAE", 1.0), ("Corr", "Corr", 1.0), ("Has0_acc_2", "Acc-2 (Has0)", 100.0),
           ("Non0_acc_2", "Acc-2 (Non0)", 100.0), ("Has0_F1", "F1 (Has0)", 100.0), ("Non0_F1", "F1 (Non0)", 100.0),
           ("Mult_acc_7", "Acc-7", 100.0)]
ORDER = ["text", "teasel", "selfmm", "dmd", "deepmlf"]


def table(folder: str) -> str:
    """Markdown table (mean ± std over seeds) over the result JSONs in ``folder``."""
    rows = []
    files = sorted(Path(folder).glob("*.json"), key=lambda p: ORDER.index(p.stem) if p.stem in ORDER else 99)
    for p in files:
        res = json.loads(p.read_text())
        if "summary" not in res:
            continue
        s = res["summary"]
        cells = [f"{s[k][0] * f:.3f} ± {s[k][1] * f:.3f}" if f == 1.0 else f"{s[k][0] * f:.1f} ± {s[k][1] * f:.1f}"
                 for k, _, f in COLUMNS]
        rows.append(f"| {res['head']} | {len(res['runs'])} | " + " | ".join(cells) + " |")
    head = "| head | seeds | " + " | ".join(c for _, c, _ in COLUMNS) + " |"
    return "\n".join([head, "|" + "---|" * (len(COLUMNS) + 2)] + rows)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["table"]:
        print(table(argv[1] if len(argv) > 1 else "exp/fusion"))
        return 0
    ap = argparse.ArgumentParser(prog="python -m audiorep.downstream.fusion",
                                 description="Train + evaluate a multimodal sentiment head over several seeds.")
    ap.add_argument("--head", choices=("text", "selfmm", "dmd", "deepmlf"), default=None)
    ap.add_argument("--config", default=None, help="YAML FusionConfig (recipes/configs/fusion/)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="any FusionConfig field; head_args.NAME=V for a head setting")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from . import load_fusion_config, run

    overrides = ([f"head={args.head}"] if args.head else []) + args.overrides
    res = run(load_fusion_config(args.config, overrides))
    for r in res["runs"]:
        print(f"seed {r['seed']}: " + " ".join(f"{k}={v:.4f}" for k, v in r["test"].items()))
    for k, (m, s) in res["summary"].items():
        print(f"{k}: {m:.4f} ± {s:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
