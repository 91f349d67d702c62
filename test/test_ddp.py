"""Training on several processes through ESPnet's own DDP, on CPU: 2 gloo processes under torchrun.

Run as a script (``torchrun ... test/test_ddp.py DUMP_DIR <training options>``), this file trains
like ``python -m espnet2.bin.harmonifuse_train`` (HarmoniFuseTask.main) and then writes each rank's
weights and reporter stats to DUMP_DIR, which ESPnet keeps only for rank 0.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import (ASR_TEXTS, EMOTIONS, RECIPE, ROOT, TINY_TASKS, task_data_args, toy_wave, write_config,
                      write_task_dir)

from espnet_harmonifuse.utils.checkpoint import safe_torch_load

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
N_UTTS, BATCH = 12, 4  # per task: 3 batches of 4 (2 utterances per rank) in every epoch
# The ranks' losses are averaged weighted by their utterance counts (ESPnet), the one-process loss
# over the batch's tokens: equal only when the two halves of a batch have as many target tokens. A
# few tokens more or less on a rank move these losses by about 0.1 %; half the learning rate (a DDP
# gradient averaged without ESPnet's world-size factor) moves them by several %.
LOSS_RTOL = 0.01


def torchrun(*args, nproc: int = 2):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]


def data_opts(corpus, tasks, valid=None):
    opts = []
    for t in tasks:
        opts += task_data_args(t, corpus[t], "train") + task_data_args(t, (valid or corpus)[t], "valid")
    return opts


def finish(proc: subprocess.Popen, what: str) -> str:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"{what} failed:\n" + err[-4000:]
    return err


def read_batches(path: Path):
    """{epoch: [(task, keys), ...]} from a --batch_log_dir file."""
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        out.setdefault(rec["epoch"], []).append((rec["task"], rec["keys"]))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_data")
    sec = [0.3 + 0.05 * (i % 5) for i in range(N_UTTS)]  # lengths vary: sorted batches mix utterances
    asr = [(f"asr{i:02d}", toy_wave(i, sec[i]), ASR_TEXTS[i % len(ASR_TEXTS)]) for i in range(N_UTTS)]
    ser = [(f"ser{i:02d}", toy_wave(100 + i, sec[-1 - i]), EMOTIONS[i % len(EMOTIONS)]) for i in range(N_UTTS)]
    # CTC needs more frames than target tokens: longer audio for the pre-training test
    long = [(f"long{i}", toy_wave(200 + i, 1.2), ASR_TEXTS[i % len(ASR_TEXTS)]) for i in range(6)]
    return {"asr": write_task_dir(root, "asr", asr), "ser": write_task_dir(root, "ser", ser),
            "long": write_task_dir(root, "long", long), "one": write_task_dir(root, "one", long[:1])}


@pytest.mark.slow
def test_two_ranks_share_the_schedule_split_each_batch_and_match_one_process(corpus, bpemodel, tmp_path):
    conf = write_config(tmp_path / "conf.yaml", bpemodel, batch_size=BATCH, max_epoch=2, optim="adam",
                        optim_conf={"lr": 0.002}, model_conf={"prompt_sampling": "first"}, seed=1,
                        num_workers=0, use_matplotlib=False, use_tensorboard=False, keep_nbest_models=1,
                        best_model_criterion=[["valid", "loss", "min"]])
    runs = {}
    for name, launcher in (("ddp", torchrun(__file__)), ("single", [sys.executable, __file__])):
        out = tmp_path / name
        cmd = launcher + [str(out / "dump"), "--ngpu", "0", "--dist_backend", "gloo", "--config", str(conf),
                          "--output_dir", str(out), "--batch_log_dir", str(out / "batches")]
        (out / "dump").mkdir(parents=True)
        runs[name] = subprocess.Popen(cmd + data_opts(corpus, ["asr", "ser"]), env=ENV, text=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for name, proc in runs.items():
        finish(proc, name)
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    all_keys = {f"{t}{i:02d}" for t in ("asr", "ser") for i in range(N_UTTS)}
    for mode in ("train", "valid"):
        ranks = [read_batches(ddp / "batches" / f"{mode}.rank{r}.jsonl") for r in range(2)]
        ref = read_batches(single / "batches" / f"{mode}.rank0.jsonl")
        assert set(ranks[0]) == set(ranks[1]) == set(ref) == {1, 2}
        for epoch, steps in ref.items():
            r0, r1 = ranks[0][epoch], ranks[1][epoch]
            assert [t for t, _ in r0] == [t for t, _ in r1] == [t for t, _ in steps]  # one schedule
            seen = []
            for (task, k0), (_, k1), (_, whole) in zip(r0, r1, steps):
                assert k0 and k1 and not set(k0) & set(k1), (mode, epoch, k0, k1)
                assert sorted(k0 + k1) == sorted(whole)  # the ranks' shares make up the batch
                assert all(k.startswith(task) for k in k0 + k1)
                seen += k0 + k1
            assert sorted(seen) == sorted(all_keys), (mode, epoch)  # every utterance once per epoch
    dumps = [torch.load(ddp / "dump" / f"rank{r}.pth") for r in range(2)]
    params = [d["params"] for d in dumps]
    assert params[0].keys() == params[1].keys()
    differ = [k for k in params[0] if not torch.equal(params[0][k], params[1][k])]
    assert not differ, f"{len(differ)} tensors differ between the ranks, e.g. {differ[:5]}"
    stats = [d["stats"] for d in dumps]
    one = torch.load(single / "dump" / "rank0.pth")["stats"]
    for epoch in (1, 2):
        for mode in ("train", "valid"):
            s0, s1 = stats[0][epoch][mode], stats[1][epoch][mode]
            for key in ("loss", "acc", "loss_asr", "loss_ser", "acc_asr", "acc_ser"):
                assert math.isfinite(s0[key]) and s0[key] == s1[key], (epoch, mode, key, s0[key], s1[key])
            for key in ("loss", "loss_asr", "loss_ser"):
                assert s0[key] == pytest.approx(one[epoch][mode][key], rel=LOSS_RTOL), (epoch, mode, key)
    assert stats[0][2]["valid"]["loss"] < stats[0][1]["valid"]["loss"]  # it learns


@pytest.mark.slow
def test_ctc_only_pretraining_trains_under_ddp_with_batches_smaller_than_the_world(corpus, bpemodel, tmp_path):
    """The projector and the LM get no gradient (model_conf.ctc_weight 1.0): DDP needs
    find_unused_parameters, which the task sets. Training batches of 1 utterance and a validation
    set of 1 utterance (ESPnet alone stops: fewer utterances than ranks) still give every rank data."""
    conf = yaml.safe_load((RECIPE / "conf" / "tuning" / "pretrain_smoke.yaml").read_text())
    conf.update(tasks=[TINY_TASKS[0]], bpemodel=bpemodel, batch_size=1, max_epoch=1, num_workers=0,
                use_matplotlib=False, use_tensorboard=False)
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(conf))
    out = tmp_path / "exp"
    cmd = torchrun("-m", "espnet2.bin.harmonifuse_train", "--ngpu", "0", "--dist_backend", "gloo",
                   "--config", str(tmp_path / "pre.yaml"), "--output_dir", str(out), "--batch_log_dir", str(out / "b"))
    cmd += data_opts({"asr": corpus["long"]}, ["asr"], valid={"asr": corpus["one"]})
    proc = subprocess.Popen(cmd, env=ENV, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = finish(proc, "CTC-only DDP training")
    assert "never runs the trainable projector" in log
    assert yaml.safe_load((out / "config.yaml").read_text())["unused_parameters"] is True
    stats = safe_torch_load(out / "checkpoint.pth")["reporter"]["stats"][1]
    assert stats["train"]["loss_ctc"] > 0 and math.isfinite(stats["valid"]["loss_ctc"])
    for r in range(2):
        train = read_batches(out / "b" / f"train.rank{r}.jsonl")[1]
        assert len(train) == 3 and all(len(keys) == 1 for _, keys in train)  # 6 utterances, pairs of ranks
        assert read_batches(out / "b" / f"valid.rank{r}.jsonl")[1] == [("asr", ["long0"])]  # repeated


# ----------------------------------------------------------------------------- per-process data and state
@pytest.mark.parametrize("sizes, world, want", [
    ([4, 4, 4], 2, [4, 4, 4]),        # every batch already splits: unchanged
    ([1, 1, 1, 1, 1], 2, [2, 3]),     # --batch_size below the world size: neighbours merged
    ([3, 1], 2, [4]),                 # a short last batch joins the one before
    ([1, 3, 4, 3], 4, [4, 7]),        # a short first batch takes in the next, a short last joins the one before
    ([1], 3, [3]),                    # fewer utterances than ranks: repeated to fill one batch
])
def test_batches_are_fitted_so_that_every_rank_gets_an_utterance(sizes, world, want):
    from espnet_harmonifuse.iterators.sharding import fit_batches_to_world

    keys = iter(f"u{i}" for i in range(100))
    batches = [tuple(next(keys) for _ in range(n)) for n in sizes]
    fitted = fit_batches_to_world(batches, world)
    assert [len(b) for b in fitted] == want
    if sum(sizes) >= world:  # the same utterances in the same order, none twice
        assert [k for b in fitted for k in b] == [k for b in batches for k in b]
    else:
        assert set(fitted[0]) == set(batches[0])
    assert all(b[r::world] for b in fitted for r in range(world))  # no rank gets an empty share


def test_the_batch_log_holds_what_the_iterator_yields(make_args, toy_corpus, tmp_path):
    from espnet2.train.distributed_utils import DistributedOption

    from espnet_harmonifuse.tasks import HarmoniFuseTask

    args = make_args(batch_size=2, batch_log_dir=str(tmp_path / "log"))
    for mode in ("train", "valid"):
        for task in ("asr", "ser"):
            for key, value in zip(*[iter(task_data_args(task, toy_corpus[task], mode))] * 2):
                getattr(args, key[2:]).append(value)
    factory = HarmoniFuseTask.build_iter_factory(args, DistributedOption(), "train")
    yielded = [(task, list(keys)) for task, (keys, _) in zip(factory.schedule_for_epoch(3), factory.build_iter(3))]
    assert read_batches(tmp_path / "log" / "train.rank0.jsonl") == {3: yielded}
    assert sorted(k for _, keys in yielded for k in keys) == [f"{t}{i}" for t in ("asr", "ser") for i in range(4)]


def test_the_backbone_state_cache_is_not_module_state(make_args):
    """DDP broadcasts a module's buffers from rank 0 and checkpoints hold its state_dict: the cache
    is neither, so each process keeps the states of the utterances it saw itself."""
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    args = make_args(backbone_conf={"freeze": True}, model_conf={"cache_backbone_states": True})
    model = HarmoniFuseTask.build_model(args)
    assert model.state_cache is not None and not isinstance(model.state_cache, torch.nn.Module)
    assert not any("cache" in name for name, _ in [*model.named_buffers(), *model.named_parameters()])
    assert not any("cache" in key for key in model.state_dict())


# ----------------------------------------------------------------------------- unused parameters
def shipped_configs():
    found = []
    for recipe in ("mini_emo", "iemocap_librispeech"):
        conf = ROOT / "egs2" / recipe / "harmonifuse1" / "conf"
        found += sorted(p for p in [*conf.glob("*.yaml"), *conf.glob("tuning/*.yaml")]
                        if p.name.startswith(("train", "pretrain")))
    return found


# the hub models of the paper's configs, as tiny random models of the same families
TINY_HF = {"backbone_conf": {"model_type": "wavlm", "hidden_size": 32, "num_hidden_layers": 2,
                             "num_attention_heads": 2, "intermediate_size": 64, "conv_dim": [32, 32],
                             "conv_kernel": [10, 3], "conv_stride": [5, 2], "num_conv_pos_embeddings": 16,
                             "num_conv_pos_embedding_groups": 2},
           "decoder_conf": {"model_type": "qwen2", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                            "num_key_value_heads": 1, "intermediate_size": 64, "max_position_embeddings": 2048}}


@pytest.fixture(scope="module")
def shipped_bpemodel(tmp_path_factory) -> str:
    """A character-level sentencepiece model over every shipped config's prompts and labels."""
    from espnet_harmonifuse.bin import tokenizer_train
    from espnet_harmonifuse.bin.common import load_train_args
    from espnet_harmonifuse.task_spec import parse_tasks

    root = tmp_path_factory.mktemp("shipped_token")
    lines = list(ASR_TEXTS)
    for config in shipped_configs():
        lines += [x for t in parse_tasks(load_train_args(str(config)).tasks) for x in t.prompts + t.labels]
    (root / "text").write_text("".join(f"u{i} {x}\n" for i, x in enumerate(lines)))
    tokenizer_train.main(["--text", str(root / "text"), "--out_dir", str(root), "--vocab_size", "200",
                          "--model_type", "char"])
    return str(root / "bpe.model")


def unused_in_one_batch_per_task(args) -> set:
    """The trainable parameters that get no gradient in one training batch of some task."""
    from espnet_harmonifuse.collate import PadCollate
    from espnet_harmonifuse.task_spec import parse_tasks
    from espnet_harmonifuse.tasks import HarmoniFuseTask
    from espnet_harmonifuse.utils.distributed import set_unused_parameters

    torch.manual_seed(0)
    model = HarmoniFuseTask.build_model(args)
    set_unused_parameters(args, model)  # as HarmoniFuseTask.build_optimizers does in training
    model.train()
    batches = []
    for index, spec in enumerate(parse_tasks(args.tasks)):
        pre = HarmoniFuseTask.build_task_preprocess_fn(args, index)
        texts = spec.labels if spec.is_label else ASR_TEXTS
        samples = [(f"u{i}", pre(f"u{i}", {"speech": toy_wave(i, 1.0 + 0.2 * i), "text": texts[i]})) for i in range(2)]
        batches.append(PadCollate(not_sequence=["task_id"])(samples)[1])
    if hasattr(model, "fit_clusters"):  # the encoder pre-training fits its targets before the first step
        model.fit_clusters(batches)
    unused = set()
    for batch in batches:
        model(**batch)[0].backward()
        unused |= {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}
        model.zero_grad(set_to_none=True)
    return unused


@pytest.mark.parametrize("config", shipped_configs(), ids=lambda p: str(p.relative_to(ROOT / "egs2")))
def test_each_shipped_config_sets_unused_parameters_exactly_when_a_batch_leaves_a_weight_idle(config, shipped_bpemodel):
    """DDP needs find_unused_parameters (set by the task) exactly when a trainable parameter gets no
    gradient in the batch of some task."""
    from espnet_harmonifuse.bin.common import load_train_args

    args = load_train_args(str(config), ["--token_type", "sentencepiece", "--bpemodel", shipped_bpemodel])
    for key, tiny in TINY_HF.items():  # no download: the same options around a tiny model
        conf = getattr(args, key)
        if conf.get("model_name_or_path") and not conf.get("config"):
            setattr(args, key, {**conf, "config": tiny})
    unused = unused_in_one_batch_per_task(args)
    assert args.unused_parameters == bool(unused), sorted(unused)[:5]


def wavlm(**config):
    """Overrides: a trainable tiny WavLM instead of the Conformer."""
    return {"backbone": "hf_ssl", "backbone_conf": {"config": {**TINY_HF["backbone_conf"], **config}, "freeze": False}}


CASES = {  # overrides of the tiny test config -> the reason the model gives, or None
    "ctc_head_idle_in_ser_batches": ({"model_conf": {"ctc_weight": 0.3}}, "no gradient in batches of task(s) ['ser']"),
    "ctc_on_the_only_task": ({"tasks": TINY_TASKS[:1], "model_conf": {"ctc_weight": 0.3}}, None),
    "trainable_layers_above_the_one_read": ({"fusion": "last_layer", "fusion_conf": {"layer": 1}}, "above it unused"),
    "top_layer_read": ({"fusion": "last_layer"}, None),
    "frozen_backbone_one_layer_read": ({"fusion": "last_layer", "fusion_conf": {"layer": 0},
                                        "backbone_conf": {"freeze": True}}, None),
    "hf_no_masking": (wavlm(layerdrop=0.0, apply_spec_augment=False), "masked_spec_embed is unused"),
    "hf_masking": (wavlm(layerdrop=0.0, mask_time_prob=0.05), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_model_names_why_ddp_needs_find_unused_parameters(case, make_args):
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    overrides, reason = CASES[case]
    args = make_args(**overrides)
    if overrides.get("backbone") == "hf_ssl":
        args.backbone_conf = overrides["backbone_conf"]  # not merged with the Conformer's options
    unused = unused_in_one_batch_per_task(args)
    assert args.unused_parameters == bool(unused) == (reason is not None), sorted(unused)[:5]
    reasons = HarmoniFuseTask.build_model(args).unused_parameter_reasons()
    assert (reason is None and not reasons) or any(reason in r for r in reasons), reasons


def _train_and_dump(dump_dir: str, argv):
    import espnet2.train.trainer as trainer_module

    from espnet_harmonifuse.tasks import HarmoniFuseTask

    reporters = []

    class Reporter(trainer_module.Reporter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            reporters.append(self)

    class DumpingTrainer(trainer_module.Trainer):
        @classmethod
        def run(cls, model, *args, **kwargs):
            super().run(model, *args, **kwargs)
            rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
            stats = {e: {m: {k: float(v) for k, v in s.items() if isinstance(v, (int, float))} for m, s in per.items()}
                     for e, per in reporters[-1].stats.items()}
            torch.save({"params": model.state_dict(), "stats": stats}, Path(dump_dir) / f"rank{rank}.pth")

    trainer_module.Reporter = Reporter
    HarmoniFuseTask.trainer = DumpingTrainer
    HarmoniFuseTask.main(cmd=argv)


if __name__ == "__main__":
    _train_and_dump(sys.argv[1], sys.argv[2:])


def test_a_weight_frozen_by_freeze_param_does_not_turn_on_find_unused_parameters(make_args):
    """--freeze_param applies between build_model and build_optimizers: the task decides after it."""
    from espnet_harmonifuse.tasks import HarmoniFuseTask

    args = make_args(model_conf={"ctc_weight": 0.3}, optim="adam", optim_conf={"lr": 0.001}, scheduler=None)
    args.unused_parameters, args.dry_run, args.collect_stats, args.init_param = False, False, False, []
    model = HarmoniFuseTask.build_model(args)
    assert not args.unused_parameters  # decided later, not while building
    model.ctc_head.requires_grad_(False)  # what --freeze_param ctc_head does
    HarmoniFuseTask.build_optimizers(args, model)
    assert not args.unused_parameters
    model.ctc_head.requires_grad_(True)
    HarmoniFuseTask.build_optimizers(args, model)
    assert args.unused_parameters
