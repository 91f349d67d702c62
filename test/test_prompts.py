"""The LLM input around the speech for each kind of Hugging Face causal LM: BOS at position 0 where the
tokenizer has one (once), ``prompt_format: chat_template``, the target's end token, and one prefix for
training and decoding. Tiny random models of each family, saved by save_pretrained and loaded by path."""

import copy
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ASR_TEXTS, TINY_CONF, TINY_TASKS, toy_wave

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from paper_fixtures import save_tiny_llm  # noqa: E402
from test_hf_local import tiny_tokenizer  # noqa: E402

from espnet_harmonifuse.api import HarmoniFuse  # noqa: E402
from espnet_harmonifuse.bin.common import load_train_args  # noqa: E402
from espnet_harmonifuse.tasks import HarmoniFuseTask  # noqa: E402
from espnet_harmonifuse.tokenizer import CHAT_TEMPLATE_KWARGS  # noqa: E402

# Llama 2's layout: "<s>" added by the tokenizer, a chat template that does not write it; the template
# prints the day unless given date_string, as Llama 3.x's templates do
LLAMA2_TEMPLATE = (
    "{%- if date_string is not defined %}{%- set date_string = strftime_now('%d %b %Y') %}{%- endif %}"
    "{{- '[SYS] Today is ' + date_string + ' [/SYS]' }}"
    "{%- for m in messages %}{%- if m.role == 'user' %}{{- '[INST] ' + m.content + ' [/INST]' }}"
    "{%- else %}{{- ' ' + m.content + eos_token }}{%- endif %}{%- endfor %}"
)
BOS = {"qwen2": None, "llama": "<|begin_of_text|>", "llama2": "<s>", "gpt2": None}
END_OF_TURN = {"qwen2": "<|im_end|>", "llama": "<|eot_id|>", "llama2": "</s>"}


def save_llm(path: Path, model_type: str, tok) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    dims = dict(n_embd=32, n_layer=2, n_head=2) if model_type == "gpt2" else dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64)
    cfg = AutoConfig.for_model(model_type, vocab_size=len(tok) + 3, eos_token_id=tok.eos_token_id, **dims)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
    tok.save_pretrained(path)


@pytest.fixture(scope="module")
def llms(tmp_path_factory):
    """Qwen2.5-Instruct's and Llama-3.2-Instruct's tokenizer layouts (test/paper_fixtures.py), a Llama 2
    layout, and a GPT-2 layout (no BOS, no chat template): {family: local dir}."""
    from tokenizers import processors

    root = tmp_path_factory.mktemp("llms")
    texts = list(ASR_TEXTS) + [p for t in TINY_TASKS for p in t["prompts"] + t.get("labels", [])]
    for family in ("qwen2", "llama"):
        save_tiny_llm(root / family, family, texts + ["system user assistant", "You are a helpful assistant."])
    save_llm(root / "gpt2", "gpt2", tiny_tokenizer())
    tok = tiny_tokenizer()
    tok.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>"})
    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.bos_token_id)])
    tok.chat_template = LLAMA2_TEMPLATE
    save_llm(root / "llama2", "llama", tok)
    return {family: str(root / family) for family in BOS}


def build(tmp_path: Path, llm: str, prompt_format: str = "plain", **overrides):
    """The tiny Conformer model of conftest with the LLM and its tokenizer from ``llm``, as a hub name loads."""
    conf = copy.deepcopy(TINY_CONF)
    conf.update(token_type="hf", prompt_format=prompt_format, decoder_conf={"model_name_or_path": llm, "freeze": False})
    conf.update(overrides)
    (tmp_path / "conf.yaml").write_text(yaml.safe_dump(conf))
    args = load_train_args(str(tmp_path / "conf.yaml"))
    torch.manual_seed(0)
    return HarmoniFuseTask.build_model(args), args


def tokenizer_of(llm: str):
    return transformers.AutoTokenizer.from_pretrained(llm)


def chat(tok, prompt: str) -> str:
    return tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                   add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS)


# ----------------------------------------------------------------------------- plain
@pytest.mark.parametrize("family", list(BOS))
def test_plain_prompt_starts_with_the_bos_the_tokenizer_puts_there(llms, tmp_path, family):
    model, _ = build(tmp_path, llms[family])
    tok = tokenizer_of(llms[family])
    bos = None if BOS[family] is None else tok.convert_tokens_to_ids(BOS[family])
    assert tok.bos_token_id == bos
    assert model.eos_id == tok.eos_token_id
    for t, task in enumerate(TINY_TASKS):
        for j, prompt in enumerate(task["prompts"]):
            before, after = model.prompt_frames[t][j]
            text_ids = tok.encode(prompt, add_special_tokens=False)
            assert before == ([bos] if bos is not None else []) + text_ids and after == []
            assert before == tok(prompt)["input_ids"]  # what the tokenizer itself gives the LM
            assert model.prompt_ids[t][j] == text_ids  # the pooled prompt vector: the text alone


# ----------------------------------------------------------------------------- chat template
@pytest.mark.parametrize("family", list(END_OF_TURN))
def test_chat_template_wraps_the_prompt_with_bos_once(llms, tmp_path, family):
    model, _ = build(tmp_path, llms[family], "chat_template")
    tok = tokenizer_of(llms[family])
    bos = None if BOS[family] is None else tok.convert_tokens_to_ids(BOS[family])
    for t, task in enumerate(TINY_TASKS):
        for j, prompt in enumerate(task["prompts"]):
            before, after = model.prompt_frames[t][j]
            rendered = chat(tok, prompt)
            ids = tok.encode(rendered, add_special_tokens=False)
            # the template's tokens, the speech after the prompt text, the assistant header last
            assert before + after == (ids if bos is None or ids[0] == bos else [bos] + ids)
            assert tok.decode(before).endswith(prompt) and after
            assert tok.decode(after) == rendered[rendered.rfind(prompt) + len(prompt):]
            assert (before[0] == bos and (before + after).count(bos) == 1) if bos is not None else bos not in before
    # the target ends with the token the template closes an assistant turn with, generation stops on it
    assert model.eos_id == tok.convert_tokens_to_ids(END_OF_TURN[family]) == tok.eos_token_id


def test_chat_template_of_qwen_and_llama_starts_with_their_own_tokens(llms, tmp_path):
    for family, first in (("qwen2", "<|im_start|>"), ("llama", "<|begin_of_text|>"), ("llama2", "<s>")):
        model, _ = build(tmp_path, llms[family], "chat_template")
        tok = tokenizer_of(llms[family])
        before, after = model.prompt_frames[0][0]
        assert tok.convert_ids_to_tokens(before[:1]) == [first], family
        if family == "llama2":  # the template prints a date: a fixed one, whatever the day
            assert "[SYS] Today is 26 Jul 2024 [/SYS][INST] " in tok.decode(before)


def test_chat_template_without_one_is_refused_with_the_fix(llms, tmp_path, make_args):
    with pytest.raises(ValueError, match=r"has no chat template .*Fix: set prompt_format: plain"):
        build(tmp_path, llms["gpt2"], "chat_template")
    with pytest.raises(ValueError, match=r"needs the LLM's own tokenizer \(token_type hf\).*prompt_format: plain"):
        HarmoniFuseTask.build_model(make_args(prompt_format="chat_template"))


def test_prompt_format_is_an_option_of_print_config(monkeypatch):
    import io
    import sys

    monkeypatch.setattr(sys, "argv", ["harmonifuse_train", "--print_config"])
    buf = io.StringIO()
    HarmoniFuseTask.print_config(file=buf)
    assert yaml.safe_load(buf.getvalue())["prompt_format"] == "plain"


# ----------------------------------------------------------------------------- training = decoding
def captured_inputs(model, run):
    """The ``(inputs_embeds, mask, position_ids)`` of each LLM call made by ``run()``."""
    calls, forward = [], model.decoder.forward

    def spy(inputs_embeds, attention_mask, position_ids, **kwargs):
        calls.append((inputs_embeds.detach(), attention_mask, position_ids))
        return forward(inputs_embeds, attention_mask, position_ids, **kwargs)

    model.decoder.forward = spy
    try:
        with torch.no_grad():
            run()
    finally:
        del model.decoder.forward
    return calls


SETUPS = [("llama", "plain"), ("qwen2", "chat_template"), ("llama2", "chat_template")]


@pytest.mark.parametrize("family,prompt_format", SETUPS)
def test_training_and_decoding_build_the_same_prefix(llms, tmp_path, family, prompt_format):
    model, args = build(tmp_path, llms[family], prompt_format)
    model.eval()
    tok = HarmoniFuseTask.build_tokenizer(args)
    waves = [torch.from_numpy(toy_wave(i, s)) for i, s in enumerate((0.5, 0.3))]
    speech = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    lengths = torch.tensor([len(w) for w in waves])
    ids = [torch.tensor(tok.encode(t)) for t in ASR_TEXTS[:2]]
    batch = dict(speech=speech, speech_lengths=lengths, task_id=torch.zeros(2, 1, dtype=torch.long),
                 text=torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1),
                 text_lengths=torch.tensor([len(i) for i in ids]))
    (train,) = captured_inputs(model, lambda: model(**batch))
    hf = HarmoniFuse(model, args)
    decode = captured_inputs(model, lambda: hf.decode_tensors(speech, lengths, "asr", max_new_tokens=2))
    before, after = model.prompt_frames[0][0]

    def emb(tokens):
        return model.decoder.embed(torch.as_tensor(tokens, dtype=torch.long))

    for i in range(2):
        n_speech = int((train[1][i].sum() - len(before) - len(after) - len(ids[i])))
        n = len(before) + n_speech + len(after)
        row = train[0][i]
        assert torch.equal(row[: len(before)], emb(before))  # BOS (where any) at position 0
        assert torch.equal(row[len(before) + n_speech : n], emb(after))
        assert torch.equal(row[n : n + len(ids[i])], emb(ids[i]))  # then the target
        # decoding: the same prefix, left-padded, at the same positions
        d_embeds, d_mask, d_pos = decode[0]
        assert int(d_mask[i].sum()) == n
        assert torch.equal(d_embeds[i, -n:], row[:n])
        assert d_pos[i, -n:].tolist() == train[2][i, :n].tolist() == list(range(n))
