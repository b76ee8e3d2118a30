#!/usr/bin/env bash
# Multimodal sentiment heads on the bundled synth corpus: text-only, Self-MM, DMD, DeepMLF (3 seeds each),
# then the mean ± std table. Re-runnable: upstream features and the small text LMs are cached; each head's
# results land in exp/fusion/synth/<head>.json and the table in exp/fusion/synth/table.md.
#   bash recipes/sentiment_fusion.sh                      # all heads, seeds one after another
#   PARALLEL_SEEDS=1 bash recipes/sentiment_fusion.sh     # one process per seed, merged afterwards
#   HEADS="selfmm dmd" bash recipes/sentiment_fusion.sh
#   EXTRA="seeds=[0] epochs=2" bash recipes/sentiment_fusion.sh   # a smoke run
#   EXTRA="upstream=exp/aalbert-small-<stamp>/final mode=weighted-sum" ...   # a pretrained upstream
# TEASEL's row: run recipes/teasel_finetune.sh once per seed (seed=N --out exp/teasel/ft-sN),
# then TEASEL_RUNS="exp/teasel/ft-s0 exp/teasel/ft-s1 exp/teasel/ft-s2" bash recipes/sentiment_fusion.sh
# Each head's row also gives test Corr with the audio swapped between utterances: equal = audio unused.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-exp/fusion/synth}
HEADS=${HEADS:-"text selfmm dmd deepmlf"}
SEEDS=${SEEDS:-"0 1 2"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # tiny models: more threads only contend on a shared CPU
for head in $HEADS; do
  echo "== $head" >&2
  cfg="recipes/configs/fusion/$head.yaml"
  if [[ "${PARALLEL_SEEDS:-0}" == 1 ]]; then
    mkdir -p "$OUT/seeds"; pids=(); parts=()
    for s in $SEEDS; do
      audiorep sentiment train --config "$cfg" "seeds=[$s]" --out "$OUT/seeds/$head-s$s" ${EXTRA:-} \
        > "$OUT/seeds/$head-s$s.log" 2>&1 &
      pids+=($!); parts+=("$OUT/seeds/$head-s$s/$head.json")
    done
    for p in "${pids[@]}"; do wait "$p"; done
    audiorep sentiment merge "$OUT" "${parts[@]}"
  else
    audiorep sentiment train --config "$cfg" --out "$OUT" "seeds=[${SEEDS// /,}]" ${EXTRA:-}
  fi
done
if [[ -n "${TEASEL_RUNS:-}" ]]; then audiorep sentiment collect-teasel "$OUT/teasel.json" $TEASEL_RUNS; fi
{ audiorep sentiment table "$OUT"; echo; echo "Reference rows (test split):"; audiorep sentiment reference synth; } \
  | tee "$OUT/table.md"
