#!/usr/bin/env bash
# ESPnet's own peer baselines on the recipe's formatted data (dump/raw, recipe stages 1-3), through
# ESPnet's entry points: asr = espnet2.bin.asr_train / asr_inference (Conformer + Transformer,
# CTC/attention), cls = espnet2.bin.cls_train / cls_inference on the SER corpus; scored with our
# score_asr / score_ser. Steps (--stages): prep (token list + collect stats), train, decode, score.
# Run it from the recipe dir (cd egs2/mini_emo/harmonifuse1):
#   ../../../benchmarks/mini_emo/espnet_baselines.sh --task asr --seed 0   # -> exp/espnet_asr_seed0/decode_bench/asr_test/score_wer/
#   ../../../benchmarks/mini_emo/espnet_baselines.sh --task cls --seed 0   # -> exp/espnet_cls_seed0/decode_bench/ser_test/score_ser/
#   ../../../benchmarks/mini_emo/espnet_baselines.sh --task asr --train_args "--max_epoch 1"
# The asr baseline reuses the recipe's stage-4 sentencepiece model (--bpemodel). benchmark.sh
# runs both for every seed and data size itself.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "${here}/../.." && pwd)   # the repository: benchmarks/ is not installed
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
help_message="Usage: $0 [options]   (python -m benchmarks.mini_emo.espnet_baselines --help: all details)"
task=asr            # asr (ESPnet ASR task) or cls (ESPnet classification task, on the SER data).
seed=0              # Training seed.
config=             # Training config (default: conf/espnet_<task>_conformer.yaml next to this script).
dumpdir=dump        # Formatted data: ${dumpdir}/raw/<set>.
expdir=exp          # Parent of the stats and experiment dirs.
train_set=          # Default: asr_train (asr), ser_train (cls).
valid_set=          # Default: asr_dev (asr), ser_dev (cls).
test_sets=          # Default: asr_test (asr), ser_test (cls).
bpemodel=data/token_list/bpe150/bpe.model  # Sentencepiece model (asr; recipe stage 4).
stats_dir=          # Default: ${expdir}/espnet_stats/<task>.
exp_dir=            # Default: ${expdir}/espnet_<task>_seed<seed>.
train_args=         # Extra options for asr_train / cls_train, e.g. "--max_epoch 1".
stages=prep,train,decode,score  # Steps to run.
inference_nj=2      # Decoding jobs.
. scripts/utils/parse_options.sh
[ -f ./path.sh ] && . ./path.sh
[ -f ./cmd.sh ] && . ./cmd.sh   # train_cmd / decode_cmd launchers
case "${task}" in
    asr) corpus=asr; extra=(--bpemodel "${bpemodel}" --decode_config "${here}/conf/espnet_decode_asr.yaml") ;;
    cls) corpus=ser; extra=() ;;
    *) echo "$0: --task must be asr or cls" >&2; exit 2 ;;
esac
exec "${PYTHON:-python3}" -m benchmarks.mini_emo.espnet_baselines --task "${task}" \
    --config "${config:-${here}/conf/espnet_${task}_conformer.yaml}" --dumpdir "${dumpdir}" \
    --train_set "${train_set:-${corpus}_train}" --valid_set "${valid_set:-${corpus}_dev}" \
    --test_sets "${test_sets:-${corpus}_test}" --stats_dir "${stats_dir:-${expdir}/espnet_stats/${task}}" \
    --exp_dir "${exp_dir:-${expdir}/espnet_${task}_seed${seed}}" --seed "${seed}" --train_args "${train_args}" \
    --stages "${stages}" --inference_nj "${inference_nj}" "${extra[@]}"
