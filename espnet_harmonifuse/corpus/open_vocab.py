"""Open-vocabulary ASR text for mini_emo: sentences whose test words are partly unseen in training.

The closed ASR grammar (:mod:`mini_emo_text`, 83 words) lets a language model guess most of a
transcript; this text cannot be guessed. Its vocabulary is the 3,000 most frequent English words
(``data/en_words.tsv``, from wordfreq). The 150 most frequent (function words: THE, TO, AND ...)
may occur anywhere; of the others, 30 % (chosen by the corpus seed) are *held out*: they occur
only in dev and test sentences, so a recogniser must spell them from the sound. A sentence is 4-8
words drawn independently with probability proportional to ``frequency ** 0.5`` (flatter than
English, so content words are common), UPPERCASE like the closed grammar. With the default sizes,
about a quarter of the test's word types (and of its running words) are not in the training text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Sequence, Tuple

import numpy as np

WORDS_FILE = Path(__file__).resolve().parent / "data" / "en_words.tsv"
NUM_FUNCTION_WORDS = 150
HELDOUT_FRACTION = 0.3  # with 4,800 training sentences, 26-28 % of the test's word types are unseen (seeds 0-2)
TEMPERATURE = 0.5
LENGTH = (4, 8)


def load_words(path: Path = WORDS_FILE) -> List[Tuple[str, float]]:
    """``(WORD, frequency)`` pairs of the word list, most frequent first."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            word, freq = line.split("\t")
            rows.append((word.upper(), float(freq)))
    return rows


@dataclass(frozen=True)
class OpenVocabulary:
    """The words, the held-out ones, and the sampling probabilities of training and of dev/test."""

    words: Tuple[str, ...]
    heldout: FrozenSet[str]
    train_p: np.ndarray
    eval_p: np.ndarray

    @classmethod
    def build(cls, seed: int, path: Path = WORDS_FILE) -> "OpenVocabulary":
        rows = load_words(path)
        words = tuple(w for w, _ in rows)
        weight = np.array([f for _, f in rows]) ** TEMPERATURE
        content = np.arange(NUM_FUNCTION_WORDS, len(words))
        rng = np.random.default_rng([seed, 7])  # its own stream: the choice is the same at any corpus size
        held = rng.choice(content, size=int(round(HELDOUT_FRACTION * len(content))), replace=False)
        train_w = weight.copy()
        train_w[held] = 0.0
        return cls(words, frozenset(words[i] for i in held), train_w / train_w.sum(), weight / weight.sum())

    def sentence(self, rng: np.random.Generator, split: str) -> str:
        """A sentence of ``split`` (train: no held-out word; dev, test: any word)."""
        n = int(rng.integers(LENGTH[0], LENGTH[1] + 1))
        idx = rng.choice(len(self.words), size=n, p=self.train_p if split == "train" else self.eval_p)
        return " ".join(self.words[i] for i in idx)


def oov_stats(train: Iterable[str], test: Sequence[str]) -> Dict[str, float]:
    """How much of ``test`` (sentences) the words of ``train`` (sentences) do not cover: the share of
    word types and of running words, in percent."""
    seen = {w for s in train for w in s.split()}
    tokens = [w for s in test for w in s.split()]
    types = set(tokens)
    return {
        "types": len(types),
        "oov_types_pct": 100.0 * sum(t not in seen for t in types) / max(len(types), 1),
        "oov_tokens_pct": 100.0 * sum(t not in seen for t in tokens) / max(len(tokens), 1),
    }
