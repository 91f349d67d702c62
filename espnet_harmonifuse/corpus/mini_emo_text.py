"""Sentence grammars of the mini_emo corpus.

Two grammars with disjoint purposes:

* :func:`asr_sentence`: a closed-vocabulary grammar (:data:`ASR_VOCAB`, 83
  words) of 3-7 word sentences about coloured objects, animals, numbers and
  people ("THE RED DOG SEES A SMALL BIRD", "GIVE ME FOUR BOOKS").
* :func:`ser_sentence`: an emotionally neutral clause ("MY BROTHER CALLED ME
  THIS MORNING", "THE TRAIN LEFT AT NINE"), optionally combined with an
  emotion-bearing phrase consistent with the label ("I AM SO HAPPY ...",
  "... AND I AM FURIOUS").

All sentences are UPPERCASE words without punctuation (LibriSpeech style).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Set, Tuple

import numpy as np

EMOTIONS: Tuple[str, ...] = ("neutral", "happy", "angry", "sad")

# ----------------------------------------------------------------- ASR grammar
COLOURS = ["RED", "BLUE", "GREEN", "BLACK", "WHITE", "YELLOW", "BROWN", "PINK"]
SIZES = ["BIG", "SMALL", "OLD", "YOUNG"]
ADJECTIVES = COLOURS + SIZES
NOUNS = {
    "DOG": "DOGS", "CAT": "CATS", "BIRD": "BIRDS", "HORSE": "HORSES",
    "COW": "COWS", "BALL": "BALLS", "CAR": "CARS", "BOAT": "BOATS",
    "CUP": "CUPS", "BOOK": "BOOKS", "HAT": "HATS", "BOX": "BOXES",
}
NUMBERS = ["TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE", "TEN"]
NAMES = ["JOHN", "MARY", "ANNA", "PETER", "LUCY", "DAVID"]
VERBS = {  # plural form -> third person singular
    "SEE": "SEES", "LIKE": "LIKES", "FIND": "FINDS", "WANT": "WANTS",
    "HAVE": "HAS", "PUSH": "PUSHES", "BRING": "BRINGS", "MOVE": "MOVES",
}
PREPOSITIONS = ["ON", "UNDER", "NEAR", "BEHIND", "IN", "BESIDE"]
FUNCTION_WORDS = ["THE", "A", "IS", "ARE", "WHERE", "PUT", "AND", "GIVE", "ME", "NOT"]


def _c(rng: np.random.Generator, items: Sequence[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _n(rng: np.random.Generator) -> str:
    return _c(rng, list(NOUNS))


def _adj(rng: np.random.Generator) -> str:
    return _c(rng, ADJECTIVES)


def _pl(rng: np.random.Generator) -> str:
    return NOUNS[_n(rng)]


def _v3(rng: np.random.Generator) -> str:
    return VERBS[_c(rng, list(VERBS))]


_ASR_TEMPLATES: List[Callable[[np.random.Generator], List[str]]] = [
    lambda r: ["THE", _adj(r), _n(r), _v3(r), "A", _adj(r), _n(r)],
    lambda r: ["THE", _n(r), _v3(r), "THE", _adj(r), _n(r)],
    lambda r: [_c(r, NAMES), _v3(r), _c(r, NUMBERS), _adj(r), _pl(r)],
    lambda r: [_c(r, NUMBERS), _pl(r), "ARE", _c(r, PREPOSITIONS), "THE", _n(r)],
    lambda r: ["THE", _adj(r), _n(r), "IS", _c(r, PREPOSITIONS), "THE", _n(r)],
    lambda r: ["WHERE", "IS", "THE", _adj(r), _n(r)],
    lambda r: ["WHERE", "ARE", "THE", _c(r, NUMBERS), _pl(r)],
    lambda r: [*_two_names(r), _c(r, list(VERBS)), "THE", _c(r, COLOURS), _n(r)],
    lambda r: ["PUT", "THE", _n(r), _c(r, PREPOSITIONS), "THE", _c(r, SIZES), _n(r)],
    lambda r: [_c(r, NAMES), _v3(r), "A", _adj(r), _n(r)],
    lambda r: ["THE", _pl(r), "ARE", _c(r, COLOURS)],
    lambda r: [_c(r, NUMBERS), _c(r, COLOURS), _pl(r)],
    lambda r: ["GIVE", "ME", _c(r, NUMBERS), _pl(r)],
    lambda r: [_c(r, NAMES), "IS", "NOT", _c(r, PREPOSITIONS), "THE", _n(r)],
]


def _two_names(rng: np.random.Generator) -> List[str]:
    a, b = rng.choice(len(NAMES), size=2, replace=False)
    return [NAMES[int(a)], "AND", NAMES[int(b)]]


ASR_VOCAB: List[str] = sorted(
    set(ADJECTIVES + list(NOUNS) + list(NOUNS.values()) + NUMBERS + NAMES
        + list(VERBS) + list(VERBS.values()) + PREPOSITIONS + FUNCTION_WORDS)
)


def asr_sentence(rng: np.random.Generator) -> str:
    """A random sentence of the closed-vocabulary ASR grammar (3-7 words)."""
    return " ".join(_ASR_TEMPLATES[int(rng.integers(len(_ASR_TEMPLATES)))](rng))


# ----------------------------------------------------------------- SER grammar
PERSONS = ["MY BROTHER", "MY MOTHER", "OUR TEACHER", "HER FRIEND", "HIS COUSIN",
           "THE DOCTOR", "THE NEIGHBOUR", "MY UNCLE", "THE MANAGER", "YOUR SISTER"]
PLACES = ["KITCHEN", "STATION", "OFFICE", "GARDEN", "MARKET", "LIBRARY",
          "HOSPITAL", "BANK", "SCHOOL", "POST OFFICE"]
PAST = ["YESTERDAY", "THIS MORNING", "LAST NIGHT", "LAST WEEK", "ON MONDAY",
        "ON TUESDAY", "ON FRIDAY", "AT NOON", "AT NINE", "AN HOUR AGO"]
FUTURE = ["TOMORROW", "TONIGHT", "NEXT WEEK", "THIS EVENING", "ON MONDAY",
          "ON WEDNESDAY", "ON SUNDAY", "AT NOON", "AT SIX", "SOON"]
PRESENT = ["TODAY", "RIGHT NOW", "THIS WEEK", "ALL DAY", "AGAIN"]
TIMES = {"past": PAST, "future": FUTURE, "present": PRESENT}
VEHICLES = ["THE TRAIN", "THE BUS", "THE TAXI", "THE FERRY", "THE PLANE", "THE VAN"]
VEHICLE_VERBS = [("ARRIVED", "past"), ("LEFT", "past"), ("STOPPED HERE", "past"),
                 ("WILL LEAVE", "future"), ("WILL ARRIVE", "future"),
                 ("IS LATE", "present")]
PERSON_VERBS = [("CALLED ME", "past"), ("CAME HOME", "past"), ("WROTE TO US", "past"),
                ("WENT TO THE {P}", "past"), ("LEFT THE {P}", "past"),
                ("WAS AT THE {P}", "past"), ("WILL GO TO THE {P}", "future"),
                ("WILL VISIT US", "future"), ("IS AT THE {P}", "present"),
                ("WORKS AT THE {P}", "present")]

# Emotion-bearing phrases, consistent with the label: used as a prefix
# ("<phrase> <clause>") or as a suffix ("<clause> AND <phrase>").
EMOTION_PREFIXES: Dict[str, List[str]] = {
    "neutral": ["AS EXPECTED", "FOR YOUR INFORMATION", "JUST SO YOU KNOW",
                "AS USUAL", "AS PLANNED"],
    "happy": ["I AM SO HAPPY", "WHAT WONDERFUL NEWS", "I AM DELIGHTED",
              "HOW LOVELY", "THIS IS GREAT"],
    "angry": ["I AM SO ANGRY", "THIS IS OUTRAGEOUS", "I AM FURIOUS",
              "THIS IS RIDICULOUS", "I HATE THAT"],
    "sad": ["I AM SO SAD", "SADLY", "IT BREAKS MY HEART", "I FEEL SO LONELY",
            "WHAT A TERRIBLE LOSS"],
}
EMOTION_SUFFIXES: Dict[str, List[str]] = {
    "neutral": ["AND THAT IS ALL", "AND NOTHING ELSE CHANGED"],
    "happy": ["AND I LOVE IT", "AND THAT IS WONDERFUL"],
    "angry": ["AND I AM FURIOUS", "AND THAT MAKES ME MAD"],
    "sad": ["AND I FEEL SO SAD", "AND I CANNOT STOP CRYING"],
}


def neutral_clause(rng: np.random.Generator) -> str:
    """An emotionally neutral statement (no emotion-bearing word)."""
    kind = int(rng.integers(8))
    if kind < 5:
        verb, tense = PERSON_VERBS[int(rng.integers(len(PERSON_VERBS)))]
        verb = verb.replace("{P}", _c(rng, PLACES))
        return f"{_c(rng, PERSONS)} {verb} {_c(rng, TIMES[tense])}"
    if kind < 7:
        verb, tense = VEHICLE_VERBS[int(rng.integers(len(VEHICLE_VERBS)))]
        return f"{_c(rng, VEHICLES)} {verb} {_c(rng, TIMES[tense])}"
    return f"WE WILL MEET AT THE {_c(rng, PLACES)} {_c(rng, FUTURE)}"


def ser_sentence(rng: np.random.Generator, emotion: str, with_word: bool) -> str:
    """A SER sentence; with an emotion phrase for ``emotion`` if ``with_word``."""
    clause = neutral_clause(rng)
    if not with_word:
        return clause
    if rng.random() < 0.7:
        return f"{_c(rng, EMOTION_PREFIXES[emotion])} {clause}"
    return f"{clause} {_c(rng, EMOTION_SUFFIXES[emotion])}"


def unique_sentences(
    make: Callable[[], str], n: int, taken: Set[str], max_tries: int = 200
) -> List[str]:
    """Draw ``n`` sentences with ``make`` that are not in ``taken`` (updated).

    Raises:
        RuntimeError: if the grammar cannot provide enough unseen sentences.
    """
    out: List[str] = []
    for _ in range(n):
        for _ in range(max_tries):
            s = make()
            if s not in taken:
                break
        else:
            raise RuntimeError(
                f"grammar exhausted after {len(out)} new sentences "
                f"({len(taken)} taken); ask for fewer utterances"
            )
        taken.add(s)
        out.append(s)
    return out
