"""benchmarks/dev_sweep.py (issue 4, item 5): its config variants, its scores and its summary of cut runs."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs2" / "mini_emo" / "harmonifuse1"


def _dev_sweep_module():
    spec = importlib.util.spec_from_file_location("dev_sweep", ROOT / "benchmarks" / "dev_sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_dev_sweep_variants_change_only_their_keys(monkeypatch):
    ds = _dev_sweep_module()
    monkeypatch.chdir(RECIPE)
    for name, v in ds.VARIANTS.items():
        base, new = yaml.safe_load((RECIPE / v.base).read_text()), ds.edited_config(Path("."), v)
        for key, value in v.edits.items():
            block, _, leaf = key.rpartition(".")
            assert (new[block] if block else new)[leaf] == value, name
            if block:
                assert {k: x for k, x in new[block].items() if k != leaf} == \
                    {k: x for k, x in base[block].items() if k != leaf}, name
        touched = {k.rpartition(".")[0] or k for k in v.edits}
        assert {k: x for k, x in new.items() if k not in touched} == \
            {k: x for k, x in base.items() if k not in touched}, name
    # --seeds: a variant at another seed than its own gets its own run name (and only the seed differs)
    assert [(n, v.seed) for n, v in ds.jobs(["hf_lr1e-3", "hf_s1"], "1,2")] == \
        [("hf_lr1e-3_seed1", 1), ("hf_lr1e-3_seed2", 2), ("hf_s1", 1), ("hf_s1_seed2", 2)]
    assert ds.jobs(["hf_s1"], "")[0][1] == ds.VARIANTS["hf_s1"]
    with pytest.raises(KeyError, match="no nonexistent_conf block"):
        ds.edited_config(Path("."), ds.Variant(ds.HF, {"nonexistent_conf.x": 1}, 0, "bad"))


def test_dev_sweep_summarises_cut_runs_from_train_logs(tmp_path):
    ds = _dev_sweep_module()

    def log(name, epochs):
        d = tmp_path / name
        d.mkdir()
        lines = [f"[vm] 2026 (trainer:394) INFO: {e}epoch results: [train] loss=9.0, loss_asr=9.0, "
                 f"[valid] loss=1.0, acc=0.5, loss_asr={la}, acc_asr=0.8, loss_ser={ls}, acc_ser=0.7, time=1 seconds"
                 for e, (la, ls) in enumerate(epochs, 1)]
        (d / "train.log").write_text("\n".join(lines) + "\n")

    log("hf_s0", [(2.0, 1.0), (0.6, 0.4)])
    log("hf_s1", [(2.0, 1.0), (0.8, 0.2)])
    log("hf_lr1e-3", [(2.0, 1.0)])  # cut before epoch 2: not in the epoch-2 table
    md = ds.summarise_logs(tmp_path, 2, tmp_path / "out")
    assert "| hf_s0 |" in md and "hf_lr1e-3" not in md
    assert "| hf, mean (sd) of 2 seeds | | 0.700 (0.141) | 0.800 (0.000) | 0.300 (0.141) | 0.700 (0.000) |" in md
    curves = json.loads((tmp_path / "out" / "dev_curves.json").read_text())
    assert curves["hf_lr1e-3"] == {"1": {"loss_asr": 2.0, "acc_asr": 0.8, "loss_ser": 1.0, "acc_ser": 0.7}}
    assert curves["hf_s1"]["2"]["loss_ser"] == 0.2


def test_dev_sweep_reads_dev_and_test_scores(tmp_path):
    ds = _dev_sweep_module()
    files = {("asr_dev", "score_wer"): {"wer": 19.234, "cer": 12.0},
             ("ser_test", "score_ser"): {"ua": 69.0, "wa": 70.0, "macro_f1": 68.75}}
    for (dset, sub), s in files.items():
        p = tmp_path / "decode_sweep" / dset / sub / "scores.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(s))
    assert ds.scores(tmp_path) == {"asr_dev.wer": 19.23, "asr_dev.cer": 12.0, "ser_test.ua": 69.0,
                                   "ser_test.wa": 70.0, "ser_test.macro_f1": 68.75}
