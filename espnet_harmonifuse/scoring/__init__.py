"""Scoring of ASR (WER/CER) and SER (UA/WA/macro-F1) outputs.

Modules:
    text_norm: scoring normalisation and word/char tokenisation.
    kaldi_text: Kaldi ``text`` file reading and ref/hyp id matching.
    asr_metrics: Levenshtein alignment, WER/CER, sclite-style result.txt.
    ser_metrics: confusion matrix, UA, WA, macro-F1.
    score_files: file-level scoring writing ``scores.json`` (used by CLIs).
    results_md: ESPnet-style RESULTS.md writer.
"""
