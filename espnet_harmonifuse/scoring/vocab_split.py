"""Error rates of the in-vocabulary and the out-of-vocabulary words of a test set.

A reference word is *in vocabulary* (IV) when the training transcripts contain it, else *out of
vocabulary* (OOV). From the word alignment of each utterance (:func:`asr_metrics.align`):

- ``wer`` of a class: substitutions + deletions of its reference words / its reference words.
  Insertions belong to no reference word, so they count in the overall WER only (hence the two
  classes' errors add up to the overall WER's minus the insertions).
- ``cer`` of a class: the character edit distance between each of its reference words and the
  hypothesis word aligned to it (all its characters for a deletion) / its characters. A word
  recognised with one letter wrong costs one character here, as it would in a spelled-out CER.
"""

from __future__ import annotations

from typing import Dict, Iterable, Sequence, Set

from espnet_harmonifuse.scoring.asr_metrics import ErrorCounts, UttScore, _pct, align
from espnet_harmonifuse.scoring.text_norm import normalize_text, word_tokens

CLASSES = ("iv", "oov")


def vocabulary(texts: Iterable[str], keep_case: bool = False, remove_punct: bool = True) -> Set[str]:
    """The words of ``texts`` (transcripts), normalised as the scoring normalises them."""
    return {w for t in texts for w in word_tokens(normalize_text(t, keep_case, remove_punct))}


def split_rates(utts: Sequence[UttScore], vocab: Set[str]) -> Dict[str, Dict[str, float]]:
    """``{"iv": {...}, "oov": {...}}`` with ``num_words``, ``num_word_err``, ``wer``, ``num_chars``,
    ``num_char_err``, ``cer`` of each class, from word-level :class:`UttScore` s."""
    counts = {c: [0, 0, 0, 0] for c in CLASSES}  # words, word errors, characters, character errors
    for u in utts:
        for op, ref, hyp in u.ops:
            if ref is None:  # an insertion
                continue
            c = counts["iv" if ref in vocab else "oov"]
            c[0] += 1
            c[2] += len(ref)
            if op != "C":
                c[1] += 1
                c[3] += len(ref) if hyp is None else ErrorCounts.from_ops(align(list(ref), list(hyp))).num_err
    return {
        name: {"num_words": w, "num_word_err": we, "wer": _pct(we, w),
               "num_chars": ch, "num_char_err": ce, "cer": _pct(ce, ch)}
        for name, (w, we, ch, ce) in counts.items()
    }
