"""Each bad input gets one clear error that names the offending file/key/label and the fix."""

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from conftest import EMOTIONS, TINY_TASKS, task_data_args, toy_wave, write_config, write_task_dir
from espnet2.train.distributed_utils import DistributedOption

from espnet_harmonifuse.api import HarmoniFuse, load_wav
from espnet_harmonifuse.bin import collect_shapes
from espnet_harmonifuse.preprocessor import TaskPreprocessor
from espnet_harmonifuse.task_spec import parse_tasks
from espnet_harmonifuse.tasks import HarmoniFuseTask


def data_options(args, mode, *task_dirs):
    """Set ``--{mode}_task_data`` / ``--{mode}_task_shape_file`` of ``args`` from (task, paths) pairs."""
    opts = [x for task, paths in task_dirs for x in task_data_args(task, paths, mode)]
    setattr(args, f"{mode}_task_data", [v for k, v in zip(opts[::2], opts[1::2]) if k.endswith("_task_data")])
    setattr(args, f"{mode}_task_shape_file", [v for k, v in zip(opts[::2], opts[1::2]) if k.endswith("shape_file")])
    return args


def full_config(path: Path, args) -> Path:
    """A config.yaml as training writes it (every option)."""
    path.write_text(yaml.safe_dump(vars(args)))
    return path


@pytest.fixture
def tiny(make_args):
    args = make_args()
    model = HarmoniFuseTask.build_model(args)
    return model, args


# --------------------------------------------------------------------------- data options
def test_declared_task_without_training_data(make_args, toy_corpus):
    args = data_options(make_args(), "train", ("asr", toy_corpus["asr"]))
    with pytest.raises(ValueError) as e:
        HarmoniFuseTask.build_iter_factory(args, DistributedOption(), "train")
    msg = str(e.value)
    assert "task 'ser' is declared in tasks but has no train data" in msg
    assert "--train_task_data ser:PATH,NAME,TYPE" in msg and "--train_task_shape_file ser:PATH" in msg
    assert "remove the task from tasks" in msg


def test_both_tasks_with_data_build_an_interleaving_iterator(make_args, toy_corpus):
    """Positive control for the test above: the same options plus ser's data work."""
    args = data_options(make_args(), "train", ("asr", toy_corpus["asr"]), ("ser", toy_corpus["ser"]))
    args.batch_size = 2
    factory = HarmoniFuseTask.build_iter_factory(args, DistributedOption(), "train")
    assert factory.names == ["asr", "ser"] and factory.counts == [2, 2]


def test_task_data_naming_an_undeclared_task(make_args, toy_corpus):
    args = data_options(
        make_args(), "train", ("asr", toy_corpus["asr"]), ("ser", toy_corpus["ser"]), ("emo", toy_corpus["ser"])
    )
    with pytest.raises(ValueError) as e:
        HarmoniFuseTask.build_iter_factory(args, DistributedOption(), "train")
    msg = str(e.value)
    assert "--train_task_data" in msg and "'emo'" in msg
    assert "not declared in tasks (['asr', 'ser'])" in msg


def test_task_data_without_shape_file_and_malformed_entry(make_args, toy_corpus):
    args = data_options(make_args(), "valid", ("asr", toy_corpus["asr"]), ("ser", toy_corpus["ser"]))
    args.valid_task_shape_file = [s for s in args.valid_task_shape_file if not s.startswith("ser:")]
    with pytest.raises(ValueError, match=r"task 'ser' has no --valid_task_shape_file; run the collect-stats stage"):
        HarmoniFuseTask.build_iter_factory(args, DistributedOption(), "valid")
    args = data_options(make_args(), "train", ("asr", toy_corpus["asr"]), ("ser", toy_corpus["ser"]))
    args.train_task_data[0] = args.train_task_data[0].split(":", 1)[1]  # the TASK: prefix forgotten
    with pytest.raises(ValueError, match=r"--train_task_data expects TASK:VALUE \(e\.g\. asr:"):
        HarmoniFuseTask.build_iter_factory(args, DistributedOption(), "train")


# --------------------------------------------------------------------------- labels
def test_preprocessor_rejects_a_label_outside_the_label_list(make_args):
    args = make_args()
    spec = parse_tasks(args.tasks)[1]
    pre = TaskPreprocessor(1, spec, HarmoniFuseTask.build_tokenizer(args), "data/ser_train/text")
    with pytest.raises(ValueError) as e:
        pre("utt7", {"speech": toy_wave(0), "text": "excited"})
    msg = str(e.value)
    for part in ("'utt7'", "data/ser_train/text", "label 'excited'", str(EMOTIONS), "task 'ser'",
                 "Fix:", "add it to the task's labels"):
        assert part in msg, (part, msg)
    # a good label passes and is tokenized
    out = pre("utt8", {"speech": toy_wave(0), "text": " happy "})
    tok = HarmoniFuseTask.build_tokenizer(args)
    assert out["text"].tolist() == tok.encode("happy") and out["task_id"].tolist() == [1]


def test_preprocessor_rejects_empty_audio(make_args):
    args = make_args()
    pre = TaskPreprocessor(0, parse_tasks(args.tasks)[0], HarmoniFuseTask.build_tokenizer(args))
    with pytest.raises(ValueError, match=r"utterance 'a0' \(task asr\) has empty audio; remove it from wav.scp"):
        pre("a0", {"speech": np.zeros(0, dtype=np.float32), "text": "THE RED DOG"})


def test_collect_shapes_names_the_bad_label_and_its_file(bpemodel, tmp_path):
    conf = write_config(tmp_path / "conf.yaml", bpemodel)
    good = write_task_dir(tmp_path, "ser_good", [("s1", toy_wave(1), "happy"), ("s2", toy_wave(2), "sad")])
    collect_shapes.main(["--config", str(conf), "--data_dir", str(Path(good["text"]).parent),
                         "--task", "ser", "--out_dir", str(tmp_path / "shapes_good")])
    shapes = (tmp_path / "shapes_good" / "speech_shape").read_text().split()
    assert shapes == ["s1", str(len(toy_wave(1))), "s2", str(len(toy_wave(2)))]

    bad = write_task_dir(tmp_path, "ser_bad", [("s1", toy_wave(1), "happy"), ("s2", toy_wave(2), "frustrated")])
    with pytest.raises(ValueError) as e:
        collect_shapes.main(["--config", str(conf), "--data_dir", str(Path(bad["text"]).parent),
                             "--task", "ser", "--out_dir", str(tmp_path / "shapes_bad")])
    msg = str(e.value)
    assert "utterance 's2'" in msg and bad["text"] in msg and "label 'frustrated'" in msg
    assert "map it in local/data.sh" in msg


# --------------------------------------------------------------------------- tasks
def test_parse_tasks_rejects_an_empty_prompt_list():
    with pytest.raises(ValueError) as e:
        parse_tasks([{"name": "asr", "target": "text", "prompts": []}])
    msg = str(e.value)
    assert msg.startswith("tasks[0] (asr): prompts must be a non-empty list of non-empty strings")
    assert 'add e.g. prompts: ["Transcribe the speech."]' in msg
    with pytest.raises(ValueError, match=r"tasks\[1\] \(ser\): prompts must be a non-empty list"):
        parse_tasks([TINY_TASKS[0], {"name": "ser", "target": "label", "labels": EMOTIONS, "prompts": ["  "]}])


def test_parse_tasks_rejects_a_label_task_without_labels():
    with pytest.raises(ValueError) as e:
        parse_tasks([TINY_TASKS[0], {"name": "ser", "target": "label", "prompts": ["what is the emotion"]}])
    assert str(e.value) == "tasks[1] (ser): target 'label' needs a labels list with at least two labels"


def test_bad_tasks_fail_at_build_model_too(make_args):
    args = make_args(tasks=[{"name": "ser", "target": "label", "labels": ["happy"], "prompts": ["what is the emotion"]}])
    with pytest.raises(ValueError, match=r"tasks\[0\] \(ser\): target 'label' needs a labels list"):
        HarmoniFuseTask.build_model(args)


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_with_wrong_shapes_lists_the_mismatched_keys(tiny, make_args, tmp_path):
    model, _ = tiny
    ckpt = tmp_path / "model.pth"
    torch.save(model.state_dict(), ckpt)
    config = full_config(tmp_path / "config.yaml", make_args(backbone_conf={"output_size": 48}))
    with pytest.raises(RuntimeError) as e:
        HarmoniFuseTask.build_model_from_file(config, ckpt)
    msg = str(e.value)
    assert f"checkpoint '{ckpt}' does not fit the model built from '{config}'" in msg
    assert "shape mismatch: backbone.encoder.embed.conv.0.weight: checkpoint (32, 1, 3, 3) vs config (48, 1, 3, 3)" in msg
    n_bad = int(re.search(r"\((\d+) in all\)", msg).group(1))
    assert n_bad > 5
    assert "missing" not in msg and "unexpected" not in msg
    assert "Fix: load the checkpoint with the config.yaml written next to it" in msg


def test_checkpoint_with_missing_and_unexpected_keys(tiny, tmp_path):
    model, args = tiny
    state = model.state_dict()
    dropped = [k for k in state if k.startswith("fusion.prompt_mlp.")][-2:]  # the MLP's last layer
    assert len(dropped) == 2 and dropped[0].endswith(".weight") and dropped[1].endswith(".bias")
    for k in dropped:
        del state[k]
    state["extra.weight"] = torch.zeros(3)
    ckpt = tmp_path / "model.pth"
    torch.save(state, ckpt)
    config = full_config(tmp_path / "config.yaml", args)
    with pytest.raises(RuntimeError) as e:
        HarmoniFuseTask.build_model_from_file(config, ckpt)
    msg = str(e.value)
    assert "  missing: " + "; ".join(dropped) in msg
    assert "  unexpected: extra.weight" in msg
    # the intact checkpoint loads, and gives back the same weights
    torch.save(model.state_dict(), ckpt)
    loaded, _ = HarmoniFuseTask.build_model_from_file(config, ckpt)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_missing_model_and_config_files(tiny, tmp_path):
    _, args = tiny
    config = full_config(tmp_path / "config.yaml", args)
    missing = tmp_path / "nope" / "valid.loss.best.pth"
    with pytest.raises(FileNotFoundError) as e:
        HarmoniFuseTask.build_model_from_file(config, missing)
    assert f"model file '{missing}' does not exist" in str(e.value) and "valid.loss.best.pth" in str(e.value)
    with pytest.raises(FileNotFoundError, match=r"config '.*no_config\.yaml' does not exist"):
        HarmoniFuseTask.build_model_from_file(tmp_path / "no_config.yaml", missing)
    with pytest.raises(FileNotFoundError) as e:
        HarmoniFuse.from_pretrained(tmp_path)  # an exp dir with config.yaml but no *.pth
    assert f"no model file in '{tmp_path}'" in str(e.value) and "valid.loss.best.pth" in str(e.value)
    with pytest.raises(FileNotFoundError, match="does not exist: give an exp dir"):
        HarmoniFuse.from_pretrained(tmp_path / "no_such_exp")


# --------------------------------------------------------------------------- audio
def test_empty_and_undecodable_audio(tiny, tmp_path):
    model, args = tiny
    hf = HarmoniFuse(model, args)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(ValueError, match=f"empty audio in {re.escape(str(empty))}"):
        hf.decode([str(empty)], task="ser")
    with pytest.raises(ValueError, match=f"cannot read audio '{re.escape(str(garbage))}'"):
        hf.decode([str(garbage)], task="ser")
    with pytest.raises(ValueError, match="empty audio"):
        load_wav(np.zeros(0, dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected a mono waveform \(1-D\), got shape \(2, 100\)"):
        load_wav(np.zeros((2, 100), dtype=np.float32))
    with pytest.raises(ValueError, match=r"unknown task 'emotion'; this model knows \['asr', 'ser'\]"):
        hf.decode([toy_wave(0)], task="emotion")


def test_wav_that_is_not_16khz(tiny, tmp_path):
    model, args = tiny
    path = tmp_path / "eight_k.wav"
    sf.write(path, toy_wave(3)[:4000], 8000)
    with pytest.raises(ValueError) as e:
        HarmoniFuse(model, args).decode([str(path)], task="asr")
    msg = str(e.value)
    assert f"'{path}' is 8000 Hz" in msg and "expects 16 kHz" in msg and "resample" in msg
    # the same audio at 16 kHz loads (as float32 mono)
    sf.write(path, toy_wave(3)[:4000], 16000)
    wav = load_wav(str(path))
    assert wav.dtype == np.float32 and wav.shape == (4000,)


# --------------------------------------------------------------------------- tokenizer
def test_prompt_that_does_not_survive_sentencepiece(make_args):
    tasks = [dict(TINY_TASKS[0], prompts=["transcribe the speech", "转写这段语音"]), TINY_TASKS[1]]
    with pytest.raises(ValueError) as e:
        HarmoniFuseTask.build_model(make_args(tasks=tasks))
    msg = str(e.value)
    assert msg.startswith("task 'asr' prompt: '转写这段语音' does not survive tokenization")
    assert "Retrain the sentencepiece model with the prompts and labels included" in msg
    assert "espnet_harmonifuse.bin.tokenizer_train" in msg


def test_label_that_does_not_survive_sentencepiece(make_args):
    tasks = [TINY_TASKS[0], dict(TINY_TASKS[1], labels=["neutral", "happy", "angry", "überrascht"])]
    with pytest.raises(ValueError, match=r"task 'ser' label: 'überrascht' does not survive tokenization"):
        HarmoniFuseTask.build_model(make_args(tasks=tasks))
