"""The real-checkpoint code path (from_pretrained of local dirs) with a tiny WavLM and a tiny Qwen2 + LoRA."""

import copy
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ASR_TEXTS, EMOTIONS, TINY_CONF, TINY_TASKS, alone_and_batched, toy_wave

pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from espnet_harmonifuse.api import HarmoniFuse  # noqa: E402
from espnet_harmonifuse.bin.common import load_train_args  # noqa: E402
from espnet_harmonifuse.collate import PadCollate  # noqa: E402
from espnet_harmonifuse.preprocessor import TaskPreprocessor  # noqa: E402
from espnet_harmonifuse.tasks import HarmoniFuseTask  # noqa: E402
from espnet_harmonifuse.tokenizer import HFTokenizer  # noqa: E402

WAVLM_LAYERS = 2


def tiny_tokenizer():
    """A byte-level BPE tokenizer over the toy texts, prompts and labels.

    Byte-level BPE, because transformers 5's AutoTokenizer picks the model type's own
    tokenizer class (Qwen2Tokenizer) for a dir whose config.json says qwen2, and that
    class reads vocab + merges from tokenizer.json (a WordLevel model would come back empty).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(ASR_TEXTS) + EMOTIONS + [p for t in TINY_TASKS for p in t["prompts"]]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tk.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", pad_token="<pad>")


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    """A tiny WavLM dir and a tiny Qwen2 causal-LM dir (with its tokenizer), as save_pretrained writes them."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    wcfg = AutoConfig.for_model(
        "wavlm", hidden_size=32, num_hidden_layers=WAVLM_LAYERS, num_attention_heads=2, intermediate_size=64,
        conv_dim=[32, 32], conv_kernel=[10, 3], conv_stride=[5, 2], num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    wavlm = AutoModel.from_config(wcfg)
    wavlm.save_pretrained(root / "wavlm")

    tok = tiny_tokenizer()
    lcfg = AutoConfig.for_model(
        "qwen2", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64, max_position_embeddings=2048, vocab_size=len(tok) + 3,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    llm = AutoModelForCausalLM.from_config(lcfg)
    llm.save_pretrained(root / "llm")
    tok.save_pretrained(root / "llm")
    from transformers import AutoTokenizer

    return {
        "wavlm": str(root / "wavlm"),
        "llm": str(root / "llm"),
        "wavlm_state": {k: v.clone() for k, v in wavlm.state_dict().items()},
        "llm_state": {k: v.clone() for k, v in llm.state_dict().items()},
        "tokenizer": AutoTokenizer.from_pretrained(root / "llm"),  # what a user of the dir gets
    }


def hf_args(tmp_path: Path, dirs: dict, **overrides):
    conf = copy.deepcopy(TINY_CONF)
    conf.update(
        token_type="hf",
        backbone="hf_ssl",
        backbone_conf={"model_name_or_path": dirs["wavlm"], "freeze": True},
        decoder_conf={
            "model_name_or_path": dirs["llm"],
            "freeze": True,
            "lora_conf": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        },
    )
    conf.update(overrides)
    path = tmp_path / "hf_conf.yaml"
    path.write_text(yaml.safe_dump(conf))
    return load_train_args(str(path))


@pytest.fixture(scope="module")
def built(hf_dirs, tmp_path_factory):
    args = hf_args(tmp_path_factory.mktemp("conf"), hf_dirs)
    torch.manual_seed(0)
    return HarmoniFuseTask.build_model(args), args


def asr_batch(args, n=2):
    tok = HarmoniFuseTask.build_tokenizer(args)
    pre = TaskPreprocessor(0, HarmoniFuseTask.build_task_preprocess_fn(args, 0).spec, tok)
    samples = [(f"a{i}", pre(f"a{i}", {"speech": toy_wave(i, 0.4 + 0.1 * i), "text": ASR_TEXTS[i]})) for i in range(n)]
    return PadCollate(not_sequence=["task_id"])(samples)[1]


def base_llm_state(model):
    """The LLM's own weights (not LoRA), keyed as in the saved checkpoint."""
    base = model.decoder.lm.get_base_model()
    return {k.replace("base_layer.", ""): v for k, v in base.state_dict().items() if "lora_" not in k}


# ----------------------------------------------------------------------------- loading
def test_backbone_and_llm_weights_come_from_the_local_dirs(built, hf_dirs):
    model, _ = built
    loaded = model.backbone.model.state_dict()
    assert set(loaded) == set(hf_dirs["wavlm_state"])
    assert all(torch.equal(loaded[k], v) for k, v in hf_dirs["wavlm_state"].items())
    llm = base_llm_state(model)
    assert set(hf_dirs["llm_state"]) <= set(llm)
    assert all(torch.equal(llm[k], v) for k, v in hf_dirs["llm_state"].items())
    assert type(model.backbone.model).__name__ == "WavLMModel"
    assert model.backbone.output_size() == 32 and model.decoder.hidden_size == 32


def test_num_layers_is_hidden_layers_plus_embedding(built, hf_dirs):
    model, args = built
    assert model.backbone.num_layers == WAVLM_LAYERS + 1
    assert model.fusion.layer_logits.shape == (WAVLM_LAYERS + 1,)
    batch = asr_batch(args)
    with torch.no_grad():
        states, lengths = model.backbone(batch["speech"], batch["speech_lengths"])
    assert len(states) == WAVLM_LAYERS + 1
    # conv strides 5 * 2: one frame per 10 samples (minus the receptive field)
    expected = (batch["speech_lengths"] - 10) // 5 + 1
    expected = (expected - 3) // 2 + 1
    assert lengths.tolist() == expected.tolist()
    assert all(s.shape == (2, int(lengths.max()), 32) for s in states)


def test_prompts_and_labels_round_trip_with_the_hf_tokenizer(built, hf_dirs):
    model, args = built
    tok = HarmoniFuseTask.build_tokenizer(args)
    assert isinstance(tok, HFTokenizer)
    saved = hf_dirs["tokenizer"]
    assert tok.vocab_size == len(saved) and tok.eos_id == saved.eos_token_id and model.eos_id == saved.eos_token_id
    for index, task in enumerate(TINY_TASKS):
        for p, ids in zip(task["prompts"], model.prompt_ids[index]):
            assert ids == saved.encode(p, add_special_tokens=False) and tok.decode(ids) == p
            # the LLM reads [prompt ; speech ; target]: no BOS (the tokenizer has none), no template
            assert model.prompt_frames[index][task["prompts"].index(p)] == (saved(p)["input_ids"], []) == (ids, [])
        for lab, ids in zip(task.get("labels", []), model.label_ids[index]):
            assert tok.decode(ids) == lab
    assert tok.decode(tok.encode("THE RED DOG") + [tok.eos_id]) == "THE RED DOG"


# ----------------------------------------------------------------------------- training
def test_gradients_reach_only_the_trainable_parts(hf_dirs, tmp_path):
    args = hf_args(tmp_path, hf_dirs)
    torch.manual_seed(0)
    model = HarmoniFuseTask.build_model(args)
    model.train()
    assert not model.backbone.model.training  # a frozen backbone stays in eval mode
    loss, stats, _ = model(**asr_batch(args))
    assert torch.isfinite(loss) and stats["loss_asr"] > 0 and torch.isnan(stats["loss_ser"])
    loss.backward()

    named = dict(model.named_parameters())
    lora = {k: p for k, p in named.items() if "lora_" in k}
    assert len(lora) == 2 * 2 * 2  # 2 layers x (q_proj, v_proj) x (A, B)
    assert all(p.requires_grad and p.grad is not None for p in lora.values())
    assert any(p.grad.abs().sum() > 0 for k, p in lora.items() if "lora_B" in k)
    for prefix in ("fusion.", "gate.", "projector."):
        params = {k: p for k, p in named.items() if k.startswith(prefix)}
        assert params and all(p.grad is not None for p in params.values()), prefix
        assert sum(float(p.grad.abs().sum()) for p in params.values()) > 0, prefix
    assert named["fusion.layer_logits"].grad.abs().sum() > 0
    frozen = {k: p for k, p in named.items() if k.startswith("backbone.") or (k.startswith("decoder.") and "lora_" not in k)}
    assert frozen
    assert all(not p.requires_grad and p.grad is None for p in frozen.values())

    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optim = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    optim.step()
    after = model.state_dict()
    lora_b = [k for k in after if "lora_B" in k]
    assert lora_b and all(not torch.equal(before[k], after[k]) for k in lora_b)
    assert not torch.equal(before["fusion.layer_logits"], after["fusion.layer_logits"])
    for k in after:
        if k.startswith("backbone.") or (k.startswith("decoder.") and "lora_" not in k):
            assert torch.equal(before[k], after[k]), k
    # the saved base weights are untouched too
    llm = base_llm_state(model)
    assert all(torch.equal(llm[k], v) for k, v in hf_dirs["llm_state"].items())


def test_label_decoding_with_the_hf_model_stays_in_the_label_set(built):
    model, args = built
    hf = HarmoniFuse(model, args)
    results = hf.decode([toy_wave(5, 0.3), toy_wave(6, 0.5)], task="ser")
    assert [r["text"] in EMOTIONS for r in results] == [True, True]
    assert all(sum(r["label_posteriors"].values()) == pytest.approx(1.0, abs=1e-5) for r in results)
    assert all(len(r["layer_weights"]) == WAVLM_LAYERS + 1 for r in results)


# ----------------------------------------------------------------------------- errors
def test_nonexistent_local_dir_gives_a_clear_error(hf_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = str(tmp_path / "no" / "such" / "wavlm")
    args = hf_args(tmp_path, hf_dirs, backbone_conf={"model_name_or_path": missing, "freeze": True})
    with pytest.raises(RuntimeError) as e:
        HarmoniFuseTask.build_model(args)
    msg = str(e.value)
    assert msg.startswith(f"backbone_conf: could not load '{missing}'")
    assert "Fix: give a directory written by save_pretrained" in msg

    empty = tmp_path / "empty_llm"
    empty.mkdir()
    args = hf_args(tmp_path, hf_dirs, tokenizer_name_or_path=hf_dirs["llm"],
                   decoder_conf={"model_name_or_path": str(empty), "freeze": True})
    with pytest.raises(RuntimeError, match=rf"decoder_conf: could not load '{empty}' \(local directory\)"):
        HarmoniFuseTask.build_model(args)


def test_tokenizer_larger_than_the_llm_vocab(hf_dirs, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    small = AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "qwen2", hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64, vocab_size=5,
    ))
    small.save_pretrained(tmp_path / "small_llm")
    args = hf_args(tmp_path, hf_dirs, tokenizer_name_or_path=hf_dirs["llm"],
                   decoder_conf={"model_name_or_path": str(tmp_path / "small_llm"), "freeze": True})
    n = len(hf_dirs["tokenizer"])
    with pytest.raises(ValueError, match=rf"the tokenizer has {n} tokens but the LLM's embedding has 5 rows"):
        HarmoniFuseTask.build_model(args)


def test_wavlm_large_layout_gives_an_utterance_the_same_states_in_any_batch():
    """WavLM-Large's layout (layer-norm feature encoder, stable layer norm) with the padding mask, as
    the IEMOCAP recipe runs it: an utterance's states alone equal its states next to longer ones."""
    from transformers import AutoConfig, AutoModel

    from espnet_harmonifuse.backbone.hf_ssl import HFSSLBackbone

    cfg = AutoConfig.for_model(
        "wavlm", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=[32, 32], conv_kernel=[10, 3], conv_stride=[5, 2], num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
    )
    torch.manual_seed(0)
    backbone = HFSSLBackbone(model_name_or_path=None, config=cfg.to_dict(), freeze=True)
    for n_alone, n_batched, pairs in alone_and_batched(backbone, (0.3, 0.55, 0.8)):
        assert n_batched == n_alone
        for alone, batched in pairs:
            assert torch.allclose(alone, batched, atol=1e-5), float((alone - batched).abs().max())


def test_a_trainable_backbone_never_drops_a_layer_state():
    """WavLM's LayerDrop would skip layers (and their hidden states) in training; the fusion reads
    every layer, so a fine-tuned backbone gives all of them in every training step."""
    from transformers import AutoConfig

    from espnet_harmonifuse.backbone.hf_ssl import HFSSLBackbone

    cfg = AutoConfig.for_model(
        "wavlm", hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
        conv_dim=[32, 32], conv_kernel=[10, 3], conv_stride=[5, 2], num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, layerdrop=1.0,
    )
    torch.manual_seed(0)
    backbone = HFSSLBackbone(model_name_or_path=None, config=cfg.to_dict(), freeze=False).train()
    speech = torch.randn(2, 4000)
    for _ in range(3):
        states, _ = backbone(speech, torch.tensor([4000, 3000]))
        assert len(states) == backbone.num_layers == 4
        assert all(s.shape == states[0].shape for s in states)


def test_an_llm_configured_in_bf16_stays_bf16_when_the_model_is_cast(hf_dirs, tmp_path):
    """ESPnet casts the built model to --train_dtype (float32); the LLM keeps decoder_conf.dtype,
    its LoRA weights and the other components keep theirs, and a training step runs."""
    args = hf_args(tmp_path, hf_dirs)
    args.decoder_conf = dict(args.decoder_conf, dtype="bfloat16")
    torch.manual_seed(0)
    model = HarmoniFuseTask.build_model(args)
    before = {k: v.dtype for k, v in model.state_dict().items()}
    model = model.to(dtype=torch.float32, device="cpu")  # what AbsTask.main_worker does
    after = {k: v.dtype for k, v in model.state_dict().items()}
    assert after == before
    base = {k: d for k, d in after.items() if k.startswith("decoder.") and "lora_" not in k and d.is_floating_point}
    assert base and set(base.values()) == {torch.bfloat16}
    assert {d for k, d in after.items() if k.startswith(("fusion.", "gate.", "projector."))} == {torch.float32}
    model.train()
    loss, stats, _ = model(**asr_batch(args))
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert all(p.grad is not None for k, p in model.named_parameters() if "lora_B" in k)


def test_a_dtype_asked_for_at_decoding_casts_the_llm_too(hf_dirs, tmp_path):
    """Training's blanket cast leaves a bf16 LLM alone; HarmoniFuse(..., dtype=...) is a request by name."""
    from espnet_harmonifuse.api import HarmoniFuse

    args = hf_args(tmp_path, hf_dirs)
    args.decoder_conf = dict(args.decoder_conf, dtype="bfloat16")
    hf = HarmoniFuse(HarmoniFuseTask.build_model(args), args, dtype="float32")
    assert {p.dtype for p in hf.model.decoder.parameters()} == {torch.float32}
