#!/usr/bin/env python3
"""Train HarmoniFuse (``python -m espnet2.bin.harmonifuse_train`` resolves here)."""

from espnet_harmonifuse.tasks import HarmoniFuseTask


def get_parser():
    return HarmoniFuseTask.get_parser()


def main(cmd=None):
    r"""HarmoniFuse training.

    Example:
        % python -m espnet2.bin.harmonifuse_train --print_config --backbone conformer
        % python -m espnet2.bin.harmonifuse_train --config conf/train.yaml --output_dir exp/hf \
            --train_task_data asr:dump/raw/asr_train/wav.scp,speech,sound ...
    """
    HarmoniFuseTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
