"""Entry points: the espnet2.bin aliases, --print_config, training and inference CLIs, a third task."""

import importlib.util
import inspect
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from conftest import ASR_TEXTS, EMOTIONS, TINY_TASKS, task_data_args, toy_wave, write_config, write_task_dir

import espnet_harmonifuse
from espnet_harmonifuse.api import HarmoniFuse
from espnet_harmonifuse.bin import harmonifuse_inference, harmonifuse_train
from espnet_harmonifuse.collate import PadCollate
from espnet_harmonifuse.tasks import HarmoniFuseTask
from espnet_harmonifuse.utils.checkpoint import safe_torch_load

BIN_DIR = Path(espnet_harmonifuse.__file__).resolve().parent / "bin"
PER_TASK_STATS = ("loss_asr", "acc_asr", "loss_ser", "acc_ser")
GENDER = {"name": "gender", "target": "label", "labels": ["female", "male"], "prompts": ["what is the gender"]}
FAST = ["--ngpu", "0", "--num_workers", "0", "--batch_size", "2", "--optim", "adam", "--optim_conf", "lr=0.001",
        "--use_tensorboard", "false", "--use_matplotlib", "false", "--keep_nbest_models", "1"]


# ----------------------------------------------------------------------------- (a) module names
def test_espnet2_bin_aliases_resolve_to_the_plugin():
    for name in ("harmonifuse_train", "harmonifuse_inference"):
        spec = importlib.util.find_spec(f"espnet2.bin.{name}")
        assert spec is not None, name
        assert Path(spec.origin).resolve() == BIN_DIR / f"{name}.py"
    assert importlib.util.find_spec("espnet2.bin.harmonifuse_nonexistent") is None


def test_alias_is_installed_at_startup_without_importing_torch():
    """The .pth hook works in a fresh interpreter and keeps start-up light."""
    code = (
        "import importlib.util, sys;"
        "s = importlib.util.find_spec('espnet2.bin.harmonifuse_inference');"
        "print(s.origin); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120)
    assert out.returncode == 0, out.stderr
    origin, torch_loaded = out.stdout.split()
    assert Path(origin).resolve() == BIN_DIR / "harmonifuse_inference.py"
    assert torch_loaded == "False"


def test_python_m_espnet2_bin_help():
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    procs = {
        name: subprocess.Popen([sys.executable, "-m", f"espnet2.bin.{name}", "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd="/", env=env)
        for name in ("harmonifuse_train", "harmonifuse_inference")
    }
    outs = {name: p.communicate(timeout=300) for name, p in procs.items()}
    for name, p in procs.items():
        assert p.returncode == 0, (name, outs[name][1][-2000:])
    train, infer = outs["harmonifuse_train"][0], outs["harmonifuse_inference"][0]
    for opt in ("--train_task_data", "--valid_task_shape_file", "--tasks", "--multitask_schedule",
                "{alternate,ratio,proportional,temperature}", "--backbone", "--fusion", "--gate", "--token_type"):
        assert opt in train, opt
    for opt in ("--label_decoding", "{score,generate}", "--task", "--model_dir", "--beam_size"):
        assert opt in infer, opt


# ----------------------------------------------------------------------------- (b) --print_config
def print_config(monkeypatch, *options) -> dict:
    # AbsTask.get_default_config parses sys.argv (as `... --print_config OPTIONS` would)
    monkeypatch.setattr(sys, "argv", ["harmonifuse_train", "--print_config", *options])
    buf = io.StringIO()
    HarmoniFuseTask.print_config(file=buf)
    return yaml.safe_load(buf.getvalue())


def constructor_defaults(cls) -> dict:
    """The options a component's constructor takes with a default (the others the task fills in)."""
    params = inspect.signature(cls).parameters.values()
    return {
        p.name: list(p.default) if isinstance(p.default, tuple) else p.default
        for p in params
        if p.default is not inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


COMPONENTS = [(c.name, choice) for c in HarmoniFuseTask.class_choices_list for choice in c.classes]


def component_class(component: str, choice: str):
    return next(c for c in HarmoniFuseTask.class_choices_list if c.name == component).get_class(choice)


@pytest.mark.parametrize("component,choice", COMPONENTS, ids=[f"{a}={b}" for a, b in COMPONENTS])
def test_print_config_lists_every_constructor_option_with_its_default(monkeypatch, component, choice):
    """Each option of the chosen class's constructor, and nothing else, under ``<component>_conf``."""
    conf = print_config(monkeypatch, f"--{component}", choice)
    assert conf[component] == choice
    assert conf[f"{component}_conf"] == constructor_defaults(component_class(component, choice))


def test_print_config_defaults_are_the_papers_setup(monkeypatch):
    """WavLM-Large, prompt-adaptive fusion, task gate, stacking projector, a causal LM, ASR + 4-class
    SER interleaved 1:1: the settings a plain ``harmonifuse_train`` trains with."""
    conf = print_config(monkeypatch)
    assert conf["backbone"] == "hf_ssl"
    assert conf["backbone_conf"]["model_name_or_path"] == "microsoft/wavlm-large"
    assert conf["backbone_conf"]["freeze"] is True and conf["backbone_conf"]["config"] is None
    assert conf["fusion"] == "prompt_adaptive"
    assert conf["fusion_conf"]["hidden_size"] > 0 and conf["fusion_conf"]["temperature"] == 1.0
    assert conf["gate"] == "task_gate" and conf["gate_conf"]["prompt_proj_size"] > 0
    assert conf["projector"] == "stack_mlp" and conf["projector_conf"]["downsample_rate"] > 1
    assert conf["decoder"] == "hf_causal_lm" and conf["model"] == "harmonifuse"
    dec = conf["decoder_conf"]
    assert dec["model_name_or_path"] and dec["freeze"] is True and dec["lora_conf"] is None
    assert dec["dtype"] == "float32" and dec["gradient_checkpointing"] is False
    tasks = {t["name"]: t for t in conf["tasks"]}
    assert list(tasks) == ["asr", "ser"]
    assert tasks["asr"]["target"] == "text" and tasks["ser"]["target"] == "label"
    assert tasks["ser"]["labels"] == ["neutral", "happy", "angry", "sad"]
    assert all(t["prompts"] and all(isinstance(p, str) and p for p in t["prompts"]) for t in conf["tasks"])
    assert conf["multitask_schedule"] == "alternate" and conf["multitask_ratio"] is None
    assert conf["token_type"] == "hf" and conf["bpemodel"] is None
    model = conf["model_conf"]
    assert model["ctc_weight"] == 0.0 and model["prompt_sampling"] == "random"  # the auxiliary CTC is off
    assert model["cache_backbone_states"] is False and model["lsm_weight"] == 0.0
    assert conf["train_task_data"] == [] and conf["valid_task_shape_file"] == []


def test_print_config_follows_the_chosen_alternatives(monkeypatch):
    conf = print_config(monkeypatch, "--backbone", "conformer", "--fusion", "static", "--gate", "none",
                        "--projector", "conv1d", "--multitask_schedule", "ratio", "--multitask_ratio", "{asr: 2, ser: 1}",
                        "--backbone_conf", "num_blocks=2")
    assert (conf["backbone"], conf["fusion"], conf["gate"], conf["projector"]) == ("conformer", "static", None, "conv1d")
    assert conf["gate_conf"] == {}  # no gate: no gate options
    defaults = constructor_defaults(component_class("backbone", "conformer"))
    assert conf["backbone_conf"] == {**defaults, "num_blocks": 2}  # given, then defaults
    assert conf["multitask_schedule"] == "ratio" and conf["multitask_ratio"] == {"asr": 2, "ser": 1}


# ----------------------------------------------------------------------------- (c) training
def toy_dirs(root: Path, gender: bool = False):
    """The toy_corpus of conftest (4 ASR + 4 SER utterances), optionally plus 4 gender ones."""
    dirs = {
        "asr": write_task_dir(root, "asr", [(f"asr{i}", toy_wave(i), t) for i, t in enumerate(ASR_TEXTS)]),
        "ser": write_task_dir(root, "ser", [(f"ser{i}", toy_wave(100 + i), e) for i, e in enumerate(EMOTIONS)]),
    }
    if gender:
        items = [(f"gen{i}", toy_wave(200 + i), ("female", "male")[i % 2]) for i in range(4)]
        dirs["gender"] = write_task_dir(root, "gender", items)
    return dirs


def train_cmd(config: Path, out: Path, dirs: dict, epochs: int):
    cmd = ["--config", str(config), "--output_dir", str(out), "--max_epoch", str(epochs), *FAST]
    for task, paths in dirs.items():
        cmd += task_data_args(task, paths, "train") + task_data_args(task, paths, "valid")
    return cmd


@pytest.fixture(scope="module")
def trained(bpemodel, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    dirs = toy_dirs(root)
    config = write_config(root / "train.yaml", bpemodel)
    out = root / "exp"
    criteria = ["--best_model_criterion", "valid,loss,min", "valid,acc_tasks,max"]  # acc_tasks: as the recipes
    harmonifuse_train.main(train_cmd(config, out, dirs, epochs=2) + criteria)
    return out, dirs


def fixed_batch(dirs, task: str, tokenizer, index: int):
    from espnet_harmonifuse.preprocessor import TaskPreprocessor
    from espnet_harmonifuse.task_spec import parse_tasks

    spec = parse_tasks(TINY_TASKS)[index]
    pre = TaskPreprocessor(index, spec, tokenizer)
    texts = dict(line.split(" ", 1) for line in Path(dirs[task]["text"]).read_text().splitlines())
    wavs = dict(line.split(" ", 1) for line in Path(dirs[task]["wav.scp"]).read_text().splitlines())
    samples = [(u, pre(u, {"speech": sf.read(wavs[u], dtype="float32")[0], "text": texts[u]})) for u in sorted(texts)[:2]]
    return PadCollate(not_sequence=["task_id"])(samples)[1]


def test_training_writes_a_config_that_rebuilds_the_model(trained):
    out, dirs = trained
    config, best = out / "config.yaml", out / "valid.loss.best.pth"
    assert config.is_file() and best.is_file()
    written = yaml.safe_load(config.read_text())
    assert [t["name"] for t in written["tasks"]] == ["asr", "ser"]
    assert written["backbone"] == "conformer" and written["max_epoch"] == 2
    assert any(v.startswith("ser:") for v in written["train_task_data"])

    m1, args = HarmoniFuseTask.build_model_from_file(config, best)
    m2, _ = HarmoniFuseTask.build_model_from_file(config, best)
    saved = torch.load(best, map_location="cpu")
    assert set(saved) == set(m1.state_dict())
    assert all(torch.equal(saved[k], v) for k, v in m1.state_dict().items())
    tok = HarmoniFuseTask.build_tokenizer(args)
    m1.eval(), m2.eval()
    with torch.no_grad():
        for task, index in (("asr", 0), ("ser", 1)):
            batch = fixed_batch(dirs, task, tok, index)
            l1, s1, w1 = m1(**batch)
            l2, s2, w2 = m2(**batch)
            assert torch.isfinite(l1) and torch.allclose(l1, l2) and int(w1) == 2
            other = "ser" if task == "asr" else "asr"
            assert math.isnan(float(s1[f"loss_{other}"])) and torch.allclose(s1[f"acc_{task}"], s2[f"acc_{task}"])
    # the best checkpoint is the epoch with the lowest valid loss
    stats = safe_torch_load(out / "checkpoint.pth")["reporter"]["stats"]
    best_epoch = min((1, 2), key=lambda e: stats[e]["valid"]["loss"])
    assert all(torch.equal(saved[k], v) for k, v in torch.load(out / f"{best_epoch}epoch.pth").items())
    # and the loaded weights matter: a freshly initialised model gives another loss on the same batch
    fresh = HarmoniFuseTask.build_model(args).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(**batch)[0], l1)
    # the training checkpoint (model + optimizer + reporter) loads as well, as the last epoch's weights
    m3, _ = HarmoniFuseTask.build_model_from_file(config, out / "checkpoint.pth")
    latest = torch.load(out / "latest.pth", map_location="cpu")
    assert all(torch.equal(latest[k], v) for k, v in m3.state_dict().items())


def test_training_reports_per_task_stats(trained):
    out, _ = trained
    ckpt = safe_torch_load(out / "checkpoint.pth")
    reporter = ckpt["reporter"]
    assert reporter["epoch"] == 2
    for epoch in (1, 2):
        for mode in ("train", "valid"):
            stats = reporter["stats"][epoch][mode]
            for key in PER_TASK_STATS:
                assert key in stats, (epoch, mode, key)
                assert math.isfinite(stats[key]), (epoch, mode, key, stats[key])
            assert 0.0 <= stats["acc_asr"] <= 1.0 and 0.0 <= stats["acc_ser"] <= 1.0
            assert stats["loss_asr"] > 0 and stats["loss_ser"] > 0
            # the checkpoint criterion: the mean of the tasks' epoch values (espnet_harmonifuse/task_stats.py)
            assert stats["acc_tasks"] == pytest.approx((stats["acc_asr"] + stats["acc_ser"]) / 2)
    assert reporter["stats"][2]["train"]["total_count"] == 8  # 2 epochs x (2 ASR + 2 SER batches)
    # checkpoints are selected and averaged on it
    best = max((1, 2), key=lambda e: (reporter["stats"][e]["valid"]["acc_tasks"], -e))
    assert os.path.realpath(out / "valid.acc_tasks.best.pth") == os.path.realpath(out / f"{best}epoch.pth")
    assert (out / "valid.acc_tasks.ave.pth").is_file()


# ----------------------------------------------------------------------------- (d) inference
def read_kaldi(path: Path):
    return [line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines()]


def test_inference_cli_writes_text_score_and_jsonl(trained, tmp_path):
    out, dirs = trained
    ser_out, asr_out = tmp_path / "ser", tmp_path / "asr"
    harmonifuse_inference.main([
        "--model_dir", str(out), "--data_path_and_name_and_type", f"{dirs['ser']['wav.scp']},speech,sound",
        "--task", "ser", "--output_dir", str(ser_out), "--batch_size", "3",
    ])
    harmonifuse_inference.main([
        "--train_config", str(out / "config.yaml"), "--model_file", str(out / "valid.loss.best.pth"),
        "--data_path_and_name_and_type", f"{dirs['asr']['wav.scp']},speech,sound",
        "--task", "asr", "--output_dir", str(asr_out), "--batch_size", "2", "--max_new_tokens", "4",
    ])
    for d, prefix in ((ser_out, "ser"), (asr_out, "asr")):
        keys = [f"{prefix}{i}" for i in range(4)]
        text, score = read_kaldi(d / "text"), read_kaldi(d / "score")
        rows = [json.loads(line) for line in (d / "results.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [k for k, _ in text] == keys and [k for k, _ in score] == keys and [r["key"] for r in rows] == keys
        for (_, hyp), (_, sc), row in zip(text, score, rows):
            assert row["task"] == prefix and hyp.strip() == row["text"].strip()
            assert float(sc) == pytest.approx(row["score"], abs=1e-4) and float(sc) <= 0.0
            assert len(row["layer_weights"]) == 3 and sum(row["layer_weights"]) == pytest.approx(1.0, abs=1e-4)
    for _, hyp in read_kaldi(ser_out / "text"):
        assert hyp in EMOTIONS
    for row in (json.loads(x) for x in (ser_out / "results.jsonl").read_text().splitlines()):
        post = row["label_posteriors"]
        assert list(post) == EMOTIONS and sum(post.values()) == pytest.approx(1.0, abs=1e-4)
        assert row["text"] == max(post, key=post.get)
    # --key_file restricts decoding to the listed utterances
    keys = tmp_path / "keys"
    keys.write_text("ser1 x\nser3 y\n")  # ESPnet streams the data: keys in wav.scp order
    harmonifuse_inference.main([
        "--model_dir", str(out), "--data_path_and_name_and_type", f"{dirs['ser']['wav.scp']},speech,sound",
        "--task", "ser", "--output_dir", str(tmp_path / "ser_keys"), "--key_file", str(keys),
    ])
    assert read_kaldi(tmp_path / "ser_keys" / "text") == [k for k in read_kaldi(ser_out / "text") if k[0] in ("ser1", "ser3")]
    tok = HarmoniFuseTask.build_tokenizer(HarmoniFuse.from_pretrained(out).args)
    for row in (json.loads(x) for x in (asr_out / "results.jsonl").read_text().splitlines()):
        assert len(row["tokens"]) <= 4 and row["text"] == tok.decode(row["tokens"])


# ----------------------------------------------------------------------------- (e) a third task
def test_a_third_task_by_config_alone(bpemodel, tmp_path):
    dirs = toy_dirs(tmp_path, gender=True)
    config = write_config(tmp_path / "train.yaml", bpemodel, tasks=TINY_TASKS + [GENDER])
    out = tmp_path / "exp"
    harmonifuse_train.main(train_cmd(config, out, dirs, epochs=1))
    reporter = safe_torch_load(out / "checkpoint.pth")["reporter"]
    for mode in ("train", "valid"):
        stats = reporter["stats"][1][mode]
        for key in PER_TASK_STATS + ("loss_gender", "acc_gender"):
            assert key in stats and math.isfinite(stats[key]), (mode, key)
    hf = HarmoniFuse.from_pretrained(out)
    assert hf.task_names == ["asr", "ser", "gender"]
    wavs = [line.split(" ", 1)[1] for line in Path(dirs["gender"]["wav.scp"]).read_text().splitlines()]
    results = hf.decode(wavs, task="gender")
    assert len(results) == 4
    for r in results:
        assert r["text"] in ("female", "male") and r["task"] == "gender"
        assert set(r["label_posteriors"]) == {"female", "male"}
    assert hf(wavs[0], task="ser") in EMOTIONS


@pytest.mark.parametrize("gate", ["none", None])  # as typed on the command line / as --print_config writes it
def test_gate_none_builds_a_model_without_gate(make_args, gate):
    from espnet_harmonifuse.fusion.static import StaticFusion
    from espnet_harmonifuse.gate.none import NoGate

    args = make_args(gate=gate, fusion="static")
    assert args.gate is None
    model = HarmoniFuseTask.build_model(args).eval()
    assert isinstance(model.gate, NoGate) and isinstance(model.fusion, StaticFusion)
    assert not any(k.startswith("gate.") for k in model.state_dict())
    speech = torch.from_numpy(np.stack([toy_wave(1), toy_wave(2)]))
    with torch.no_grad():
        parts, extra = model.prefix_parts(speech, torch.tensor([speech.size(1)] * 2), torch.tensor([0, 1]))
    assert set(extra) == {"layer_weights", "selected", "selected_lengths", "prompts"}  # no gate statistics
    assert torch.allclose(extra["layer_weights"], torch.full((2, 3), 1 / 3))
