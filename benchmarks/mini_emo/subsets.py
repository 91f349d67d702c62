"""Deterministic, stratified subsets of Kaldi data dirs (the benchmark's low-data size).

``stratified_subset`` picks ``round(fraction * N)`` utterances so that every stratum (an emotion
label for SER, a speaker for ASR) keeps its share: each stratum gets ``floor(fraction * size)``
and the leftover picks go to the strata with the largest remainders (ties: stratum name). Within
a stratum the utterances are drawn by a generator seeded with ``(seed, stratum)``, so the subset
depends only on the data, the fraction and the seed (not on file order or Python's hash seed).
"""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Union

import numpy as np

from espnet_harmonifuse.data.kaldi_dir import read_kv, utt2spk_to_spk2utt, write_kv, write_spk2utt

PathLike = Union[str, Path]
# per-utterance files copied (filtered) into a subset dir when present
PER_UTT_FILES = ("wav.scp", "text", "utt2spk", "utt2dur", "utt2num_samples", "transcript")


def allocate(sizes: Mapping[str, int], fraction: float) -> Dict[str, int]:
    """How many items each stratum contributes (largest-remainder rounding of ``fraction * size``).

    The counts add up to ``round(fraction * total)`` (at least 1 when anything exists).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    total = sum(sizes.values())
    target = min(total, max(1, int(math.floor(fraction * total + 0.5)))) if total else 0
    exact = {k: fraction * n for k, n in sizes.items()}
    counts = {k: min(sizes[k], int(math.floor(v))) for k, v in exact.items()}
    order = sorted(sizes, key=lambda k: (-(exact[k] - counts[k]), k))
    i = 0
    while sum(counts.values()) < target:
        k = order[i % len(order)]
        if counts[k] < sizes[k]:
            counts[k] += 1
        i += 1
    return counts


def stratified_subset(strata: Mapping[str, str], fraction: float, seed: int = 0) -> List[str]:
    """Sorted ids of a ``fraction`` subset of ``strata`` (``{uttid: stratum}``), stratified."""
    groups: Dict[str, List[str]] = {}
    for uid, key in strata.items():
        groups.setdefault(key, []).append(uid)
    counts = allocate({k: len(v) for k, v in groups.items()}, fraction)
    chosen: List[str] = []
    for key in sorted(groups):
        ids = sorted(groups[key])
        rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
        chosen += [ids[i] for i in rng.permutation(len(ids))[: counts[key]]]
    return sorted(chosen)


def strata_of(data_dir: PathLike, by: str) -> Dict[str, str]:
    """``{uttid: stratum}``: ``by='label'`` reads ``text`` (SER), ``by='speaker'`` reads ``utt2spk``."""
    d = Path(data_dir)
    if by == "label":
        return {k: v.strip() for k, v in read_kv(d / "text").items()}
    if by == "speaker":
        return dict(read_kv(d / "utt2spk"))
    if by == "none":
        return {k: "all" for k in read_kv(d / "wav.scp")}
    raise ValueError(f"stratify by label, speaker or none, not '{by}'")


def make_subset_dir(src: PathLike, dst: PathLike, fraction: float, by: str, seed: int = 0,
                    extra_meta: Optional[dict] = None) -> List[str]:
    """Write the subset of Kaldi dir ``src`` into ``dst`` (per-utterance files filtered, spk2utt
    rebuilt, ``subset.json`` describing it). Returns the chosen ids."""
    src, dst = Path(src), Path(dst)
    strata = strata_of(src, by)
    ids = stratified_subset(strata, fraction, seed)
    keep = set(ids)
    dst.mkdir(parents=True, exist_ok=True)
    for name in PER_UTT_FILES:
        if (src / name).is_file():
            write_kv(dst / name, [(k, v) for k, v in read_kv(src / name).items() if k in keep])
    if (dst / "utt2spk").is_file():
        write_spk2utt(dst / "spk2utt", utt2spk_to_spk2utt(read_kv(dst / "utt2spk")))
    meta = {
        "source": str(src), "fraction": fraction, "stratified_by": by, "seed": seed,
        "num_utts": len(ids), "num_source_utts": len(strata),
        "per_stratum": dict(sorted(Counter(strata[i] for i in ids).items())),
        "per_stratum_source": dict(sorted(Counter(strata.values()).items())),
    }
    meta.update(extra_meta or {})
    (dst / "subset.json").write_text(json.dumps(meta, indent=2) + "\n")
    return ids
