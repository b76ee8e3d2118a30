"""Result tables of the sentiment heads: one markdown row per head (mean ± std over seeds), TEASEL runs collected
into the same layout, and reference rows (constant predictor, words-only oracle) for the bundled corpus.

What ``audiorep sentiment table|collect-teasel|reference`` print.
"""

from __future__ import annotations

import json
from pathlib import Path

COLUMNS = [("MAE", "MAE", 1.0), ("Corr", "Corr", 1.0), ("Has0_acc_2", "Acc-2 (Has0)", 100.0),
           ("Non0_acc_2", "Acc-2 (Non0)", 100.0), ("Has0_F1", "F1 (Has0)", 100.0), ("Non0_F1", "F1 (Non0)", 100.0),
           ("Mult_acc_7", "Acc-7", 100.0), ("Corr_audio_swapped", "Corr, audio swapped", 1.0)]
TEASEL_ROWS = {"teasel-text": 1, "teasel": 2}  # collect_teasel's rows, between the text-only floor and the heads


def _cell(mean: float, std: float | None = None, factor: float = 1.0) -> str:
    """One table cell: 3 decimals for raw metrics, 1 for percentages (factor 100); "–" when undefined (NaN,
    e.g. the Corr of a constant predictor)."""
    if mean != mean:
        return "–"
    digits = 3 if factor == 1.0 else 1
    text = f"{mean * factor:.{digits}f}"
    return text if std is None else f"{text} ± {std * factor:.{digits}f}"


def table(folder: str) -> str:
    """Markdown table (mean ± std over seeds) over the result JSONs in ``folder`` (one row per head)."""
    from ..errors import ConfigError

    if not Path(folder).is_dir():
        raise ConfigError(f"{folder}: no such results folder")

    from .heads import HEADS

    order = {**TEASEL_ROWS, **{name: spec.row for name, spec in HEADS.items()}}
    rows = []
    files = sorted(Path(folder).glob("*.json"), key=lambda p: (order.get(p.stem, 99), p.stem))
    for p in files:
        res = json.loads(p.read_text())
        if "summary" not in res:
            continue
        s = res["summary"]
        cells = [_cell(*s[k], factor=f) if k in s else "–" for k, _, f in COLUMNS]
        rows.append(f"| {res['head']} | {len(res['runs'])} | " + " | ".join(cells) + " |")
    if not rows:
        raise ConfigError(f"{folder}: no result JSONs with a summary (expected files written by "
                          f"'audiorep sentiment train')")
    head = "| head | seeds | " + " | ".join(c for _, c, _ in COLUMNS) + " |"
    return "\n".join([head, "|" + "---|" * (len(COLUMNS) + 2)] + rows)


def collect_teasel(out: str, run_dirs: list[str]) -> dict:
    """TEASEL fine-tuning runs (folders with ``finetune_results.json``, one per seed) -> ``out`` in this
    package's result layout, so :func:`table` shows TEASEL beside the fusion heads (same MMSA metrics)."""
    from ..errors import ConfigError
    from ..fileio import atomic_write_bytes
    from .fusion_run import summarize

    runs = []
    for d in run_dirs:
        f = Path(d) / "finetune_results.json"
        if not f.is_file():
            raise ConfigError(f"{d}: no finetune_results.json (run recipes/teasel_finetune.sh with out_dir={d})")
        r = json.loads(f.read_text())
        runs.append({"test": r["test"], "test_audio_swapped": r.get("test_audio_swapped"),
                     "seed": r.get("config", {}).get("seed"), "dir": str(d), "use_audio": r.get("use_audio")})
    res = {"head": "teasel" if all(r["use_audio"] for r in runs) else "teasel-text", "runs": runs,
           "summary": summarize(runs)}
    atomic_write_bytes(Path(out), (json.dumps(res, indent=2) + "\n").encode())
    return res


def reference_rows(data: str = "synth", split: str = "test", train_split: str = "train") -> dict:
    """Context for the bundled corpus: MMSA metrics on ``split`` of (a) the train median as a constant and
    (b) the best linear map of the corpus's documented lexical polarity (what the words alone say; an oracle a
    text model can at most approach). Returns {name: metrics}."""
    import numpy as np

    from ..data.corpus import get_corpus
    from ..scoring import regression_metrics

    c = get_corpus(data)
    tr, te = c.manifest(train_split), c.manifest(split)
    ytr = np.array([u.labels["sentiment"] for u in tr])
    yte = np.array([u.labels["sentiment"] for u in te])
    out = {"constant (train median)": regression_metrics(np.full_like(yte, np.median(ytr)), yte, "mosi")}
    if all("lexical_polarity" in u.labels for u in tr + te):
        a, b = np.polyfit([u.labels["lexical_polarity"] for u in tr], ytr, 1)
        p = a * np.array([u.labels["lexical_polarity"] for u in te]) + b
        out["oracle words (lexical polarity, linear)"] = regression_metrics(p, yte, "mosi")
    return out


def reference_table(data: str = "synth") -> str:
    """:func:`reference_rows` as markdown rows with :func:`table`'s columns (seeds column "-")."""
    lines = []
    for name, m in reference_rows(data).items():
        cells = [_cell(m[k], factor=f) if k in m else "–" for k, _, f in COLUMNS]
        lines.append(f"| {name} | - | " + " | ".join(cells) + " |")
    return "\n".join(lines)
