"""Building the model and its tokenizer from a training config, without ESPnet's AbsTask.

``HarmoniFuseTask`` (tasks.py) registers these component choices and delegates to these functions;
decoding, plotting and packing import this module alone, which skips AbsTask's imports (several
seconds per process).
"""

import argparse
import functools
from pathlib import Path
from typing import Optional, Tuple, Union

import yaml
from espnet2.train.abs_espnet_model import AbsESPnetModel
from espnet2.train.class_choices import ClassChoices

from espnet_harmonifuse.backbone.abs_backbone import AbsBackbone
from espnet_harmonifuse.backbone.conformer import ConformerBackbone
from espnet_harmonifuse.backbone.hf_ssl import HFSSLBackbone
from espnet_harmonifuse.decoder.abs_decoder import AbsDecoder
from espnet_harmonifuse.decoder.hf_causal_lm import HFCausalLMDecoder
from espnet_harmonifuse.espnet_model import HarmoniFuseModel
from espnet_harmonifuse.fusion.abs_fusion import AbsFusion
from espnet_harmonifuse.fusion.last_layer import LastLayerFusion
from espnet_harmonifuse.fusion.prompt_adaptive import PromptAdaptiveFusion
from espnet_harmonifuse.fusion.static import StaticFusion
from espnet_harmonifuse.gate.abs_gate import AbsGate
from espnet_harmonifuse.gate.none import NoGate
from espnet_harmonifuse.gate.task_gate import TaskGate
from espnet_harmonifuse.pretrain_model import EncoderPretrainModel
from espnet_harmonifuse.projector.abs_projector import AbsProjector
from espnet_harmonifuse.projector.conv1d import Conv1dProjector
from espnet_harmonifuse.projector.stack_mlp import StackMLPProjector
from espnet_harmonifuse.task_spec import parse_tasks
from espnet_harmonifuse.tokenizer import AbsTokenizer, build_prompt_frames, build_tokenizer, target_eos
from espnet_harmonifuse.utils.checkpoint import load_state_dict_strict

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
    name="model",
    classes=dict(harmonifuse=HarmoniFuseModel, encoder_pretrain=EncoderPretrainModel),
    type_check=AbsESPnetModel,
    default="harmonifuse",
)


@functools.lru_cache(maxsize=8)
def _cached_tokenizer(token_type: str, bpemodel: Optional[str], name_or_path: Optional[str]) -> AbsTokenizer:
    return build_tokenizer(token_type, bpemodel, name_or_path)


def build_tokenizer_from_args(args: argparse.Namespace) -> AbsTokenizer:
    """The tokenizer a training config names (cached: one per token type and model)."""
    name = args.tokenizer_name_or_path or args.decoder_conf.get("model_name_or_path")
    return _cached_tokenizer(args.token_type, args.bpemodel, name)



def build_model(args: argparse.Namespace) -> AbsESPnetModel:
    """The model a training config describes (weights: random, or the pretrained ones it names):
    HarmoniFuse, or the encoder pre-training (``model: encoder_pretrain``)."""
    tasks = parse_tasks(args.tasks)
    tokenizer = build_tokenizer_from_args(args)
    if getattr(args, "model", "harmonifuse") == "encoder_pretrain":
        backbone = backbone_choices.get_class(args.backbone)(**args.backbone_conf)
        return EncoderPretrainModel(backbone, tokenizer.vocab_size, tasks, **args.model_conf)
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


def build_model_from_file(
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
    model = build_model(args)
    if model_file is not None:
        load_state_dict_strict(model, model_file, config_file)
    return model.to(device), args
