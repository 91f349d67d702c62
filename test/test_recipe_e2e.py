"""The whole mini_emo recipe, stages 1-10, at smoke-test size, in a scratch copy of egs2/."""

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
from conftest import EMOTIONS

pytestmark = pytest.mark.slow  # the module runs the whole recipe once (several minutes)

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
           "--pretrain_config", "conf/tuning/pretrain_smoke.yaml", "--nbpe", "100", "--inference_nj", "2", "--inference_batch_size", "4",
           *extra]
    proc = subprocess.run(cmd, cwd=recipe, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return recipe, recipe / "exp" / "train_smoke", proc


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory):
    return run_recipe(tmp_path_factory.mktemp("egs"))


def md_tables(text: str) -> Dict[str, List[List[str]]]:
    """The markdown tables of a RESULTS.md by the heading above them: header row, then data rows."""
    tables: Dict[str, List[List[str]]] = {}
    heading = ""
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("|") and not line.startswith("|---"):
            tables.setdefault(heading, []).append([c.strip() for c in line.strip().strip("|").split("|")])
    return tables


def row_of(table: List[List[str]], test_set: str) -> List[str]:
    (row,) = [r for r in table[1:] if r[0].endswith(f"/{test_set}")]
    return row


def kaldi_lines(path: Path) -> List[List[str]]:
    return [line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines()]


def test_results_md_reports_every_test_utterance_with_consistent_figures(recipe_run):
    recipe, model_dir, _ = recipe_run
    tables = md_tables((model_dir / "RESULTS.md").read_text())
    n_asr = len(kaldi_lines(recipe / "dump/raw/asr_test/text"))
    ser_refs = [label for _, label in kaldi_lines(recipe / "dump/raw/ser_test/text")]
    assert len(ser_refs) == 12  # --gen_opts '--ser_test 12'
    asr_scores = json.loads(next(model_dir.glob("decode*/asr_test/score_wer/scores.json")).read_text())
    for heading, unit in (("WER", "word"), ("CER", "char")):
        assert tables[heading][0] == ["dataset", "Snt", "Wrd", "Corr", "Sub", "Del", "Ins", "Err", "S.Err"]
        row = row_of(tables[heading], "asr_test")
        corr, sub, dele, ins, err, s_err = map(float, row[3:])
        assert int(row[1]) == n_asr and int(row[2]) == asr_scores[unit]["num_ref_tokens"] > 0
        assert all(0 <= v <= 100 for v in (corr, sub, dele, s_err)) and ins >= 0  # Err counts insertions too
        assert corr + sub + dele == pytest.approx(100, abs=0.2)
        assert err == pytest.approx(sub + dele + ins, abs=0.2)
        assert err == pytest.approx(asr_scores[unit]["err"], abs=0.06)
    assert tables["SER"][0] == ["dataset", "Snt", "UA", "WA", "Macro-F1"]
    row = row_of(tables["SER"], "ser_test")
    ua, wa, f1 = map(float, row[2:])
    assert int(row[1]) == len(ser_refs) and all(0 <= v <= 100 for v in (ua, wa, f1))
    (heading,) = [h for h in tables if h.startswith("Confusion matrix:") and h.endswith("/ser_test")]
    header, *rows = tables[heading]
    labels = [r[0] for r in rows]
    assert labels == EMOTIONS and header[1:5] == EMOTIONS
    m = np.array([[int(c) for c in r[1:]] for r in rows])
    # rows count the references of each emotion; UA and WA follow from the counts
    assert m.sum() == len(ser_refs) and m.sum(1).tolist() == [ser_refs.count(e) for e in labels]
    assert ua == pytest.approx(np.mean([100 * m[k, k] / m[k].sum() for k in range(4) if m[k].sum()]), abs=0.06)
    assert wa == pytest.approx(100 * np.trace(m[:, :4]) / m.sum(), abs=0.06)
    ser_scores = json.loads(next(model_dir.glob("decode*/ser_test/score_ser/scores.json")).read_text())
    assert ser_scores["num_utts"] == len(ser_refs) and ser_scores["confusion"] == m.tolist()


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


def test_decoded_outputs_cover_the_test_sets_and_are_what_was_scored(recipe_run):
    recipe, model_dir, _ = recipe_run
    for task, score_dir in (("asr", "score_wer"), ("ser", "score_ser")):
        ref_ids = [uid for uid, _ in kaldi_lines(recipe / f"dump/raw/{task}_test/text")]
        hyp_file = next(model_dir.glob(f"decode*/{task}_test/text"))
        hyp = kaldi_lines(hyp_file)
        assert [h[0] for h in hyp] == ref_ids and len(set(ref_ids)) == len(ref_ids)  # one line per utterance
        scores = json.loads((hyp_file.parent / score_dir / "scores.json").read_text())
        assert Path(scores["hyp"]).name == "text" and Path(scores["hyp"]).parent.name == f"{task}_test"
        assert scores["num_utts"] == len(ref_ids) and scores["num_missing_hyp"] == scores["num_extra_hyp"] == 0
        if task == "ser":
            labels = [h[1] for h in hyp]
            assert set(labels) <= set(EMOTIONS) and scores["labels"] == EMOTIONS
            # the confusion matrix's columns count the decoded labels
            columns = np.array(scores["confusion"]).sum(0).tolist()
            assert columns[:4] == [labels.count(e) for e in EMOTIONS]


def png_has_the_size_of(path: Path, fig) -> None:
    """A plot's PNG has its figure's size at the 100 dpi the plots are saved with."""
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    width, height = (fig.get_size_inches() * 100).round().astype(int)
    plt.close(fig)
    assert mpimg.imread(path).shape[:2] == (height, width), path


def test_plots_draw_the_runs_data(recipe_run, tmp_path):
    import matplotlib.image as mpimg

    from espnet_harmonifuse.api import HarmoniFuse
    from espnet_harmonifuse.utils import plots

    _, model_dir, _ = recipe_run
    images = model_dir / "images"
    # the curves are the logged epoch values: drawn again from checkpoint.pth, pixel for pixel
    stats = plots.load_reporter_stats(model_dir)
    assert [s["epoch"] for s in stats] == list(range(1, len(stats) + 1)) and len(stats) >= 2
    for again in plots.plot_training_curves(stats, tmp_path, ["asr", "ser"]):
        assert np.array_equal(mpimg.imread(images / Path(again).name), mpimg.imread(again)), again
    # the layer weights are the decoded (packed) model's, one distribution per task prompt
    with zipfile.ZipFile(model_dir / "packed.zip") as zf:
        zf.extractall(tmp_path / "packed")
    model = HarmoniFuse.from_pretrained(tmp_path / "packed").model
    saved = np.load(images / "layer_weights.npz")
    want = model.layer_weights_per_task()
    assert sorted(saved.files) == sorted(want) == ["asr", "ser"]
    for spec, prompts in zip(model.tasks, model.prompt_ids):
        assert saved[spec.name].shape == (len(prompts), model.backbone.num_layers)
        np.testing.assert_allclose(saved[spec.name], want[spec.name].numpy(), atol=1e-6)
        np.testing.assert_allclose(saved[spec.name].sum(-1), 1.0, atol=1e-5)
    png_has_the_size_of(images / "layer_weights.png", plots.layer_weights_figure(dict(saved)))
    png_has_the_size_of(images / "gate_values.png", plots.gate_stats_figure({"asr": [0.5]}))
    scores = json.loads(next(model_dir.glob("decode*/ser_test/score_ser/scores.json")).read_text())
    confusion = plots.confusion_figure(scores["confusion"], scores["labels"], scores["confusion_columns"])
    png_has_the_size_of(images / "confusion_ser_test.png", confusion)


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
                               "conf/tuning/train_smoke.yaml", "--nbpe", "100"], cwd=recipe,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results = (model_dir / "RESULTS.md").read_text()
        assert "99999.0" not in results and "| 6 | train |" in results
    finally:
        tsv.write_text(original)
