#!/usr/bin/env bash
# Shared body of recipes/downstream_{phone,speaker,sentiment}.sh: resolve the upstream, then run the CLI.
#   TASK=phone recipes/_downstream.sh [audiorep downstream flags...]
# Environment: MODEL (default: the newest exp/aalbert-small*/final, which recipes/pretrain_aalbert.sh
# writes), MODE (default weighted-sum),
# DATA (default synth = the bundled corpus), OUT (default exp/downstream/<task>-<model>-<mode>-default).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package, whichever one is installed
: "${TASK:?set TASK=phone|speaker|sentiment}"
MODE=${MODE:-weighted-sum}
DATA=${DATA:-synth}
if [ -z "${MODEL:-}" ]; then
  # recipes/pretrain_aalbert.sh writes exp/aalbert-small-<date>-<time>/final: take the newest finished one
  MODEL=$(ls -td exp/aalbert-small*/final 2>/dev/null | while read -r d; do
            [ -f "$d/config.json" ] && { echo "$d"; break; }; done || true)
  if [ -z "$MODEL" ]; then
    if [ -x recipes/pretrain_aalbert.sh ]; then
      echo "no exp/aalbert-small*/final yet: running recipes/pretrain_aalbert.sh first (a few minutes on a CPU)" >&2
      MODEL=$(recipes/pretrain_aalbert.sh | tail -n 1)
    else
      echo "no pretrained model: make one with recipes/pretrain_aalbert.sh, or set MODEL=logmel (the floor)," \
           "MODEL=<model folder> or MODEL=<registered name>" >&2
      exit 1
    fi
  fi
  echo "upstream: $MODEL" >&2
fi
args=(--config "recipes/configs/downstream/$TASK.yaml" --upstream "$MODEL" --mode "$MODE" --data "$DATA")
if [ -n "${OUT:-}" ]; then args+=(--out "$OUT"); fi
exec audiorep downstream "${args[@]}" "$@"
