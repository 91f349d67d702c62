"""ASR scoring: Levenshtein alignment, WER/CER and sclite-style reports.

The alignment is a plain (unit-cost) Levenshtein alignment, so the number of
errors is the edit distance.  Among equal-cost alignments the backtrace
prefers match/substitution, then deletion, then insertion.

All rates (``wer``, ``cer``, ``corr``, ``sub`` ...) are percentages, as in
ESPnet's RESULTS.md; the raw counts are kept next to them (``num_*``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from espnet_harmonifuse.scoring.text_norm import (
    char_tokens,
    normalize_text,
    word_tokens,
)

# (op, ref_token, hyp_token) with op in {"C", "S", "D", "I"}.
AlignOp = Tuple[str, Optional[str], Optional[str]]


def align(ref: Sequence[str], hyp: Sequence[str]) -> List[AlignOp]:
    """Align two token sequences with minimum edit distance.

    Returns:
        The op sequence: ``("C", r, h)`` correct, ``("S", r, h)``
        substitution, ``("D", r, None)`` deletion, ``("I", None, h)``
        insertion, in left-to-right order.
    """
    n, m = len(ref), len(hyp)
    # dist[i][j]: edit distance between ref[:i] and hyp[:j]
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        dist[i][0] = i
    for j in range(1, m + 1):
        dist[0][j] = j
    for i in range(1, n + 1):
        row, prev = dist[i], dist[i - 1]
        r = ref[i - 1]
        for j in range(1, m + 1):
            diag = prev[j - 1] + (0 if r == hyp[j - 1] else 1)
            row[j] = min(diag, prev[j] + 1, row[j - 1] + 1)
    ops: List[AlignOp] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0:
            same = ref[i - 1] == hyp[j - 1]
            if dist[i][j] == dist[i - 1][j - 1] + (0 if same else 1):
                ops.append(("C" if same else "S", ref[i - 1], hyp[j - 1]))
                i, j = i - 1, j - 1
                continue
        if i > 0 and dist[i][j] == dist[i - 1][j] + 1:
            ops.append(("D", ref[i - 1], None))
            i -= 1
        else:
            ops.append(("I", None, hyp[j - 1]))
            j -= 1
    ops.reverse()
    return ops


@dataclass
class ErrorCounts:
    """Correct / substitution / deletion / insertion counts."""

    corr: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0

    @classmethod
    def from_ops(cls, ops: Iterable[AlignOp]) -> "ErrorCounts":
        c = cls()
        for op, _, _ in ops:
            if op == "C":
                c.corr += 1
            elif op == "S":
                c.sub += 1
            elif op == "D":
                c.dele += 1
            else:
                c.ins += 1
        return c

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        return ErrorCounts(
            self.corr + other.corr,
            self.sub + other.sub,
            self.dele + other.dele,
            self.ins + other.ins,
        )

    @property
    def num_ref(self) -> int:
        """Number of reference tokens."""
        return self.corr + self.sub + self.dele

    @property
    def num_err(self) -> int:
        return self.sub + self.dele + self.ins


@dataclass
class UttScore:
    """Alignment and counts of one utterance."""

    uttid: str
    ref: List[str]
    hyp: List[str]
    ops: List[AlignOp]
    counts: ErrorCounts = field(default_factory=ErrorCounts)
    missing_hyp: bool = False


def _pct(x: int, n: int) -> float:
    """100 * x / n; with n == 0, 0.0 when x == 0 else 100.0."""
    if n == 0:
        return 0.0 if x == 0 else 100.0
    return 100.0 * x / n


def score_pairs(
    pairs: Iterable[Tuple[str, str, Optional[str]]],
    unit: str = "word",
    keep_case: bool = False,
    remove_punct: bool = True,
) -> List[UttScore]:
    """Normalise, tokenise and align ``(uttid, ref, hyp)`` triples.

    A ``hyp`` of None (missing hypothesis) is scored as an empty hypothesis,
    i.e. all deletions.

    Args:
        unit: ``"word"`` or ``"char"`` (ESPnet CER with ``<space>`` tokens).
    """
    if unit not in ("word", "char"):
        raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")
    tok = word_tokens if unit == "word" else char_tokens
    out: List[UttScore] = []
    for uttid, ref, hyp in pairs:
        r = tok(normalize_text(ref, keep_case, remove_punct))
        h = tok(normalize_text(hyp or "", keep_case, remove_punct))
        ops = align(r, h)
        out.append(
            UttScore(uttid, r, h, ops, ErrorCounts.from_ops(ops), hyp is None)
        )
    return out


def summarize(utts: Sequence[UttScore]) -> Dict[str, float]:
    """Corpus-level counts and percentages (ESPnet RESULTS.md columns)."""
    total = ErrorCounts()
    snt_err = 0
    for u in utts:
        total = total + u.counts
        snt_err += int(u.counts.num_err > 0)
    n = total.num_ref
    return {
        "num_snt": len(utts),
        "num_ref_tokens": n,
        "num_corr": total.corr,
        "num_sub": total.sub,
        "num_del": total.dele,
        "num_ins": total.ins,
        "num_err": total.num_err,
        "num_snt_err": snt_err,
        "corr": _pct(total.corr, n),
        "sub": _pct(total.sub, n),
        "del": _pct(total.dele, n),
        "ins": _pct(total.ins, n),
        "err": _pct(total.num_err, n),
        "s_err": _pct(snt_err, len(utts)),
    }


def format_alignment(u: UttScore) -> List[str]:
    """sclite-style lines for one utterance (correct: lower, errors: upper)."""
    refs, hyps, evals = [], [], []
    for op, r, h in u.ops:
        width = max(len(r or ""), len(h or ""))
        if op == "C":
            r_s, h_s = r.lower(), h.lower()  # type: ignore[union-attr]
        else:
            r_s = r.upper() if r is not None else "*" * width
            h_s = h.upper() if h is not None else "*" * width
        refs.append(r_s.ljust(width))
        hyps.append(h_s.ljust(width))
        evals.append(("" if op == "C" else op).ljust(width))
    c = u.counts
    return [
        f"id: ({u.uttid})",
        f"Scores: (#C #S #D #I) {c.corr} {c.sub} {c.dele} {c.ins}",
        ("REF:  " + " ".join(refs)).rstrip(),
        ("HYP:  " + " ".join(hyps)).rstrip(),
        ("Eval: " + " ".join(evals)).rstrip(),
        "",
    ]


def _summary_row(name: str, s: Dict[str, float], w: int) -> str:
    return (
        f"| {name:<{w}} | {s['num_snt']:>5} {s['num_ref_tokens']:>6} |"
        f" {s['corr']:5.1f} {s['sub']:6.1f} {s['del']:6.1f} {s['ins']:6.1f}"
        f" {s['err']:6.1f} {s['s_err']:6.1f} |"
    )


def format_summary(
    utts: Sequence[UttScore],
    title: str = "hyp",
    utt2spk: Optional[Dict[str, str]] = None,
) -> List[str]:
    """sclite-style ``SYSTEM SUMMARY PERCENTAGES by SPEAKER`` block.

    One row per speaker when ``utt2spk`` is given, then the ``Sum/Avg`` row.
    """
    rows: List[Tuple[str, Dict[str, float]]] = []
    if utt2spk:
        by_spk: Dict[str, List[UttScore]] = {}
        for u in utts:
            by_spk.setdefault(utt2spk.get(u.uttid, u.uttid), []).append(u)
        rows = [(spk, summarize(us)) for spk, us in sorted(by_spk.items())]
    w = max([7] + [len(name) for name, _ in rows])
    header = (
        f"| {'SPKR':<{w}} | {'# Snt':>5} {'# Wrd':>6} |"
        f" {'Corr':>5} {'Sub':>6} {'Del':>6} {'Ins':>6} {'Err':>6}"
        f" {'S.Err':>6} |"
    )
    inner = len(header) - 2
    bar1, bar2 = w + 2, 14
    bar3 = inner - bar1 - bar2 - 2
    sep = "|" + "-" * bar1 + "+" + "-" * bar2 + "+" + "-" * bar3 + "|"
    lines = [
        "SYSTEM SUMMARY PERCENTAGES by SPEAKER".center(inner + 2).rstrip(),
        "",
        "," + "-" * inner + ".",
        "|" + title.center(inner) + "|",
        "|" + "-" * inner + "|",
        header,
        sep,
    ]
    for name, s in rows:
        lines.append(_summary_row(name, s, w))
        lines.append(sep)
    lines.append("|" + "=" * inner + "|")
    lines.append(_summary_row("Sum/Avg", summarize(utts), w))
    lines.append("`" + "-" * inner + "'")
    return lines


def write_result_txt(
    path: str,
    utts: Sequence[UttScore],
    title: str = "hyp",
    utt2spk: Optional[Dict[str, str]] = None,
) -> None:
    """Write the per-utterance alignments followed by the summary block."""
    lines: List[str] = []
    for u in utts:
        lines.extend(format_alignment(u))
    lines.extend(format_summary(utts, title, utt2spk))
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
