#!/usr/bin/env python3
"""Write espnet_harmonifuse/corpus/data/en_words.tsv: the vocabulary of mini_emo's open ASR text.

The list is the most frequent English words of wordfreq (https://github.com/rspeer/wordfreq; its
word lists are CC BY-SA 4.0), kept when they are plain lower-case letters with a vowel (no
numbers, contractions or letter-only abbreviations) and not on a short list of profanities and
slurs, with each word's frequency. mini_emo reads the file; this script only regenerates it:

    pip install wordfreq && python tools/make_word_list.py [--size 3000]
"""

import argparse
import re
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "espnet_harmonifuse" / "corpus" / "data" / "en_words.tsv"
# left out: profanities, slurs and sexual terms (a synthetic corpus has no need for them)
BLOCKED = set("""
anal anus arse ass asshole bastard bitch bitches blowjob bollocks boob boobs butt cock crap cum
cunt damn dick dildo dyke fag faggot fuck fucked fucker fucking fuckin goddamn hell homo horny
jerk kike motherfucker nigga nigger nude nudes penis piss porn porno pussy rape raped rapist retard
retarded sex sexual sexy shit shitty slut sluts tits twat vagina whore wtf lmao lol omg
""".split())
WORD = re.compile(r"[a-z]+")


def keep(word: str) -> bool:
    if not WORD.fullmatch(word) or word in BLOCKED:
        return False
    if len(word) == 1:
        return word in ("a", "i")
    return re.search(r"[aeiouy]", word) is not None


def main() -> None:
    import wordfreq

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=3000, help="number of words")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args()
    words = [w for w in wordfreq.top_n_list("en", 4 * args.size) if keep(w)][: args.size]
    if len(words) < args.size:
        raise SystemExit(f"wordfreq gave only {len(words)} words")
    lines = [f"{w}\t{wordfreq.word_frequency(w, 'en'):.4e}" for w in words]
    from importlib.metadata import version

    header = (f"# the {args.size} most frequent English words of wordfreq {version('wordfreq')} (CC BY-SA 4.0,"
              " https://github.com/rspeer/wordfreq), filtered by tools/make_word_list.py; word<TAB>frequency\n")
    Path(args.out).write_text(header + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(words)} words")


if __name__ == "__main__":
    main()
