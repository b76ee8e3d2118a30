#!/usr/bin/env bash
# Speaker ID (30 speakers of the bundled corpus): mean pooling over valid frames, then linear,
# on the bundled corpus and the newest AALBERT model written by recipes/pretrain_aalbert.sh
# (exp/aalbert-small-*/final; the recipe runs it first when there is none).
# Prints the test metrics as "key: value" lines; the run folder is the last line.
#
#   recipes/downstream_speaker.sh                                   # weighted sum of the frozen AALBERT's layers
#   MODE=finetune recipes/downstream_speaker.sh                     # fine-tune the upstream too
#   MODEL=logmel MODE=last recipes/downstream_speaker.sh            # the log-mel floor (no encoder)
#   MODEL=exp/tera-small-DATE/final recipes/downstream_speaker.sh epochs=5 --head mean-mlp
#
# Settings: recipes/configs/downstream/speaker.yaml; any field can be overridden with key=value.
set -euo pipefail
TASK=speaker exec "$(dirname "$0")/_downstream.sh" "$@"
