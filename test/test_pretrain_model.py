"""Encoder pre-training by masked prediction of clustered features (model: encoder_pretrain)."""

import math

import pytest
import torch
import yaml
from conftest import ASR_TEXTS, EMOTIONS, TINY_CONF, task_data_args, toy_wave, write_config, write_task_dir

from espnet_harmonifuse.backbone.conformer import ConformerBackbone
from espnet_harmonifuse.bin import harmonifuse_train
from espnet_harmonifuse.bin.probe_layers import load_backbone
from espnet_harmonifuse.pretrain_model import EncoderPretrainModel, kmeans, span_mask
from espnet_harmonifuse.task_spec import parse_tasks
from espnet_harmonifuse.tasks import HarmoniFuseTask
from espnet_harmonifuse.utils.checkpoint import safe_torch_load

PRETRAIN = {"model": "encoder_pretrain",
            "model_conf": {"num_clusters": 8, "cluster_frames": 2000, "ctc_weight": 0.5, "mask_prob": 0.5}}


def test_kmeans_finds_separated_blobs():
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([m + 0.3 * torch.randn(200, 2, generator=g) for m in means])
    c = kmeans(x, 3, seed=1)
    assert torch.cdist(means, c).min(1).values.max() < 0.2  # each blob has a centroid at its mean
    with pytest.raises(ValueError, match="at least 3 frames"):
        kmeans(x[:2], 3)


def test_span_mask_covers_spans_inside_each_utterance():
    lengths = torch.tensor([40, 25, 3])
    m = span_mask(lengths, 40, prob=0.5, span=4, generator=torch.Generator().manual_seed(0))
    assert not m[1, 25:].any() and not m[2, 3:].any()
    assert 0.3 < m[0].float().mean() < 0.8  # about half of the frames
    runs = [len(r) for r in "".join("1" if v else "0" for v in m[0].tolist()).split("0") if r]
    assert min(runs[:-1] or [4]) >= 4  # spans of 4 (the last may be cut by the end)


def _model(ctc_weight=0.5):
    torch.manual_seed(0)
    backbone = ConformerBackbone(n_mels=40, output_size=32, attention_heads=2, linear_units=64, num_blocks=3,
                                 dropout_rate=0.0, input_layer="conv2d6", normalize="frame")
    return EncoderPretrainModel(backbone, vocab_size=20, tasks=parse_tasks(TINY_CONF["tasks"]), num_clusters=8,
                                cluster_frames=500, ctc_weight=ctc_weight, mask_prob=0.5, mask_span=2)


def _batch(seed, task, n=3):
    waves = [torch.from_numpy(toy_wave(seed + i, 1.0 + 0.2 * i)) for i in range(n)]
    speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    text = torch.randint(0, 19, (n, 5), generator=torch.Generator().manual_seed(seed))
    return dict(speech=speech, speech_lengths=torch.tensor([w.numel() for w in waves]), text=text,
                text_lengths=torch.full((n,), 5), task_id=torch.full((n,), task))


def test_step_trains_the_encoder_heads_and_mask_vector_and_never_reads_labels():
    model = _model()
    with pytest.raises(RuntimeError, match="not fitted"):
        model(**_batch(0, 0))
    model.fit_clusters([_batch(0, 0), _batch(10, 1)])
    assert model.fitted and model.centroids.shape == (8, 40)
    loss, stats, weight = model(**_batch(0, 0))
    assert torch.isfinite(loss) and int(weight) == 3
    assert torch.isfinite(stats["loss_ssl"]) and torch.isfinite(stats["loss_ctc"]) and 0 <= stats["acc_ssl"] <= 1
    loss.backward()
    for name in ("backbone.encoder.encoders.0.feed_forward.w_1.weight", "ssl_head.weight", "mask_embedding",
                 "ctc_head.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    # a label task's batch: masked prediction only, and its label tokens change nothing
    ser = _batch(20, 1)
    torch.manual_seed(5)
    a, sa, _ = model(**ser)
    torch.manual_seed(5)
    b, _, _ = model(**dict(ser, text=torch.zeros_like(ser["text"])))
    assert torch.equal(a, b) and math.isnan(float(sa["loss_ctc"]))


def test_masked_prediction_overfits_one_batch():
    model = _model(ctc_weight=0.0)
    batch = _batch(0, 1)
    model.fit_clusters([batch])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = last = None
    for step in range(60):
        torch.manual_seed(step % 3)  # a few fixed masks
        loss, stats, _ = model(**batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(stats["loss_ssl"]) if first is None else first
        last = float(stats["loss_ssl"])
    assert last < 0.5 * first


def test_training_fits_the_clusters_and_hands_the_encoder_to_harmonifuse(bpemodel, tmp_path):
    dirs = {
        "asr": write_task_dir(tmp_path, "asr", [(f"asr{i}", toy_wave(i, 1.2), t) for i, t in enumerate(ASR_TEXTS)]),
        "ser": write_task_dir(tmp_path, "ser", [(f"ser{i}", toy_wave(100 + i, 1.2), e) for i, e in enumerate(EMOTIONS)]),
    }
    config = write_config(tmp_path / "pretrain.yaml", bpemodel, **PRETRAIN)
    out = tmp_path / "pretrain"
    cmd = ["--config", str(config), "--output_dir", str(out), "--max_epoch", "1", "--ngpu", "0", "--batch_size", "2",
           "--use_tensorboard", "false", "--use_matplotlib", "false"]
    for task, paths in dirs.items():
        cmd += task_data_args(task, paths, "train") + task_data_args(task, paths, "valid")
    harmonifuse_train.main(cmd)
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["model"] == "encoder_pretrain"
    assert written["model_conf"]["num_clusters"] == 8 and written["model_conf"]["mask_span"] == 3  # a default, listed
    saved = safe_torch_load(out / "valid.loss.best.pth")
    assert float(saved["clusters_fitted"]) == 1.0 and saved["centroids"].abs().sum() > 0
    pretrained, _ = HarmoniFuseTask.build_model_from_file(out / "config.yaml", out / "valid.loss.best.pth")
    probed = load_backbone(str(out))  # probe_layers reads a pre-training's exp dir (valid.loss.best.pth)
    assert all(torch.equal(v, pretrained.backbone.state_dict()[k]) for k, v in probed.state_dict().items())
    # HarmoniFuse starts from the pre-trained backbone (the recipe's --init_param ...:backbone:backbone)
    main_config = write_config(tmp_path / "train.yaml", bpemodel, backbone_conf={"freeze": True})
    main = tmp_path / "main"
    cmd = ["--config", str(main_config), "--output_dir", str(main), "--max_epoch", "1", "--ngpu", "0",
           "--batch_size", "2", "--use_tensorboard", "false", "--use_matplotlib", "false",
           "--init_param", f"{out / 'valid.loss.best.pth'}:backbone:backbone"]
    for task, paths in dirs.items():
        cmd += task_data_args(task, paths, "train") + task_data_args(task, paths, "valid")
    harmonifuse_train.main(cmd)
    trained = safe_torch_load(main / "1epoch.pth")
    for k, v in pretrained.backbone.state_dict().items():
        assert torch.equal(trained[f"backbone.{k}"], v), k


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    from espnet_harmonifuse.utils.ctc import ctc_greedy

    best = [3, 1, 1, 3, 1, 2, 2, 3, 0]  # blank 3 separates the two 1s: both are kept
    logits = torch.nn.functional.one_hot(torch.tensor(best), 4).float()
    assert ctc_greedy(logits, blank=3) == [1, 1, 2, 0]
    assert ctc_greedy(logits[:1], blank=3) == []
