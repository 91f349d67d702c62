#!/usr/bin/env bash
# benchmarks/sweeps/dev_sweep.py on a bare GPU machine: the corpus, stages 1-5, then all variants at once.
#   bash benchmarks/sweeps/dev_sweep_gpu.sh <pretrain_dir> <out_dir> <deadline_s> [<local/data.sh options> [dev_sweep.py options]]
#   bash benchmarks/sweeps/dev_sweep_gpu.sh .sweep_carry/pretrain "$OUT" 540 "" --parallel 14 --ngpu 1
# pretrain_dir: a finished encoder pre-training on the default mini_emo corpus (its config.yaml and
# valid.loss.best.pth, e.g. egs2/mini_emo/harmonifuse1/bench/full/pretrain), so every variant starts
# from the encoder the CPU benchmark uses. The corpus is synthesised again with all cores: it is
# byte-identical for a seed whatever the number of jobs. deadline_s counts from this script's start.
set -euo pipefail
pre=$(realpath "$1"); out=$(realpath -m "$2"); deadline=$3; data_opts=${4:-}; shift 3; shift || true
t0=$(date +%s); nj=$(nproc)
root=$(cd "$(dirname "$0")/../.." && pwd)   # the repository: benchmarks/ is not installed
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
cd "${root}/egs2/mini_emo/harmonifuse1"
exp=exp/dev_sweep
./run.sh --stage 1 --stop_stage 5 --expdir "${exp}" --nj "${nj}" --local_data_opts "--gen_opts '--nj ${nj}' ${data_opts}"
mkdir -p "${exp}/pretrain" "${out}"
cp "${pre}/config.yaml" "${pre}/valid.loss.best.pth" "${exp}/pretrain/"
date > "${exp}/pretrain/done"
echo "data and encoder ready after $(( $(date +%s) - t0 )) s"
python3 -m benchmarks.sweeps.dev_sweep --expdir "${exp}" --out "${out}" \
    --deadline_s $(( deadline - ($(date +%s) - t0) )) "$@" || rc=$?
tar czf "${out}/logs.tgz" "${exp}"/*/sweep.log "${exp}"/*/train.log "${exp}/logs" 2>/dev/null || true
exit "${rc:-0}"
