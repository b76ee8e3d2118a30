#!/usr/bin/env bash
# Pretrain Audio ALBERT (one shared transformer layer x3) by masked reconstruction of log-mel frames.
#
#   recipes/pretrain_aalbert.sh                                  # bundled corpus, small variant, a few minutes on CPU
#   recipes/pretrain_aalbert.sh /data/LibriSpeech exp/aalbert    # published aalbert-base recipe (960 h, 1M steps)
#   recipes/pretrain_aalbert.sh synth exp/a train.max_steps=50 optim.lr=5e-4
#   recipes/pretrain_aalbert.sh synth exp/a --resume            # continue a killed run from its last checkpoint
#   torchrun --nproc_per_node=8 -m audiorep.cli pretrain --config recipes/configs/pretrain/aalbert-base.yaml --data /data/LibriSpeech
#
# Shows a progress bar, writes checkpoints/, metrics.csv, loss.png, final/ (audiorep.load-able) and an
# s3prl-layout checkpoint; the last output line is the final model folder.
source "$(dirname "$0")/pretrain_common.sh"
run_pretrain aalbert-small aalbert-base "$@"
