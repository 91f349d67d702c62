# Job backends for harmonifuse.sh (sourced). Choose with cmd_backend=local|slurm, e.g.
#     cmd_backend=slurm ./run.sh
# Each *_cmd is a launcher with Kaldi run.pl semantics:
#     ${train_cmd} [--gpu N] [--mem X] [JOB=1:N] LOGFILE COMMAND...
# local: jobs run on this machine (--max_jobs_run K limits how many at once); a job of --gpu N gets
#        N GPUs of its own in CUDA_VISIBLE_DEVICES (round-robin over those visible here).
# slurm: one sbatch array script per call (written to <logdir>/q/), submitted with --wait;
#        harmonifuse.sh --num_nodes M trains on M nodes through it (ESPnet's launcher, srun).
#        Site options (partition, account, time, ...) go one per line in conf/slurm.conf, e.g.
#            --partition=gpu
#            --time=2-00:00:00
#        or in slurm_opts (words without spaces), e.g. slurm_opts="--partition=gpu --qos=high".
cmd_backend=${cmd_backend:-local}
slurm_opts=${slurm_opts:-}

if [ "${cmd_backend}" = local ]; then
    export train_cmd="scripts/utils/launch.sh --backend local"
    export cuda_cmd="scripts/utils/launch.sh --backend local"
    export decode_cmd="scripts/utils/launch.sh --backend local"
elif [ "${cmd_backend}" = slurm ]; then
    _slurm="scripts/utils/slurm.pl"   # launch.sh --backend slurm, named as ESPnet's launcher expects
    [ -f conf/slurm.conf ] && _slurm+=" --slurm_conf conf/slurm.conf"
    for _o in ${slurm_opts}; do _slurm+=" --sbatch_opts=${_o}"; done
    export train_cmd="${_slurm}"
    export cuda_cmd="${_slurm}"
    export decode_cmd="${_slurm}"
    unset _slurm _o
else
    echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local|slurm)" 1>&2
    return 1 2>/dev/null || exit 1
fi
