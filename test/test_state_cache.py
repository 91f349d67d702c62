"""The frozen-backbone state cache: same states as the backbone, the backbone skipped on a hit."""

import logging

import pytest
import torch
from conftest import ASR_TEXTS, toy_wave
from test_model import batch_for

from espnet_harmonifuse.api import HarmoniFuse
from espnet_harmonifuse.backbone.state_cache import BackboneStateCache
from espnet_harmonifuse.tasks import HarmoniFuseTask

FROZEN = {"backbone_conf": {"freeze": True, "dropout_rate": 0.1}}


class Counting(torch.nn.Module):
    """Wraps a backbone and records the batch size of every forward."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.calls = []
        self.freeze = getattr(inner, "freeze", False)

    def forward(self, speech, lengths):
        self.calls.append(speech.size(0))
        return self.inner(speech, lengths)


def _pad(waves):
    x = [torch.from_numpy(w) for w in waves]
    return torch.nn.utils.rnn.pad_sequence(x, batch_first=True), torch.tensor([len(w) for w in x])


@pytest.fixture
def frozen_backbone(make_args):
    return Counting(HarmoniFuseTask.build_model(make_args(**FROZEN)).backbone)


def test_first_batch_gives_the_backbones_own_states(frozen_backbone):
    """A batch with new utterances runs through the backbone whole: its states, bit for bit."""
    speech, lengths = _pad([toy_wave(0, 0.5), toy_wave(1, 0.3)])
    cache = BackboneStateCache(1.0)
    got, got_len = cache(frozen_backbone, speech, lengths)
    assert frozen_backbone.calls == [2]
    with torch.no_grad():
        want, want_len = frozen_backbone.inner(speech, lengths)
    assert torch.equal(got_len, want_len) and len(got) == len(want)
    for g, w in zip(got, want):
        for i, n in enumerate(want_len.tolist()):
            assert torch.equal(g[i, :n], w[i, :n])
            assert not g[i, n:].any()  # padding is zeros
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 2)


def test_a_hit_skips_the_backbone_and_a_new_utterance_runs_in_its_batch(frozen_backbone):
    a, b, c = toy_wave(0, 0.5), toy_wave(1, 0.3), toy_wave(2, 0.4)
    cache = BackboneStateCache(1.0)
    first, first_len = cache(frozen_backbone, *_pad([a, b]))
    assert frozen_backbone.calls == [2]
    # the same utterances in another order and another padding: no backbone forward, the stored states
    again, again_len = cache(frozen_backbone, *_pad([b, a]))
    assert frozen_backbone.calls == [2]
    assert again_len.tolist() == first_len.flip(0).tolist()
    n_a, n_b = first_len.tolist()
    assert torch.equal(again[-1][1, :n_a], first[-1][0, :n_a]) and torch.equal(again[0][0, :n_b], first[0][1, :n_b])
    # one new utterance among known ones: the batch runs as without the cache, the known ones keep
    # their stored states, the new one gets the states of that forward
    mixed_in = _pad([a, c, b])
    mixed, _ = cache(frozen_backbone, *mixed_in)
    assert frozen_backbone.calls == [2, 3]
    assert (cache.hits, cache.misses, len(cache)) == (4, 3, 3)
    with torch.no_grad():
        batch, batch_len = frozen_backbone.inner(*mixed_in)
    n_c = int(batch_len[1])
    assert torch.equal(mixed[2][1, :n_c], batch[2][1, :n_c])
    assert torch.equal(mixed[2][0, :n_a], first[2][0, :n_a])


def test_changed_audio_is_a_new_key():
    w = torch.from_numpy(toy_wave(0, 0.5))
    assert BackboneStateCache.key(w) == BackboneStateCache.key(w.clone())
    assert BackboneStateCache.key(w) != BackboneStateCache.key(w * 1.001)
    assert BackboneStateCache.key(w) != BackboneStateCache.key(w[:-1])  # padding is not part of the key


def test_memory_bound_stops_storing_and_warns_once(frozen_backbone, caplog):
    speech, lengths = _pad([toy_wave(0, 0.5), toy_wave(1, 0.5), toy_wave(2, 0.5)])
    one = BackboneStateCache(1.0)
    one(frozen_backbone, speech[:1], lengths[:1])
    per_utt = one.nbytes
    cache = BackboneStateCache(1.5 * per_utt / 1024**3)  # room for one utterance
    computed = sum(frozen_backbone.calls)  # utterances the backbone has run on (a batch with a miss runs whole)
    with caplog.at_level(logging.WARNING):
        cache(frozen_backbone, speech, lengths)
        cache(frozen_backbone, speech, lengths)
    assert len(cache) == 1 and cache.nbytes == per_utt
    assert BackboneStateCache.key(speech[0, : int(lengths[0])]) in cache.entries  # the first one, stored
    assert sum(frozen_backbone.calls) - computed == 3 + 3  # two did not fit: their batch runs again
    assert (cache.hits, cache.misses) == (1, 5)
    with caplog.at_level(logging.WARNING):
        got, got_len = cache(frozen_backbone, speech, lengths)
    assert sum(frozen_backbone.calls) - computed == 3 + 3 + 3 and (cache.hits, cache.misses, len(cache)) == (2, 7, 1)
    assert sum("cache full" in r.message for r in caplog.records) == 1
    with torch.no_grad():
        want, want_len = frozen_backbone.inner(speech, lengths)
    assert torch.equal(got_len, want_len)
    for g, w in zip(got, want):  # the stored and the recomputed states are the backbone's
        for i, n in enumerate(want_len.tolist()):
            assert torch.equal(g[i, :n], w[i, :n])


def test_model_with_cache_gives_the_same_loss_and_trains_only_the_rest(make_args):
    args = make_args(**FROZEN, model_conf={"cache_backbone_states": True, "prompt_sampling": "first"})
    torch.manual_seed(0)
    model = HarmoniFuseTask.build_model(args)
    plain = HarmoniFuseTask.build_model(make_args(**FROZEN, model_conf={"prompt_sampling": "first"}))
    plain.load_state_dict(model.state_dict())
    model.eval(), plain.eval()  # the LM's dropout off: the two must agree exactly
    # lengths far apart: the cache pads with zeros, the backbone leaves other values in the padding
    items = [(toy_wave(i, s), t) for i, (s, t) in enumerate(zip((0.5, 0.3, 0.8, 0.45), ASR_TEXTS))]
    batch = batch_for(args, items, 0)
    want = plain(**batch)[0]
    assert torch.allclose(model(**batch)[0], want, atol=1e-5) and len(model.state_cache) == 4
    loss = model(**batch)[0]  # from the cache
    assert model.state_cache.hits == 4 and torch.allclose(loss, want, atol=1e-5)
    # cached states reused in a batch of another make-up: two of them next to a new, longer utterance
    mixed = batch_for(args, [items[1], (toy_wave(9, 1.1), "MY GREEN CAR"), items[3]], 0)
    assert torch.allclose(model(**mixed)[0], plain(**mixed)[0], atol=1e-5) and model.state_cache.hits == 6
    loss.backward()
    assert model.fusion.layer_logits.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.backbone.parameters())
    assert not any(k.startswith("state_cache") for k in model.state_dict())  # nothing extra in checkpoints


def test_cache_needs_a_frozen_backbone(make_args):
    with pytest.raises(ValueError, match="backbone_conf.freeze: true"):
        HarmoniFuseTask.build_model(make_args(model_conf={"cache_backbone_states": True}))
    with pytest.raises(ValueError, match="backbone_cache_gb"):
        HarmoniFuseTask.build_model(make_args(**FROZEN, model_conf={"cache_backbone_states": True, "backbone_cache_gb": 0}))


def test_decoding_runs_the_backbone_every_time_and_stores_nothing(make_args):
    """The API decodes without the training-time cache: the same utterance twice is computed twice."""
    model = HarmoniFuseTask.build_model(make_args(**FROZEN, model_conf={"cache_backbone_states": True}))
    cache = model.state_cache
    model.backbone = Counting(model.backbone)
    hf = HarmoniFuse(model, make_args(**FROZEN))
    wave = toy_wave(0, 0.5)
    first, again = hf.decode([wave], "ser")[0], hf.decode([wave], "ser")[0]
    assert model.backbone.calls == [1, 1]
    assert (len(cache), cache.hits, cache.misses) == (0, 0, 0)
    assert (first["text"], first["label_posteriors"]) == (again["text"], again["label_posteriors"])
