"""Tokenizers for the LLM: the HF LLM's own, or a sentencepiece model for a from-scratch LLM."""

from abc import ABC, abstractmethod
from pathlib import Path
from typing import List, Optional, Tuple

# What a chat template is rendered with: a fixed date for templates that print the day (Llama 3.x;
# the template's own fallback), so that training and decoding build the same tokens on any day.
CHAT_TEMPLATE_KWARGS = {"date_string": "26 Jul 2024"}
ANSWER_MARKER = "HARMONIFUSE_ANSWER"


class AbsTokenizer(ABC):
    eos_id: int
    pad_id: int
    bos_id: Optional[int]
    # The BOS that the LLM input starts with: ``[bos_id]`` where the tokenizer itself puts it before a
    # text (Llama), ``[]`` where it does not (Qwen2, GPT-2, the sentencepiece model of a from-scratch LM).
    bos_prefix: List[int] = []

    @abstractmethod
    def encode(self, text: str) -> List[int]: ...

    @abstractmethod
    def decode(self, ids: List[int]) -> str: ...

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    def check_round_trip(self, text: str, where: str) -> None:
        back = self.decode(self.encode(text))
        if back.strip() != text.strip():
            raise ValueError(
                f"{where}: '{text}' does not survive tokenization (decodes to '{back}'). "
                "Retrain the sentencepiece model with the prompts and labels included "
                "(recipe stage 4, espnet_harmonifuse.bin.tokenizer_train) or change the text."
            )

    def chat_split(self, prompt: str) -> Tuple[str, str]:
        """The chat template's rendering of a user turn holding ``prompt``, split after the prompt:
        ``(text up to and with the prompt, rest up to and with the assistant header)``."""
        raise ValueError(
            "prompt_format chat_template needs the LLM's own tokenizer (token_type hf) with a chat "
            "template; a sentencepiece model has none. Fix: set prompt_format: plain"
        )

    def end_of_turn_id(self) -> int:
        """The token that the chat template writes after an assistant message (EOS without one)."""
        return self.eos_id


class SentencePieceTokenizer(AbsTokenizer):
    """A sentencepiece model trained by ``espnet_harmonifuse.bin.tokenizer_train``."""

    def __init__(self, bpemodel: str):
        import sentencepiece as spm

        if not Path(bpemodel).is_file():
            raise FileNotFoundError(
                f"sentencepiece model '{bpemodel}' does not exist; train it with recipe stage 4 "
                "(python -m espnet_harmonifuse.bin.tokenizer_train) or fix --bpemodel"
            )
        self.sp = spm.SentencePieceProcessor(model_file=str(bpemodel))
        self.eos_id = self.sp.eos_id()
        self.pad_id = self.sp.pad_id() if self.sp.pad_id() >= 0 else self.eos_id
        self.bos_id = self.sp.bos_id() if self.sp.bos_id() >= 0 else None
        if self.eos_id < 0:
            raise ValueError(f"sentencepiece model '{bpemodel}' has no EOS piece; retrain it with eos_id set")

    def encode(self, text: str) -> List[int]:
        return self.sp.encode(text)

    def decode(self, ids: List[int]) -> str:
        return self.sp.decode([i for i in ids if i != self.eos_id and i != self.pad_id])

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()


class HFTokenizer(AbsTokenizer):
    """The Hugging Face LLM's own tokenizer (hub name or local directory)."""

    def __init__(self, name_or_path: str):
        from espnet_harmonifuse.utils.hf import load_hf_tokenizer

        self.tok = load_hf_tokenizer(name_or_path, "tokenizer_name_or_path")
        self.eos_id = self.tok.eos_token_id
        if self.eos_id is None:
            raise ValueError(f"tokenizer '{name_or_path}' has no eos_token; set one and save it again")
        self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.eos_id
        self.bos_id = self.tok.bos_token_id
        self.name = name_or_path
        with_special = self.tok.encode("a", add_special_tokens=True)
        if self.bos_id is not None and with_special[:1] == [self.bos_id] != self.encode("a")[:1]:
            self.bos_prefix = [self.bos_id]

    def encode(self, text: str) -> List[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def decode(self, ids: List[int]) -> str:
        return self.tok.decode([i for i in ids if i != self.eos_id], skip_special_tokens=True)

    def _render(self, messages: List[dict], add_generation_prompt: bool) -> str:
        if not getattr(self.tok, "chat_template", None):
            raise ValueError(
                f"prompt_format chat_template: the tokenizer '{self.name}' has no chat template (a base "
                "model's tokenizer). Fix: set prompt_format: plain, or use an instruction model's tokenizer"
            )
        return self.tok.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, **CHAT_TEMPLATE_KWARGS
        )

    def chat_split(self, prompt: str) -> Tuple[str, str]:
        text = self._render([{"role": "user", "content": prompt}], add_generation_prompt=True)
        end = text.rfind(prompt)
        if end < 0:
            raise ValueError(
                f"prompt_format chat_template: the chat template of '{self.name}' does not keep the prompt "
                f"'{prompt}' as it is, so there is no place for the speech after it. Fix: set prompt_format: plain"
            )
        end += len(prompt)
        return text[:end], text[end:]

    def end_of_turn_id(self) -> int:
        messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": ANSWER_MARKER}]
        text = self._render(messages, add_generation_prompt=False)
        rest = self.encode(text[text.rfind(ANSWER_MARKER) + len(ANSWER_MARKER) :])
        special = set(self.tok.all_special_ids) | {i for i, t in self.tok.added_tokens_decoder.items() if t.special}
        return rest[0] if rest and rest[0] in special else self.eos_id

    @property
    def vocab_size(self) -> int:
        return len(self.tok)


def build_tokenizer(token_type: str, bpemodel: Optional[str], name_or_path: Optional[str]) -> AbsTokenizer:
    if token_type == "sentencepiece":
        if not bpemodel:
            raise ValueError("token_type sentencepiece needs --bpemodel (the recipe's data/token/bpe.model)")
        return SentencePieceTokenizer(bpemodel)
    if token_type == "hf":
        if not name_or_path:
            raise ValueError(
                "token_type hf needs --tokenizer_name_or_path or decoder_conf.model_name_or_path"
            )
        return HFTokenizer(name_or_path)
    raise ValueError(f"token_type must be sentencepiece or hf, not '{token_type}'")


# ----------------------------------------------------------------------------- prompt layout
PROMPT_FORMATS = ("plain", "chat_template")
PromptFrame = Tuple[List[int], List[int]]  # the LLM input tokens (before, after) the speech


def prompt_frame(tokenizer: AbsTokenizer, prompt: str, prompt_format: str) -> PromptFrame:
    """Where a prompt puts the speech: the LLM reads ``[before ; speech ; after ; target]``.

    ``plain``: ``before`` is the prompt text, ``after`` is empty. ``chat_template``: the LLM's chat
    template renders one user turn with the prompt as its content and the assistant header after it;
    the speech goes right after the prompt text, inside the user turn, so ``before`` is the template's
    opening (system turn, user header) and the prompt, ``after`` the end of the user turn and the
    assistant header. Either way the sequence starts with the tokenizer's BOS where it has one
    (``bos_prefix``), once: a template that writes the BOS itself keeps it.
    """
    if prompt_format == "plain":
        before, after = tokenizer.encode(prompt), []
    elif prompt_format == "chat_template":
        head, tail = tokenizer.chat_split(prompt)
        before, after = tokenizer.encode(head), tokenizer.encode(tail)
    else:
        raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, not '{prompt_format}'")
    bos = list(tokenizer.bos_prefix)
    if bos and before[: len(bos)] != bos:
        before = bos + before
    return before, after


def build_prompt_frames(
    tokenizer: AbsTokenizer, prompts: List[List[str]], prompt_format: str
) -> List[List[PromptFrame]]:
    """:func:`prompt_frame` of each task's prompt paraphrases."""
    return [[prompt_frame(tokenizer, p, prompt_format) for p in options] for options in prompts]


def target_eos(tokenizer: AbsTokenizer, prompt_format: str) -> int:
    """The token every target ends with, and decoding stops on: the tokenizer's EOS (``plain``), or
    what the chat template writes after an assistant message (``chat_template``: Qwen's
    ``<|im_end|>``, Llama 3's ``<|eot_id|>``; the EOS of the instruction models' tokenizers)."""
    return tokenizer.end_of_turn_id() if prompt_format == "chat_template" else tokenizer.eos_id
