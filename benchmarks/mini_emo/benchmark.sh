#!/usr/bin/env bash
# The HarmoniFuse benchmark on mini_emo: every system x seed x data size, trained, decoded and scored
# into bench/<size>/<system>/seed<k>/, then bench/RESULTS.md and bench/layer_weights*.png.
# Resumable: rerun the same command and finished runs (their scores exist) are skipped.
# Run it from the recipe dir:
#   cd egs2/mini_emo/harmonifuse1
#   ../../../benchmarks/mini_emo/benchmark.sh              # seeds 0,1,2; sizes full,low; all systems
#   ../../../benchmarks/mini_emo/benchmark.sh --max_hours 1.8   # start no run after 1.8 h (rerun later)
#   ../../../benchmarks/mini_emo/benchmark.sh --only harmonifuse,naive_multitask --seeds 0
#   ../../../benchmarks/mini_emo/benchmark.sh --seeds 0,1,2,3,4 --ablation_seeds 0,1,2
#                                                          # 5 seeds, 3 for the ablations (static_fusion, no_gate)
#   ../../../benchmarks/mini_emo/benchmark.sh --dry_run    # the plan: which runs are done / to do
#   ../../../benchmarks/mini_emo/benchmark.sh --smoke      # 1 epoch of 4 batches everywhere, into bench/smoke/
#                                                          # (CI-sized data is made only where there is none)
# The systems' configs: conf/ next to this script. Options: python -m benchmarks.mini_emo.run --help
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)   # the repository: benchmarks/ is not installed
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
[ -f ./path.sh ] && . ./path.sh
[ -f ./cmd.sh ] && . ./cmd.sh   # train_cmd / decode_cmd for the ESPnet baselines
exec "${PYTHON:-python3}" -m benchmarks.mini_emo.run --recipe_dir . --seeds 0,1,2 --sizes full,low "$@"
