"""File-level scoring: read Kaldi ``text`` files, write reports and JSON.

``score_asr_files`` writes ``result.txt`` (word alignment), ``result_char.txt``
(ESPnet-style character alignment with ``<space>`` tokens) and
``scores.json``; ``score_ser_files`` writes ``scores.json`` and
``confusion.png``.  Every ``scores.json`` holds ``"kind": "asr"|"ser"`` so
that :mod:`espnet_harmonifuse.scoring.results_md` can collect it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

from espnet_harmonifuse.scoring.asr_metrics import (
    score_pairs,
    summarize,
    write_result_txt,
)
from espnet_harmonifuse.scoring.kaldi_text import match_ids, read_text, read_utt2spk
from espnet_harmonifuse.scoring.ser_metrics import score_ser
from espnet_harmonifuse.scoring.vocab_split import split_rates, vocabulary

PathLike = Union[str, Path]
logger = logging.getLogger(__name__)


def _write_json(path: Path, obj: Dict[str, object]) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def score_asr_files(
    ref: PathLike,
    hyp: PathLike,
    out_dir: PathLike,
    keep_case: bool = False,
    remove_punct: bool = True,
    utt2spk: Optional[PathLike] = None,
    train_text: Sequence[PathLike] = (),
) -> Dict[str, object]:
    """Score an ASR hypothesis ``text`` file against the reference.

    ``train_text``: the training transcripts (Kaldi text files); when given, the scores also hold
    ``by_vocabulary``: the error rates of the reference words in and out of their vocabulary
    (:mod:`vocab_split`).

    Returns:
        The dict written to ``out_dir/scores.json``.
    """
    refs, hyps = read_text(ref), read_text(hyp)
    pairs = match_ids(refs, hyps)
    spk = read_utt2spk(utt2spk) if utt2spk else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    word = score_pairs(pairs, "word", keep_case, remove_punct)
    char = score_pairs(pairs, "char", keep_case, remove_punct)
    title = Path(hyp).name
    write_result_txt(str(out / "result.txt"), word, title, spk)
    write_result_txt(str(out / "result_char.txt"), char, title, spk)
    w, c = summarize(word), summarize(char)
    scores: Dict[str, object] = {
        "kind": "asr",
        "ref": str(ref),
        "hyp": str(hyp),
        "num_utts": len(pairs),
        "num_missing_hyp": sum(h is None for _, _, h in pairs),
        "num_extra_hyp": sum(k not in refs for k in hyps),
        "wer": w["err"],
        "cer": c["err"],
        "sentence_error_rate": w["s_err"],
        "normalization": {"keep_case": keep_case, "remove_punct": remove_punct},
        "word": w,
        "char": c,
    }
    if train_text:
        vocab = vocabulary((t for path in train_text for t in read_text(path).values()), keep_case, remove_punct)
        split = split_rates(word, vocab)
        scores["by_vocabulary"] = {"train_text": [str(p) for p in train_text], "vocabulary_size": len(vocab), **split}
        logger.info("%s: in-vocabulary words: WER %.2f%% CER %.2f%% (%d words); out-of-vocabulary: WER %.2f%% "
                    "CER %.2f%% (%d words)", hyp, split["iv"]["wer"], split["iv"]["cer"], split["iv"]["num_words"],
                    split["oov"]["wer"], split["oov"]["cer"], split["oov"]["num_words"])
    _write_json(out / "scores.json", scores)
    logger.info(
        "%s: WER %.2f%% (%d/%d) CER %.2f%% (%d/%d) SER(sentence) %.2f%% "
        "[%d utts]",
        hyp, w["err"], w["num_err"], w["num_ref_tokens"], c["err"],
        c["num_err"], c["num_ref_tokens"], w["s_err"], len(pairs),
    )
    return scores


def score_ser_files(
    ref: PathLike,
    hyp: PathLike,
    labels: Sequence[str],
    out_dir: PathLike,
    plot: bool = True,
) -> Dict[str, object]:
    """Score an emotion hypothesis ``text`` file (one label per utterance).

    Returns:
        The dict written to ``out_dir/scores.json``.
    """
    refs, hyps = read_text(ref), read_text(hyp)
    pairs = match_ids(refs, hyps)
    res = score_ser(pairs, labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores: Dict[str, object] = {"kind": "ser", "ref": str(ref), "hyp": str(hyp)}
    scores.update(res.to_dict())
    scores["num_missing_hyp"] = sum(h is None for _, _, h in pairs)
    scores["num_extra_hyp"] = sum(k not in refs for k in hyps)
    _write_json(out / "scores.json", scores)
    if plot:
        from espnet_harmonifuse.utils.plots import plot_confusion

        plot_confusion(
            res.confusion, res.labels, res.columns, out / "confusion.png",
            title=f"SER confusion ({Path(hyp).parent.name})",
        )
    logger.info(
        "%s: UA %.2f%% WA %.2f%% macro-F1 %.2f%% [%d utts, %d out-of-set]",
        hyp, res.ua, res.wa, res.macro_f1, res.num_utts, res.num_out_of_set,
    )
    return scores
