#!/usr/bin/env bash
# TEASEL sentiment fine-tuning (regression on <s>, MMSA metrics) after recipes/teasel_pretrain.sh.
#
#   recipes/teasel_finetune.sh                                    # TEASEL, wav2vec2-CNN front end, bundled corpus
#   recipes/teasel_finetune.sh --config recipes/configs/teasel/finetune_text.yaml   # text-only RoBERTa baseline
#   recipes/teasel_finetune.sh --text-model /models/roberta-base lr=2e-5 data=/data/mosi_manifests
#
# Writes best.safetensors and finetune_results.json (dev history, test metrics) under the output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
config=recipes/configs/teasel/finetune.yaml
if [[ "${1:-}" == "--config" ]]; then config="$2"; shift 2; fi
exec audiorep teasel finetune --config "$config" "$@"
