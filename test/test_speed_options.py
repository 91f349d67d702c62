"""Options that make the recipes faster without changing what they compute."""

from pathlib import Path

import pytest
from conftest import toy_wave, write_config, write_task_dir
from espnet2.train.reporter import Reporter

from espnet_harmonifuse.bin import collect_shapes
from espnet_harmonifuse.tasks import HarmoniFuseTask
from espnet_harmonifuse.trainer import HarmoniFuseTrainer, sparse_plots


class _Epoch:
    def __init__(self, epoch):
        self.epoch = epoch

    def get_epoch(self):
        return self.epoch


def _drawn(monkeypatch, interval, epochs):
    drawn = []
    monkeypatch.setattr(Reporter, "matplotlib_plot", lambda self, out: drawn.append((self.epoch, out)))
    recorder = Reporter.matplotlib_plot
    with sparse_plots(interval):
        for e in range(1, epochs + 1):
            Reporter.matplotlib_plot(_Epoch(e), f"images{e}")
    assert Reporter.matplotlib_plot is recorder, "the original plot method is restored"
    return drawn


def test_plots_every_interval_and_after_the_last_epoch(monkeypatch):
    assert _drawn(monkeypatch, 3, 7) == [(3, "images3"), (6, "images6"), (7, "images7")]
    assert _drawn(monkeypatch, 3, 6) == [(3, "images3"), (6, "images6")]  # the last one is not drawn twice
    assert _drawn(monkeypatch, 1, 3) == [(1, "images1"), (2, "images2"), (3, "images3")]


def test_plot_interval_is_a_task_option_checked_before_training():
    parser = HarmoniFuseTask.get_parser()
    args = parser.parse_args(["--plot_interval", "5"])
    assert HarmoniFuseTrainer.build_options(args).plot_interval == 5
    assert parser.parse_args([]).plot_interval == 1  # ESPnet's behaviour unless asked
    with pytest.raises(ValueError, match="plot_interval"):
        HarmoniFuseTrainer.build_options(parser.parse_args(["--plot_interval", "0"]))


def test_collect_shapes_does_several_sets_in_one_call(bpemodel, tmp_path):
    conf = write_config(tmp_path / "conf.yaml", bpemodel)
    a = write_task_dir(tmp_path, "asr_a", [("a1", toy_wave(1), "hello world"), ("a2", toy_wave(2, 0.9), "hi")])
    s = write_task_dir(tmp_path, "ser_s", [("s1", toy_wave(3, 0.4), "happy")])
    collect_shapes.main(["--config", str(conf),
                         "--task", "asr", "--data_dir", str(Path(a["text"]).parent), "--out_dir", str(tmp_path / "oa"),
                         "--task", "ser", "--data_dir", str(Path(s["text"]).parent), "--out_dir", str(tmp_path / "os")])
    assert (tmp_path / "oa" / "speech_shape").read_text().split() == [
        "a1", str(len(toy_wave(1))), "a2", str(len(toy_wave(2, 0.9)))]
    assert (tmp_path / "os" / "speech_shape").read_text().split() == ["s1", str(len(toy_wave(3, 0.4)))]
    asr_tokens = dict(line.split() for line in (tmp_path / "oa" / "text_shape").read_text().splitlines())
    assert int(asr_tokens["a1"]) > int(asr_tokens["a2"])  # "hello world" is longer than "hi"
    with pytest.raises(ValueError, match="same number of times"):
        collect_shapes.main(["--config", str(conf), "--task", "asr", "--task", "ser",
                             "--data_dir", str(Path(a["text"]).parent), "--out_dir", str(tmp_path / "ob")])


def test_speed_benchmark_reads_the_trainers_logs(tmp_path):
    """benchmarks/speed.py reruns a training from its log's command line and reads ESPnet's per-step time."""
    from benchmarks import speed

    shapes = tmp_path / "shape"
    shapes.write_text("".join(f"u{i} {1000 + i}\n" for i in range(33)))
    log = tmp_path / "train.log"
    log.write_text(
        f"# python3 -m espnet2.bin.harmonifuse_train --config 'conf/a b.yaml' --output_dir exp/train "
        f"--train_task_shape_file asr:{shapes} --train_task_shape_file ser:{shapes}\n"
        "# Started at ...\n"
        "[vm] 2026 (trainer:394) INFO: 1epoch results: [train] iter_time=0.1, train_time=0.250, time=3 seconds\n"
        "[vm] 2026 (trainer:394) INFO: 2epoch results: [train] iter_time=0.01, forward_time=0.03, "
        "train_time=0.085, time=11 seconds, [valid] loss=1.0, time=0.5 seconds\n"
    )
    cmd = speed.logged_command(log)
    assert cmd[:3] == ["python3", "-m", "espnet2.bin.harmonifuse_train"] and "conf/a b.yaml" in cmd
    assert speed.epoch_train_time(log, 1) == 0.25 and speed.epoch_train_time(log, 2) == 0.085
    assert speed.batches_per_epoch(cmd, 16) == 2 * 3  # 33 utterances: 3 batches of 16 per task
    with pytest.raises(ValueError, match="epoch 3"):
        speed.epoch_train_time(log, 3)


def test_bf16_autocast_runs_the_step_in_bf16_and_keeps_weights_and_loss_float32(make_args):
    import torch
    from conftest import ASR_TEXTS
    from test_model import batch_for

    args = make_args(model_conf={"autocast_dtype": "bfloat16"})
    model = HarmoniFuseTask.build_model(args)
    batch = batch_for(args, [(toy_wave(i, 0.4), t) for i, t in enumerate(ASR_TEXTS[:3])], 0)
    seen = []
    hook = model.decoder.register_forward_hook(lambda _m, _i, out: seen.append(torch.get_autocast_dtype("cpu")
                                                                               if torch.is_autocast_enabled("cpu") else None))
    torch.manual_seed(0)  # the same prompt paraphrases in both runs
    loss, _, _ = model(**batch)
    hook.remove()
    assert seen and all(d == torch.bfloat16 for d in seen)  # the LM ran under bf16 autocast
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.decoder.lm.model.layers[0].mlp.up_proj.weight.grad.dtype == torch.float32
    model.autocast_dtype = None
    torch.manual_seed(0)
    full, _, _ = model(**batch)
    assert float(loss) == pytest.approx(float(full), rel=0.02)  # the same function, at bf16 precision
    with pytest.raises(ValueError, match="autocast_dtype"):
        HarmoniFuseTask.build_model(make_args(model_conf={"autocast_dtype": "int8"}))


def _modules_after(code: str, tmp_path: Path) -> set:
    """The modules a fresh interpreter has imported after running ``code``."""
    import json
    import subprocess
    import sys

    out = tmp_path / "modules.json"
    script = f"{code}\nimport json, sys\njson.dump(sorted(sys.modules), open({str(out)!r}, 'w'))\n"
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
    return set(json.loads(out.read_text()))


def test_tokenizer_stage_reads_the_tasks_without_importing_torch(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("tasks:\n  - name: ser\n    target: label\n    labels: [calm, furious]\n    prompts:\n      - Which mood is it?\n")
    (tmp_path / "over.yaml").write_text("base_config: base.yaml\ngate: none\n")
    (tmp_path / "text").write_text("".join(f"u{i} the quick brown fox number {i} jumps\n" for i in range(40)))
    code = ("from espnet_harmonifuse.bin import tokenizer_train\n"
            "tokenizer_train.main(['--config', 'over.yaml', '--text', 'text', '--out_dir', 'tok', '--vocab_size', '40'])")
    modules = _modules_after(code, tmp_path)
    assert "torch" not in modules and "espnet2.tasks.abs_task" not in modules
    corpus = (tmp_path / "tok" / "train_text.txt").read_text()
    assert "Which mood is it?" in corpus and "furious" in corpus  # the base config's tasks were read
    assert (tmp_path / "tok" / "bpe.model").is_file()


def test_decoding_imports_neither_espnets_task_nor_its_trainer(tmp_path):
    code = "import espnet_harmonifuse.api, espnet_harmonifuse.bin.harmonifuse_inference as b, espnet_harmonifuse.collate"
    modules = _modules_after(code, tmp_path)
    assert "torch" in modules  # the model's own imports are there
    assert not {"espnet2.tasks.abs_task", "espnet2.train.trainer", "espnet_harmonifuse.tasks"} & modules
