"""benchmarks/sweeps (dev_sweep, sweep_means, extra_dev): config variants, scores, summaries of cut
runs, means over seeds and the larger dev set."""

import json
from pathlib import Path

import pytest
from conftest import RECIPE, ROOT

from benchmarks.sweeps import dev_sweep as ds
from benchmarks.sweeps import extra_dev as ed
from benchmarks.sweeps import sweep_means as sm
from espnet_harmonifuse.utils.config import load_config


def test_dev_sweep_variants_change_only_their_keys():
    for name, v in ds.VARIANTS.items():
        base, new = load_config(ROOT / v.base), ds.edited_config(v)
        assert "base_config" not in new, name  # written out in full: the run needs no other file
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
        ds.edited_config(ds.Variant(ds.HF, {"nonexistent_conf.x": 1}, 0, "bad"))


def test_dev_sweep_summarises_cut_runs_from_train_logs(tmp_path):
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
    log("hf_e35_seed1", [(2.0, 1.0), (0.5, 0.3)])  # a --seeds rerun: listed after its variant, and pooled
    log("hf_e35", [(2.0, 1.0), (0.7, 0.5)])
    (tmp_path / "logs").mkdir()  # the recipe's own dirs are no runs
    md = ds.summarise_logs(tmp_path, 2, tmp_path / "out")
    assert "| hf_s0 |" in md and "hf_lr1e-3" not in md and "| logs |" not in md
    assert md.index("| hf_e35 |") < md.index("| hf_e35_seed1 | 35 epochs") < md.index("| hf_e35, mean")
    assert "| hf_e35, mean (sd) of 2 seeds | | 0.600 (0.141) |" in md
    assert "| hf, mean (sd) of 2 seeds | | 0.700 (0.141) | 0.800 (0.000) | 0.300 (0.141) | 0.700 (0.000) |" in md
    curves = json.loads((tmp_path / "out" / "dev_curves.json").read_text())
    assert curves["hf_lr1e-3"] == {"1": {"loss_asr": 2.0, "acc_asr": 0.8, "loss_ser": 1.0, "acc_ser": 0.7}}
    assert curves["hf_s1"]["2"]["loss_ser"] == 0.2


def test_dev_sweep_reads_dev_and_test_scores(tmp_path):
    files = {("asr_dev", "score_wer"): {"wer": 19.234, "cer": 12.0},
             ("ser_test", "score_ser"): {"ua": 69.0, "wa": 70.0, "macro_f1": 68.75}}
    for (dset, sub), s in files.items():
        p = tmp_path / "decode_sweep" / dset / sub / "scores.json"
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(s))
    assert ds.scores(tmp_path) == {"asr_dev.wer": 19.23, "asr_dev.cer": 12.0, "ser_test.ua": 69.0,
                                   "ser_test.wa": 70.0, "ser_test.macro_f1": 68.75}


def _fake_run_sh(calls, model_dir: Path, wer_of_tag, fails=lambda cmd: False):
    """A Popen stand-in for ./run.sh: records the command and writes an asr_dev score (WER from the
    command's last --inference_tag, CER 10) where the real stage 8 would; exits 1 where ``fails``."""

    class FakePopen:
        def __init__(self, cmd, **kw):
            calls.append(cmd)
            self.cmd = " ".join(cmd)
            tag = cmd[len(cmd) - 1 - cmd[::-1].index("--inference_tag") + 1]  # the last --inference_tag wins
            p = model_dir / f"decode_{tag}" / "asr_dev" / "score_wer" / "scores.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps({"wer": wer_of_tag(tag), "cer": 10.0}))
            self.pid = 0

        def wait(self, timeout=None):
            return 1 if fails(self.cmd) else 0

    return FakePopen


def test_dev_sweep_decodes_each_trained_model_again_with_each_beam(tmp_path, monkeypatch):
    """--beams 4: after training and the greedy decode, stages 7-8 run once more with --beam_size 4
    under their own tag, and the record keeps both decodes apart."""
    import argparse

    monkeypatch.chdir(RECIPE)
    calls = []

    monkeypatch.setattr(ds.subprocess, "Popen", _fake_run_sh(calls, tmp_path / "exp" / "hf_e35",
                                                             lambda tag: 20.0 if tag == "sweep" else 18.5,
                                                             fails=lambda cmd: "--beam_size 8" in cmd))
    args = argparse.Namespace(expdir=str(tmp_path / "exp"), ngpu=0, threads=1, recipe_args="", beams="1,4")
    rec = ds.run_one("hf_e35", ds.VARIANTS["hf_e35"], args, deadline=1e18)
    assert len(calls) == 2
    assert calls[0][:4] == ["./run.sh", "--stage", "6", "--stop_stage"]
    assert calls[1][:5] == ["./run.sh", "--stage", "7", "--stop_stage", "8"]
    assert calls[1][-4:] == ["--inference_tag", "sweep_beam4", "--inference_args", "--beam_size 4"]
    assert rec["status"] == "done"
    assert rec["asr_dev.wer"] == 20.0 and rec["beam4"] == {"asr_dev.wer": 18.5, "asr_dev.cer": 10.0}
    assert "| hf_e35 | the same model, beam 4 | 18.50 |" in ds.markdown([rec])
    # a beam decode that fails leaves the training's status alone, and says so under its own key
    rec = ds.run_one("hf_e35", ds.VARIANTS["hf_e35"], argparse.Namespace(**{**vars(args), "beams": "8"}), 1e18)
    assert rec["status"] == "done" and rec["beam8_status"].startswith("failed (code 1")
    assert "beam4_status" not in rec and "beam8" in rec  # (the fake wrote its scores before failing)


def test_dev_sweep_decodes_each_run_again_with_each_model_file(tmp_path, monkeypatch):
    """--models: stages 7-8 again with --inference_model <file> under a tag of their own, scored apart."""
    import argparse

    monkeypatch.chdir(RECIPE)
    calls = []

    wers = {"sweep": 20.0, "sweep_valid_acc_ave_5best": 17.0}
    monkeypatch.setattr(ds.subprocess, "Popen", _fake_run_sh(calls, tmp_path / "exp" / "default_nbest10", wers.get))
    args = argparse.Namespace(expdir=str(tmp_path / "exp"), ngpu=0, threads=1, recipe_args="", beams="",
                              models="valid.acc.ave_5best.pth")
    rec = ds.run_one("default_nbest10", ds.VARIANTS["default_nbest10"], args, deadline=1e18)
    assert len(calls) == 2 and calls[1][:3] == ["./run.sh", "--stage", "7"]
    assert calls[1][-4:] == ["--inference_tag", "sweep_valid_acc_ave_5best",
                             "--inference_model", "valid.acc.ave_5best.pth"]
    assert rec["asr_dev.wer"] == 20.0 and rec["model:valid.acc.ave_5best.pth"]["asr_dev.wer"] == 17.0
    assert "| default_nbest10 | the same run, decoded with valid.acc.ave_5best.pth | 17.00 |" in ds.markdown([rec])
    conf = ds.edited_config(ds.VARIANTS["default_lsm0.1"])
    assert conf["keep_nbest_models"] == [3, 5, 10] and conf["model_conf"]["lsm_weight"] == 0.1
    assert conf["max_epoch"] == 35  # the epochs it ran with (pinned), not the benchmark's config nor today's recipe
    assert ds.edited_config(ds.VARIANTS["default_nbest10"])["model_conf"]["lsm_weight"] == 0.0  # its baseline
    # both keep the 1:1 interleaving they were run with; default_ser2 is the 1:2 one, whatever the default is
    assert conf["multitask_schedule"] == "alternate"
    assert ds.edited_config(ds.VARIANTS["default_nbest10"])["multitask_schedule"] == "alternate"
    ser2 = ds.edited_config(ds.VARIANTS["default_ser2"])
    assert ser2["multitask_schedule"] == "ratio" and ser2["multitask_ratio"] == {"asr": 1, "ser": 2}


def test_sweep_means_averages_each_configuration_over_its_seeds(tmp_path, capsys):
    """benchmarks/sweeps/sweep_means.py: per configuration, the mean over the finished seeds of a variant
    (its own name and <name>_seed<k>), from the run's scores or an extra decode's, and the dev criterion."""
    def rec(name, seed, wer, ua, status="done", extra=None):
        s = {"asr_dev.wer": wer, "ser_dev.ua": ua, "asr_test.wer": wer - 2, "ser_test.ua": ua - 4}
        return {"name": name, "seed": seed, "status": status, **s, **({"model:m.pth": extra} if extra else {})}

    (tmp_path / "a.json").write_text(json.dumps([
        rec("v", 0, 10.0, 70.0, extra={"asr_dev.wer": 8.0, "ser_dev.ua": 80.0, "asr_test.wer": 1, "ser_test.ua": 2}),
        rec("v_seed1", 1, 14.0, 76.0), rec("vx_seed2", 2, 99.0, 0.0), rec("v_seed3", 3, 50.0, 0.0, "failed")]))
    (tmp_path / "b.json").write_text(json.dumps([rec("v_seed2", 2, 12.0, 73.0)]))
    got = sm.records(str(tmp_path / "*.json"), "v")
    assert sorted(got) == [0, 1, 2]  # not vx (another variant), not the failed seed 3
    assert sm.main([f"all={tmp_path}/*.json:v", f"none={tmp_path}/a.json:w"]) == 0
    out = capsys.readouterr().out.splitlines()
    # dev WER (10 + 14 + 12) / 3 = 12; UA (70 + 76 + 73) / 3 = 73; criterion (12 + 27) / 2 = 19.5
    assert out[2] == ("| all | 0,1,2 | 12.00 | 73.00 | 19.50 | 10.00 | 69.00 "
                      "| 10.00 / 70.00, 14.00 / 76.00, 12.00 / 73.00 |")
    assert out[3].startswith("| none | none |")
    assert sm.records(str(tmp_path / "*.json"), "v", "m.pth") == {
        0: {"asr_dev.wer": 8.0, "ser_dev.ua": 80.0, "asr_test.wer": 1.0, "ser_test.ua": 2.0}}
    # --tag: the scores of another decode of the runs (a larger dev set), read from their dirs
    for run, wer, ua in (("v", 9.0, 81.0), ("v_seed2", 11.0, 79.0), ("vx", 50.0, 10.0)):
        for dset, sub, score in (("asr_devx", "score_wer", {"wer": wer}), ("ser_devx", "score_ser", {"ua": ua})):
            p = tmp_path / "exp" / run / "decode_dx" / dset / sub / "scores.json"
            p.parent.mkdir(parents=True)
            p.write_text(json.dumps(score))
    (tmp_path / "exp" / "v_seed1" / "decode_dx" / "asr_devx").mkdir(parents=True)  # no scores: left out
    assert sm.main(["--tag", "dx", f"big={tmp_path}/exp:v"]) == 0
    assert capsys.readouterr().out.splitlines()[2] == "| big | 0,2 | 10.00 | 80.00 | 15.00 | - | - | 9.00 / 81.00, 11.00 / 79.00 |"


def test_extra_dev_set_is_from_dev_voices_and_shares_no_sentence_with_the_corpus(tmp_path):
    """benchmarks/sweeps/extra_dev.py: a larger dev set of the dev voices, without any sentence that a data
    dir already holds, formatted into dump/raw (16 kHz wavs that the recipe reads)."""
    import soundfile as sf

    from espnet_harmonifuse.corpus import mini_emo

    sizes = {f"{c}_{s}": 0 for c in mini_emo.CORPORA for s in ("train", "test")}
    plan = mini_emo.plan_corpus(str(tmp_path / "w"), 7, {**sizes, "asr_dev": 6, "ser_dev": 6})
    taken_asr, taken_ser = plan["asr_dev"][0].words, plan["ser_dev"][1].words
    for d, lines in (("asr_train", [f"u1 {taken_asr}"]), ("ser_test", [f"u2 {taken_ser}"])):
        (tmp_path / "data" / d).mkdir(parents=True)
        (tmp_path / "data" / d / ("text" if d.startswith("asr") else "transcript")).write_text(
            "".join(ln + "\n" for ln in lines))
    argv = ["--n", "6", "--seed", "7", "--suffix", "y", "--data_dir", str(tmp_path / "data"),
            "--wav_dir", str(tmp_path / "w"), "--dump_dir", str(tmp_path / "dump"), "--nj", "1"]
    assert ed.main(argv) == 0
    for corpus, taken in (("asr", taken_asr), ("ser", taken_ser)):
        d = tmp_path / "data" / f"{corpus}_devy"
        spk = dict(ln.split() for ln in (d / "utt2spk").read_text().splitlines())
        assert len(spk) == 5 and all(f"-{corpus}_devy_" in u for u in spk)  # 6 drawn, the used one left out
        assert set(spk.values()) <= {mini_emo.speaker_id(v) for v in mini_emo.VOICES["dev"]}
        words = (d / ("text" if corpus == "asr" else "transcript")).read_text()
        assert taken not in words.splitlines() and f" {taken}\n" not in words
        wavs = (tmp_path / "dump" / f"{corpus}_devy" / "wav.scp").read_text().split("\n")[0].split()
        info = sf.info(wavs[1])
        assert info.samplerate == 16000 and info.channels == 1 and info.duration > 0.5
    labels = set((tmp_path / "data" / "ser_devy" / "text").read_text().split()[1::2])
    assert labels <= {"neutral", "happy", "angry", "sad"}
