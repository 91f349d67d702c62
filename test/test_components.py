"""Components on their own, with toy inputs: prompt-adaptive fusion, prompt vectors, single-layer
fusion, the projector's summary token, and the prompt scale of the fusion."""

import pytest
import torch

from espnet_harmonifuse.espnet_model import HarmoniFuseModel

SHARED_PROMPT_WORDS = [12, 13, 14, 15, 12, 13, 14, 15]


@pytest.mark.parametrize(
    "prompt_ids,center",
    [
        ([[[10]], [[11]]], False),
        # two paraphrases per task that share most of their tokens, as real prompts do
        ([[[10] + SHARED_PROMPT_WORDS, [10, 10] + SHARED_PROMPT_WORDS], [[11] + SHARED_PROMPT_WORDS, [11, 11] + SHARED_PROMPT_WORDS]], True),
    ],
)
def test_prompt_adaptive_weights_start_equal_and_separate_by_task(prompt_ids, center):
    """A toy backbone puts the ASR answer in layer 0 and the SER answer in layer 2."""
    from espnet_harmonifuse.backbone.abs_backbone import AbsBackbone
    from espnet_harmonifuse.decoder.hf_causal_lm import HFCausalLMDecoder
    from espnet_harmonifuse.fusion.prompt_adaptive import PromptAdaptiveFusion
    from espnet_harmonifuse.gate.none import NoGate
    from espnet_harmonifuse.projector.stack_mlp import StackMLPProjector
    from espnet_harmonifuse.task_spec import parse_tasks

    class ToyBackbone(AbsBackbone):
        """speech[:, 0] is the ASR class, speech[:, 1] the SER class; layer 1 is noise."""

        num_layers = 3

        def output_size(self):
            return 8

        def forward(self, speech, lengths):
            onehot = lambda c: torch.nn.functional.one_hot(c.long(), 8).float().unsqueeze(1)  # noqa: E731
            noise = torch.randn(speech.size(0), 1, 8) * 3
            a, s = onehot(speech[:, 0]), onehot(speech[:, 1])
            return [a + torch.randn_like(a) * 0.1, noise, s + torch.randn_like(s) * 0.1], torch.ones_like(lengths)

    torch.manual_seed(0)
    n_prompts = len(prompt_ids[0])
    tasks = parse_tasks([{"name": name, "prompts": list("abc")[:n_prompts], "target": "label", "labels": list("01234567")} for name in ("asr", "ser")])
    decoder = HFCausalLMDecoder(None, config=dict(model_type="qwen2", vocab_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, intermediate_size=32), freeze=False)
    model = HarmoniFuseModel(ToyBackbone(), PromptAdaptiveFusion(3, 8, 16, hidden_size=16, layer_norm=center), NoGate(8, 16), StackMLPProjector(8, 16, 1, 32), decoder, tasks, prompt_ids, [[[i] for i in range(8)]] * 2, eos_id=9, center_prompts=center)
    w0 = model.layer_weights_per_task()
    assert torch.allclose(w0["asr"], w0["ser"])  # the prompt MLP starts at zero
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        task = step % 2
        cls_a, cls_s = torch.randint(8, (8,)), torch.randint(8, (8,))
        target = cls_a if task == 0 else cls_s
        loss, _, _ = model(torch.stack([cls_a, cls_s], 1).float(), torch.ones(8, dtype=torch.long), target.unsqueeze(1), torch.ones(8, dtype=torch.long), torch.full((8,), task))
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    w = model.layer_weights_per_task()
    assert (w["asr"][:, 0] > w["ser"][:, 0] + 0.2).all(), w
    assert (w["ser"][:, 2] > w["asr"][:, 2] + 0.2).all(), w


def test_centred_prompt_vectors_average_to_zero_over_tasks_and_keep_their_differences():
    """``center_prompts`` removes what the tasks share and nothing that tells them apart."""
    from espnet_harmonifuse.decoder.hf_causal_lm import HFCausalLMDecoder
    from espnet_harmonifuse.fusion.static import StaticFusion
    from espnet_harmonifuse.gate.none import NoGate
    from espnet_harmonifuse.projector.stack_mlp import StackMLPProjector
    from espnet_harmonifuse.task_spec import parse_tasks

    torch.manual_seed(0)
    prompt_ids = [[[1, 2, 3], [1, 4]], [[5, 2, 3, 6], [7], [5, 5]], [[8, 2]]]  # 3 tasks, 2 / 3 / 1 paraphrases
    tasks = parse_tasks([{"name": f"t{i}", "prompts": ["x"] * len(p), "target": "label", "labels": ["a", "b"]} for i, p in enumerate(prompt_ids)])
    decoder = HFCausalLMDecoder(None, config=dict(model_type="qwen2", vocab_size=16, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, intermediate_size=32), freeze=False)
    vectors = {}
    for center in (False, True):
        model = HarmoniFuseModel(torch.nn.Identity(), StaticFusion(2, 8, 16), NoGate(8, 16), StackMLPProjector(8, 16, 1, 32), decoder, tasks, prompt_ids, [[[0], [1]]] * 3, eos_id=9, center_prompts=center)
        vectors[center] = [model.embed_prompts(p)[1] for p in prompt_ids]
    raw, centred = vectors[False], vectors[True]
    assert torch.allclose(torch.stack([v.mean(0) for v in centred]).mean(0), torch.zeros(16), atol=1e-6)
    assert not torch.allclose(torch.stack([v.mean(0) for v in raw]).mean(0), torch.zeros(16), atol=1e-3)
    assert torch.allclose(centred[0][0] - centred[1][2], raw[0][0] - raw[1][2], atol=1e-6)
    assert torch.allclose(raw[0][1], decoder.embed(torch.tensor([1, 4])).mean(0))


def test_single_layer_fusion_takes_the_configured_layer():
    from espnet_harmonifuse.fusion.last_layer import LastLayerFusion

    states = [torch.full((1, 4, 8), float(i)) for i in range(3)]
    prompt = torch.zeros(1, 16)
    for layer, expect in [(-1, 2), (0, 0), (1, 1)]:
        fused, weights = LastLayerFusion(3, 8, 16, layer=layer)(states, torch.tensor([4]), prompt)
        assert torch.equal(fused, states[expect]) and weights[0].argmax().item() == expect
    with pytest.raises(ValueError, match="fusion_conf.layer 3"):
        LastLayerFusion(3, 8, 16, layer=3)


def test_summary_token_is_the_pooled_utterance_before_the_speech_positions():
    """projector_conf.summary_token: position 0 depends on the valid frames only (padding does not
    change it), the speech positions are unchanged, and the length grows by one."""
    from espnet_harmonifuse.projector.stack_mlp import StackMLPProjector
    from espnet_harmonifuse.projector.summary import masked_mean_std

    torch.manual_seed(0)
    proj = StackMLPProjector(8, 16, downsample_rate=2, hidden_size=32, summary_token=True)
    x = torch.randn(1, 6, 8)
    padded = torch.cat([x, torch.randn(1, 3, 8)], dim=1)
    y, n = proj(x, torch.tensor([6]))
    y_pad, n_pad = proj(padded, torch.tensor([6]))
    assert n.tolist() == n_pad.tolist() == [4] and y.shape == (1, 4, 16)
    assert torch.allclose(y[0, :4], y_pad[0, :4], atol=1e-6)
    assert torch.allclose(y[0, 0], proj.summary.mlp(masked_mean_std(x, torch.tensor([6])))[0], atol=1e-6)
    proj.summary = None
    assert torch.allclose(proj(x, torch.tensor([6]))[0], y[:, 1:], atol=1e-6)
    stats = masked_mean_std(padded, torch.tensor([6]))
    assert torch.allclose(stats[0, :8], x[0].mean(0), atol=1e-6)
    assert torch.allclose(stats[0, 8:], x[0].std(0, unbiased=False), atol=1e-5)


@pytest.mark.parametrize("scale,low,high", [(1.0, 10.0, None), (1 / 32, 0.2, 3.0)])
def test_prompt_scale_sets_how_fast_the_prompt_part_of_the_layer_logits_moves(scale, low, high):
    """Under Adam the prompt MLP's output moves ~hidden_size times faster than the static logits
    (which saturates the softmax on one layer early); prompt_scale = 1 / hidden_size evens it out."""
    from espnet_harmonifuse.fusion.prompt_adaptive import PromptAdaptiveFusion

    torch.manual_seed(0)
    fusion = PromptAdaptiveFusion(4, 8, 16, hidden_size=32, prompt_scale=scale)
    prompt = torch.randn(1, 16)
    opt = torch.optim.Adam(fusion.parameters(), lr=1e-3)
    for _ in range(20):  # push layer 0 up for this prompt
        loss = -torch.log(fusion.layer_weights(prompt)[0, 0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        static = fusion.layer_logits[0] - fusion.layer_logits[1:].mean()
        f = scale * fusion.prompt_mlp(prompt)[0]
        prompt_part = f[0] - f[1:].mean()
    ratio = (prompt_part / static).item()
    assert ratio > low and (high is None or ratio < high), ratio


def test_prompt_scale_must_be_positive():
    from espnet_harmonifuse.fusion.prompt_adaptive import PromptAdaptiveFusion

    with pytest.raises(ValueError, match="prompt_scale"):
        PromptAdaptiveFusion(4, 8, 16, prompt_scale=0.0)
