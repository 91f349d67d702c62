"""The whole mini_emo recipe, stages 1-10, at smoke-test size, in a scratch copy of egs2/."""

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_recipe(root: Path, *extra: str, timeout: int = 1200):
    """Copy the mini_emo recipe under ``root`` and run all its stages at smoke-test size (+ ``extra``)."""
    (root / "egs2").mkdir()
    os.symlink(REPO / "egs2" / "TEMPLATE", root / "egs2" / "TEMPLATE")
    recipe = root / "egs2" / "mini_emo" / "harmonifuse1"
    shutil.copytree(REPO / "egs2" / "mini_emo" / "harmonifuse1", recipe, symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp", "downloads", "bench"))
    # the quoted --gen_opts also checks that --local_data_opts is split like a shell line
    cmd = ["./run.sh", "--local_data_opts", "--size tiny --gen_opts '--ser_test 12'", "--train_config", "conf/tuning/train_smoke.yaml",
           "--pretrain_config", "conf/tuning/pretrain_smoke.yaml", "--nbpe", "120", "--inference_nj", "2", "--inference_batch_size", "4",
           *extra]
    proc = subprocess.run(cmd, cwd=recipe, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return recipe, recipe / "exp" / "train_smoke", proc


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    return run_recipe(tmp_path_factory.mktemp("egs"))


def test_results_md_has_wer_and_ua(recipe_run):
    recipe, model_dir, _ = recipe_run
    results = (model_dir / "RESULTS.md").read_text()
    assert "WER" in results and "CER" in results and "UA" in results
    assert "asr_test" in results and "ser_test" in results
    wer = json.loads(next(model_dir.glob("decode*/asr_test/score_wer/scores.json")).read_text())
    ser = json.loads(next(model_dir.glob("decode*/ser_test/score_ser/scores.json")).read_text())
    n_asr = len((recipe / "dump/raw/asr_test/wav.scp").read_text().splitlines())
    assert wer["num_utts"] == n_asr and 0 <= wer["wer"]
    assert ser["num_utts"] == 12 and 0 <= ser["ua"] <= 100
    assert sum(map(sum, ser["confusion"])) == 12


def test_every_stage_ran_and_was_timed(recipe_run):
    recipe, model_dir, _ = recipe_run
    rows = (recipe / "exp" / "stage_times.tsv").read_text().splitlines()[1:]
    assert sorted({int(r.split("\t")[0]) for r in rows}) == list(range(1, 11))
    assert "Stage wall times" in (model_dir / "RESULTS.md").read_text()


def test_main_model_starts_from_the_pretrained_frozen_backbone(recipe_run):
    """Stage 6 pre-trains the encoder with CTC, copies it in (--init_param) and keeps it frozen."""
    import torch

    recipe, model_dir, _ = recipe_run
    pre = torch.load(recipe / "exp" / "pretrain_smoke" / "valid.loss.best.pth", map_location="cpu")
    main = torch.load(model_dir / "valid.acc.ave.pth", map_location="cpu")
    backbone = [k for k in pre if k.startswith("backbone.")]
    assert len(backbone) > 20 and "ctc_head.weight" in pre and not any(k.startswith("ctc_head") for k in main)
    # every weight and BatchNorm statistic of the encoder is the pre-trained one
    assert all(torch.equal(pre[k], main[k]) for k in backbone)


def test_plots_exist(recipe_run):
    _, model_dir, _ = recipe_run
    for name in ["loss_per_task.png", "acc_per_task.png", "layer_weights.png", "gate_values.png", "confusion_ser_test.png"]:
        png = model_dir / "images" / name
        assert png.is_file() and png.stat().st_size > 5000, name


def test_decoded_outputs_cover_the_test_sets(recipe_run):
    recipe, model_dir, _ = recipe_run
    for task, labels in (("asr", None), ("ser", {"neutral", "happy", "angry", "sad"})):
        ref_ids = [line.split()[0] for line in (recipe / f"dump/raw/{task}_test/text").read_text().splitlines()]
        hyp = next(model_dir.glob(f"decode*/{task}_test/text")).read_text().splitlines()
        assert [h.split(" ", 1)[0] for h in hyp] == ref_ids
        if labels:
            assert {h.split(" ", 1)[1] for h in hyp} <= labels


def test_packed_model_decodes_without_the_exp_dir(recipe_run, tmp_path):
    recipe, model_dir, _ = recipe_run
    packed = tmp_path / "model.zip"
    shutil.copy(model_dir / "packed.zip", packed)
    names = zipfile.ZipFile(packed).namelist()
    assert {"config.yaml", "model.pth", "tokenizer/bpe.model"} <= set(names)
    wav = tmp_path / "probe.wav"
    shutil.copy(next((recipe / "dump/raw/ser_test/data").glob("*.wav")), wav)
    moved = recipe.parent / "moved_away"
    recipe.rename(moved)  # the exp dir and the tokenizer path in config.yaml are gone
    try:
        code = (
            "from espnet_harmonifuse import HarmoniFuse;"
            f"m = HarmoniFuse.from_pretrained('{packed}');"
            f"print('SER=' + m('{wav}', task='ser')); print('ASR=' + repr(m('{wav}', task='asr', max_new_tokens=8)))"
        )
        proc = subprocess.run(["python", "-c", code], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "HOME": str(tmp_path)})
    finally:
        moved.rename(recipe)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ser = [line for line in proc.stdout.splitlines() if line.startswith("SER=")][0][4:]
    assert ser in {"neutral", "happy", "angry", "sad"}


def test_stage_times_of_another_model_do_not_leak_into_results(recipe_run):
    """stage_times.tsv is shared by the models of an exp dir; RESULTS.md lists this model's."""
    recipe, model_dir, _ = recipe_run
    tsv = recipe / "exp" / "stage_times.tsv"
    original = tsv.read_text()
    try:
        with open(tsv, "a") as f:
            f.write("6\ttrain\t99999.0\tanother_model\n")
        proc = subprocess.run(["./run.sh", "--stage", "8", "--stop_stage", "8", "--train_config",
                               "conf/tuning/train_smoke.yaml", "--nbpe", "120"], cwd=recipe,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = (model_dir / "RESULTS.md").read_text()
        assert "99999.0" not in results and "| 6 | train |" in results
    finally:
        tsv.write_text(original)
