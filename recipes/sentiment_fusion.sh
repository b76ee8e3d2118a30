#!/usr/bin/env bash
# Multimodal sentiment heads on the bundled synth corpus: text-only, Self-MM, DMD, DeepMLF (3 seeds each),
# then the mean ± std table. Re-runnable: upstream features and the small text LMs are cached; each head's
# results land in exp/fusion/synth/<head>.json and the table in exp/fusion/synth/table.md.
#   bash recipes/sentiment_fusion.sh                 # all heads
#   HEADS="selfmm dmd" bash recipes/sentiment_fusion.sh
#   EXTRA="--set seeds=[0] --set epochs=2" bash recipes/sentiment_fusion.sh   # a smoke run
# TEASEL's row comes from the TEASEL recipe (audiorep.teasel); drop its summary JSON (same layout: "head",
# "runs", "summary") into exp/fusion/synth/teasel.json and the table picks it up.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-exp/fusion/synth}
HEADS=${HEADS:-"text selfmm dmd deepmlf"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # tiny models: more threads only contend on a shared CPU
for head in $HEADS; do
  echo "== $head" >&2
  python -m audiorep.downstream.fusion --config "recipes/configs/fusion/$head.yaml" --set "out_dir=$OUT" ${EXTRA:-}
done
python -m audiorep.downstream.fusion table "$OUT" | tee "$OUT/table.md"
