"""HarmoniFuseTask: ESPnet's AbsTask for the multi-task speech LM."""

import argparse
import dataclasses
import functools
import logging
import sys
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import torch
import yaml
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices
from espnet2.utils.get_default_kwargs import get_default_kwargs
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str_or_none

from espnet_harmonifuse.collate import PadCollate
from espnet_harmonifuse.backbone.abs_backbone import AbsBackbone
from espnet_harmonifuse.backbone.conformer import ConformerBackbone
from espnet_harmonifuse.backbone.hf_ssl import HFSSLBackbone
from espnet_harmonifuse.decoder.abs_decoder import AbsDecoder
from espnet_harmonifuse.decoder.hf_causal_lm import HFCausalLMDecoder
from espnet_harmonifuse.espnet_model import IGNORE_ID, HarmoniFuseModel
from espnet_harmonifuse.fusion.abs_fusion import AbsFusion
from espnet_harmonifuse.fusion.last_layer import LastLayerFusion
from espnet_harmonifuse.fusion.prompt_adaptive import PromptAdaptiveFusion
from espnet_harmonifuse.fusion.static import StaticFusion
from espnet_harmonifuse.gate.abs_gate import AbsGate
from espnet_harmonifuse.gate.none import NoGate
from espnet_harmonifuse.gate.task_gate import TaskGate
from espnet_harmonifuse.iterators.multitask_iter_factory import SCHEDULES, MultiTaskIterFactory
from espnet_harmonifuse.iterators.sharding import build_task_iter_factory
from espnet_harmonifuse.preprocessor import TaskPreprocessor
from espnet_harmonifuse.projector.abs_projector import AbsProjector
from espnet_harmonifuse.projector.conv1d import Conv1dProjector
from espnet_harmonifuse.projector.stack_mlp import StackMLPProjector
from espnet_harmonifuse.task_spec import DEFAULT_TASKS, group_task_data, parse_tasks
from espnet_harmonifuse.task_stats import TaskStatsTrainer
from espnet_harmonifuse.tokenizer import PROMPT_FORMATS, AbsTokenizer, build_prompt_frames, build_tokenizer, target_eos
from espnet_harmonifuse.utils.checkpoint import CheckpointError, check_init_params, load_state_dict_strict
from espnet_harmonifuse.utils.config import with_base_configs
from espnet_harmonifuse.utils.distributed import check_not_data_parallel, set_unused_parameters

backbone_choices = ClassChoices(
    name="backbone",
    classes=dict(hf_ssl=HFSSLBackbone, conformer=ConformerBackbone),
    type_check=AbsBackbone,
    default="hf_ssl",
)
fusion_choices = ClassChoices(
    name="fusion",
    classes=dict(prompt_adaptive=PromptAdaptiveFusion, static=StaticFusion, last_layer=LastLayerFusion),
    type_check=AbsFusion,
    default="prompt_adaptive",
)
gate_choices = ClassChoices(  # --gate none: no gate (ClassChoices reserves the name "none")
    name="gate", classes=dict(task_gate=TaskGate), type_check=AbsGate, default="task_gate", optional=True
)
projector_choices = ClassChoices(
    name="projector",
    classes=dict(stack_mlp=StackMLPProjector, conv1d=Conv1dProjector),
    type_check=AbsProjector,
    default="stack_mlp",
)
decoder_choices = ClassChoices(
    name="decoder", classes=dict(hf_causal_lm=HFCausalLMDecoder), type_check=AbsDecoder, default="hf_causal_lm"
)
model_choices = ClassChoices(
    name="model", classes=dict(harmonifuse=HarmoniFuseModel), type_check=AbsESPnetModel, default="harmonifuse"
)


def _yaml_value(value: str):
    return yaml.safe_load(value)


def _batch_log(args: argparse.Namespace, distributed_option, mode: str) -> Optional[str]:
    if getattr(args, "batch_log_dir", None) is None:
        return None
    return str(Path(args.batch_log_dir) / f"{mode}.rank{distributed_option.dist_rank or 0}.jsonl")


@functools.lru_cache(maxsize=8)
def _cached_tokenizer(token_type: str, bpemodel: Optional[str], name_or_path: Optional[str]) -> AbsTokenizer:
    return build_tokenizer(token_type, bpemodel, name_or_path)


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
    trainer = TaskStatsTrainer  # atomic checkpoints, resume with a fallback (trainer.py); acc_tasks (task_stats.py)

    @classmethod
    def get_parser(cls) -> argparse.ArgumentParser:
        """ESPnet's parser; ``--config`` may be an override file (``base_config``: utils/config.py)."""
        return with_base_configs(super().get_parser())

    @classmethod
    def main(cls, args: Optional[argparse.Namespace] = None, cmd=None):
        """ESPnet's training main; a checkpoint that cannot be used ends with its message alone."""
        try:
            super().main(args=args, cmd=cmd)
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
        group.add_argument(
            "--model_conf", action=NestedDictAction, default=get_default_kwargs(HarmoniFuseModel)
        )
        for class_choices in cls.class_choices_list:
            if class_choices.name != "model":
                class_choices.add_arguments(group)
            else:
                group.add_argument("--model", type=str, default="harmonifuse", choices=["harmonifuse"])

    # ------------------------------------------------------------------ data
    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable:
        return PadCollate(float_pad_value=0.0, int_pad_value=IGNORE_ID, not_sequence=["task_id"])

    @classmethod
    def build_tokenizer(cls, args: argparse.Namespace) -> AbsTokenizer:
        name = args.tokenizer_name_or_path or args.decoder_conf.get("model_name_or_path")
        return _cached_tokenizer(args.token_type, args.bpemodel, name)

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
        tasks = parse_tasks(args.tasks)
        tokenizer = cls.build_tokenizer(args)
        decoder_conf = dict(args.decoder_conf)
        if decoder_conf.get("config") is not None:
            cfg = dict(decoder_conf["config"])
            cfg.setdefault("vocab_size", tokenizer.vocab_size)
            cfg.setdefault("eos_token_id", tokenizer.eos_id)
            cfg.setdefault("pad_token_id", tokenizer.pad_id)
            if tokenizer.bos_id is not None:
                cfg.setdefault("bos_token_id", tokenizer.bos_id)
            decoder_conf["config"] = cfg
        decoder = decoder_choices.get_class(args.decoder)(**decoder_conf)
        if tokenizer.vocab_size > decoder.vocab_size:
            raise ValueError(
                f"the tokenizer has {tokenizer.vocab_size} tokens but the LLM's embedding has "
                f"{decoder.vocab_size} rows; use the LLM's own tokenizer or a matching vocab_size"
            )
        backbone = backbone_choices.get_class(args.backbone)(**args.backbone_conf)
        dims = dict(input_size=backbone.output_size(), prompt_size=decoder.hidden_size)
        fusion = fusion_choices.get_class(args.fusion)(num_layers=backbone.num_layers, **dims, **args.fusion_conf)
        gate_class = gate_choices.get_class(args.gate)
        gate = gate_class(**dims, **args.gate_conf) if gate_class is not None else NoGate(**dims)
        projector = projector_choices.get_class(args.projector)(
            input_size=backbone.output_size(), output_size=decoder.hidden_size, **args.projector_conf
        )
        prompt_ids, label_ids = [], []
        for spec in tasks:
            for text in spec.prompts:
                tokenizer.check_round_trip(text, f"task '{spec.name}' prompt")
            for text in spec.labels:
                tokenizer.check_round_trip(text, f"task '{spec.name}' label")
            prompt_ids.append([tokenizer.encode(p) for p in spec.prompts])
            label_ids.append([tokenizer.encode(lab) for lab in spec.labels])
        prompt_format = getattr(args, "prompt_format", "plain")  # a config without the key: plain
        frames = build_prompt_frames(tokenizer, [spec.prompts for spec in tasks], prompt_format)
        model = model_choices.get_class(getattr(args, "model", "harmonifuse"))(
            backbone=backbone,
            fusion=fusion,
            gate=gate,
            projector=projector,
            decoder=decoder,
            tasks=tasks,
            prompt_ids=prompt_ids,
            label_ids=label_ids,
            eos_id=target_eos(tokenizer, prompt_format),
            **args.model_conf,
        )
        model.set_prompt_frames(frames)
        return model

    @classmethod
    def build_model_from_file(
        cls,
        config_file: Optional[Union[Path, str]] = None,
        model_file: Optional[Union[Path, str]] = None,
        device: str = "cpu",
    ) -> Tuple[HarmoniFuseModel, argparse.Namespace]:
        """Rebuild the model from ``config.yaml`` and load ``model_file`` strictly."""
        if config_file is None:
            if model_file is None:
                raise ValueError("give config_file, model_file or both")
            config_file = Path(model_file).parent / "config.yaml"
        config_file = Path(config_file)
        if not config_file.is_file():
            raise FileNotFoundError(f"config '{config_file}' does not exist (it is written by training)")
        with config_file.open("r", encoding="utf-8") as f:
            args = argparse.Namespace(**yaml.safe_load(f))
        model = cls.build_model(args)
        if model_file is not None:
            load_state_dict_strict(model, model_file, config_file)
        return model.to(device), args
