#!/usr/bin/env bash
# HarmoniFuse in the paper's setting: ASR on LibriSpeech train-clean-100, SER on IEMOCAP
# (4 classes, leave-one-session-out). Set IEMOCAP and LIBRISPEECH in db.sh first.
#   ./run.sh                         # fold 5 (Session5 = test), all stages
#   ./run.sh --fold 3                # Session3 = test
#   ./run.sh --stage 6 --train_config conf/tuning/train_llama.yaml
# --fold N is this script's own option; any harmonifuse.sh option can be given too
# (./harmonifuse.sh --help lists them); --local_data_opts is added to "--fold N".
set -euo pipefail

fold=5
local_data_opts=
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --fold) fold=${2:?--fold needs a value}; shift 2 ;;
        --fold=*) fold=${1#*=}; shift ;;
        --local_data_opts) local_data_opts=${2-}; shift 2 ;;
        --local_data_opts=*) local_data_opts=${1#*=}; shift ;;
        *) args+=("$1"); shift ;;
    esac
done
case "${fold}" in
    [1-5]) ;;
    *) echo "run.sh: --fold must be 1-5 (the IEMOCAP test session), not '${fold}'" >&2; exit 2 ;;
esac

./harmonifuse.sh \
    --ngpu 1 --inference_ngpu 1 --inference_batch_size 16 \
    --token_type hf \
    --train_config conf/train.yaml \
    --inference_model valid.acc_tasks.ave.pth \
    --local_data_opts "--fold ${fold} ${local_data_opts}" \
    --asr_train_set librispeech_train_clean_100 --asr_valid_set librispeech_dev_clean \
    --asr_test_sets "librispeech_test_clean librispeech_test_other" \
    --ser_train_set "iemocap_train_fold${fold}" --ser_valid_set "iemocap_dev_fold${fold}" \
    --ser_test_sets "iemocap_test_fold${fold}" \
    --ser_labels neutral,happy,angry,sad \
    "${args[@]}"
