#!/usr/bin/env bash
# The Slurm job launcher: launch.sh --backend slurm (see espnet_harmonifuse/utils/launch.py).
# Named as Kaldi's slurm.pl because ESPnet's distributed launcher (python -m espnet2.bin.launch)
# runs a multi-node training through srun only for a --cmd whose program is called slurm.pl.
exec "$(dirname "$0")/launch.sh" --backend slurm "$@"
