"""Shared fixtures: a tiny sentencepiece tokenizer, tiny model configs and tiny Kaldi data dirs."""

import copy
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest
import soundfile as sf
import yaml

torch = pytest.importorskip("torch")
# Tiny models: one intra-op thread is as fast, and far faster when other jobs share the CPUs
# (OpenMP barriers stall when a thread is descheduled).
torch.set_num_threads(1)

EMOTIONS = ["neutral", "happy", "angry", "sad"]
ASR_TEXTS = ["THE RED DOG", "A BLUE CAT SEES", "TWO BIRDS SING", "MY GREEN CAR"]

TINY_TASKS = [
    {"name": "asr", "target": "text", "prompts": ["transcribe the speech", "write what is said"]},
    {"name": "ser", "target": "label", "labels": EMOTIONS, "prompts": ["what is the emotion", "how does the speaker feel"]},
]

TINY_CONF = {
    "tasks": TINY_TASKS,
    "token_type": "sentencepiece",
    "backbone": "conformer",
    "backbone_conf": {
        "output_size": 32,
        "attention_heads": 2,
        "linear_units": 64,
        "num_blocks": 3,
        "n_mels": 40,
        "dropout_rate": 0.0,
    },
    "fusion": "prompt_adaptive",
    "gate": "task_gate",
    "projector": "stack_mlp",
    "projector_conf": {"downsample_rate": 2, "hidden_size": 64},
    "decoder": "hf_causal_lm",
    "decoder_conf": {
        "config": {
            "model_type": "qwen2",
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "intermediate_size": 64,
            "max_position_embeddings": 1024,
        },
        "freeze": False,
    },
}


ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs2" / "mini_emo" / "harmonifuse1"
if str(ROOT) not in sys.path:  # benchmarks/ is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))


def load_script(path: Path):
    """A script that is not a package module (benchmarks/*.py, a recipe's local/*.py), imported by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def deep_update(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@pytest.fixture(scope="session")
def bpemodel(tmp_path_factory) -> str:
    """A sentencepiece model over the toy texts, prompts and labels (and a gender task's)."""
    from espnet_harmonifuse.bin import tokenizer_train

    root = tmp_path_factory.mktemp("token")
    text = root / "text"
    lines = [f"u{i} {t}" for i, t in enumerate(ASR_TEXTS)] + ["g1 female", "g2 male", "g3 what is the gender"]
    text.write_text("\n".join(lines) + "\n")
    conf = root / "conf.yaml"
    conf.write_text(yaml.safe_dump({"tasks": TINY_TASKS}))
    tokenizer_train.main(["--config", str(conf), "--text", str(text), "--out_dir", str(root), "--vocab_size", "62"])
    return str(root / "bpe.model")


def write_config(path: Path, bpemodel: str, **overrides) -> Path:
    conf = deep_update(TINY_CONF, overrides)
    conf["bpemodel"] = bpemodel
    path.write_text(yaml.safe_dump(conf))
    return path


@pytest.fixture
def make_args(bpemodel, tmp_path):
    """``make_args(**overrides)`` -> the parsed training Namespace of TINY_CONF + overrides."""
    from espnet_harmonifuse.bin.common import load_train_args

    def _make(**overrides):
        return load_train_args(str(write_config(tmp_path / "conf.yaml", bpemodel, **overrides)))

    return _make


def toy_wave(seed: int, seconds: float = 0.6) -> np.ndarray:
    """A distinct, deterministic waveform per seed: two tones plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f1, f2 = 200 + 150 * (seed % 7), 900 + 300 * (seed % 5)
    wave = 0.3 * np.sin(2 * np.pi * f1 * t) + 0.2 * np.sin(2 * np.pi * f2 * t)
    return (wave + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def write_task_dir(root: Path, name: str, items: Sequence[Tuple[str, np.ndarray, str]]) -> Dict[str, str]:
    """Kaldi dir + speech shape file for ``items`` of (uttid, wave, text); returns the paths."""
    d = root / name
    (d / "wav").mkdir(parents=True, exist_ok=True)
    with open(d / "wav.scp", "w") as w, open(d / "text", "w") as t, open(d / "speech_shape", "w") as s:
        for uid, wave, text in sorted(items, key=lambda x: x[0]):
            p = d / "wav" / f"{uid}.wav"
            sf.write(p, wave, 16000, subtype="PCM_16")
            w.write(f"{uid} {p}\n")
            t.write(f"{uid} {text}\n")
            s.write(f"{uid} {len(wave)}\n")
    return {"wav.scp": str(d / "wav.scp"), "text": str(d / "text"), "shape": str(d / "speech_shape")}


def task_data_args(task: str, paths: Dict[str, str], mode: str) -> List[str]:
    """``--{mode}_task_data`` / ``--{mode}_task_shape_file`` options for one task dir."""
    return [
        f"--{mode}_task_data", f"{task}:{paths['wav.scp']},speech,sound",
        f"--{mode}_task_data", f"{task}:{paths['text']},text,text",
        f"--{mode}_task_shape_file", f"{task}:{paths['shape']}",
    ]


@pytest.fixture
def toy_corpus(tmp_path) -> Dict[str, Dict[str, str]]:
    """Four ASR utterances and four SER utterances (one per emotion), distinct audio each."""
    asr = [(f"asr{i}", toy_wave(i), text) for i, text in enumerate(ASR_TEXTS)]
    ser = [(f"ser{i}", toy_wave(100 + i), emo) for i, emo in enumerate(EMOTIONS)]
    return {"asr": write_task_dir(tmp_path, "asr", asr), "ser": write_task_dir(tmp_path, "ser", ser)}


def alone_and_batched(backbone, seconds=(0.4, 0.55, 0.9, 0.7)):
    """Per utterance: (states alone, states in a padded batch), over every layer, valid frames only."""
    waves = [torch.from_numpy(toy_wave(i, s)) for i, s in enumerate(seconds)]
    speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    lengths = torch.tensor([len(w) for w in waves])
    with torch.no_grad():
        batched, blen = backbone(speech, lengths)
        for i, w in enumerate(waves):
            alone, alen = backbone(w[None], lengths[i : i + 1])
            yield int(alen[0]), int(blen[i]), [(a[0], b[i, : int(alen[0])]) for a, b in zip(alone, batched)]


# ------------------------------------------------------------------------ benchmark run dirs
def write_bench_scores(run_dir: Path, asr=None, ser=None):
    """A benchmark run's scores.json files: ``asr=(wer, cer)``, ``ser=(ua, wa, macro_f1)``."""
    if asr is not None:
        p = run_dir / "decode_bench" / "asr_test" / "score_wer" / "scores.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"kind": "asr", "wer": asr[0], "cer": asr[1]}))
    if ser is not None:
        p = run_dir / "decode_bench" / "ser_test" / "score_ser" / "scores.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"kind": "ser", "ua": ser[0], "wa": ser[1], "macro_f1": ser[2]}))


def write_bench_record(run_dir: Path, **kw):
    """A benchmark run's bench_run.json (status done unless ``kw`` says otherwise)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "bench_run.json").write_text(json.dumps({"status": "done", **kw}))
