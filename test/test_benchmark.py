"""The benchmark machinery (benchmarks/mini_emo), without training: run planning / resumability,
config digests, data preparation, low-data subsets, the ESPnet launcher quoting and pocketsphinx (the
results table: test_benchmark_table.py; the override configs resolve and parse: test_tuning_configs.py)."""

import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import RECIPE, write_bench_record, write_bench_scores

from benchmarks.mini_emo import plan, subsets
from benchmarks.mini_emo import run as bench_run

SETS = bench_run.Context().sets


@pytest.fixture
def bench_log_handlers():
    """run.main logs to BENCH/benchmark.log through handlers on the root logger: detach those it adds."""
    before = set(logging.getLogger().handlers)
    yield
    for h in set(logging.getLogger().handlers) - before:
        logging.getLogger().removeHandler(h)
        h.close()


# ------------------------------------------------------------------------- planning / resume
def test_plan_marks_runs_with_all_scores_done(tmp_path):
    b = tmp_path / "bench"
    write_bench_scores(b / "full" / "harmonifuse" / "seed0", asr=(1, 1), ser=(1, 1, 1))
    write_bench_scores(b / "full" / "naive_multitask" / "seed0", asr=(1, 1))  # SER score missing: not done
    write_bench_scores(b / "full" / "asr_only" / "seed1", asr=(1, 1))
    runs = bench_run.plan_runs(b, ["full", "low"], [0, 1, 2], sets=SETS)
    state = {r.key: r.done for r in runs}
    assert state["full/harmonifuse/seed0"] and state["full/asr_only/seed1"]
    assert not state["full/naive_multitask/seed0"] and not state["full/harmonifuse/seed1"]
    assert sum(state.values()) == 2
    # pocketsphinx is deterministic and untrained: first seed only; the low size has the 6 HarmoniFuse systems
    assert [r.key for r in runs if r.system == "pocketsphinx"] == ["full/pocketsphinx/seed0"]
    assert {r.system for r in runs if r.size == "low"} == {"harmonifuse", "static_fusion", "no_gate",
                                                           "naive_multitask", "asr_only", "ser_only"}
    assert len(runs) == 3 * 8 + 1 + 3 * 6
    # seed-major: every system's seed 0 comes before any seed 1
    seeds = [r.seed for r in runs]
    assert seeds == sorted(seeds)
    only = bench_run.plan_runs(b, ["full"], [0], only=["harmonifuse", "espnet_cls"], sets=SETS)
    assert [r.key for r in only] == ["full/harmonifuse/seed0", "full/espnet_cls/seed0"]
    with pytest.raises(ValueError, match="unknown system"):
        bench_run.plan_runs(b, ["full"], [0], only=["nope"], sets=SETS)


def test_plan_runs_the_ablations_for_their_own_seeds(tmp_path):
    b = tmp_path / "bench"
    runs = bench_run.plan_runs(b, ["full", "low"], [0, 1, 2, 3, 4], sets=SETS, ablation_seeds=[0, 1, 2])
    per_system = Counter(r.system for r in runs if r.size == "full")
    assert per_system["static_fusion"] == per_system["no_gate"] == 3
    assert {r.seed for r in runs if r.system in ("static_fusion", "no_gate")} == {0, 1, 2}
    for s in ("harmonifuse", "naive_multitask", "asr_only", "ser_only", "espnet_asr", "espnet_cls"):
        assert per_system[s] == 5, s
    assert per_system["pocketsphinx"] == 1
    assert Counter(r.seed for r in runs if r.size == "low") == {0: 6, 1: 6, 2: 6, 3: 4, 4: 4}
    assert len(runs) == 6 * 5 + 1 + 2 * 3 + 4 * 5 + 2 * 3
    assert [r.seed for r in runs] == sorted(r.seed for r in runs)  # still seed-major
    # an ablation seed outside --seeds is planned for the ablations alone
    only = bench_run.plan_runs(b, ["full"], [0], only=["harmonifuse", "no_gate"], sets=SETS, ablation_seeds=[1])
    assert [r.key for r in only] == ["full/harmonifuse/seed0", "full/no_gate/seed1"]
    same = bench_run.plan_runs(b, ["full"], [0, 1], sets=SETS, ablation_seeds=None)  # None: as without it
    assert [r.key for r in same] == [r.key for r in bench_run.plan_runs(b, ["full"], [0, 1], sets=SETS)]


def test_plan_flags_runs_done_with_another_config(tmp_path):
    b = tmp_path / "bench"
    d = b / "full" / "harmonifuse" / "seed0"
    write_bench_scores(d, asr=(1, 1), ser=(1, 1, 1))
    write_bench_record(d, config_digest="old")
    runs = bench_run.plan_runs(b, ["full"], [0], only=["harmonifuse"], sets=SETS, config_digests={"harmonifuse": "new"})
    assert runs[0].done and runs[0].stale
    runs = bench_run.plan_runs(b, ["full"], [0], only=["harmonifuse"], sets=SETS, config_digests={"harmonifuse": "old"})
    assert runs[0].done and not runs[0].stale


def test_config_digest_follows_what_a_config_says_not_how(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "sub" / "b.yaml"
    a.write_text("max_epoch: 25\noptim_conf:\n  lr: 0.002\n")
    b.parent.mkdir()
    b.write_text("# moved, with a header\noptim_conf: {lr: 0.002}   # same value\nmax_epoch: 25\n")
    assert plan.content_digest(a) == plan.content_digest(b)  # comments, layout, order, path: not stale
    b.write_text("max_epoch: 25\noptim_conf:\n  lr: 0.001\n")
    assert plan.content_digest(a) != plan.content_digest(b)  # a value: stale
    assert plan.content_digest(a, "--max_epoch 1") != plan.content_digest(a)  # extra training args count
    b.write_text("max_epoch: 25\nplot_interval: 5\noptim_conf:\n  lr: 0.002\n  fused: true\n"
                 "model_conf:\n  share_prompt_prefix: true\n")
    a.write_text("max_epoch: 25\noptim_conf:\n  lr: 0.002\nmodel_conf: {}\n")
    assert plan.content_digest(a) == plan.content_digest(b)  # speed-only options: not stale


def test_config_digest_is_of_the_merged_config(tmp_path):
    """An override file digests as the config it resolves to: as its full equivalent does, and anew
    when a value in its base changes."""
    base, over, full = tmp_path / "base.yaml", tmp_path / "over.yaml", tmp_path / "full.yaml"
    base.write_text("max_epoch: 25\ngate: task_gate\ngate_conf: {init_bias: 2.0}\n")
    over.write_text("base_config: base.yaml\ngate: none\ngate_conf: !delete\n")
    full.write_text("max_epoch: 25\ngate: none\n")
    assert plan.content_digest(over) == plan.content_digest(full)
    base.write_text("max_epoch: 30\ngate: task_gate\n")
    assert plan.content_digest(over) != plan.content_digest(full)


def test_system_configs_are_the_benchmarks_own():
    """Every trained system's config is a file of benchmarks/mini_emo/conf; each HarmoniFuse system
    trains at the budget of conf/budget.yaml, whatever the recipe's conf/train.yaml says."""
    from espnet_harmonifuse.utils.config import load_config

    budget = load_config(plan.CONF_DIR / "budget.yaml")
    for s in plan.SYSTEMS.values():
        if s.config is None:
            continue
        assert Path(s.config).is_file() and Path(s.config).parent == plan.CONF_DIR, s.name
        if s.kind == "harmonifuse":
            conf = load_config(s.config)
            assert (conf["max_epoch"], conf["optim_conf"]["lr"]) == (budget["max_epoch"], budget["optim_conf"]["lr"])
            assert conf["model_conf"]["lsm_weight"] == 0.0 and conf["multitask_schedule"] == "alternate", s.name
    assert Path(plan.ESPNET_DECODE_CONFIG).is_file()


def test_benchmark_script_dry_run_from_the_recipe_dir(tmp_path):
    """``../../../benchmarks/mini_emo/benchmark.sh --dry_run`` from the recipe dir prints the plan."""
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    cmd = ["../../../benchmarks/mini_emo/benchmark.sh", "--dry_run", "--seeds", "0", "--sizes", "low",
           "--bench_dir", str(tmp_path / "bench")]
    out = subprocess.run(cmd, cwd=RECIPE, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "todo  low/harmonifuse/seed0" in out.stdout and "6 of 6 runs to do" in out.stdout
    assert not (tmp_path / "bench").exists()  # a dry run writes nothing


def test_dry_run_lists_the_plan(tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "recipe"
    (recipe / "conf").mkdir(parents=True)
    b = recipe / "bench"
    write_bench_scores(b / "low" / "asr_only" / "seed0", asr=(1, 1))
    monkeypatch.chdir(tmp_path)
    assert bench_run.main(["--recipe_dir", str(recipe), "--seeds", "0", "--sizes", "low", "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "done  low/asr_only/seed0" in out and "todo  low/harmonifuse/seed0" in out and "5 of 6 runs to do" in out


def test_ablation_seeds_option_is_planned_and_recorded(tmp_path, capsys, monkeypatch, bench_log_handlers):
    """--ablation_seeds: the ablations' seeds in the dry-run plan, and in benchmark.json (here every
    planned run is done, so the command only records itself and writes the table)."""
    recipe = tmp_path / "recipe"
    (recipe / "conf").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    argv = ["--recipe_dir", str(recipe), "--seeds", "0,1", "--ablation_seeds", "0", "--sizes", "full",
            "--only", "harmonifuse,no_gate"]
    assert bench_run.main(argv + ["--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "seeds 0,1; ablations (static_fusion, no_gate): seeds 0" in out
    assert "todo  full/no_gate/seed0" in out and "no_gate/seed1" not in out and "3 of 3 runs to do" in out
    b = recipe / "bench" / "full"
    for d in (b / "harmonifuse" / "seed0", b / "harmonifuse" / "seed1", b / "no_gate" / "seed0"):
        write_bench_scores(d, asr=(1, 1), ser=(1, 1, 1))
    assert bench_run.main(argv) == 0
    inv = json.loads((recipe / "bench" / "benchmark.json").read_text())["invocations"][-1]
    assert inv["seeds"] == [0, 1] and inv["ablation_seeds"] == [0]
    assert bench_run.get_parser().parse_args([]).ablation_seeds == ""  # default: the --seeds


def test_missing_benchmark_package_stops_before_any_work(tmp_path, capsys, caplog, monkeypatch):
    """A system whose package is not installed (torcheval for ESPnet's classifier) stops the command
    at once with the fix, before data preparation and pre-training; --dry_run says it too."""
    import importlib.util

    recipe = tmp_path / "recipe"
    (recipe / "conf").mkdir(parents=True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torcheval" else real(name, *a))
    monkeypatch.setattr(bench_run, "prepare_base_data", lambda ctx: pytest.fail("data preparation started"))
    monkeypatch.chdir(tmp_path)
    argv = ["--recipe_dir", str(recipe), "--seeds", "0,1", "--sizes", "full", "--only", "espnet_cls,asr_only"]
    assert bench_run.main(argv + ["--dry_run"]) == 0
    assert "torcheval (for full/espnet_cls/seed0, full/espnet_cls/seed1)" in capsys.readouterr().out
    assert bench_run.main(argv) == 2
    assert 'pip install -e ".[bench]"' in caplog.text and "torcheval" in caplog.text
    assert bench_run.main(argv[:-1] + ["asr_only", "--dry_run"]) == 0  # without the classifier: nothing missing
    assert "missing" not in capsys.readouterr().out


def test_shared_encoder_pretraining_keeps_the_benchmark_budget(tmp_path, monkeypatch):
    """The benchmark pre-trains its shared encoder for BENCH_PRETRAIN_EPOCHS (15, its fixed budget)
    whatever the recipe's conf/pretrain.yaml says; the smoke test keeps its tiny budget; and
    the budget is part of the size's fingerprint, so a prepared size dir of another budget is refused."""
    from benchmarks.mini_emo import prepare

    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "train.yaml").write_text("tasks: [{name: asr}]\n")
    calls = []

    def fake_run(cmd, log, env=None):
        log.parent.mkdir(parents=True, exist_ok=True)
        calls.append(list(cmd))
        return 0, 1.0

    monkeypatch.setattr(prepare, "run_logged", fake_run)
    monkeypatch.setattr(prepare, "_link", lambda target, link: None)
    for smoke in (False, True):
        calls.clear()
        ctx = bench_run.Context(bench_dir=tmp_path / f"bench_{smoke}", smoke=smoke)
        prepare.prepare_size(ctx, "full")
        pre = [c for c in calls if "--pretrain_only" in c]
        assert len(pre) == 1 and len(calls) == 2
        args = pre[0][pre[0].index("--train_args") + 1]
        want = "--max_epoch 1 --num_iters_per_epoch 4" if smoke else f"--max_epoch {plan.BENCH_PRETRAIN_EPOCHS}"
        assert args == want and plan.BENCH_PRETRAIN_EPOCHS == 15
    stamp = tmp_path / "bench_False" / "full" / "prepared.json"
    fp = json.loads(stamp.read_text())["fingerprint"]
    assert fp["encoder_pretraining"].endswith("--max_epoch 15")
    stamp.write_text(json.dumps({"fingerprint": {**fp, "encoder_pretraining": "run.sh --pretrain_config, stage 6"}}))
    with pytest.raises(RuntimeError, match="prepared from other data or settings"):
        prepare.prepare_size(bench_run.Context(bench_dir=tmp_path / "bench_False"), "full")


def test_given_data_options_remake_data_that_exists(tmp_path, monkeypatch, bench_log_handlers):
    """Existing data is used as it is, unless --local_data_opts asks for a corpus: then stages 1-3 run
    with those options (local/data.sh keeps a matching corpus and regenerates another), so that
    '--asr_text open' in a recipe dir holding the closed corpus does not benchmark the closed one."""
    from benchmarks.mini_emo import prepare

    monkeypatch.chdir(tmp_path)
    ctx = bench_run.Context(bench_dir=tmp_path / "bench")
    for t in ctx.sets:
        for k in prepare.BASE_SETS:
            (tmp_path / "dump" / "raw" / ctx.sets[t][k]).mkdir(parents=True)
            (tmp_path / "dump" / "raw" / ctx.sets[t][k] / "wav.scp").write_text("")
    calls = []
    monkeypatch.setattr(prepare, "run_logged", lambda cmd, log, env=None: (calls.append(list(cmd)), (0, 1.0))[1])
    prepare.prepare_base_data(ctx)
    assert calls == []
    args = bench_run.get_parser().parse_args(["--local_data_opts", "--asr_text open"])
    monkeypatch.setattr(bench_run, "prepare_base_data", lambda c: calls.append(c))
    monkeypatch.setattr(bench_run, "plan_runs", lambda *a, **k: [plan.Run("full", "harmonifuse", 0, tmp_path / "r")])
    monkeypatch.setattr(bench_run, "prepare_size", lambda c, size: pytest.fail("stop after the data"))
    with pytest.raises(pytest.fail.Exception):
        bench_run.main(["--recipe_dir", str(tmp_path), "--local_data_opts", "--asr_text open"])
    ctx_open = calls.pop()
    assert ctx_open.check_data and ctx_open.local_data_opts == args.local_data_opts == "--asr_text open"
    prepare.prepare_base_data(ctx_open)
    assert calls[0][:5] == ["./run.sh", "--stage", "1", "--stop_stage", "3"]
    assert calls[0][calls[0].index("--local_data_opts") + 1] == "--asr_text open"


# --------------------------------------------------------------------------- low-data subset
def _ser_dir(root: Path, counts) -> Path:
    d = root / "ser_train"
    d.mkdir(parents=True)
    wav, text, spk = {}, {}, {}
    n = 0
    for label, k in counts.items():
        for i in range(k):
            uid = f"spk{n % 3}-ser_{n:04d}"
            wav[uid], text[uid], spk[uid] = f"/x/{uid}.wav", label, f"spk{n % 3}"
            n += 1
    for name, data in (("wav.scp", wav), ("text", text), ("utt2spk", spk)):
        (d / name).write_text("".join(f"{k} {data[k]}\n" for k in sorted(data)))
    return d


def test_low_data_subset_is_a_quarter_stratified_by_label_and_deterministic(tmp_path):
    counts = {"neutral": 16, "happy": 12, "angry": 8, "sad": 4}  # 40 utterances
    src = _ser_dir(tmp_path, counts)
    ids = subsets.make_subset_dir(src, tmp_path / "p25", 0.25, "label", seed=0)
    assert len(ids) == 10 == round(0.25 * 40)
    text = dict(ln.split(" ", 1) for ln in (tmp_path / "p25" / "text").read_text().splitlines())
    assert Counter(text.values()) == {"neutral": 4, "happy": 3, "angry": 2, "sad": 1}
    assert sorted(text) == ids == sorted((ln.split()[0] for ln in (tmp_path / "p25" / "wav.scp").read_text().splitlines()))
    spk2utt = [u for ln in (tmp_path / "p25" / "spk2utt").read_text().splitlines() for u in ln.split()[1:]]
    assert sorted(spk2utt) == ids
    meta = json.loads((tmp_path / "p25" / "subset.json").read_text())
    assert meta["num_utts"] == 10 and meta["per_stratum"]["sad"] == 1
    # same seed: same subset; another seed: another subset with the same label counts
    assert subsets.stratified_subset(subsets.strata_of(src, "label"), 0.25, 0) == ids
    other = subsets.stratified_subset(subsets.strata_of(src, "label"), 0.25, 1)
    assert other != ids and Counter(text_of := [subsets.strata_of(src, "label")[i] for i in other]) == Counter(text.values())
    assert len(text_of) == 10


def test_allocate_largest_remainder():
    # 4 x 6 items, 25 %: 1.5 each -> floor 1 each, the 2 leftovers to the first names (ties)
    assert subsets.allocate({"a": 6, "b": 6, "c": 6, "d": 6}, 0.25) == {"a": 2, "b": 2, "c": 1, "d": 1}
    got = subsets.allocate({"x": 7, "y": 3, "z": 1}, 0.25)  # exact 1.75, 0.75, 0.25; total round(2.75) = 3
    assert got == {"x": 2, "y": 1, "z": 0}
    assert subsets.allocate({"x": 3}, 1.0) == {"x": 3}
    with pytest.raises(ValueError):
        subsets.allocate({"x": 3}, 0.0)


# ----------------------------------------------------------------------------- ESPnet launcher
def test_espnet_launcher_quotes_shell_words(tmp_path):
    from benchmarks.mini_emo.espnet_baselines import CommandFailed, Launcher

    out = tmp_path / "out.txt"
    code = f"import sys; open({str(out)!r}, 'w').write(' '.join(sys.argv[1:]))"
    Launcher().run([sys.executable, "-c", code, "<blank>:0", "a b", "x|y"], str(tmp_path / "log" / "x.log"))
    assert out.read_text() == "<blank>:0 a b x|y"
    with pytest.raises(CommandFailed, match="x2.log"):
        Launcher().run([sys.executable, "-c", "raise SystemExit(3)"], str(tmp_path / "log" / "x2.log"))


# ---------------------------------------------------------------------------------- pocketsphinx
def test_pocketsphinx_decodes_espeak_speech_to_uppercase_text(tmp_path):
    pytest.importorskip("pocketsphinx")
    from scipy.signal import resample_poly

    from benchmarks.mini_emo.pocketsphinx_decode import decode_scp
    from espnet_harmonifuse.corpus.espeak import synthesize

    wave, sr = synthesize("the red dog sees a small bird", voice="en-us", rate=150)
    assert sr == 22050
    wave16 = resample_poly(np.concatenate([np.zeros(4000, np.float32), wave, np.zeros(4000, np.float32)]), 160, 441)
    sf.write(tmp_path / "utt1.wav", wave16, 16000, subtype="PCM_16")
    (tmp_path / "wav.scp").write_text(f"utt1 {tmp_path / 'utt1.wav'}\n")
    hyps = decode_scp(str(tmp_path / "wav.scp"), str(tmp_path / "out" / "text"))
    text = hyps["utt1"]
    assert text and text == text.upper() and "(" not in text and "<" not in text
    line = (tmp_path / "out" / "text").read_text().strip()
    assert line == f"utt1 {text}"


def test_pocketsphinx_cli_writes_a_line_per_utterance(tmp_path):
    pytest.importorskip("pocketsphinx")
    from benchmarks.mini_emo import pocketsphinx_decode

    sf.write(tmp_path / "silence.wav", np.zeros(8000, np.float32), 16000, subtype="PCM_16")
    (tmp_path / "wav.scp").write_text(f"sil {tmp_path / 'silence.wav'}\n")
    pocketsphinx_decode.main(["--wav_scp", str(tmp_path / "wav.scp"), "--out", str(tmp_path / "text")])
    assert (tmp_path / "text").read_text().split()[0] == "sil"

