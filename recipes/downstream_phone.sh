#!/usr/bin/env bash
# Phone frame classification (41 classes, 10 ms frames) with a linear probe,
# on the bundled corpus and the newest AALBERT model written by recipes/pretrain_aalbert.sh
# (exp/aalbert-small-*/final; the recipe runs it first when there is none).
# Prints the test metrics as "key: value" lines; the run folder is the last line.
#
#   recipes/downstream_phone.sh                                   # weighted sum of the frozen AALBERT's layers
#   MODE=finetune recipes/downstream_phone.sh                     # fine-tune the upstream too
#   MODEL=logmel MODE=last recipes/downstream_phone.sh            # the log-mel floor (no encoder)
#   MODEL=exp/tera-small-DATE/final recipes/downstream_phone.sh epochs=5 --head frame-mlp
#
# Settings: recipes/configs/downstream/phone.yaml; any field can be overridden with key=value.
set -euo pipefail
TASK=phone exec "$(dirname "$0")/_downstream.sh" "$@"
