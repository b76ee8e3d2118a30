#!/usr/bin/env bash
# The probe table: {log-mel floor, Mockingjay, AALBERT, TERA from the bundled-corpus pretraining}
#   x {weighted sum, finetune, last layer} x {phone, speaker} on the bundled corpus.
# Writes OUT/probe_table.md, results.json, layer_weights_<task>.png, curves_<task>.png and runs/<cell>/.
#
#   recipes/probe_table.sh                         # uses the newest exp/{mockingjay,aalbert,tera}-small*/final
#   PRETRAIN=1 recipes/probe_table.sh              # first runs recipes/pretrain_{mockingjay,aalbert,tera}.sh
#   OUT=exp/probe2 recipes/probe_table.sh --epochs 4 --finetune-epochs 1
#   recipes/probe_table.sh --models AALBERT=exp/aalbert-small-X/final MyModel=path/to/folder
#
# Budget (2 shared CPU cores): every upstream runs once over the corpus for all its frozen cells (cached
# hidden states), heads train for at most --epochs (default 8); finetune cells train on 160 utterances for
# 2 epochs. An interrupted table continues where it stopped (finished cells are reused).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-exp/probe_table}
if [ "${PRETRAIN:-0}" = 1 ]; then
  for m in mockingjay aalbert tera; do
    if ! ls -d exp/$m-small*/final/config.json >/dev/null 2>&1; then
      echo "pretraining $m on the bundled corpus (recipes/pretrain_$m.sh)" >&2
      recipes/pretrain_$m.sh | tail -n 1
    fi
  done
fi
exec audiorep downstream probe-table --data synth --out "$OUT" "$@"
