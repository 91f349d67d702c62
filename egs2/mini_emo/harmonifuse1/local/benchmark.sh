#!/usr/bin/env bash
# The HarmoniFuse benchmark on mini_emo (issue 4): every system x seed x data size, trained, decoded and
# scored into bench/<size>/<system>/seed<k>/, then bench/RESULTS.md and bench/layer_weights*.png.
# Resumable: rerun the same command and finished runs (their scores exist) are skipped.
#   local/benchmark.sh                                   # seeds 0,1,2; sizes full,low; all systems
#   local/benchmark.sh --max_hours 1.8                   # stop starting new runs after 1.8 h (rerun later)
#   local/benchmark.sh --only harmonifuse,naive_multitask --seeds 0
#   local/benchmark.sh --dry_run                         # the plan: which runs are done / to do
#   local/benchmark.sh --smoke                           # 1 epoch of 4 batches everywhere, into bench/smoke/ (CI-sized data
#                                                        # is generated only where the recipe has no data yet)
# Options: python -m espnet_harmonifuse.benchmark.run --help
set -euo pipefail
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
[ -f ./path.sh ] && . ./path.sh
[ -f ./cmd.sh ] && . ./cmd.sh   # train_cmd / decode_cmd for the ESPnet baselines
exec "${PYTHON:-python3}" -m espnet_harmonifuse.benchmark.run --recipe_dir . --seeds 0,1,2 --sizes full,low "$@"
