#!/usr/bin/env bash
# Pretrain TERA (Mockingjay encoder; time + frequency-band + Gaussian-noise alteration).
#
#   recipes/pretrain_tera.sh                              # bundled corpus, small variant
#   recipes/pretrain_tera.sh /data/LibriSpeech exp/tera   # published tera-base recipe (960 h, 1M steps)
#   recipes/pretrain_tera.sh synth exp/t masking.noise_proportion=0.3 --resume
#
# Last output line: the final model folder (loadable with audiorep.load).
source "$(dirname "$0")/pretrain_common.sh"
run_pretrain tera-small tera-base "$@"
