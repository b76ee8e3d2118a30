#!/usr/bin/env bash
# Regenerate the bundled speech corpus (audiorep/data/synth/) from Debian's synthesizers.
#
#   recipes/make_synth_corpus.sh                 # the committed default (seed 0, 22 utterances x 30 speakers, Ogg)
#   OUT=/tmp/big UTTS=100 FORMAT=flac recipes/make_synth_corpus.sh   # a larger, lossless one elsewhere
#
# Needs: apt-get install festival festvox-kallpc16k festvox-kdlpc16k flite sox
# Deterministic given SEED (same synthesizer versions). Uses at most JOBS synthesizer processes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-audiorep/data/synth}
SEED=${SEED:-0}
UTTS=${UTTS:-22}
JOBS=${JOBS:-2}
FORMAT=${FORMAT:-ogg}
for tool in festival flite sox; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install festival festvox-kallpc16k festvox-kdlpc16k flite sox" >&2; exit 1; }
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/audiorep-synth.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
python recipes/synth/synth_gen.py --out "$TMP/corpus" --seed "$SEED" --utts-per-speaker "$UTTS" \
  --jobs "$JOBS" --format "$FORMAT"
# keep the hand-written README of the bundled corpus; replace everything generated
if [ -d "$OUT" ]; then
  find "$OUT" -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +
fi
mkdir -p "$OUT"
cp -r "$TMP/corpus/." "$OUT/"
python recipes/synth_superb_labels.py "$OUT"  # SUPERB PR phone sequences + ER sessions into the manifests
audiorep data info "$OUT"
