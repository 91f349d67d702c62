#!/usr/bin/env bash
# HarmoniFuse recipe stages, shared by egs2/*/harmonifuse1/run.sh (docs/architecture.md, README.md).
# Run from a recipe dir holding local/data.sh, conf/, path.sh, cmd.sh and scripts/:
#     ./harmonifuse.sh --stage 1 --stop_stage 10 --train_config conf/train.yaml \
#         --asr_train_set asr_train --asr_valid_set asr_dev --asr_test_sets "asr_test" \
#         --ser_train_set ser_train --ser_valid_set ser_dev --ser_test_sets "ser_test"
# A task whose train set is empty is skipped everywhere (single-task runs).
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
_cmdline="$0 $*"

# General (stages: 1 data, 2 format, 3 filter, 4 tokenizer, 5 shapes, 6 train, 7 decode, 8 score,
# 9 plots, 10 pack, 11 upload)
stage=1                  # First stage to run.
stop_stage=11            # Last stage to run.
skip_data_prep=false     # Skip the data preparation stages (1 data, 2 format, 3 filter, 4 tokenizer).
skip_train=false         # Skip the training stages (5 shapes, 6 train).
skip_eval=false          # Skip the evaluation stages (7 decode, 8 score, 9 plots).
skip_packing=false       # Skip the packing stage (10).
skip_upload=true         # Skip the upload stage (11; --skip_upload false --hf_repo org/name uploads).
nj=4                     # Parallel processes for formatting audio (stage 2).
inference_nj=4           # Parallel decoding jobs per test set (stage 7).
ngpu=1                   # GPUs for training, per node (0: CPU; > 1: DDP, one process per GPU).
num_nodes=1              # Nodes for training (> 1: cmd_backend=slurm; ESPnet's launcher runs ngpu processes on each).
train_launcher=espnet    # How stage 6 starts DDP: espnet (ESPnet spawns one process per GPU; --num_nodes via its launcher) or torchrun (on this node; --ngpu N > 0: N processes, one GPU each; --ngpu 0: --nproc_per_node CPU processes over gloo).
nproc_per_node=2         # Training processes with --train_launcher torchrun --ngpu 0 (set OMP_NUM_THREADS to the cores each one may use).
inference_ngpu=0         # GPUs per decoding job (cmd_backend=local gives each job its own, round-robin).
python=python3           # Python interpreter.
dumpdir=dump             # Formatted data: ${dumpdir}/raw/<set>.
expdir=exp               # Stats, models, decodes, logs and stage_times.tsv.
# Data
local_data_opts=         # Options passed to local/data.sh.
min_sec=0.1              # Drop train/valid utterances shorter than this (seconds).
max_sec=30               # Drop train/valid utterances longer than this (seconds; <= 0: no bound).
ser_labels=neutral,happy,angry,sad # SER label set (comma list).
asr_train_set=           # ASR train set (empty: no ASR task).
asr_valid_set=           # ASR validation set.
asr_test_sets=           # ASR test sets (space separated).
ser_train_set=           # SER train set (empty: no SER task).
ser_valid_set=           # SER validation set.
ser_test_sets=           # SER test sets (space separated).
speed_perturb_factors=   # Speed perturbation of the ASR train set, e.g. "0.9 1.0 1.1" (stage 2 makes <asr_train_set>_sp, the ASR train set from stage 3 on).
# Tokenizer
token_type=sentencepiece # sentencepiece (trained in stage 4) or hf (the LLM's own tokenizer).
nbpe=500                 # Sentencepiece vocabulary size (stage 4 stops, naming the range, if the text does not allow it).
token_dir=               # Tokenizer dir (default: data/token_list/bpe${nbpe}).
# Training
train_config=            # Training config (yaml).
pretrain_config=         # Optional encoder pre-training config (yaml), trained first in stage 6.
pretrain_tasks=asr       # Tasks the pre-training config declares (space or comma list; their train/valid sets are used).
pretrain_tag=            # Pre-training experiment name (default: the pre-training config's file name).
pretrain_model=valid.loss.best.pth # Pre-trained model file that initialises the main model.
pretrain_init=backbone   # Modules copied from it into the main model (space separated src[:dst]).
pretrain_only=false      # Stage 6 stops after the pre-training (e.g. to share it between models).
pretrain_reuse=false     # Reuse a finished pre-training even if its config or data files changed (default: train it again, the old dir kept as <dir>.stale.<n>).
train_args=              # Extra arguments for harmonifuse_train.
model_tag=               # Experiment name (default: the train config's file name).
# Decoding
inference_config=        # Decoding config (yaml of harmonifuse_inference options, e.g. beam_size: 4; optional; --inference_batch_size wins over its batch_size).
inference_args=          # Extra arguments for harmonifuse_inference.
inference_model=valid.loss.best.pth # Model file in the experiment dir used to decode.
inference_tag=           # Decode dir suffix (default: <inference config name>_<model name>).
inference_batch_size=1   # Decoding batch size.
# Upload (stage 11)
hf_repo=                 # Hugging Face Hub repository to upload the packed model to (org/name).
hf_dry_run=false         # Write the folder stage 11 would upload (<expdir>/<model_tag>/hf_upload) and upload nothing.
hf_private=false         # Create the Hub repository as private.
hf_language=en           # Language tag(s) of the model card.
hf_datasets=             # Dataset tag(s) of the model card (default: the recipe's corpus name).

help_message="Usage: $0 [options]   (run from an egs2/<corpus>/harmonifuse1 recipe dir)"

if [ -f scripts/utils/parse_options.sh ]; then
    . scripts/utils/parse_options.sh
else
    . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/scripts/utils/parse_options.sh"
fi
if [ $# -gt 0 ]; then
    log "Error: unexpected arguments: $*"; exit 2
fi
SECONDS=0
[ -f ./path.sh ] && . ./path.sh
[ -f ./cmd.sh ] && . ./cmd.sh
: "${train_cmd:?train_cmd is not set: source cmd.sh}" "${cuda_cmd:?}" "${decode_cmd:?}"

# ---- derived settings and checks ----
tasks=()
[ -n "${asr_train_set}" ] && tasks+=(asr)
[ -n "${ser_train_set}" ] && tasks+=(ser)
_sp_src=
if [ -n "${speed_perturb_factors}" ] && [ -n "${asr_train_set}" ]; then  # as asr.sh: ${train_set}_sp from stage 3 on
    _sp_src=${asr_train_set}; asr_train_set=${asr_train_set}_sp
fi
sets_of() {  # sets_of <task> train|valid|test
    local v="${1}_${2}_set"; [ "$2" = test ] && v="${1}_test_sets"; echo "${!v}"
}
token_dir=${token_dir:-data/token_list/bpe${nbpe}}
bpe_opts=()
case "${token_type}" in
    sentencepiece) bpe_opts=(--bpemodel "${token_dir}/bpe.model") ;;
    hf) ;;
    *) log "Error: token_type must be sentencepiece or hf, not '${token_type}'"; exit 2 ;;
esac
if [ -z "${model_tag}" ] && [ -n "${train_config}" ]; then
    model_tag=$(basename "${train_config%.*}")
fi
if [ -z "${inference_tag}" ]; then
    _conf=default; [ -n "${inference_config}" ] && _conf=$(basename "${inference_config%.*}")
    inference_tag="${_conf}_$(echo "${inference_model%.pth}" | tr . _)"
fi
infer_opts=(); [ -n "${inference_config}" ] && infer_opts=(--config "${inference_config}")
model_dir=${expdir}/${model_tag}
decode_dir=${model_dir}/decode_${inference_tag}
skip_flag() {  # skip_flag <stage>: prints the --skip_* option that turns the stage off, when it is true
    local f
    case $1 in 1|2|3|4) f=skip_data_prep ;; 5|6) f=skip_train ;; 7|8|9) f=skip_eval ;; 10) f=skip_packing ;;
        11) f=skip_upload ;; *) return 1 ;; esac
    [ "${!f}" = true ] && echo "${f}"
}
need() {  # need <first> <last>: does any stage in [first, last] run (within --stage/--stop_stage, not skipped)?
    local s
    for ((s = $1; s <= $2; s++)); do
        [ "${stage}" -le "${s}" ] && [ "${stop_stage}" -ge "${s}" ] && ! skip_flag "${s}" >/dev/null && return 0
    done
    return 1
}
if need 2 10 && [ ${#tasks[@]} -eq 0 ]; then
    log "Error: no task: set --asr_train_set and/or --ser_train_set"; exit 2
fi
for t in "${tasks[@]}"; do
    if need 2 6 && [ -z "$(sets_of "${t}" valid)" ]; then
        log "Error: --${t}_valid_set is empty"; exit 2
    fi
done
if need 4 6 && [ -z "${train_config}" ]; then log "Error: --train_config is required"; exit 2; fi
if need 6 6 && [ "${num_nodes}" -gt 1 ] && [ "$(basename "${cuda_cmd%% *}")" != slurm.pl ]; then
    log "Error: --num_nodes ${num_nodes} needs the Slurm backend: run with cmd_backend=slurm (cmd.sh)"; exit 2
fi
case ${train_launcher} in espnet) ;; torchrun) if need 6 6 && [ "${num_nodes}" -gt 1 ]; then
    log "Error: --train_launcher torchrun runs on this node only: --num_nodes ${num_nodes} needs --train_launcher espnet"; exit 2; fi ;;
    *) log "Error: --train_launcher must be espnet or torchrun, not '${train_launcher}'"; exit 2 ;; esac
if need 7 11 && [ -z "${model_tag}" ]; then log "Error: set --model_tag or --train_config"; exit 2; fi
mkdir -p "${expdir}/logs"
log "${_cmdline}  (tasks: ${tasks[*]:-none}; stages ${stage}-${stop_stage})"
_skipped=()
for ((_s = stage; _s <= stop_stage && _s <= 11; _s++)); do
    _f=$(skip_flag "${_s}") && _skipped+=("${_s} (--${_f} true)")
done
if [ ${#_skipped[@]} -gt 0 ]; then log "skipped stages: ${_skipped[*]}"; fi

stage_times=${expdir}/stage_times.tsv
stage_begin() {  # stage_begin <number> <name>
    _stage_num=$1; _stage_name=$2; _stage_t0=$(date +%s.%N)
    log "Stage $1: $2"
}
stage_end() {
    [ -f "${stage_times}" ] || printf 'stage\tname\tseconds\tmodel_tag\n' > "${stage_times}"
    printf '%s\t%s\t%s\t%s\n' "${_stage_num}" "${_stage_name}" \
        "$(awk -v a="${_stage_t0}" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')" "${model_tag}" >> "${stage_times}"
    log "Stage ${_stage_num} (${_stage_name}) done"
}
run_logged() {  # run_logged <logfile> <command...>: run here, output to the terminal and the log
    local logf=$1; shift
    mkdir -p "$(dirname "${logf}")"
    log "$*  (log: ${logf})"
    "$@" 2>&1 | tee "${logf}"
}

write_results() {  # RESULTS.md from the scores and the stage wall times so far
    run_logged "${model_dir}/logs/make_results.log" ${python} -m espnet_harmonifuse.bin.make_results \
        --exp_dir "${model_dir}" --out "${model_dir}/RESULTS.md" --stage_times "${stage_times}" --model_tag "${model_tag}"
}

if need 1 1; then
    stage_begin 1 data_prep
    # split like a shell line, so --local_data_opts "--gen_opts '--asr_train 600'" keeps its quotes
    eval "_data_opts=(${local_data_opts})"
    run_logged "${expdir}/logs/data_prep.log" local/data.sh "${_data_opts[@]}"
    stage_end
fi

if need 2 2; then
    stage_begin 2 format
    if [ -n "${_sp_src}" ]; then  # the perturbed copies and (with factor 1.0) the original, as one set
        run_logged "${expdir}/logs/speed_perturb_${asr_train_set}.log" ${python} -m espnet_harmonifuse.data.speed_perturb \
            --src "data/${_sp_src}" --dst "data/${asr_train_set}" --factors "${speed_perturb_factors}" --nj "${nj}"
    fi
    declare -A _done=()
    for t in "${tasks[@]}"; do
        _lab=(); [ "${t}" = ser ] && _lab=(--labels "${ser_labels}")
        for dset in $(sets_of "${t}" train) $(sets_of "${t}" valid) $(sets_of "${t}" test); do
            [ -n "${_done[${dset}]:-}" ] && continue; _done[${dset}]=1
            run_logged "${expdir}/logs/format_${dset}.log" ${python} -m espnet_harmonifuse.data.format_data \
                --src "data/${dset}" --dst "${dumpdir}/raw/${dset}" --fs 16000 --nj "${nj}" "${_lab[@]}"
        done
    done
    stage_end
fi

if need 3 3; then
    stage_begin 3 filter_length
    declare -A _filtered=()
    for t in "${tasks[@]}"; do
        for dset in $(sets_of "${t}" train) $(sets_of "${t}" valid); do
            [ -n "${_filtered[${dset}]:-}" ] && continue; _filtered[${dset}]=1
            run_logged "${expdir}/logs/filter_length_${dset}.log" ${python} -m espnet_harmonifuse.data.filter_length \
                --data_dir "${dumpdir}/raw/${dset}" --min_sec "${min_sec}" --max_sec "${max_sec}"
        done
    done
    stage_end
fi

if need 4 4; then
    stage_begin 4 tokenizer
    if [ "${token_type}" = hf ]; then
        log "token_type=hf: the LLM's own tokenizer is used; nothing to train"
    else
        _texts=(); for t in "${tasks[@]}"; do _texts+=(--text "${dumpdir}/raw/$(sets_of "${t}" train)/text"); done
        run_logged "${expdir}/logs/tokenizer.log" ${python} -m espnet_harmonifuse.bin.tokenizer_train \
            --config "${train_config}" "${_texts[@]}" --out_dir "${token_dir}" --vocab_size "${nbpe}"
    fi
    stage_end
fi

if need 5 5; then
    stage_begin 5 collect_stats
    _sets=()
    for t in "${tasks[@]}"; do
        for dset in $(sets_of "${t}" train) $(sets_of "${t}" valid); do
            _sets+=(--task "${t}" --data_dir "${dumpdir}/raw/${dset}" --out_dir "${expdir}/stats/${dset}")
        done
    done
    log "collect shapes: ${_sets[*]}"
    ${train_cmd} "${expdir}/stats/logs/collect_shapes.log" ${python} -m espnet_harmonifuse.bin.collect_shapes \
        --config "${train_config}" "${bpe_opts[@]}" "${_sets[@]}"
    stage_end
fi

task_data_opts() {  # task_data_opts <task>...: the --{train,valid}_task_{data,shape_file} options
    local t kind _d
    for t in "$@"; do
        for kind in train valid; do
            _d=${dumpdir}/raw/$(sets_of "${t}" "${kind}")
            echo --${kind}_task_data "${t}:${_d}/wav.scp,speech,sound" --${kind}_task_data "${t}:${_d}/text,text,text" \
                --${kind}_task_shape_file "${t}:${expdir}/stats/$(sets_of "${t}" "${kind}")/speech_shape"
        done
    done
}
train_model() {  # train_model <config> <output dir> <extra options>...
    local _conf=$1 _dir=$2; shift 2
    mkdir -p "${_dir}"
    [ -f "${_dir}/train.log" ] && mv "${_dir}/train.log" "${_dir}/train.$(date +%Y%m%d%H%M%S).log"
    log "training ${_dir} (log: ${_dir}/train.log)"
    local _main=(-m espnet2.bin.harmonifuse_train --config "${_conf}" --output_dir "${_dir}") _train=(${python} "${_main[@]}")
    if [ "${num_nodes}" -gt 1 ]; then  # as asr.sh: ESPnet's launcher adds --ngpu and the DDP options (srun)
        ${python} -m espnet2.bin.launch --cmd "${cuda_cmd}" --log "${_dir}/train.log" --ngpu "${ngpu}" \
            --num_nodes "${num_nodes}" --init_file_prefix "${_dir}/.dist_init_" --multiprocessing_distributed true \
            -- "${_train[@]}" "${bpe_opts[@]}" --resume true "$@"
    elif [ "${train_launcher}" = torchrun ]; then  # ESPnet reads RANK, WORLD_SIZE, ... (env://) that torchrun sets
        local _n=${ngpu} _per=(--ngpu 1); [ "${ngpu}" -eq 0 ] && _n=${nproc_per_node} _per=(--ngpu 0 --dist_backend gloo)
        ${cuda_cmd} --gpu "${ngpu}" "${_dir}/train.log" ${python} -m torch.distributed.run --standalone \
            --nproc_per_node "${_n}" "${_main[@]}" "${_per[@]}" "${bpe_opts[@]}" --resume true "$@"
    else  # several GPUs: DDP with one process per GPU (ESPnet would use DataParallel without the option)
        local _dist=(); [ "${ngpu}" -gt 1 ] && _dist=(--multiprocessing_distributed true)
        ${cuda_cmd} --gpu "${ngpu}" "${_dir}/train.log" "${_train[@]}" --ngpu "${ngpu}" "${_dist[@]}" \
            "${bpe_opts[@]}" --resume true "$@"
    fi
}

if need 6 6; then
    _init=()
    if [ -n "${pretrain_config}" ]; then
        _pdir=${expdir}/${pretrain_tag:-$(basename "${pretrain_config%.*}")}
        # shellcheck disable=SC2046  # task_data_opts prints whitespace-free words
        _popts=($(task_data_opts ${pretrain_tasks//,/ }))
        # its done marker records digests of the config and of the files that these options name
        _marker=(${python} -m espnet_harmonifuse.bin.pretrain_marker --dir "${_pdir}" --config "${pretrain_config}")
        _reads=(-- "${_popts[@]}" "${bpe_opts[@]}")
        _state=$("${_marker[@]}" check "${_reads[@]}")
        if [ "${_state}" = current ]; then
            log "pre-trained encoder: ${_pdir}/${pretrain_model} (finished earlier, from the same config and data)"
        elif [ "${_state}" != absent ] && [ "${pretrain_reuse}" = true ]; then
            log "pre-trained encoder: ${_pdir}/${pretrain_model}, reused (--pretrain_reuse true) although ${_state#stale: }"
        else
            if [ "${_state}" != absent ]; then
                _old=$("${_marker[@]}" set_aside)
                log "pre-training again: ${_state#stale: } (the old one is kept in ${_old}; --pretrain_reuse true reuses a changed one instead)"
            fi
            stage_begin 6 pretrain
            train_model "${pretrain_config}" "${_pdir}" "${_popts[@]}" ${train_args}
            "${_marker[@]}" write "${_reads[@]}"
            stage_end
        fi
        if [ ! -f "${_pdir}/${pretrain_model}" ]; then
            log "Error: ${_pdir}/${pretrain_model} not found: set --pretrain_model to one of $(cd "${_pdir}" && ls -- *.pth | tr '\n' ' ')"
            exit 1
        fi
        for m in ${pretrain_init}; do
            _init+=(--init_param "${_pdir}/${pretrain_model}:${m%%:*}:${m#*:}")
        done
    fi
    if [ "${pretrain_only}" = true ]; then
        log "--pretrain_only true: stage 6 stops after the pre-training"
    else
        stage_begin 6 train
        # shellcheck disable=SC2046
        train_model "${train_config}" "${model_dir}" $(task_data_opts "${tasks[@]}") "${_init[@]}" ${train_args}
        stage_end
    fi
fi

if need 7 7; then
    stage_begin 7 decode
    if [ ! -f "${model_dir}/${inference_model}" ]; then
        log "Error: ${model_dir}/${inference_model} not found (train first, or set --inference_model)"; exit 1
    fi
    for t in "${tasks[@]}"; do
        for dset in $(sets_of "${t}" test); do
            _dir=${decode_dir}/${dset}; _logdir=${_dir}/logdir
            rm -rf "${_logdir}"; mkdir -p "${_logdir}"
            _nj=$(${python} -m espnet_harmonifuse.data.kaldi_dir split --scp "${dumpdir}/raw/${dset}/wav.scp" \
                --nj "${inference_nj}" --out "${_logdir}/keys.JOB.scp")
            log "decoding ${dset} (task ${t}) in ${_nj} jobs (logs: ${_logdir}/decode.*.log)"
            _env=()
            if [ "${inference_ngpu}" -eq 0 ]; then  # CPU jobs at once share its cores (oversubscribed, they crawl)
                _omp=$(( $(nproc) / _nj )); [ "${_omp}" -ge 1 ] || _omp=1
                _env=(env OMP_NUM_THREADS="${_omp}")
            fi
            "${_env[@]}" ${decode_cmd} --gpu "${inference_ngpu}" JOB=1:"${_nj}" "${_logdir}/decode.JOB.log" \
                ${python} -m espnet2.bin.harmonifuse_inference --train_config "${model_dir}/config.yaml" \
                --model_file "${model_dir}/${inference_model}" \
                --data_path_and_name_and_type "${dumpdir}/raw/${dset}/wav.scp,speech,sound" \
                --key_file "${_logdir}/keys.JOB.scp" --task "${t}" --output_dir "${_logdir}/output.JOB" \
                --batch_size "${inference_batch_size}" --ngpu "${inference_ngpu}" "${infer_opts[@]}" ${inference_args}
            for f in text score results.jsonl; do
                ${python} -m espnet_harmonifuse.data.kaldi_dir merge --out "${_dir}/${f}" \
                    $(for i in $(seq 1 "${_nj}"); do echo "${_logdir}/output.${i}/${f}"; done)
            done
        done
    done
    stage_end
fi

if need 8 8; then
    stage_begin 8 score
    for t in "${tasks[@]}"; do
        for dset in $(sets_of "${t}" test); do
            _dir=${decode_dir}/${dset}
            if [ "${t}" = asr ]; then
                run_logged "${_dir}/score_asr.log" ${python} -m espnet_harmonifuse.bin.score_asr \
                    --ref "${dumpdir}/raw/${dset}/text" --hyp "${_dir}/text" --out_dir "${_dir}/score_wer" \
                    $(for s in $(sets_of asr train); do echo --train_text "${dumpdir}/raw/${s}/text"; done)
            else
                run_logged "${_dir}/score_ser.log" ${python} -m espnet_harmonifuse.bin.score_ser \
                    --ref "${dumpdir}/raw/${dset}/text" --hyp "${_dir}/text" --labels "${ser_labels}" \
                    --out_dir "${_dir}/score_ser"
            fi
        done
    done
    write_results
    stage_end
fi

if need 9 9; then
    stage_begin 9 plots
    run_logged "${model_dir}/logs/plot.log" ${python} -m espnet_harmonifuse.bin.plot --exp_dir "${model_dir}" \
        --model_file "${model_dir}/${inference_model}" --out_dir "${model_dir}/images"
    stage_end
fi

if need 10 10; then
    stage_begin 10 pack
    run_logged "${model_dir}/logs/pack.log" ${python} -m espnet_harmonifuse.bin.pack --exp_dir "${model_dir}" \
        --model_file "${inference_model}" --out "${model_dir}/packed.zip"
    stage_end
fi

if need 11 11; then
    if [ -z "${hf_repo}" ]; then
        log "Stage 11 (upload) skipped: no --hf_repo (--hf_repo org/name uploads to the Hugging Face Hub)"
    else
        stage_begin 11 upload
        _configs=(); for c in ${train_config} ${pretrain_config}; do _configs+=(--train_config "${c}"); done
        run_logged "${model_dir}/logs/upload.log" ${python} -m espnet_harmonifuse.bin.upload --exp_dir "${model_dir}" \
            --hf_repo "${hf_repo}" --packed "${model_dir}/packed.zip" --out_dir "${model_dir}/hf_upload" \
            "${_configs[@]}" --recipe "$(basename "$(dirname "${PWD}")")" --language "${hf_language}" \
            --datasets "${hf_datasets}" --private "${hf_private}" --dry_run "${hf_dry_run}"
        stage_end
    fi
fi

if need 8 8 && [ "${stop_stage}" -gt 8 ]; then
    write_results >/dev/null  # again, now with the wall times of the stages after scoring
fi
log "Successfully finished stages ${stage}-${stop_stage} in ${SECONDS} s"
