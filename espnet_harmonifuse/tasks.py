"""HarmoniFuseTask: ESPnet's AbsTask for the multi-task speech LM."""

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import torch
import yaml
from espnet2.tasks.abs_task import AbsTask
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str_or_none

from espnet_harmonifuse.builder import (
    backbone_choices,
    build_model,
    build_model_from_file,
    build_tokenizer_from_args,
    decoder_choices,
    fusion_choices,
    gate_choices,
    model_choices,
    projector_choices,
)
from espnet_harmonifuse.collate import PadCollate
from espnet_harmonifuse.espnet_model import IGNORE_ID, HarmoniFuseModel
from espnet_harmonifuse.iterators.multitask_iter_factory import SCHEDULES, MultiTaskIterFactory
from espnet_harmonifuse.iterators.sharding import build_task_iter_factory
from espnet_harmonifuse.preprocessor import TaskPreprocessor
from espnet_harmonifuse.task_spec import DEFAULT_TASKS, group_task_data, parse_tasks
from espnet_harmonifuse.tokenizer import PROMPT_FORMATS, AbsTokenizer
from espnet_harmonifuse.trainer import TaskStatsTrainer
from espnet_harmonifuse.utils.checkpoint import CheckpointError, check_init_params
from espnet_harmonifuse.utils.config import with_base_configs
from espnet_harmonifuse.utils.distributed import check_not_data_parallel, set_unused_parameters

def _yaml_value(value: str):
    return yaml.safe_load(value)


def _batch_log(args: argparse.Namespace, distributed_option, mode: str) -> Optional[str]:
    if getattr(args, "batch_log_dir", None) is None:
        return None
    return str(Path(args.batch_log_dir) / f"{mode}.rank{distributed_option.dist_rank or 0}.jsonl")


class HarmoniFuseTask(AbsTask):
    num_optimizers: int = 1
    class_choices_list = [
        backbone_choices,
        fusion_choices,
        gate_choices,
        projector_choices,
        decoder_choices,
        model_choices,
    ]
    trainer = TaskStatsTrainer  # atomic checkpoints, resume with a fallback; acc_tasks (task_stats.py)

    @classmethod
    def get_parser(cls) -> argparse.ArgumentParser:
        """ESPnet's parser; ``--config`` may be an override file (``base_config``: utils/config.py)."""
        return with_base_configs(super().get_parser())

    @classmethod
    def main(cls, args: Optional[argparse.Namespace] = None, cmd=None):
        """ESPnet's training main; a checkpoint that cannot be used ends with its message alone."""
        if args is None:
            args = cls.get_parser().parse_args(cmd)
        # every option of the chosen model under the config's, so that config.yaml lists them all
        args.model_conf = {**get_default_kwargs(model_choices.get_class(args.model)), **(args.model_conf or {})}
        try:
            super().main(args=args)
        except CheckpointError as e:
            sys.exit(f"ERROR: {e}")

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        """ESPnet's worker; never with DataParallel (utils/distributed.py). A DDP process ends its
        process group itself: left to the interpreter's exit, gloo's threads can abort the process."""
        check_not_data_parallel(args)
        super().main_worker(args)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model):
        # AbsTask.main_worker builds the optimizers after the model and loads --init_param after them,
        # with ESPnet's unrestricted torch.load: check each --init_param first (weights-only, shapes).
        if not (args.dry_run or args.collect_stats):
            check_init_params(model, args.init_param, args.ignore_init_mismatch)
        # after --freeze_param (ESPnet applies it between build_model and here): DDP's
        # find_unused_parameters only where a weight that still trains can get no gradient
        set_unused_parameters(args, model)
        return super().build_optimizers(args, model)

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        # sorted batches of --batch_size: each task has one shape file (speech), so the
        # folded type would need one --fold_length per task; numel works with --batch_bins
        parser.set_defaults(num_att_plot=0, batch_type="sorted")
        group = parser.add_argument_group(description="HarmoniFuse tasks and data")
        group.add_argument(
            "--tasks",
            type=_yaml_value,
            default=DEFAULT_TASKS,
            help="The tasks: a list of {name, prompts, target: text|label, labels, loss_weight}",
        )
        for mode in ("train", "valid"):
            group.add_argument(
                f"--{mode}_task_data",
                type=str,
                action="append",
                default=[],
                help=f"TASK:PATH,NAME,TYPE for the {mode} data of one task (repeat per file and task), "
                "e.g. asr:dump/raw/asr_train/wav.scp,speech,sound",
            )
            group.add_argument(
                f"--{mode}_task_shape_file",
                type=str,
                action="append",
                default=[],
                help=f"TASK:PATH of a shape file for the {mode} data of one task",
            )
        group.add_argument(
            "--multitask_schedule",
            type=str,
            default="alternate",
            choices=[s for s in SCHEDULES if s != "sequential"],
            help="How training batches alternate between the tasks' datasets",
        )
        group.add_argument(
            "--multitask_ratio",
            action=NestedDictAction,
            default=None,
            help="Per-task shares for --multitask_schedule ratio, e.g. {asr: 2, ser: 1}",
        )
        group.add_argument("--multitask_temperature", type=float, default=2.0)
        group.add_argument(
            "--batch_log_dir",
            type=str_or_none,
            default=None,
            help="Append each batch a process gets (epoch, task, utterance ids; one JSON line each) to "
            "DIR/{train,valid}.rank<R>.jsonl, to check the interleaving and the DDP data split",
        )

        group = parser.add_argument_group(description="Tokenizer")
        group.add_argument(
            "--token_type",
            type=str,
            default="hf",
            choices=["hf", "sentencepiece"],
            help="hf: the LLM's own tokenizer; sentencepiece: a model trained by tokenizer_train",
        )
        group.add_argument("--bpemodel", type=str_or_none, default=None)
        group.add_argument(
            "--tokenizer_name_or_path",
            type=str_or_none,
            default=None,
            help="HF tokenizer; default: decoder_conf.model_name_or_path",
        )
        group.add_argument(
            "--prompt_format",
            type=str,
            default="plain",
            choices=list(PROMPT_FORMATS),
            help="plain: [BOS] prompt ; speech ; target; chat_template: the LLM's chat template around the "
            "prompt, the speech after the prompt in the user turn, the target after the assistant header",
        )
        group = parser.add_argument_group(description="Model")
        for class_choices in cls.class_choices_list:  # --model and --model_conf among them
            class_choices.add_arguments(group)

    # ------------------------------------------------------------------ data
    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable:
        return PadCollate(float_pad_value=0.0, int_pad_value=IGNORE_ID, not_sequence=["task_id"])

    @classmethod
    def build_tokenizer(cls, args: argparse.Namespace) -> AbsTokenizer:
        return build_tokenizer_from_args(args)

    @classmethod
    def build_task_preprocess_fn(cls, args: argparse.Namespace, task_index: int, text_file: Optional[str] = None):
        spec = parse_tasks(args.tasks)[task_index]
        return TaskPreprocessor(task_index, spec, cls.build_tokenizer(args), text_file)

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool):
        """The first task's preprocessor (ESPnet's single-dataset code paths, e.g. collect_stats)."""
        return cls.build_task_preprocess_fn(args, 0)

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech", "text") if train and not inference else ("speech",)

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("text",)

    @classmethod
    def build_sequence_iter_factory(cls, args, iter_options, mode: str):
        """ESPnet's, with every batch split over the DDP ranks non-empty (iterators/sharding.py)."""
        return build_task_iter_factory(cls, args, iter_options, mode)

    @classmethod
    def build_iter_factory(cls, args, distributed_option, mode: str, kwargs: Optional[dict] = None):
        if mode not in ("train", "valid"):
            raise ValueError(f"HarmoniFuseTask builds train and valid iterators only, not '{mode}'")
        tasks = parse_tasks(args.tasks)
        grouped = group_task_data(
            getattr(args, f"{mode}_task_data"), getattr(args, f"{mode}_task_shape_file"), tasks, mode
        )
        base = cls.build_iter_options(args, distributed_option, mode)
        factories = {}
        for index, spec in enumerate(tasks):
            if spec.name not in grouped:
                raise ValueError(
                    f"task '{spec.name}' is declared in tasks but has no {mode} data: pass "
                    f"--{mode}_task_data {spec.name}:PATH,NAME,TYPE and --{mode}_task_shape_file "
                    f"{spec.name}:PATH, or remove the task from tasks for a single-task model"
                )
            files, shapes = grouped[spec.name]
            text_file = next((p for p, n, _ in files if n == "text"), None)
            options = dataclasses.replace(
                base,
                data_path_and_name_and_type=[tuple(f) for f in files],
                shape_files=shapes,
                preprocess_fn=cls.build_task_preprocess_fn(args, index, text_file),
                num_iters_per_epoch=None,
            )
            logging.info(f"[{mode}] task {spec.name}: {files}")
            factories[spec.name] = cls.build_sequence_iter_factory(args, options, mode)
        ratio = None
        if args.multitask_schedule == "ratio":
            ratio = [float((args.multitask_ratio or {}).get(t.name, 0.0)) for t in tasks]
        return MultiTaskIterFactory(
            factories,
            schedule=args.multitask_schedule if mode == "train" else "sequential",
            num_iters_per_epoch=args.num_iters_per_epoch if mode == "train" else None,
            ratio=ratio,
            temperature=args.multitask_temperature,
            seed=args.seed,
            batch_log=_batch_log(args, distributed_option, mode),
        )

    # ------------------------------------------------------------------ model
    @classmethod
    def build_model(cls, args: argparse.Namespace) -> HarmoniFuseModel:
        return build_model(args)

    @classmethod
    def build_model_from_file(
        cls,
        config_file: Optional[Union[Path, str]] = None,
        model_file: Optional[Union[Path, str]] = None,
        device: str = "cpu",
    ) -> Tuple[HarmoniFuseModel, argparse.Namespace]:
        """Rebuild the model from ``config.yaml`` and load ``model_file`` strictly."""
        return build_model_from_file(config_file, model_file, device)
