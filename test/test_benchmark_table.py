"""The benchmark's results table (benchmarks/mini_emo/table.py), on fake run dirs: mean and sample sd
over seeds, stale runs left out, the invocations, and HarmoniFuse's paired differences with 95 %
confidence intervals."""

import json
import math
from pathlib import Path

import pytest

from conftest import RECIPE, write_bench_record, write_bench_scores

from benchmarks.mini_emo import plan, table


@pytest.fixture
def fake_bench(tmp_path):
    b = tmp_path / "bench"
    hf = b / "full" / "harmonifuse"
    # WER 10, 12, 14 -> mean 12, sample std sqrt((4 + 0 + 4) / 2) = 2
    # CER 5, 6, 10   -> mean 7,  sample std sqrt((4 + 1 + 9) / 2) = sqrt(7) = 2.6458
    # UA: seed 1 has no SER score (its SER decode "failed") -> 60, 80: mean 70, std sqrt(200) = 14.142
    write_bench_scores(hf / "seed0", asr=(10.0, 5.0), ser=(60.0, 61.0, 59.0))
    write_bench_scores(hf / "seed1", asr=(12.0, 6.0))
    write_bench_scores(hf / "seed2", asr=(14.0, 10.0), ser=(80.0, 81.0, 79.0))
    for k, t in enumerate((600.0, 900.0, 720.0)):  # wall of the finished seeds 0, 2: mean 660 s = 11.0 min
        write_bench_record(hf / f"seed{k}", params=2_780_000, trainable_params=2_700_000, train_seconds=t)
    (hf / "seed1" / "bench_run.json").write_text(json.dumps({"status": "failed", "train_seconds": 900.0}))
    # single-task ASR: seed 1 missing entirely -> n = 2, WER 20, 30: mean 25, std 7.0711
    write_bench_scores(b / "full" / "asr_only" / "seed0", asr=(20.0, 9.0))
    write_bench_scores(b / "full" / "asr_only" / "seed2", asr=(30.0, 11.0))
    # one seed only: no std shown
    write_bench_scores(b / "low" / "ser_only" / "seed0", ser=(50.0, 50.0, 48.5))
    return b


def test_table_aggregates_mean_and_sample_std_over_finished_seeds(fake_bench):
    agg = table.aggregate(table.collect(fake_bench))
    hf = agg[("full", "harmonifuse")]
    assert hf["wer"] == pytest.approx((12.0, 2.0, 3))
    assert hf["cer"][:2] == pytest.approx((7.0, math.sqrt(7.0)))
    assert hf["ua"] == pytest.approx((70.0, math.sqrt(200.0), 2))
    assert hf["failed"] == [1]
    assert hf["params"] == 2_780_000 and hf["trainable_params"] == 2_700_000
    assert agg[("full", "asr_only")]["wer"] == pytest.approx((25.0, math.sqrt(50.0), 2))
    assert "ua" not in agg[("full", "asr_only")]
    one = agg[("low", "ser_only")]["ua"]
    assert one[0] == 50.0 and math.isnan(one[1]) and one[2] == 1


def test_table_markdown(fake_bench):
    path = table.write_all(fake_bench)
    text = Path(path).read_text()
    assert path == str(fake_bench / "RESULTS.md")
    assert "## full" in text and "## low" in text
    row = next(ln for ln in text.splitlines() if "(`harmonifuse`)" in ln)
    cells = [c.strip() for c in row.strip("|").split("|")]
    # system | n | WER | CER | UA | WA | F1 | params | trainable | train (min)
    assert cells[1] == "asr 3, ser 2"  # 3 seeds for the ASR metrics, 2 for SER
    assert cells[2] == "12.00 ± 2.00" and cells[3] == "7.00 ± 2.65" and cells[4] == "70.00 ± 14.14"
    assert cells[7] == "2.78 M" and cells[8] == "2.70 M"
    assert cells[9] == "11.0"  # the finished seeds' (0, 2) train time: (600 + 720) / 2 s (the failed seed 1 excluded)
    low = next(ln for ln in text.splitlines() if "(`ser_only`)" in ln)
    assert "| 50.00 |" in low and "±" not in low and "| — |" in low
    assert "seed(s) 1 failed" in text
    # the per-run rows behind the means, in the table's order (full before low), seeds ascending
    per_run = text.split("## Per run", 1)[1].split("\n\n", 2)[1].splitlines()[2:]
    assert [tuple(c.strip() for c in ln.strip("|").split("|")[:3]) for ln in per_run] == [
        ("full", "`harmonifuse`", "0"), ("full", "`harmonifuse`", "1"), ("full", "`harmonifuse`", "2"),
        ("full", "`asr_only`", "0"), ("full", "`asr_only`", "2"), ("low", "`ser_only`", "0")]
    assert per_run[0].endswith("| 10.00 | 5.00 | 60.00 | 61.00 | 59.00 | 10.0 | done |")
    assert per_run[1].endswith("| 12.00 | 6.00 | — | — | — | 15.0 | failed |")
    assert per_run[5].endswith("| — | — | 50.00 | 50.00 | 48.50 | — | no bench_run.json |")


def test_table_leaves_out_runs_of_an_older_config(fake_bench):
    """A rerun config makes the old runs stale: they must not be averaged with the new ones."""
    asr = fake_bench / "full" / "asr_only"
    write_bench_record(asr / "seed0", config_digest="new", train_seconds=60.0)
    write_bench_record(asr / "seed2", config_digest="old", train_seconds=600.0)
    text = Path(table.write_all(fake_bench, digests={"asr_only": "new"})).read_text()
    row = next(ln for ln in text.splitlines() if "(`asr_only`)" in ln)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "1" and cells[2] == "20.00" and cells[9] == "1.0"  # seed 0 alone (WER 20, 60 s)
    assert "Left out: 1 run(s)" in text and "full/asr_only/seed2" in text
    assert "(`harmonifuse`)" in text  # runs without a recorded digest stay in
    without = Path(table.write_all(fake_bench)).read_text()  # no digests given: nothing is left out
    assert "Left out" not in without and "25.00 ± 7.07" in without


def test_table_cli_by_hand_leaves_out_runs_of_an_older_config_too(fake_bench, monkeypatch):
    """``python -m benchmarks.mini_emo.table`` from the recipe dir uses the configs' digests
    now, as the benchmark's own command does; --all_configs counts every finished run."""
    monkeypatch.chdir(RECIPE)
    asr = fake_bench / "full" / "asr_only"
    write_bench_record(asr / "seed0", config_digest=plan.current_digests(plan.Context())["asr_only"], train_seconds=60.0)
    write_bench_record(asr / "seed2", config_digest="made-with-an-older-config", train_seconds=600.0)
    text = Path(table.main(["--bench_dir", str(fake_bench)])).read_text()
    assert "Left out: 1 run(s)" in text and "full/asr_only/seed2" in text
    text = Path(table.main(["--bench_dir", str(fake_bench), "--all_configs"])).read_text()
    assert "Left out" not in text and "25.00 ± 7.07" in text


def test_table_lists_every_invocation_that_produced_it(fake_bench):
    """A table finished over several invocations is reproduced by all of them, not by the last one."""
    meta = {"invocations": [{"command": "bench --seeds 0", "started": "2026-01-01T10:00:00"},
                            {"command": "bench --max_hours 1.4", "started": "2026-01-02T09:30:00"}]}
    (fake_bench / "benchmark.json").write_text(json.dumps(meta))
    text = Path(table.write_all(fake_bench)).read_text()
    block = text.split("```")[1].strip().splitlines()
    assert "2 invocation(s)" in text
    assert block == ["# 2026-01-01T10:00:00", "bench --seeds 0", "# 2026-01-02T09:30:00", "bench --max_hours 1.4"]


@pytest.fixture
def paired_bench(tmp_path):
    b = tmp_path / "bench"
    full = b / "full"
    # WER harmonifuse - naive at seeds 0, 1, 2: 11-10, 12-10, 13-10 = [1, 2, 3]: mean 2, sd 1,
    # CI 2 ± t(0.975, 2) 4.3027 · 1 / √3 = [-0.484, 4.484]
    # UA: 70-60, 72-61, 74-62 = [10, 11, 12]: mean 11, sd 1, CI 11 ± 2.484 = [8.516, 13.484] (excludes 0)
    for k, (wer, ua) in enumerate([(11.0, 70.0), (12.0, 72.0), (13.0, 74.0)]):
        write_bench_scores(full / "harmonifuse" / f"seed{k}", asr=(wer, wer / 2), ser=(ua, ua, ua - 1))
        write_bench_scores(full / "naive_multitask" / f"seed{k}", asr=(10.0, 5.0), ser=(60.0 + k, 60.0, 59.0 + k))
    write_bench_scores(full / "harmonifuse" / "seed3", asr=(20.0, 10.0), ser=(90.0, 90.0, 90.0))  # no naive seed 3
    write_bench_scores(full / "naive_multitask" / "seed5", asr=(0.0, 0.0), ser=(0.0, 0.0, 0.0))  # no harmonifuse seed 5
    write_bench_scores(full / "harmonifuse" / "seed4", asr=(50.0, 50.0), ser=(0.0, 0.0, 0.0))  # failed: not paired
    write_bench_record(full / "harmonifuse" / "seed4", status="failed")
    write_bench_scores(full / "naive_multitask" / "seed4", asr=(0.0, 0.0), ser=(99.0, 99.0, 99.0))
    write_bench_scores(full / "asr_only" / "seed0", asr=(9.0, 4.0))  # one paired seed: no interval
    return b


def test_paired_differences_t_interval_over_the_seeds_both_finished(paired_bench):
    runs = table.collect(paired_bench)
    d = table.paired_differences(runs, "full", "harmonifuse", "naive_multitask", "wer")
    assert d["n"] == 3 and d["seeds"] == [0, 1, 2]  # seeds 3, 5 are missing in one system, 4 failed
    assert (d["mean"], d["sd"]) == pytest.approx((2.0, 1.0))
    assert d["ci"] == pytest.approx((-0.484, 4.484), abs=1e-3)
    assert d["ci"][1] - 2.0 == pytest.approx(4.302653 / math.sqrt(3))
    ua = table.paired_differences(runs, "full", "harmonifuse", "naive_multitask", "ua")
    assert (ua["mean"], ua["sd"]) == pytest.approx((11.0, 1.0)) and ua["ci"] == pytest.approx((8.516, 13.484), abs=1e-3)
    one = table.paired_differences(runs, "full", "harmonifuse", "asr_only", "wer")
    assert one["n"] == 1 and one["mean"] == pytest.approx(2.0) and one["ci"] is None
    none = table.paired_differences(runs, "full", "harmonifuse", "ser_only", "ua")
    assert none["n"] == 0 and none["seeds"] == [] and none["ci"] is None


def test_table_markdown_paired_differences(paired_bench):
    text = Path(table.write_all(paired_bench)).read_text()
    section = text.split("## Paired differences (95 % CI, paired by seed)", 1)[1].split("\n## ", 1)[0]
    assert text.index("## full") < text.index("## Paired differences") < text.index("## Per run")
    assert "WER/CER: negative = HarmoniFuse better; SER UA/macro-F1: positive = HarmoniFuse better." in section
    assert "| `harmonifuse` − `naive_multitask` | WER | 3 | +2.00 | [-0.48, 4.48] | 0, 1, 2 |" in section
    assert "| `harmonifuse` − `naive_multitask` | SER UA | 3 | +11.00 | [8.52, 13.48] * | 0, 1, 2 |" in section
    assert "n < 2 (no interval): `harmonifuse` − `asr_only` WER (n = 1); `harmonifuse` − `asr_only` CER (n = 1); " \
           "`harmonifuse` − `ser_only` SER UA (n = 0)" in section
    assert "`asr_only` | WER" not in section
    # a stale run is left out of the pairs as of the table: naive seed 2 -> differences [1, 2]:
    # mean 1.5, sd 0.7071, CI 1.5 ± t(0.975, 1) 12.706 · 0.7071 / √2 = [-4.85, 7.85]
    write_bench_record(paired_bench / "full" / "naive_multitask" / "seed2", config_digest="old")
    text = Path(table.write_all(paired_bench, digests={"naive_multitask": "new"})).read_text()
    assert "| `harmonifuse` − `naive_multitask` | WER | 2 | +1.50 | [-4.85, 7.85] | 0, 1 |" in text
