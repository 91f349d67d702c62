"""The paper's recipe (egs2/iemocap_librispeech/harmonifuse1) end to end at toy size, on CPU.

Its own run.sh and conf/train.yaml run stages 1-10 on fake IEMOCAP and LibriSpeech trees (release
layouts, espeak-ng speech), with a tiny random WavLM and a tiny random Qwen2 + tokenizer loaded from
local save_pretrained dirs, as real checkpoints are; the config is an override of conf/train.yaml
that changes only the model paths and sizes. A second, shorter run (stages 6-8) takes a tiny Llama
through conf/tuning/train_llama.yaml.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from paper_fixtures import (
    make_iemocap,
    make_librispeech,
    save_tiny_llm,
    save_tiny_wavlm,
    tokenizer_texts,
    write_db_sh,
    write_override,
)
from test_recipe_e2e import md_tables, row_of

pytestmark = pytest.mark.slow  # the recipe from stage 1 to 10, then stages 6-8 again (minutes)
pytest.importorskip("peft")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
EMOTIONS = ["neutral", "happy", "angry", "sad"]
MAPPED = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
ASR_TESTS = ["librispeech_test_clean", "librispeech_test_other"]
SER_TEST = "iemocap_test_fold5"
QWEN_TAG, LLAMA_TAG = "train_toy", "train_llama_toy"


def run(recipe: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["./run.sh", "--ngpu", "0", "--inference_ngpu", "0", *args], cwd=recipe, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """Corpora, checkpoints, a copy of the recipe with db.sh set, and its two runs."""
    root = tmp_path_factory.mktemp("paper")
    iemocap, librispeech = root / "corpora" / "IEMOCAP_full_release", root / "corpora" / "LibriSpeech"
    iemocap_truth, librispeech_truth = make_iemocap(iemocap), make_librispeech(librispeech)

    (root / "egs2").mkdir()
    os.symlink(REPO / "egs2" / "TEMPLATE", root / "egs2" / "TEMPLATE")
    recipe = root / "egs2" / "iemocap_librispeech" / "harmonifuse1"
    shutil.copytree(REPO / "egs2" / "iemocap_librispeech" / "harmonifuse1", recipe, symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp"))
    write_db_sh(recipe, iemocap, librispeech)

    models = {name: root / "models" / name for name in ("wavlm", "qwen2", "llama")}
    save_tiny_wavlm(models["wavlm"])
    texts = tokenizer_texts(recipe, librispeech_truth.values())
    for family in ("qwen2", "llama"):
        save_tiny_llm(models[family], family, texts)
    tuning = recipe / "conf" / "tuning"
    write_override(tuning / f"{QWEN_TAG}.yaml", "../train.yaml", models["wavlm"], models["qwen2"])
    write_override(tuning / f"{LLAMA_TAG}.yaml", "train_llama.yaml", models["wavlm"], models["llama"])

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "ESPNET_HARMONIFUSE_CACHE": str(root / "cache")}
    run(recipe, env, "--train_config", f"conf/tuning/{QWEN_TAG}.yaml", "--inference_nj", "1")
    run(recipe, env, "--stage", "6", "--stop_stage", "8", "--train_config", f"conf/tuning/{LLAMA_TAG}.yaml",
        "--inference_nj", "1")
    return {"recipe": recipe, "models": models, "env": env, "iemocap": iemocap_truth,
            "librispeech": librispeech_truth}


def kaldi(path: Path) -> dict:
    return dict(line.split(" ", 1) for line in path.read_text(encoding="utf-8").splitlines())


def test_data_dirs_hold_the_corpora_fold5_and_16k_audio(paper):
    recipe, truth = paper["recipe"], paper["iemocap"]
    test = {u: MAPPED[c] for u, c in truth.items() if u.startswith("Ses05") and c in MAPPED}
    assert kaldi(recipe / "data" / SER_TEST / "text") == test and set(test.values()) == set(EMOTIONS)
    train_dev = {u for part in ("train", "dev") for u in kaldi(recipe / f"data/iemocap_{part}_fold5/text")}
    assert train_dev == {u for u, c in truth.items() if not u.startswith("Ses05") and c in MAPPED}
    for name, subset in (("librispeech_test_clean", "test-clean"), ("librispeech_train_clean_100", "train-clean-100")):
        text = kaldi(recipe / "data" / name / "text")
        assert text and text == {u: paper["librispeech"][u] for u in text}
        assert all(f"/{subset}/" in p for p in kaldi(recipe / "data" / name / "wav.scp").values())
    wav = next(iter(kaldi(recipe / "dump" / "raw" / SER_TEST / "wav.scp").values()))
    assert sf.info(recipe / wav).samplerate == 16000


def test_results_md_has_wer_and_ua_of_every_test_set(paper):
    recipe = paper["recipe"]
    for tag in (QWEN_TAG, LLAMA_TAG):
        tables = md_tables((recipe / "exp" / tag / "RESULTS.md").read_text())
        for dset in ASR_TESTS:
            row = row_of(tables["WER"], dset)
            assert int(row[1]) == len(kaldi(recipe / "dump" / "raw" / dset / "text"))
            scores = json.loads(next((recipe / "exp" / tag).glob(f"decode*/{dset}/score_wer/scores.json")).read_text())
            assert float(row[7]) == pytest.approx(scores["word"]["err"], abs=0.06) and float(row[7]) >= 0
        row = row_of(tables["SER"], SER_TEST)
        refs = list(kaldi(recipe / "dump" / "raw" / SER_TEST / "text").values())
        assert int(row[1]) == len(refs) == 8
        ua = float(row[2])
        hyp = kaldi(next((recipe / "exp" / tag).glob(f"decode*/{SER_TEST}/text")))
        assert set(hyp.values()) <= set(EMOTIONS)
        recall = [np.mean([hyp[u] == e for u, r in kaldi(recipe / "dump/raw" / SER_TEST / "text").items() if r == e])
                  for e in EMOTIONS]
        assert ua == pytest.approx(100 * np.mean(recall), abs=0.06)


def frozen_weights_are(state: dict, saved: Path, prefix: str, dtype) -> None:
    """Every tensor of a save_pretrained dir is in the trained checkpoint unchanged, in ``dtype`` (the LLM
    in the config's bf16: ESPnet's cast of the model to --train_dtype leaves it so)."""
    import torch
    from safetensors.torch import load_file

    keys = {k.replace(".base_layer.", "."): k for k in state}  # peft wraps the LoRA targets
    for name, value in load_file(saved / "model.safetensors").items():
        got = state[keys[prefix + name]]
        assert got.dtype == dtype and torch.equal(got, value.to(dtype)), name


def test_the_models_are_the_local_checkpoints_with_lora_trained(paper):
    import torch

    recipe, models = paper["recipe"], paper["models"]
    for tag, llm in ((QWEN_TAG, "qwen2"), (LLAMA_TAG, "llama")):
        conf = yaml.safe_load((recipe / "exp" / tag / "config.yaml").read_text())
        assert conf["backbone_conf"]["model_name_or_path"] == str(models["wavlm"])
        assert conf["decoder_conf"]["model_name_or_path"] == str(models[llm])
        assert conf["decoder_conf"]["lora_conf"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
        assert conf["decoder_conf"]["freeze"] is True and conf["token_type"] == "hf"
        state = torch.load(recipe / "exp" / tag / "latest.pth", map_location="cpu", weights_only=True)
        lora_b = [k for k in state if "lora_B" in k]
        assert len(lora_b) == 2 * 4  # 2 layers x q, k, v, o
        assert any(state[k].abs().sum() > 0 for k in lora_b)  # trained away from peft's zero init
        frozen_weights_are(state, models["wavlm"], "backbone.model.", torch.float32)
        frozen_weights_are(state, models[llm], "decoder.lm.base_model.model.", torch.bfloat16)


def test_plots_and_the_packed_model_decode_a_test_utterance(paper, monkeypatch):
    from espnet_harmonifuse import HarmoniFuse

    recipe = paper["recipe"]
    model_dir = recipe / "exp" / QWEN_TAG
    pngs = {p.name for p in (model_dir / "images").glob("*.png")}
    assert {"layer_weights.png", "gate_values.png", f"confusion_{SER_TEST}.png"} <= pngs
    assert any("loss" in p for p in pngs)
    monkeypatch.setenv("ESPNET_HARMONIFUSE_CACHE", paper["env"]["ESPNET_HARMONIFUSE_CACHE"])
    models = paper["models"]["wavlm"].parent
    models.rename(models.with_name("away"))  # the zip alone: a user of it has no checkpoint dirs
    try:
        model = HarmoniFuse.from_pretrained(model_dir / "packed.zip")
    finally:
        models.with_name("away").rename(models)
    # one utterance of each task decodes as stage 7 decoded it (in its batch of the whole test set)
    for task, dset in (("ser", SER_TEST), ("asr", ASR_TESTS[0])):
        uttid, wav = sorted(kaldi(recipe / "dump" / "raw" / dset / "wav.scp").items())[0]
        stage7 = kaldi(next(model_dir.glob(f"decode*/{dset}/text")))[uttid]
        assert model(str(recipe / wav), task=task) == stage7, (task, uttid)
