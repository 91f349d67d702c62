#!/usr/bin/env bash
# Job launcher (Kaldi run.pl/slurm.pl semantics); see espnet_harmonifuse/utils/launch.py.
# Usage: scripts/utils/launch.sh [--backend local|slurm] [--gpu N] [JOB=1:N] LOGFILE COMMAND...
exec "${PYTHON:-python3}" -m espnet_harmonifuse.utils.launch "$@"
