#!/usr/bin/env bash
# TEASEL LAA pretraining (masked LM with a speech prefix; only the LAA trains).
#
#   recipes/teasel_pretrain.sh                                   # bundled corpus, cached small LM, random-init wav2vec2 CNN
#   recipes/teasel_pretrain.sh --text-model /models/roberta-base wav2vec2=/models/wav2vec2-base-960h
#   recipes/teasel_pretrain.sh front_end=upstream upstream=exp/aalbert/final --out exp/teasel/pretrain-aalbert
#
# The first run trains and caches the default small RoBERTa under $AUDIOREP_HOME/teasel/. Writes
# laa-step<N>.safetensors, laa.safetensors and pretrain_results.json under the output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
exec audiorep teasel pretrain --config recipes/configs/teasel/pretrain.yaml "$@"
