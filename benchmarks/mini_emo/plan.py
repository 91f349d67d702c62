"""Benchmark planning: the systems, the runs, their directories and which are done (resumability)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

TASK_SCORE_DIR = {"asr": "score_wer", "ser": "score_ser"}
TASK_METRICS = {"asr": ("wer", "cer"), "ser": ("ua", "wa", "macro_f1")}  # read from each scores.json
DECODE_TAG = "bench"
RECORD = "bench_run.json"
CONF_DIR = Path(__file__).resolve().parent / "conf"  # the benchmark's configs (override files, conf/budget.yaml)


def conf(name: str) -> str:
    """The path of the benchmark config ``name``."""
    return str(CONF_DIR / name)


@dataclass(frozen=True)
class System:
    name: str
    kind: str  # harmonifuse | espnet_asr | espnet_cls | pocketsphinx
    tasks: Tuple[str, ...]  # the tasks it is scored on (and, for harmonifuse, trained on)
    config: Optional[str]  # training config (in CONF_DIR)
    label: str  # row label of the table
    seeded: bool = True  # False: deterministic, no training: run for the first seed only
    ablation: bool = False  # an ablation of HarmoniFuse: run for plan_runs' ablation_seeds


SYSTEMS: Dict[str, System] = {
    s.name: s
    for s in [
        System("harmonifuse", "harmonifuse", ("asr", "ser"), conf("train_harmonifuse.yaml"),
               "HarmoniFuse (prompt-adaptive fusion + task gate)"),
        System("static_fusion", "harmonifuse", ("asr", "ser"), conf("train_static_fusion.yaml"),
               "HarmoniFuse, static fusion", ablation=True),
        System("no_gate", "harmonifuse", ("asr", "ser"), conf("train_no_gate.yaml"),
               "HarmoniFuse, no gate", ablation=True),
        System("naive_multitask", "harmonifuse", ("asr", "ser"), conf("train_naive_multitask.yaml"),
               "Naive multi-task (static fusion, no gate)"),
        System("asr_only", "harmonifuse", ("asr",), conf("train_asr_only.yaml"), "Single-task ASR"),
        System("ser_only", "harmonifuse", ("ser",), conf("train_ser_only.yaml"), "Single-task SER"),
        System("espnet_asr", "espnet_asr", ("asr",), conf("espnet_asr_conformer.yaml"),
               "ESPnet ASR (Conformer + Transformer, CTC/attention)"),
        System("espnet_cls", "espnet_cls", ("ser",), conf("espnet_cls_conformer.yaml"),
               "ESPnet classification (Conformer, mean pooling)"),
        System("pocketsphinx", "pocketsphinx", ("asr",), None,
               "pocketsphinx en-us (pretrained, general English LM)", seeded=False),
    ]
}
SIZE_SYSTEMS: Dict[str, Tuple[str, ...]] = {
    "full": tuple(SYSTEMS),
    "low": ("harmonifuse", "static_fusion", "no_gate", "naive_multitask", "asr_only", "ser_only"),
}
ESPNET_DECODE_CONFIG = conf("espnet_decode_asr.yaml")
SUBSET_STRATA = {"asr": "speaker", "ser": "label"}
# The shared encoder pre-training's epochs, part of the benchmark's fixed budget (as conf/budget.yaml):
# 15, whatever the recipe's conf/pretrain.yaml trains (25), so that all its runs stay comparable.
BENCH_PRETRAIN_EPOCHS = 15
# modules a kind of system imports beyond the plugin's own requirements (the package's "bench" extra)
KIND_MODULES: Dict[str, Tuple[str, ...]] = {"espnet_cls": ("torcheval",), "pocketsphinx": ("pocketsphinx",)}


def missing_modules(runs: Sequence["Run"]) -> Dict[str, List[str]]:
    """``{module: [run keys]}``: what the runs would fail to import, found before any work starts."""
    import importlib.util

    out: Dict[str, List[str]] = {}
    for r in runs:
        for mod in KIND_MODULES.get(SYSTEMS[r.system].kind, ()):
            if importlib.util.find_spec(mod) is None:
                out.setdefault(mod, []).append(r.key)
    return out


@dataclass
class Run:
    size: str
    system: str
    seed: int
    run_dir: Path
    done: bool = False
    stale: bool = False

    @property
    def key(self) -> str:
        return f"{self.size}/{self.system}/seed{self.seed}"


@dataclass
class Context:
    """Options shared by all runs (paths relative to the recipe dir)."""

    bench_dir: Path = Path("bench")
    sets: Dict[str, Dict[str, str]] = field(default_factory=lambda: {
        "asr": {"train": "asr_train", "valid": "asr_dev", "test": "asr_test"},
        "ser": {"train": "ser_train", "valid": "ser_dev", "test": "ser_test"},
    })
    ser_labels: str = "neutral,happy,angry,sad"
    low_fraction: float = 0.25
    subset_seed: int = 0
    smoke: bool = False
    local_data_opts: str = ""
    check_data: bool = False  # run stages 1-3 even where the data exists (local_data_opts given)
    recipe_args: str = ""
    espnet_train_args: str = ""
    inference_model: str = "valid.acc.ave.pth"
    inference_nj: int = 2
    tokenizer_config: str = "conf/train.yaml"

    def size_dir(self, size: str) -> Path:
        return self.bench_dir / size

    def train_set(self, task: str, size: str) -> str:
        base = self.sets[task]["train"]
        return base if size == "full" else f"{base}_p{round(100 * self.low_fraction)}"

    def extra_train_args(self) -> List[str]:
        # smoke: one epoch of 4 batches, also where a config fixes a longer epoch (num_iters_per_epoch)
        return ["--max_epoch", "1", "--num_iters_per_epoch", "4"] if self.smoke else []

    def pretrain_train_args(self) -> List[str]:
        """The shared encoder pre-training's arguments: the smoke budget, or BENCH_PRETRAIN_EPOCHS."""
        return self.extra_train_args() if self.smoke else ["--max_epoch", str(BENCH_PRETRAIN_EPOCHS)]


# ----------------------------------------------------------------------------------------- plan
def run_dir(bench_dir: Path, size: str, system: str, seed: int) -> Path:
    return Path(bench_dir) / size / system / f"seed{seed}"


def expected_scores(run_dir_: Path, system: str, sets: Dict[str, Dict[str, str]]) -> Dict[str, Path]:
    """``{task: scores.json}`` that a finished run of ``system`` holds."""
    return {t: Path(run_dir_) / f"decode_{DECODE_TAG}" / sets[t]["test"] / TASK_SCORE_DIR[t] / "scores.json"
            for t in SYSTEMS[system].tasks}


def is_done(run_dir_: Path, system: str, sets: Dict[str, Dict[str, str]]) -> bool:
    return all(p.is_file() for p in expected_scores(run_dir_, system, sets).values())


def read_record(run_dir_: Path) -> Dict:
    p = Path(run_dir_) / RECORD
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except json.JSONDecodeError:
        return {}


def plan_runs(bench_dir: Path, sizes: Sequence[str], seeds: Sequence[int], only: Optional[Sequence[str]] = None,
              sets: Optional[Dict[str, Dict[str, str]]] = None,
              config_digests: Optional[Dict[str, str]] = None,
              ablation_seeds: Optional[Sequence[int]] = None) -> List[Run]:
    """Every (size, system, seed) to run, seed-major (one seed of everything first), each marked
    ``done`` when its scores are present; ``stale`` when done with another config than now.
    The ablation systems run for ``ablation_seeds`` (default: ``seeds``), the others for ``seeds``."""
    sets = sets or Context().sets
    for s in only or []:
        if s not in SYSTEMS:
            raise ValueError(f"unknown system '{s}'; systems: {', '.join(SYSTEMS)}")
    for size in sizes:
        if size not in SIZE_SYSTEMS:
            raise ValueError(f"unknown size '{size}'; sizes: {', '.join(SIZE_SYSTEMS)}")
    ablation_seeds = list(seeds if ablation_seeds is None else ablation_seeds)
    runs = []
    for seed in dict.fromkeys([*seeds, *ablation_seeds]):  # both lists' seeds, in order, once each
        for size in sizes:
            for name in SIZE_SYSTEMS[size]:
                own = ablation_seeds if SYSTEMS[name].ablation else list(seeds)
                if (only and name not in only) or seed not in own:
                    continue
                if not SYSTEMS[name].seeded and seed != own[0]:
                    continue
                d = run_dir(bench_dir, size, name, seed)
                done = is_done(d, name, sets)
                stale = False
                if done and config_digests and name in config_digests:
                    old = read_record(d).get("config_digest")
                    stale = old is not None and old != config_digests[name]
                runs.append(Run(size, name, seed, d, done, stale))
    return runs


# ------------------------------------------------------------------------------------- helpers
def sha(paths: Sequence[Path], extra: str = "") -> str:
    h = hashlib.sha1(extra.encode())
    for p in paths:
        p = Path(p)
        h.update(str(p).encode())
        h.update(p.read_bytes() if p.is_file() else b"<missing>")
    return h.hexdigest()[:16]


def config_digest(system: str, ctx: Context) -> str:
    s = SYSTEMS[system]
    if s.kind == "pocketsphinx":
        from benchmarks.mini_emo.pocketsphinx_decode import version

        try:
            return f"pocketsphinx-{version()}"
        except Exception:  # noqa: BLE001
            return "pocketsphinx"
    extra = " ".join(ctx.extra_train_args())
    if s.kind.startswith("espnet"):
        extra += " " + ctx.espnet_train_args
    return content_digest(Path(s.config), extra)


def current_digests(ctx: Context) -> Dict[str, str]:
    """Each system's config digest now (read from the recipe dir): a finished run that recorded
    another one was made with an older config."""
    return {name: config_digest(name, ctx) for name in SYSTEMS}


# options that change how fast a model trains, not the model: setting them does not make a finished
# run stale. Fused Adam makes the same update up to float rounding; a shared prompt prefix computes
# the same function (only the attention-dropout noise inside a prompt is shared by its samples).
SPEED_ONLY = ("plot_interval", "use_matplotlib", "use_tensorboard", "log_interval")
SPEED_ONLY_CONF = {"optim_conf": ("fused",), "model_conf": ("share_prompt_prefix",)}


def content_digest(config: Path, extra: str = "") -> str:
    """What a config says, not how: its effective content (an override file merged onto its bases),
    so that a comment, a header, a move to another file or into an override does not make a
    finished run stale, and any changed value does (also one in a base)."""
    from espnet_harmonifuse.utils.config import load_config

    data = load_config(config) if Path(config).is_file() else "<missing>"
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in SPEED_ONLY}
        for conf, keys in SPEED_ONLY_CONF.items():
            if isinstance(data.get(conf), dict):
                data[conf] = {k: v for k, v in data[conf].items() if k not in keys}
    return hashlib.sha1((extra + json.dumps(data, sort_keys=True, default=str)).encode()).hexdigest()[:16]
