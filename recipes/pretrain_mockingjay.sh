#!/usr/bin/env bash
# Pretrain Mockingjay (3 unshared layers; time alteration) by masked reconstruction of log-mel frames.
#
#   recipes/pretrain_mockingjay.sh                                    # bundled corpus, small variant
#   recipes/pretrain_mockingjay.sh /data/LibriSpeech exp/mockingjay   # published mockingjay-base recipe
#   CONFIG=recipes/configs/pretrain/mockingjay-large.yaml recipes/pretrain_mockingjay.sh /data/LibriSpeech exp/mj-large
#   recipes/pretrain_mockingjay.sh synth exp/m train.max_steps=50 --resume
#
# Last output line: the final model folder (loadable with audiorep.load).
source "$(dirname "$0")/pretrain_common.sh"
run_pretrain mockingjay-small mockingjay-base "$@"
