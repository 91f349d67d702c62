"""Override configs (espnet_harmonifuse/utils/config.py): ``base_config`` resolution and merging, its
errors, the training parser's ``--config``, and every config the repository ships."""

import sys
from pathlib import Path

import pytest
import yaml
from conftest import RECIPE, ROOT, task_data_args, write_config

from espnet_harmonifuse.utils.config import ConfigError, load_config, merge

BASE = """\
max_epoch: 35
tasks: [{name: asr, prompts: [a, b]}, {name: ser, prompts: [c]}]
fusion_conf: {hidden_size: 64, layer_norm: true, prompt_scale: 0.5}
gate_conf: {init_bias: 2.0}
model_conf: {center_prompts: true, lsm_weight: 0.1}
bpemodel: data/bpe.model
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_override_merges_mappings_and_replaces_lists_and_scalars(tmp_path):
    _write(tmp_path / "train.yaml", BASE)
    over = _write(tmp_path / "tuning" / "o.yaml", """\
base_config: ../train.yaml
max_epoch: 25
tasks: [{name: ser, prompts: [d]}]
fusion_conf:
  prompt_scale: 1
  hidden_size: !delete
gate_conf: !delete
model_conf: {lsm_weight: 0.0}
bpemodel: null
new_block: {x: 1}
""")
    base = yaml.safe_load(BASE)
    got = load_config(over)
    assert got == {
        "max_epoch": 25,  # a scalar replaces
        "tasks": [{"name": "ser", "prompts": ["d"]}],  # a list replaces, it is not appended to
        "fusion_conf": {"layer_norm": True, "prompt_scale": 1},  # key by key; !delete leaves one out
        "model_conf": {"center_prompts": True, "lsm_weight": 0.0},
        "bpemodel": None,  # null stays null
        "new_block": {"x": 1},
    }
    assert list(got)[:1] == ["max_epoch"] and "base_config" not in got
    assert load_config(tmp_path / "train.yaml") == base  # a file without a base is read as it is
    # merge() changes neither side
    over_data = {"fusion_conf": {"layer_norm": False}}
    assert merge(base, over_data)["fusion_conf"]["layer_norm"] is False
    assert base["fusion_conf"]["layer_norm"] is True and over_data == {"fusion_conf": {"layer_norm": False}}


def test_override_of_an_override_resolves_each_base_relative_to_its_file(tmp_path):
    _write(tmp_path / "recipe" / "conf" / "train.yaml", BASE)
    _write(tmp_path / "bench" / "conf" / "budget.yaml",
           "base_config: ../../recipe/conf/train.yaml\nmax_epoch: 25\nmodel_conf: {lsm_weight: 0.0}\n")
    top = _write(tmp_path / "bench" / "conf" / "no_gate.yaml",
                 "base_config: budget.yaml\ngate: none\ngate_conf: !delete\nmodel_conf:\n  center_prompts: !delete\n")
    got = load_config(top)
    assert got["max_epoch"] == 25 and got["gate"] == "none" and "gate_conf" not in got
    assert got["model_conf"] == {"lsm_weight": 0.0}  # the middle file's value, the top file's deletion
    assert got["fusion_conf"] == yaml.safe_load(BASE)["fusion_conf"]  # untouched: from the first base
    _write(tmp_path / "recipe" / "conf" / "train.yaml", BASE.replace("hidden_size: 64", "hidden_size: 32"))
    assert load_config(top)["fusion_conf"]["hidden_size"] == 32  # a base's change reaches the top


@pytest.mark.parametrize("case, files, message", [
    ("missing base", {"o.yaml": "base_config: nope/train.yaml\nmax_epoch: 1\n"},
     r"o\.yaml: base_config 'nope/train\.yaml' not found"),
    ("cycle", {"o.yaml": "base_config: p.yaml\n", "p.yaml": "base_config: o.yaml\nmax_epoch: 1\n"},
     r"base_config chain comes back to itself \(.*o\.yaml -> .*p\.yaml -> .*o\.yaml\)"),
    ("self", {"o.yaml": "base_config: ./o.yaml\n"}, r"comes back to itself"),
    ("not a mapping", {"o.yaml": "base_config: p.yaml\n", "p.yaml": "- max_epoch: 1\n"},
     r"p\.yaml must hold a YAML mapping of options .*not list"),
    ("empty", {"o.yaml": ""}, r"o\.yaml must hold a YAML mapping"),
    ("bad yaml", {"o.yaml": "max_epoch: [1\n"}, r"o\.yaml is not valid YAML"),
    ("two bases", {"o.yaml": "base_config: [a.yaml, b.yaml]\n"}, r"base_config must be one path"),
    ("delete in a list", {"o.yaml": "tasks: [!delete ]\n"}, r"!delete leaves out a key of a mapping"),
])
def test_config_errors_name_the_file(tmp_path, case, files, message):
    for name, text in files.items():
        _write(tmp_path / name, text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "o.yaml")


def test_training_parser_reports_a_bad_config_in_one_line(tmp_path, capsys):
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    _write(tmp_path / "o.yaml", "base_config: missing.yaml\n")
    with pytest.raises(SystemExit) as e:
        HarmoniFuseTask.get_parser().parse_args(["--config", str(tmp_path / "o.yaml")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1  # no usage screen, no traceback
    assert str(tmp_path / "o.yaml") in err and "base_config 'missing.yaml' not found" in err
    _write(tmp_path / "u.yaml", "base_config: o2.yaml\nmax_epochs: 3\n")  # a typo in an override
    _write(tmp_path / "o2.yaml", "max_epoch: 1\n")
    with pytest.raises(SystemExit):
        HarmoniFuseTask.get_parser().parse_args(["--config", str(tmp_path / "u.yaml")])
    err = capsys.readouterr().err
    assert "unknown option(s) max_epochs (did you mean max_epoch?)" in err and "--print_config" in err


def test_print_config_of_an_override_shows_the_merged_config(monkeypatch):
    """``python -m espnet2.bin.harmonifuse_train --config conf/tuning/<override> --print_config``
    (in this process: ESPnet's --print_config reads sys.argv)."""
    import io

    from espnet_harmonifuse.tasks import HarmoniFuseTask

    monkeypatch.chdir(RECIPE)
    monkeypatch.setattr(sys, "argv", ["harmonifuse_train", "--config", "conf/tuning/train_static_fusion.yaml",
                                      "--print_config"])
    buf = io.StringIO()
    HarmoniFuseTask.print_config(file=buf)
    printed, base = yaml.safe_load(buf.getvalue()), load_config(RECIPE / "conf" / "train.yaml")
    assert printed["fusion"] == "static" and printed["gate"] == base["gate"] == "task_gate"
    assert printed["fusion_conf"]["layer_norm"] is base["fusion_conf"]["layer_norm"] is True  # from the base
    assert "hidden_size" not in printed["fusion_conf"] and "prompt_scale" not in printed["fusion_conf"]
    for key in ("max_epoch", "tasks", "num_iters_per_epoch", "batch_size"):
        assert printed[key] == base[key], key
    for key in ("backbone_conf", "decoder_conf", "optim_conf", "gate_conf", "model_conf"):  # + defaults
        assert printed[key] == {**printed[key], **base[key]}, key


def test_training_writes_the_merged_config_into_the_exp_dir(bpemodel, toy_corpus, tmp_path):
    """config.yaml in the exp dir is the full merged config: the model rebuilds from it alone."""
    from espnet_harmonifuse.bin import harmonifuse_train
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    (tmp_path / "conf").mkdir()
    write_config(tmp_path / "conf" / "train.yaml", bpemodel, max_epoch=1, gate_conf={"init_bias": 1.0})
    over = _write(tmp_path / "conf" / "tuning" / "no_gate.yaml",
                  "base_config: ../train.yaml\ngate: none\ngate_conf: !delete\nbatch_size: 2\n")
    cmd = ["--config", str(over), "--output_dir", str(tmp_path / "exp"), "--ngpu", "0", "--num_workers", "0",
           "--use_tensorboard", "false", "--use_matplotlib", "false", "--keep_nbest_models", "1"]
    for task, paths in toy_corpus.items():
        cmd += task_data_args(task, paths, "train") + task_data_args(task, paths, "valid")
    harmonifuse_train.main(cmd)
    written = yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())
    assert written["gate"] is None and written["gate_conf"] == {} and "base_config" not in written
    assert written["backbone_conf"]["num_blocks"] == 3 and written["bpemodel"] == bpemodel  # from the base
    assert [t["name"] for t in written["tasks"]] == ["asr", "ser"] and written["batch_size"] == 2
    model, _ = HarmoniFuseTask.build_model_from_file(tmp_path / "exp" / "config.yaml",
                                                     tmp_path / "exp" / "valid.loss.best.pth")
    assert not any(name.startswith("gate.") for name, _ in model.named_parameters())


# -------------------------------------------------------------------------- the shipped configs
ESPNET_CONFIGS = {"espnet_asr_conformer.yaml", "espnet_cls_conformer.yaml", "espnet_decode_asr.yaml"}  # ESPnet's tasks'
SHIPPED = sorted(
    p for p in [*ROOT.glob("egs2/*/harmonifuse1/conf/**/*.yaml"), *ROOT.glob("benchmarks/mini_emo/conf/*.yaml")]
    if p.name not in ESPNET_CONFIGS
)
OVERRIDES = [p for p in SHIPPED if "base_config:" in p.read_text()]


def test_the_ablations_and_the_benchmark_systems_are_override_files():
    names = {p.relative_to(ROOT).as_posix() for p in OVERRIDES}
    for name in ("static_fusion", "no_gate", "naive_multitask", "asr_only", "ser_only"):
        assert f"egs2/mini_emo/harmonifuse1/conf/tuning/train_{name}.yaml" in names
        assert f"benchmarks/mini_emo/conf/train_{name}.yaml" in names
    assert "benchmarks/mini_emo/conf/budget.yaml" in names
    assert not list((RECIPE / "local").glob("make_tuning_configs.py"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_shipped_config_resolves_and_parses_with_the_task_parser(path, monkeypatch):
    from espnet_harmonifuse.bin.common import load_train_args

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    conf = load_config(path)
    args = load_train_args(str(path))
    assert "base_config" not in conf and conf["tasks"]
    # the parser sees the merged config (argparse types a string: a component "none" becomes None)
    assert {k: getattr(args, k) for k in conf} == {k: None if v == "none" else v for k, v in conf.items()}
