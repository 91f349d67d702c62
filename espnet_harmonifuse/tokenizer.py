"""Tokenizers for the LLM: the HF LLM's own, or a sentencepiece model for a from-scratch LLM."""

from abc import ABC, abstractmethod
from pathlib import Path
from typing import List, Optional


class AbsTokenizer(ABC):
    eos_id: int
    pad_id: int
    bos_id: Optional[int]

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

    def encode(self, text: str) -> List[int]:
        return self.tok.encode(text, add_special_tokens=False)

    def decode(self, ids: List[int]) -> str:
        return self.tok.decode([i for i in ids if i != self.eos_id], skip_special_tokens=True)

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
