"""``audiorep superb``: SUPERB's PR, SID and ER on one frozen upstream, with a learning-rate sweep and seeds.

    audiorep superb --upstream logmel --tasks pr sid er --data synth --quick --out exp/superb/logmel
    audiorep superb --upstream exp/aalbert-synth/final --librispeech data/ls --voxceleb1 data/vox1 \\
        --iemocap data/iemocap --out exp/superb/aalbert

Writes OUT/superb.json and OUT/superb.md; rerunning the same command on OUT resumes the plan.
"""

from __future__ import annotations

import argparse

from . import start_logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "superb", help="SUPERB's PR, SID and ER protocols on one upstream (lr sweep, seeds, resumable)",
        description="Frozen upstream, weighted sum of its hidden states, SUPERB's heads and settings per task; "
                    "the upstream runs once per utterance (feature cache in OUT/cache); dev picks the learning "
                    "rate, test is read once for it. Results: OUT/superb.json and OUT/superb.md.",
    )
    p.add_argument("--upstream", required=True,
                   help="registered name, model folder, s3prl checkpoint, 'logmel' (SUPERB's FBANK: log-mel "
                        "without per-utterance CMVN) or 'logmel-cmvn' (with it: the encoders' input)")
    p.add_argument("--tasks", nargs="+", default=["pr", "sid", "er"], metavar="TASK",
                   help="any of pr sid er (default: all three)")
    p.add_argument("--data", default=None, choices=("synth",),
                   help="the bundled corpus for every task (default when no corpus folder is given)")
    p.add_argument("--librispeech", default=None, help="PR corpus folder (audiorep data prepare librispeech)")
    p.add_argument("--voxceleb1", default=None, help="SID corpus folder (audiorep data prepare voxceleb1)")
    p.add_argument("--iemocap", default=None, help="ER corpus folder (audiorep data prepare iemocap)")
    p.add_argument("--out", required=True, help="run folder (new, empty, or an earlier superb run to resume)")
    p.add_argument("--quick", action="store_true", help="short learning-rate grids (two rates per task), one seed")
    p.add_argument("--seeds", type=int, default=None, help="seeds per learning rate (default 1 quick, 3 full)")
    p.add_argument("--lrs", type=float, nargs="+", default=None, help="one learning-rate grid for every task")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per run instead of the preset's")
    p.add_argument("--max-utts", type=int, default=None, help="seeded subset of every split (smoke tests)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..probe.superb import SuperbConfig, run_superb

    roots = {k: getattr(args, k) for k in ("librispeech", "voxceleb1", "iemocap")}
    given = any(v is not None for v in roots.values())
    if given and args.data is not None:
        raise ConfigError("--data synth and corpus folders (--librispeech/--voxceleb1/--iemocap) exclude each other")
    start_logging()
    cfg = SuperbConfig(upstream=args.upstream, out=args.out, tasks=list(args.tasks),
                       data="corpora" if given else "synth", **roots, quick=args.quick, seeds=args.seeds,
                       lrs=args.lrs, steps=args.steps, max_utts=args.max_utts, device=args.device,
                       progress=not args.no_progress)
    report = run_superb(cfg)
    for task, r in report["tasks"].items():
        flag = "" if r["converged"] else "  (not converged: best step is the last)"
        print(f"{task}: {r['metric']} {r['value']:.2f} ± {r['std']:.2f} (lr {r['lr']:g}){flag}")
    print(f"{args.out}/superb.json")
    return 0
