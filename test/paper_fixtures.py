"""Toy stand-ins for what the paper's recipe (egs2/iemocap_librispeech/harmonifuse1) reads.

- IEMOCAP and LibriSpeech trees in their release layouts and file formats, with espeak-ng speech
  (the mini_emo renderer: emotion prosody for IEMOCAP, neutral prosody for LibriSpeech);
- a tiny random WavLM (WavLM-Large's layout: layer-norm feature encoder, stable layer norm, 50 Hz
  frames) and tiny random instruction LLMs (Qwen2, Llama) with tokenizers shaped like the released
  ones (byte-level BPE; Qwen2.5-Instruct's and Llama-3.2-Instruct's special tokens, BOS/EOS/pad and
  chat templates), saved with ``save_pretrained`` so they load as local checkpoints do.
"""

from pathlib import Path
from typing import Dict, Iterable, List, Sequence

import numpy as np
import soundfile as sf
import yaml

from espnet_harmonifuse.corpus.mini_emo import SAMPLE_RATE, UttSpec, render_waveform
from espnet_harmonifuse.corpus.mini_emo_text import asr_sentence

# IEMOCAP raw categories -> the mini_emo emotion whose prosody renders them ("" for dropped ones)
PROSODY_OF = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad",
              "fru": "neutral", "xxx": "neutral"}
# The turns of a dialog, speakers alternating F, M, F, ...; fru and xxx are dropped by the recipe.
DIALOG_TURNS = {"impro01": ["neu", "hap", "ang", "sad", "fru"], "script01_1": ["exc", "sad", "neu", "ang", "xxx"]}
VOICES = {"F": "en-us+f2", "M": "en-us+m3"}
LIBRISPEECH_SETS = {"train-clean-100": (3, 4), "dev-clean": (2, 2), "test-clean": (2, 2), "test-other": (2, 2)}


def _speech(uttid: str, words: str, voice: str, label: str, seed: Sequence[int]) -> np.ndarray:
    """16 kHz int16 speech of ``words`` (emotion prosody of ``label``; neutral reading for "")."""
    spec = UttSpec(uttid=uttid, part="", index=0, voice=voice, words=words, label=label, wav_path="",
                   seed=tuple(seed))
    return render_waveform(spec)


def make_iemocap(root: Path, sessions: Iterable[int] = (1, 2, 3, 4, 5)) -> Dict[str, str]:
    """IEMOCAP_full_release/Session{N}/{sentences/wav,dialog/EmoEvaluation,dialog/transcriptions};
    returns {uttid: raw category}."""
    truth = {}
    for s in sessions:
        sdir = root / f"Session{s}"
        for d in ("EmoEvaluation", "transcriptions"):
            (sdir / "dialog" / d).mkdir(parents=True, exist_ok=True)
        for name, cats in DIALOG_TURNS.items():
            dialog = f"Ses0{s}{'F' if name.startswith('impro') else 'M'}_{name}"
            wav_dir = sdir / "sentences" / "wav" / dialog
            wav_dir.mkdir(parents=True)
            emo = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            trans = []
            t = 1.0
            for i, cat in enumerate(cats):
                gender = "FM"[i % 2]
                utt = f"{dialog}_{gender}{i // 2:03d}"
                words = asr_sentence(np.random.default_rng([s, i, len(name)]))
                wave = _speech(utt, words, VOICES[gender], PROSODY_OF[cat], (s, i, len(name)))
                sf.write(wav_dir / f"{utt}.wav", wave, SAMPLE_RATE, subtype="PCM_16")
                end = t + len(wave) / SAMPLE_RATE
                emo += [f"[{t:.4f} - {end:.4f}]\t{utt}\t{cat}\t[2.5000, 3.0000, 2.5000]",
                        "C-E1:\tNeutral;\t()", "A-E2:\tval 3; act 2; dom  2;\t()", ""]
                trans.append(f"{utt} [{t:08.4f}-{end:08.4f}]: {words.capitalize()}.")
                truth[utt] = cat
                t = end + 0.5
            (sdir / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(emo) + "\n")
            (sdir / "dialog" / "transcriptions" / f"{dialog}.txt").write_text("\n".join(trans) + "\n")
    return truth


def make_librispeech(root: Path, sets: Dict[str, tuple] = LIBRISPEECH_SETS) -> Dict[str, str]:
    """LibriSpeech/<set>/<spk>/<chapter>/<spk>-<chapter>-<nnnn>.flac + <spk>-<chapter>.trans.txt
    ((speakers, utterances per speaker) per set); returns {uttid: transcript}."""
    truth = {}
    for k, (subset, (n_spk, n_utt)) in enumerate(sets.items()):
        for j in range(n_spk):
            spk, chapter = 100 * (k + 1) + j, 1000 + 10 * k + j
            chap = root / subset / str(spk) / str(chapter)
            chap.mkdir(parents=True)
            lines = []
            for n in range(n_utt):
                utt = f"{spk}-{chapter}-{n:04d}"
                words = asr_sentence(np.random.default_rng([k, j, n, 7]))
                voice = ("en-us+m1", "en+f1", "en-gb-x-rp+m6")[j % 3]
                sf.write(chap / f"{utt}.flac", _speech(utt, words, voice, "", (k, j, n)), SAMPLE_RATE,
                         format="FLAC", subtype="PCM_16")
                lines.append(f"{utt} {words}")
                truth[utt] = words
            (chap / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return truth


def write_db_sh(recipe: Path, iemocap: Path, librispeech: Path) -> None:
    """The recipe's db.sh with both corpus paths set (as a user edits it)."""
    db = recipe / "db.sh"
    text = db.read_text()
    for name, value in (("IEMOCAP", iemocap), ("LIBRISPEECH", librispeech)):
        assert f"\n{name}=\n" in text, f"{db} has no empty '{name}=' line to fill in"
        text = text.replace(f"\n{name}=\n", f"\n{name}={value}\n")
    db.write_text(text)


# ----------------------------------------------------------------------------- tokenizers
QWEN_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)
# per family: the special tokens, the tokenizer_config fields of its instruction model, its chat template
FAMILIES = {
    "qwen2": (["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
              {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, QWEN_CHAT_TEMPLATE),
    "llama": (["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
              {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, LLAMA_CHAT_TEMPLATE),
}


def byte_bpe_tokenizer(texts: Sequence[str], family: str, vocab_size: int = 600):
    """A byte-level BPE trained on ``texts``, with the special tokens, BOS/EOS/pad and chat template
    of ``family`` ("qwen2" or "llama")."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    special, fields, template = FAMILIES[family]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(list(texts), trainer)
    bos = fields.get("bos_token")
    if bos:  # Llama 3 puts <|begin_of_text|> first when asked for special tokens
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tk.token_to_id(bos))])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, **fields)
    tok.chat_template = template
    return tok


# ----------------------------------------------------------------------------- models
def save_tiny_wavlm(path: Path) -> None:
    """A 2-layer WavLM in WavLM-Large's layout with its 320x downsampling (50 frames/s)."""
    import torch
    from transformers import WavLMConfig, WavLMModel

    torch.manual_seed(0)
    cfg = WavLMConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=[32] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, num_buckets=32,
    )
    WavLMModel(cfg).save_pretrained(path)


def save_tiny_llm(path: Path, family: str, texts: Sequence[str]) -> None:
    """A tiny random ``family`` ("qwen2" or "llama") causal LM and its tokenizer in ``path``; the
    embedding has a few rows more than the tokenizer, as the released checkpoints have."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = byte_bpe_tokenizer(texts, family)
    ids = {k.replace("_token", "_token_id"): tok.convert_tokens_to_ids(v) for k, v in FAMILIES[family][1].items()}
    cfg = AutoConfig.for_model(
        family, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=64, max_position_embeddings=2048, vocab_size=len(tok) + 8, tie_word_embeddings=True,
        **ids,
    )
    torch.manual_seed(1 if family == "qwen2" else 2)  # distinct weights, not the same model renumbered
    AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
    tok.save_pretrained(path)


def tokenizer_texts(recipe: Path, corpora_texts: Iterable[str]) -> List[str]:
    """What the tiny tokenizers are trained on: transcripts, the recipe's prompts and labels, and
    the words of the chat templates."""
    conf = yaml.safe_load((recipe / "conf" / "train.yaml").read_text())
    texts = list(corpora_texts)
    for task in conf["tasks"]:
        texts += list(task["prompts"]) + list(task.get("labels", []))
    return texts + ["system user assistant", "You are a helpful assistant."]


def write_override(path: Path, base: str, wavlm: Path, llm: Path) -> Path:
    """An override of ``base`` (relative to ``path``) with the checkpoints and the sizes set to toy
    ones: the models are local dirs, the trainable parts small, batches and epochs few."""
    path.write_text(yaml.safe_dump({
        "base_config": base,
        "backbone_conf": {"model_name_or_path": str(wavlm)},
        "decoder_conf": {"model_name_or_path": str(llm)},
        "fusion_conf": {"hidden_size": 16},
        "gate_conf": {"prompt_proj_size": 8},
        "projector_conf": {"hidden_size": 64},
        "batch_bins": 400000,
        "valid_batch_bins": 800000,
        "max_epoch": 2,
    }, sort_keys=False))
    return path
