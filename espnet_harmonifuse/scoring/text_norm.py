"""Text normalisation and tokenisation used for ASR scoring.

The conventions follow ESPnet's ``asr.sh`` scoring stage:

* ``normalize_text`` upper-cases (unless ``keep_case=True``), removes
  punctuation and collapses whitespace.  Punctuation characters (Unicode
  categories ``P*``) are replaced by a space, so ``"well-known"`` becomes
  ``"WELL KNOWN"``.  The only exception is an apostrophe (``'`` or the
  typographic ``’``, both mapped to ``'``) *between two word characters*
  (``"don't"`` -> ``"DON'T"``); leading/trailing quotes are removed.
* Word tokens are the whitespace-separated tokens of the normalised text.
* Character tokens follow ESPnet's CER (``tokenize.py --token_type char
  --space_symbol "<space>"``): every character of the normalised text is one
  token and each word boundary is the token ``"<space>"``, i.e. word
  boundaries are scored as well.
"""

from __future__ import annotations

import re
import unicodedata
from typing import List

SPACE_SYMBOL = "<space>"

_APOSTROPHES = ("\u2019", "\u2018", "\u02bc")
_WS_RE = re.compile(r"\s+")


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def normalize_text(
    text: str, keep_case: bool = False, remove_punct: bool = True
) -> str:
    """Normalise ``text`` for scoring.

    Args:
        text: Raw reference or hypothesis text.
        keep_case: If True the original case is preserved, else upper-case.
        remove_punct: If True, punctuation is removed (apostrophes inside
            words are kept).

    Returns:
        Normalised text; words are separated by single spaces, no leading or
        trailing whitespace.
    """
    for apo in _APOSTROPHES:
        text = text.replace(apo, "'")
    if remove_punct:
        chars = list(text)
        out: List[str] = []
        for i, ch in enumerate(chars):
            if ch == "'":
                prev_ok = i > 0 and chars[i - 1].isalnum()
                next_ok = i + 1 < len(chars) and chars[i + 1].isalnum()
                out.append("'" if prev_ok and next_ok else " ")
            elif _is_punct(ch):
                out.append(" ")
            else:
                out.append(ch)
        text = "".join(out)
    if not keep_case:
        text = text.upper()
    return _WS_RE.sub(" ", text).strip()


def word_tokens(normalized: str) -> List[str]:
    """Split normalised text into word tokens."""
    return normalized.split()


def char_tokens(normalized: str, space_symbol: str = SPACE_SYMBOL) -> List[str]:
    """Split normalised text into ESPnet-style character tokens.

    Each word boundary becomes ``space_symbol`` (default ``"<space>"``), as
    in ESPnet's CER computation.
    """
    tokens: List[str] = []
    for i, word in enumerate(normalized.split()):
        if i > 0:
            tokens.append(space_symbol)
        tokens.extend(list(word))
    return tokens
