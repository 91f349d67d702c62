#!/usr/bin/env bash
# HarmoniFuse on the embedded mini_emo corpus (synthesised with espeak-ng: no download).
#   ./run.sh                        # everything: data, train, decode, score, plots, pack
#   ./run.sh --stage 6 --stop_stage 8 --train_config conf/tuning/train_naive_multitask.yaml
# Any harmonifuse.sh option can be given (./harmonifuse.sh --help lists them).
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

./harmonifuse.sh \
    --ngpu 0 --nj 2 --inference_nj 2 --inference_batch_size 16 \
    --inference_model valid.acc_tasks.ave.pth \
    --token_type sentencepiece --nbpe 150 \
    --train_config conf/train.yaml --pretrain_config conf/pretrain.yaml \
    --asr_train_set asr_train --asr_valid_set asr_dev --asr_test_sets asr_test \
    --ser_train_set ser_train --ser_valid_set ser_dev --ser_test_sets ser_test \
    --ser_labels neutral,happy,angry,sad \
    "$@"
