"""The model's behaviour: shapes through every component choice, gradients, learning, decoding."""

import itertools

import pytest
import torch
from conftest import ASR_TEXTS, EMOTIONS, TINY_TASKS, alone_and_batched, toy_wave

from espnet_harmonifuse.api import HarmoniFuse
from espnet_harmonifuse.decoding import score_labels
from espnet_harmonifuse.decoder.inputs import pack
from espnet_harmonifuse.tasks import HarmoniFuseTask


def batch_for(model_args, items, task_index):
    """A collated batch from (wave, text) pairs of one task, tokenized like training does."""
    tok = HarmoniFuseTask.build_tokenizer(model_args)
    waves = [torch.from_numpy(w) for w, _ in items]
    ids = [torch.tensor(tok.encode(t)) for _, t in items]
    return dict(
        speech=torch.nn.utils.rnn.pad_sequence(waves, batch_first=True),
        speech_lengths=torch.tensor([len(w) for w in waves]),
        text=torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1),
        text_lengths=torch.tensor([len(i) for i in ids]),
        task_id=torch.full((len(items), 1), task_index),
    )


@pytest.mark.parametrize(
    "fusion,gate,projector", list(itertools.product(["prompt_adaptive", "static", "last_layer"], ["task_gate", "none"], ["stack_mlp", "conv1d"]))
)
def test_every_combination_runs_with_right_shapes(make_args, fusion, gate, projector):
    args = make_args(fusion=fusion, gate=gate, projector=projector)
    model = HarmoniFuseTask.build_model(args)
    batch = batch_for(args, [(toy_wave(0, 0.5), "THE RED DOG"), (toy_wave(1, 0.3), "TWO BIRDS SING")], 0)
    states, lengths = model.backbone(batch["speech"], batch["speech_lengths"])
    assert len(states) == model.backbone.num_layers == 3
    assert all(s.shape == states[0].shape and s.size(-1) == 32 for s in states)
    parts, extra = model.prefix_parts(batch["speech"], batch["speech_lengths"], torch.tensor([0, 0]))
    weights = extra["layer_weights"]
    assert weights.shape == (2, 3) and torch.allclose(weights.sum(-1), torch.ones(2))
    assert extra["selected"].shape == states[0].shape
    assert [p[1].shape for p in parts] == [((int(n) + 1) // 2, 32) for n in lengths]
    assert all(p[0].shape[1] == 32 for p in parts)
    assert ("gate_channel_mean" in extra) == (gate == "task_gate")
    loss, stats, weight = model(**batch)
    assert torch.isfinite(loss).all() and int(weight) == 2
    assert torch.isnan(stats["loss_ser"]) and torch.isfinite(stats["loss_asr"])


@pytest.mark.parametrize("normalize,gain_invariant", [("frame", True), ("utterance", True), ("none", False)])
def test_conformer_feature_normalisation(make_args, normalize, gain_invariant):
    """frame and utterance normalisation make the backbone blind to a global gain; none does not."""
    model = HarmoniFuseTask.build_model(make_args(backbone_conf={"normalize": normalize})).eval()
    x = torch.from_numpy(toy_wave(3)).unsqueeze(0)
    n = torch.tensor([x.size(1)])
    with torch.no_grad():
        a = model.backbone(x, n)[0][-1]
        b = model.backbone(4 * x, n)[0][-1]
    assert torch.allclose(a, b, atol=1e-3) == gain_invariant


@pytest.mark.parametrize("input_layer,pitch,normalize", [("conv2d", False, "utterance"), ("conv2d6", True, "frame")])
def test_conformer_states_of_an_utterance_do_not_depend_on_its_batch(make_args, input_layer, pitch, normalize):
    """mask_padding (the default): the same states alone as next to longer utterances, in every layer."""
    conf = {"input_layer": input_layer, "pitch": pitch, "normalize": normalize, "embedding_state": True}
    backbone = HarmoniFuseTask.build_model(make_args(backbone_conf=conf)).backbone.eval()
    for n_alone, n_batched, pairs in alone_and_batched(backbone):
        assert n_batched == n_alone
        for alone, batched in pairs:
            assert torch.allclose(alone, batched, atol=1e-5), float((alone - batched).abs().max())
    # ESPnet's own encoder (mask off, legacy relative positions) does depend on the batch here:
    # more frames count as valid in a batch, and the states differ
    espnet = {**conf, "mask_padding": False, "encoder_conf": {"rel_pos_type": "legacy"}}
    backbone = HarmoniFuseTask.build_model(make_args(backbone_conf=espnet)).backbone.eval()
    results = list(alone_and_batched(backbone))
    assert any(nb > na for na, nb, _ in results[:-1])
    assert max(float((a - b).abs().max()) for _, _, pairs in results[:-1] for a, b in pairs) > 1e-2


def test_gradients_reach_trainable_parts_only(make_args):
    args = make_args(backbone_conf={"num_blocks": 2})
    model = HarmoniFuseTask.build_model(args)
    model.decoder.lm.model.layers[0].requires_grad_(False)  # freeze one LLM layer
    loss, _, _ = model(**batch_for(args, [(toy_wave(0), "THE RED DOG")], 0))
    loss.sum().backward()
    must_have = ["fusion.layer_logits", "fusion.prompt_mlp.3.weight", "gate.gate.weight", "gate.prompt_proj.1.weight", "projector.mlp.0.weight", "backbone.encoder.encoders.0.feed_forward.w_1.weight", "decoder.lm.model.layers.1.self_attn.q_proj.weight"]
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name in must_have:
        assert grads[name] is not None and grads[name].abs().sum() > 0, name
    assert all(g is None for n, g in grads.items() if n.startswith("decoder.lm.model.layers.0."))


def test_auxiliary_ctc_loss_only_on_asr_batches(make_args):
    args = make_args(model_conf={"ctc_weight": 0.3})
    model = HarmoniFuseTask.build_model(args)
    asr = batch_for(args, [(toy_wave(0), "THE RED DOG")], 0)
    loss, stats, _ = model(**asr)
    assert torch.isfinite(stats["loss_ctc"]).all() and float(stats["loss_ctc"]) > 0
    loss.sum().backward()
    assert model.ctc_head.weight.grad.abs().sum() > 0
    _, stats, _ = model(**batch_for(args, [(toy_wave(1), "happy")], 1))
    assert torch.isnan(stats["loss_ctc"]).all()


def test_frozen_conformer_stays_fixed_in_eval_mode(make_args):
    """backbone_conf.freeze: no gradient, no dropout/SpecAugment/BatchNorm updates even in train()."""
    conf = {"freeze": True, "dropout_rate": 0.3,
            "specaug_conf": {"apply_time_warp": False, "apply_freq_mask": True, "freq_mask_width_range": [0, 10],
                             "num_freq_mask": 2, "apply_time_mask": False}}
    args = make_args(backbone_conf=conf)
    model = HarmoniFuseTask.build_model(args).train()
    assert not model.backbone.training and not model.backbone.encoder.training and model.fusion.training
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    batch = batch_for(args, [(toy_wave(0), "THE RED DOG"), (toy_wave(1, 0.4), "MY GREEN CAR")], 0)
    a = model.backbone(batch["speech"], batch["speech_lengths"])[0][-1]
    b = model.backbone(batch["speech"], batch["speech_lengths"])[0][-1]
    assert torch.equal(a, b) and not a.requires_grad
    loss, _, _ = model(**batch)
    loss.backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.projector.mlp[0].weight.grad.abs().sum() > 0
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm running stats too


def test_ctc_only_pretraining_never_runs_the_lm(make_args):
    """ctc_weight 1.0 (encoder pre-training): the loss is the CTC loss and the LM gets no gradient."""
    args = make_args(tasks=TINY_TASKS[:1], fusion="last_layer", gate="none", model_conf={"ctc_weight": 1.0})
    model = HarmoniFuseTask.build_model(args)
    loss, stats, weight = model(**batch_for(args, [(toy_wave(0), "THE RED DOG"), (toy_wave(1), "MY GREEN CAR")], 0))
    assert int(weight) == 2 and loss.item() == pytest.approx(stats["loss_ctc"].item()) and loss.item() > 0
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["backbone.encoder.encoders.0.feed_forward.w_1.weight"].abs().sum() > 0
    assert grads["ctc_head.weight"].abs().sum() > 0
    assert all(g is None for n, g in grads.items() if n.startswith(("decoder.", "projector.")))


def test_ctc_only_rejects_label_tasks(make_args):
    with pytest.raises(ValueError, match=r"ctc_weight 1.0 .* \['ser'\]"):
        HarmoniFuseTask.build_model(make_args(model_conf={"ctc_weight": 1.0}))


@pytest.fixture(scope="module")
def overfit_model(tmp_path_factory, bpemodel):
    """A tiny model trained to memorise 4 ASR and 4 SER utterances (a mixed, interleaved stream).

    Training takes about 30 s: the tests that use it are marked slow."""
    from espnet_harmonifuse.bin.common import load_train_args
    from conftest import write_config

    conf = write_config(tmp_path_factory.mktemp("overfit") / "conf.yaml", bpemodel)
    args = load_train_args(str(conf))
    torch.manual_seed(0)
    model = HarmoniFuseTask.build_model(args)
    asr = batch_for(args, [(toy_wave(i), t) for i, t in enumerate(ASR_TEXTS)], 0)
    ser = batch_for(args, [(toy_wave(100 + i), e) for i, e in enumerate(EMOTIONS)], 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for step in range(300):
        loss, stats, _ = model(**(asr if step % 2 == 0 else ser))
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    model.eval()
    return HarmoniFuse(model, args), asr, ser


@pytest.mark.slow
def test_tiny_model_overfits_and_greedy_decodes_exact_answers(overfit_model):
    hf, asr, ser = overfit_model
    asr_out = hf.decode_tensors(asr["speech"], asr["speech_lengths"], "asr")
    assert [r["text"] for r in asr_out] == ASR_TEXTS
    ser_out = hf.decode_tensors(ser["speech"], ser["speech_lengths"], "ser")
    assert [r["text"] for r in ser_out] == EMOTIONS
    assert all(abs(sum(r["label_posteriors"].values()) - 1) < 1e-4 for r in ser_out)
    free = hf.decode_tensors(ser["speech"], ser["speech_lengths"], "ser", label_decoding="generate")
    assert [r["text"] for r in free] == EMOTIONS


@pytest.mark.slow
@pytest.mark.parametrize("cut", [None, [1.0, 0.45, 0.7, 0.3]])
def test_batched_decoding_equals_one_by_one(overfit_model, cut):
    """Also when the batch pads its utterances to very different lengths (``cut``: kept fractions)."""
    hf, asr, ser = overfit_model
    for batch, task in ((asr, "asr"), (ser, "ser")):
        lengths = batch["speech_lengths"].clone()
        if cut:
            lengths = (lengths * torch.tensor(cut)).long()
        batched = hf.decode_tensors(batch["speech"], lengths, task)
        for i, r in enumerate(batched):
            n = int(lengths[i])
            single = hf.decode_tensors(batch["speech"][i : i + 1, :n], lengths[i : i + 1], task)[0]
            assert (single["text"], single.get("tokens")) == (r["text"], r.get("tokens")), (task, i)
            assert abs(single["score"] - r["score"]) < 1e-4, (task, i)
    with_cache = hf.decode_tensors(asr["speech"], asr["speech_lengths"], "asr")
    no_cache = hf.decode_tensors(asr["speech"], asr["speech_lengths"], "asr", use_cache=False)
    assert [r["tokens"] for r in no_cache] == [r["tokens"] for r in with_cache]


@pytest.mark.slow
def test_beam_search_finds_transcripts_and_scores_at_least_greedy(overfit_model):
    hf, asr, _ = overfit_model
    greedy = hf.decode_tensors(asr["speech"], asr["speech_lengths"], "asr")
    beam = hf.decode_tensors(asr["speech"], asr["speech_lengths"], "asr", beam_size=3)
    assert [r["text"] for r in beam] == ASR_TEXTS, (beam, greedy)
    for g, b in zip(greedy, beam):
        assert b["score"] >= g["score"] - 1e-4


def teacher_forced_label_logp(model, speech, n, label_ids):
    """``log p(label + EOS | prompt ; speech)`` of each label, from one plain forward of the LLM over
    ``[prompt ; speech ; label]`` (no batch, no padding, no KV cache)."""
    parts, _ = model.prefix_parts(speech[None, :n], torch.tensor([n]), torch.tensor([1]), prompt_index=0)
    prefix = torch.cat(parts[0])
    out = []
    for ids in label_ids:
        seq = torch.cat([prefix, model.decoder.embed(torch.tensor(ids))])
        logp = torch.log_softmax(model.decoder.lm(inputs_embeds=seq[None]).logits[0].float(), dim=-1)
        targets = list(ids) + [model.eos_id]  # each predicted from the position before it
        out.append(sum(float(logp[prefix.size(0) - 1 + k, t]) for k, t in enumerate(targets)))
    return torch.tensor(out)


@pytest.mark.slow
def test_label_scores_match_teacher_forced_log_likelihoods(overfit_model):
    """score_labels (cached prefix, padded labels, a left-padded batch) gives each label the log-likelihood
    of a plain teacher-forced pass; SER decoding picks the argmax and its posteriors are their softmax."""
    hf, _, ser = overfit_model
    model = hf.model
    label_ids = model.label_ids[1]
    assert label_ids == [hf.tokenizer.encode(e) for e in EMOTIONS]
    assert len({len(ids) for ids in label_ids}) > 1  # labels of several lengths: the padding is exercised
    with torch.no_grad():
        want = torch.stack([teacher_forced_label_logp(model, ser["speech"][i], int(n), label_ids)
                            for i, n in enumerate(ser["speech_lengths"])])
        parts, _ = model.prefix_parts(ser["speech"], ser["speech_lengths"], torch.ones(4, dtype=torch.long), 0)
        got = score_labels(model.decoder, *pack(parts, left_pad=True), label_ids, model.eos_id)
    assert got.shape == (4, len(EMOTIONS))
    assert torch.allclose(got, want, atol=1e-4), (got, want)
    out = hf.decode_tensors(ser["speech"], ser["speech_lengths"], "ser")
    for i, r in enumerate(out):
        best = int(want[i].argmax())
        assert r["text"] == EMOTIONS[best] == EMOTIONS[i]
        assert r["score"] == pytest.approx(float(want[i, best]), abs=1e-4)
        post = torch.softmax(want[i], dim=0).tolist()
        assert [r["label_posteriors"][e] for e in EMOTIONS] == pytest.approx(post, abs=1e-4)
    # the training loss of the true label is the same log-likelihood, per target token
    n = int(ser["speech_lengths"][0])
    ids = torch.tensor([label_ids[0]])
    with torch.no_grad():
        loss, _, _ = model(ser["speech"][:1, :n], ser["speech_lengths"][:1], ids, torch.tensor([ids.size(1)]), torch.tensor([1]))
    assert float(loss) * (ids.size(1) + 1) == pytest.approx(-float(want[0, 0]), abs=1e-3)


def test_pack_left_padding_positions():
    parts = [[torch.ones(2, 3)], [torch.ones(4, 3)]]
    emb, mask, pos = pack(parts, left_pad=True)
    assert mask.tolist() == [[False, False, True, True], [True] * 4]
    assert pos[0, 2:].tolist() == [0, 1] and pos[1].tolist() == [0, 1, 2, 3]


@pytest.mark.slow
def test_speech_probe_shows_the_overfit_model_uses_the_audio(overfit_model, tmp_path):
    from conftest import write_task_dir

    from espnet_harmonifuse.bin.probe_speech import probe

    hf, _, _ = overfit_model
    write_task_dir(tmp_path, "asr", [(f"asr{i}", toy_wave(i), t) for i, t in enumerate(ASR_TEXTS)])
    result = probe(hf, "asr", str(tmp_path / "asr"), 4)
    assert result["real"]["acc"] > 0.9
    # another utterance's audio gives that utterance's words; silence leaves the LM to guess one of
    # the 4 memorised sentences (mostly right after the first word, so a smaller gap)
    assert result["shuffled"]["loss"] > result["real"]["loss"] + 1.0
    assert result["zero"]["loss"] > result["real"]["loss"] + 0.5


@pytest.mark.parametrize("after", [False, True])
def test_shared_prompt_prefix_computes_the_same_loss_and_gradients(make_args, after):
    """Each distinct prompt through the LM once, its KV cache given to every sample using it: the
    loss, the stats and every gradient equal running ``[prompt ; speech ; target]`` per sample, with
    paraphrases of different lengths in one batch and with text after the speech (chat templates)."""
    args = make_args()
    model = HarmoniFuseTask.build_model(args)
    if after:  # text after the speech too: the part that stays per sample
        model.set_prompt_frames([[(p, [5, 6, 7][: 1 + k]) for k, p in enumerate(opts)] for opts in model.prompt_ids])
    items = [(toy_wave(i, 0.3 + 0.1 * i), t) for i, t in enumerate(ASR_TEXTS[:4])]
    batch = batch_for(args, items, 0)
    assert len({len(p) for p in model.prompt_ids[0]}) > 1, "paraphrases of different lengths"
    results = []
    for share in (False, True):
        model.share_prompt_prefix = share
        model.zero_grad()
        model.train()
        torch.manual_seed(3)  # the same paraphrase per sample in both runs
        chosen = model.choose_prompts(batch["task_id"].view(-1))
        torch.manual_seed(3)
        loss, stats, _ = model(**batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((chosen, float(loss.detach()), {k: float(v) for k, v in stats.items()}, grads))
    (c0, l0, s0, g0), (c1, l1, s1, g1) = results
    assert c0 == c1 and len(set(c0)) > 1, "several paraphrases share the batch"
    assert l1 == pytest.approx(l0, rel=1e-5) and s1 == pytest.approx(s0, rel=1e-5, nan_ok=True)
    assert g0.keys() == g1.keys() and any(n.startswith("decoder.") for n in g0)
    for name in g0:
        assert torch.allclose(g0[name], g1[name], rtol=1e-4, atol=1e-6), name
