#!/usr/bin/env bash
# Sentiment regression on [-3, 3] from speech alone (MAE / Corr / Acc-2 / F1 / Acc-7, MMSA's definitions),
# on the bundled corpus and the newest AALBERT model written by recipes/pretrain_aalbert.sh
# (exp/aalbert-small-*/final; the recipe runs it first when there is none).
# Prints the test metrics as "key: value" lines; the run folder is the last line.
#
#   recipes/downstream_sentiment.sh                                   # weighted sum of the frozen AALBERT's layers
#   MODE=finetune recipes/downstream_sentiment.sh                     # fine-tune the upstream too
#   MODEL=logmel MODE=last recipes/downstream_sentiment.sh            # the log-mel floor (no encoder)
#   MODEL=exp/tera-small-DATE/final recipes/downstream_sentiment.sh epochs=5 --head mean-mlp
#
# Settings: recipes/configs/downstream/sentiment.yaml; any field can be overridden with key=value.
set -euo pipefail
TASK=sentiment exec "$(dirname "$0")/_downstream.sh" "$@"
