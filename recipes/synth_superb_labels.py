"""Write the bundled corpus's SUPERB labels (labels["phones"], labels["session"]) into its manifests.

    python recipes/synth_superb_labels.py [CORPUS_DIR]      # default: audiorep/data/synth

The labels are derived by audiorep.data.superb.synth_superb_labels from converted_aligned_phones.txt,
phones.txt and corpus.json; every other field of every row is kept. Running it twice changes nothing.
make_synth_corpus.sh runs it after generating the corpus.
"""

from __future__ import annotations

import sys
from pathlib import Path

from audiorep.data import read_manifest, write_manifest
from audiorep.data.corpus import SYNTH_ROOT
from audiorep.data.superb import synth_superb_labels


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else SYNTH_ROOT
    labels = synth_superb_labels(root)
    for path in sorted(root.glob("*.jsonl")):
        utts = read_manifest(path)
        missing = [u.id for u in utts if u.id not in labels]
        if missing:
            raise SystemExit(f"{path}: no frame labels for {missing[:3]}")
        for u in utts:
            u.labels.update(labels[u.id])
        write_manifest(utts, path)
        print(f"{path}: {len(utts)} rows labelled")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
