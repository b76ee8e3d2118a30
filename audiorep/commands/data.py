"""``audiorep data info|list|prepare``: inspect corpora and turn real corpus trees into manifests."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect corpora, write manifests",
                       description="Corpus tools: counts of a corpus, the bundled corpora, manifest preparation.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    info = dsub.add_parser("info", help="print a corpus's counts as 'key: value' lines")
    info.add_argument("corpus", help="'synth' (bundled), a folder of *.jsonl manifests, or one manifest")
    info.set_defaults(func=run_info)

    lst = dsub.add_parser("list", help="list the bundled corpora")
    lst.set_defaults(func=run_list)

    prep = dsub.add_parser("prepare", help="write manifests for a corpus tree",
                           description="Read a corpus tree and write one <split>.jsonl manifest per split "
                                       "(plus converted_aligned_phones.txt when the corpus has one) into OUT.")
    prep.add_argument("kind", choices=["librispeech", "voxceleb1", "iemocap", "mosi"], help="layout of ROOT")
    prep.add_argument("root", type=Path, help="corpus folder (for mosi: the segment WAV folder)")
    prep.add_argument("out", type=Path, help="folder to write manifests into")
    prep.add_argument("--split-file", type=Path, default=None, help="voxceleb1: iden_split.txt (default ROOT/iden_split.txt)")
    prep.add_argument("--labels", type=Path, default=None, help="mosi: labels CSV (video_id, clip_id, text, label, mode)")
    prep.add_argument("--lexicon", type=Path, action="append", default=None, metavar="FILE",
                      help="librispeech: pronunciation lexicon for SUPERB PR's labels['phones'] (repeat; the first "
                           "pronunciation in the order given wins); writes only train-clean-100/dev-clean/test-clean "
                           "as train/dev/test")
    prep.add_argument("--phones", action="store_true",
                      help="librispeech: require SUPERB PR phone labels (an error naming the lexicons when --lexicon is missing)")
    prep.add_argument("--meta-data", type=Path, default=None, metavar="DIR",
                      help="iemocap: s3prl's emotion/meta_data folder; take SUPERB's exact utterance lists from it")
    prep.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                      help="stop at the first missing/unreadable file (default) or skip it and list it at the end")
    prep.add_argument("--overwrite", action="store_true", help="replace manifests already in OUT")
    prep.set_defaults(func=run_prepare)


def run_info(args: argparse.Namespace) -> int:
    from ..data import get_corpus

    for key, value in get_corpus(args.corpus).info().items():
        print(f"{key}: {value}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ..data import list_corpora

    for name in list_corpora():
        print(name)
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    import shutil
    import sys

    from ..data import write_manifest
    from ..data.iemocap import read_iemocap
    from ..data.lexicon import LEXICON_HELP, PR_SUBSETS, add_phone_labels, read_lexicon
    from ..data.readers import read_librispeech, read_mosi, read_voxceleb1
    from ..errors import ConfigError

    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"{args.out}: exists and is not a folder")
    if args.kind == "mosi" and args.labels is None:
        raise ConfigError("data prepare mosi: --labels LABEL_CSV is required")
    if (args.lexicon or args.phones) and args.kind != "librispeech":
        raise ConfigError(f"data prepare {args.kind}: --lexicon/--phones are for librispeech (SUPERB PR) only")
    if args.phones and not args.lexicon:
        raise ConfigError(f"data prepare librispeech --phones: no --lexicon given; {LEXICON_HELP}")
    if args.meta_data is not None and args.kind != "iemocap":
        raise ConfigError(f"data prepare {args.kind}: --meta-data is for iemocap only")
    existing = sorted(p.name for p in args.out.glob("*.jsonl")) if args.out.is_dir() else []
    if existing and not args.overwrite:  # checked before the corpus scan; an edited manifest must not vanish
        raise ConfigError(f"{args.out}: already holds {', '.join(existing)}; pass --overwrite to replace the "
                          "manifests it writes, or choose another OUT")
    if args.kind == "librispeech" and args.lexicon:
        lexicon = read_lexicon(args.lexicon)  # before the corpus scan: a bad lexicon fails fast
        res = read_librispeech(args.root, on_error=args.on_error, subsets=PR_SUBSETS)
        for utts in res.splits.values():
            add_phone_labels(utts, args.lexicon, lexicon)
    elif args.kind == "librispeech":
        res = read_librispeech(args.root, on_error=args.on_error)
    elif args.kind == "iemocap":
        res = read_iemocap(args.root, args.meta_data, on_error=args.on_error)
    elif args.kind == "voxceleb1":
        res = read_voxceleb1(args.root, args.split_file, on_error=args.on_error)
    else:
        res = read_mosi(args.root, args.labels, on_error=args.on_error)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, utts in res.splits.items():
        path = write_manifest(utts, args.out / f"{split}.jsonl")
        print(f"{split}: {len(utts)} utterances -> {path}")
    if res.frame_labels is not None:
        shutil.copyfile(res.frame_labels, args.out / "converted_aligned_phones.txt")
        print(f"frame labels: {res.frame_labels} -> {args.out / 'converted_aligned_phones.txt'}")
    if res.skipped:
        print(f"skipped {len(res.skipped)} entries:", file=sys.stderr)
        for _what, reason in res.skipped[:50]:
            print(f"  {reason}", file=sys.stderr)
    return 0
