"""Speech-emotion-recognition scoring: confusion matrix, UA, WA, macro-F1.

Definitions (all rates are percentages):

* ``wa`` (weighted accuracy) = overall accuracy = correct / #utterances.
* ``ua`` (unweighted accuracy) = mean per-class recall over the classes that
  occur in the reference.
* ``macro_f1`` = mean per-class F1 over the label-set classes that occur in
  the reference or in the hypothesis (sklearn's default class set).
  A class with no prediction has precision 0; with no reference, recall 0.

Labels are compared after :func:`canonical_label` (strip, lower-case, drop
surrounding ``<...>``).  A hypothesis outside the label set, or a missing
hypothesis, is an error and is counted in an extra ``"<other>"`` column of
the confusion matrix (the column only exists when such cases occur).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

OTHER_LABEL = "<other>"


def canonical_label(label: Optional[str]) -> str:
    """Canonical form of an emotion label (``" <Happy> "`` -> ``"happy"``)."""
    if label is None:
        return ""
    lab = label.strip().lower()
    if len(lab) > 2 and lab.startswith("<") and lab.endswith(">"):
        lab = lab[1:-1].strip()
    return lab


@dataclass
class SerScores:
    """Result of :func:`score_ser`."""

    labels: List[str]
    columns: List[str]
    confusion: np.ndarray  # (len(labels), len(columns)), rows = reference
    num_out_of_set: int

    @property
    def num_utts(self) -> int:
        return int(self.confusion.sum())

    def per_class(self) -> Dict[str, Dict[str, float]]:
        """Precision, recall, F1 (percent) and support of every label."""
        out: Dict[str, Dict[str, float]] = {}
        for k, lab in enumerate(self.labels):
            tp = float(self.confusion[k, k])
            support = float(self.confusion[k].sum())
            predicted = float(self.confusion[:, k].sum())
            p = tp / predicted if predicted > 0 else 0.0
            r = tp / support if support > 0 else 0.0
            f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
            out[lab] = {
                "precision": 100.0 * p,
                "recall": 100.0 * r,
                "f1": 100.0 * f1,
                "support": int(support),
                "num_predicted": int(predicted),
            }
        return out

    @property
    def wa(self) -> float:
        n = self.num_utts
        diag = float(np.trace(self.confusion[:, : len(self.labels)]))
        return 100.0 * diag / n if n else 0.0

    @property
    def ua(self) -> float:
        recalls = [
            v["recall"] for v in self.per_class().values() if v["support"] > 0
        ]
        return float(np.mean(recalls)) if recalls else 0.0

    @property
    def macro_f1(self) -> float:
        f1s = [
            v["f1"]
            for v in self.per_class().values()
            if v["support"] > 0 or v["num_predicted"] > 0
        ]
        return float(np.mean(f1s)) if f1s else 0.0

    def to_dict(self) -> Dict[str, object]:
        """JSON-serialisable summary (without file/bookkeeping fields)."""
        return {
            "kind": "ser",
            "num_utts": self.num_utts,
            "ua": self.ua,
            "wa": self.wa,
            "macro_f1": self.macro_f1,
            "labels": list(self.labels),
            "confusion_columns": list(self.columns),
            "confusion": self.confusion.astype(int).tolist(),
            "num_out_of_set": self.num_out_of_set,
            "per_class": self.per_class(),
        }


def score_ser(
    pairs: Sequence[Tuple[str, str, Optional[str]]], labels: Sequence[str]
) -> SerScores:
    """Score ``(uttid, ref_label, hyp_label)`` triples.

    ``hyp_label`` None means a missing hypothesis (counted in ``<other>``).

    Raises:
        ValueError: If ``labels`` is empty/duplicated or a reference label
            is not in ``labels``.
    """
    labs = [canonical_label(x) for x in labels]
    if not labs or len(set(labs)) != len(labs) or "" in labs:
        raise ValueError(f"Invalid label list: {list(labels)}")
    index = {lab: i for i, lab in enumerate(labs)}
    conf = np.zeros((len(labs), len(labs) + 1), dtype=np.int64)
    n_other = 0
    for uttid, ref, hyp in pairs:
        r = canonical_label(ref)
        if r not in index:
            raise ValueError(
                f"Reference label {ref!r} of utterance {uttid} is not in the "
                f"label list {labs}"
            )
        h = index.get(canonical_label(hyp), len(labs))
        n_other += int(h == len(labs))
        conf[index[r], h] += 1
    columns = labs + [OTHER_LABEL]
    if n_other == 0:
        conf, columns = conf[:, :-1], labs
    return SerScores(labs, list(columns), conf, n_other)
