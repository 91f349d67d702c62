"""Tests of espnet_harmonifuse.scoring (ASR/SER metrics, CLIs, RESULTS.md)."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from espnet_harmonifuse.bin import make_results, score_asr, score_ser
from espnet_harmonifuse.scoring.asr_metrics import (
    ErrorCounts,
    align,
    score_pairs,
    summarize,
)
from espnet_harmonifuse.scoring.kaldi_text import match_ids, read_text
from espnet_harmonifuse.scoring.ser_metrics import OTHER_LABEL, score_ser as ser
from espnet_harmonifuse.scoring.text_norm import char_tokens, normalize_text

LABELS = ["neutral", "happy", "angry", "sad"]


def _write(path: Path, lines) -> Path:
    path.write_text("".join(f"{x}\n" for x in lines), encoding="utf-8")
    return path


def _wer(ref: str, hyp: str, unit: str = "word"):
    return summarize(score_pairs([("u", ref, hyp)], unit))


# ----------------------------------------------------------------- ASR
def test_align_sub_and_del():
    ops = align("A B C D".split(), "A X C".split())
    assert [o[0] for o in ops] == ["C", "S", "C", "D"]
    assert ErrorCounts.from_ops(ops) == ErrorCounts(corr=2, sub=1, dele=1, ins=0)
    s = _wer("A B C D", "A X C")
    assert s["num_err"] == 2 and s["num_ref_tokens"] == 4
    assert s["err"] == pytest.approx(50.0)


def test_insertions():
    s = _wer("A B", "A X B Y")
    assert (s["num_corr"], s["num_sub"], s["num_del"], s["num_ins"]) == (2, 0, 0, 2)
    assert s["err"] == pytest.approx(100.0)  # insertions can push WER to 100+


def test_empty_hyp_and_empty_ref():
    s = _wer("A B C", "")
    assert (s["num_del"], s["err"], s["s_err"]) == (3, 100.0, 100.0)
    s = _wer("", "")
    assert (s["num_err"], s["err"], s["s_err"]) == (0, 0.0, 0.0)
    assert align([], ["X"]) == [("I", None, "X")]


def test_cer_counts_space_tokens():
    # chars: A B <space> C D (5 tokens) -> one substitution = 20%
    assert _wer("AB CD", "AB CE", "char")["err"] == pytest.approx(20.0)
    # the missing word boundary is a deletion of "<space>"
    s = _wer("AB CD", "ABCD", "char")
    assert (s["num_del"], s["num_ref_tokens"]) == (1, 5)
    assert char_tokens("AB C") == ["A", "B", "<space>", "C"]


def test_normalisation():
    assert normalize_text("Hello,  world! Don't 'quote'") == "HELLO WORLD DON'T QUOTE"
    assert normalize_text("well-known\tthing.") == "WELL KNOWN THING"
    assert normalize_text("It\u2019s") == "IT'S"
    assert normalize_text("Hello, World", keep_case=True) == "Hello World"
    assert normalize_text("a.b", remove_punct=False) == "A.B"
    # case and punctuation differences are not errors
    assert _wer("Hello, world!", "hello world")["num_err"] == 0


def test_read_text_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_text(tmp_path / "nothere")
    empty = _write(tmp_path / "empty_text", [])
    with pytest.raises(ValueError, match="empty_text"):
        read_text(empty)
    dup = _write(tmp_path / "dup", ["u1 a", "u1 b"])
    with pytest.raises(ValueError, match="Duplicated"):
        read_text(dup)
    t = _write(tmp_path / "t", ["u1 a b", "u2", "", "u3  c "])
    assert read_text(t) == {"u1": "a b", "u2": "", "u3": "c"}


def test_match_ids_warns(caplog):
    with caplog.at_level(logging.WARNING):
        pairs = match_ids({"a": "x", "b": "y"}, {"a": "x", "c": "z"})
    assert pairs == [("a", "x", "x"), ("b", "y", None)]
    assert "1 of 2 reference utterances have no hypothesis" in caplog.text
    assert "b" in caplog.text and "not in the reference" in caplog.text


def test_score_asr_cli(tmp_path, caplog):
    ref = _write(tmp_path / "ref", ["u1 A B C D", "u2 the cat", "u3 hello"])
    hyp = _write(tmp_path / "hyp", ["u1 a x c", "u3 hello", "u9 extra"])
    out = tmp_path / "score"
    with caplog.at_level(logging.WARNING):
        scores = score_asr.main(
            ["--ref", str(ref), "--hyp", str(hyp), "--out_dir", str(out)]
        )
    assert "u2" in caplog.text  # missing hypothesis is reported
    res = (out / "result.txt").read_text()
    assert "id: (u1)\nScores: (#C #S #D #I) 2 1 1 0\n" in res
    assert "REF:  a B c D\nHYP:  a X c *\n" in res
    assert "Scores: (#C #S #D #I) 0 0 2 0" in res  # u2: all deletions
    assert "REF:  THE CAT\nHYP:  *** ***" in res
    assert "| SPKR" in res and "Corr" in res and "S.Err |" in res
    assert "| Sum/Avg |     3      7 |" in res
    assert "REF:  A <SPACE> B <SPACE> C <SPACE> D" in (out / "result_char.txt").read_text().upper()
    on_disk = json.loads((out / "scores.json").read_text())
    assert on_disk == json.loads(json.dumps(scores))
    assert on_disk["kind"] == "asr"
    # 7 ref words: 3 correct, 1 sub, 3 del, 0 ins -> WER 4/7
    assert on_disk["wer"] == pytest.approx(100 * 4 / 7)
    assert on_disk["word"]["num_del"] == 3
    assert (on_disk["num_utts"], on_disk["num_missing_hyp"]) == (3, 1)
    assert on_disk["num_extra_hyp"] == 1
    assert on_disk["sentence_error_rate"] == pytest.approx(100 * 2 / 3)
    # characters with <space> tokens (ESPnet's CER): u1 A_B_C_D vs A_X_C: 1 sub + 2 del of 7;
    # u2 THE_CAT: 7 del; u3 HELLO: 0 of 5 -> 10 / 19
    assert on_disk["cer"] == pytest.approx(100 * 10 / 19)
    assert (on_disk["char"]["num_ref_tokens"], on_disk["char"]["num_sub"], on_disk["char"]["num_del"]) == (19, 1, 9)


def test_score_asr_cli_missing_file(tmp_path):
    ref = _write(tmp_path / "ref", ["u1 A"])
    with pytest.raises(FileNotFoundError, match="missing_hyp"):
        score_asr.main(["--ref", str(ref), "--hyp", str(tmp_path / "missing_hyp"),
                        "--out_dir", str(tmp_path / "o")])


# ----------------------------------------------------------------- SER
def _imbalanced():
    # 6 neutral (all right), 2 happy (1 right, 1 -> neutral),
    # 2 angry (both -> neutral); "sad" never occurs in the reference.
    refs = ["neutral"] * 6 + ["happy"] * 2 + ["angry"] * 2
    hyps = ["neutral"] * 6 + ["happy", "neutral"] + ["neutral"] * 2
    return [(f"u{i}", r, h) for i, (r, h) in enumerate(zip(refs, hyps))]


def test_ua_wa_imbalanced():
    res = ser(_imbalanced(), LABELS)
    # WA = correct / total = (6 + 1 + 0) / 10 = 70 %
    assert res.wa == pytest.approx(70.0)
    # UA = mean recall over classes in the reference (sad excluded):
    #   neutral 6/6 = 1, happy 1/2 = 0.5, angry 0/2 = 0 -> 1.5 / 3 = 50 %
    assert res.ua == pytest.approx(50.0)
    assert res.confusion.tolist() == [
        [6, 0, 0, 0], [1, 1, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0]
    ]
    assert res.columns == LABELS  # no out-of-set hypothesis -> no <other>


def test_macro_f1():
    res = ser(_imbalanced(), LABELS)
    # neutral: P = 6/9, R = 1 -> F1 = 2*(2/3)/(5/3) = 0.8
    # happy:   P = 1/1, R = 1/2 -> F1 = 2/3
    # angry:   no prediction -> P = 0, R = 0 -> F1 = 0
    # sad: neither in reference nor predicted -> excluded
    # macro-F1 = (0.8 + 2/3 + 0) / 3 = 0.48889
    assert res.macro_f1 == pytest.approx(100 * (0.8 + 2 / 3) / 3)
    pc = res.per_class()
    assert pc["neutral"]["precision"] == pytest.approx(100 * 6 / 9)
    assert pc["happy"]["recall"] == pytest.approx(50.0)
    # A class only predicted (never in ref) counts with F1 = 0:
    #   a: P=1/1 R=1/2 F1=2/3; b: F1=1; c: F1=0 -> (2/3 + 1 + 0)/3
    res2 = ser([("1", "a", "a"), ("2", "a", "c"), ("3", "b", "b")], ["a", "b", "c"])
    assert res2.macro_f1 == pytest.approx(100 * (2 / 3 + 1) / 3)
    assert res2.ua == pytest.approx(75.0)  # (1/2 + 1) / 2


def test_out_of_set_and_missing():
    pairs = [("1", "happy", "happy"), ("2", "sad", "bored"), ("3", "angry", None),
             ("4", "neutral", " <Neutral> ")]
    res = ser(pairs, LABELS)
    assert res.columns == LABELS + [OTHER_LABEL]
    assert res.num_out_of_set == 2
    assert res.confusion[:, -1].tolist() == [0, 0, 1, 1]
    assert res.wa == pytest.approx(50.0)
    with pytest.raises(ValueError, match="not in the label list"):
        ser([("1", "bored", "happy")], LABELS)


def test_score_ser_cli(tmp_path):
    ref = _write(tmp_path / "ref", [f"{u} {r}" for u, r, _ in _imbalanced()])
    hyp = _write(tmp_path / "hyp", [f"{u} {h}" for u, _, h in _imbalanced()])
    out = tmp_path / "score_ser"
    score_ser.main(["--ref", str(ref), "--hyp", str(hyp), "--labels",
                    ",".join(LABELS), "--out_dir", str(out)])
    d = json.loads((out / "scores.json").read_text())
    assert d["kind"] == "ser" and d["num_utts"] == 10
    assert (d["ua"], d["wa"]) == (pytest.approx(50.0), pytest.approx(70.0))
    assert d["labels"] == LABELS and d["confusion"][2] == [2, 0, 0, 0]
    assert (out / "confusion.png").stat().st_size > 0


# ------------------------------------------------------------ RESULTS.md
def test_make_results(tmp_path):
    exp = tmp_path / "exp"
    model = exp / "asr_model"
    (model).mkdir(parents=True)
    (model / "config.yaml").write_text("a: 1\n")
    ref = _write(tmp_path / "ref", ["u1 A B C D", "u2 E F"])
    hyp = _write(tmp_path / "hyp", ["u1 A X C", "u2 E F"])
    score_asr.main(["--ref", str(ref), "--hyp", str(hyp), "--out_dir",
                    str(model / "decode_asr" / "test" / "score_asr")])
    eref = _write(tmp_path / "eref", [f"{u} {r}" for u, r, _ in _imbalanced()])
    ehyp = _write(tmp_path / "ehyp", [f"{u} {h}" for u, _, h in _imbalanced()])
    score_ser.main(["--ref", str(eref), "--hyp", str(ehyp), "--labels",
                    ",".join(LABELS), "--no_plot", "--out_dir",
                    str(model / "decode_asr" / "test" / "score_ser")])
    extra = tmp_path / "times.md"
    extra.write_text("## Stage times\n|stage|sec|\n")
    out = exp / "RESULTS.md"
    make_results.main(["--exp_dir", str(exp), "--out", str(out),
                       "--title", "My results", "--extra_md", str(extra)])
    md = out.read_text()
    assert md.startswith("<!-- Generated") and "# My results" in md
    assert "- espnet version:" in md and "- pytorch version:" in md
    assert str(model / "config.yaml") in md
    # words: 6 ref, 4 corr, 1 sub, 1 del -> 66.7/16.7/16.7/0.0/33.3, S.Err 50
    assert "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|" in md
    assert "|decode_asr/test|2|6|66.7|16.7|16.7|0.0|33.3|50.0|" in md
    # chars: A <sp> B <sp> C <sp> D + E <sp> F = 10; B->X sub, "<sp> D" del
    assert "### CER" in md
    assert "|decode_asr/test|2|10|70.0|10.0|20.0|0.0|30.0|50.0|" in md
    assert "|dataset|Snt|UA|WA|Macro-F1|" in md
    assert "|decode_asr/test|10|50.0|70.0|48.9|" in md
    assert "|ref \\ hyp|neutral|happy|angry|sad|" in md
    assert "|angry|2|0|0|0|" in md
    assert md.rstrip().endswith("|stage|sec|")


def test_make_results_empty(tmp_path):
    out = tmp_path / "R.md"
    make_results.main(["--exp_dir", str(tmp_path), "--out", str(out)])
    assert "No scores found" in out.read_text()
    with pytest.raises(FileNotFoundError):
        make_results.main(["--exp_dir", str(tmp_path / "nope")])


def test_np_confusion_dtype():
    res = ser(_imbalanced(), LABELS)
    assert res.confusion.dtype == np.int64 and res.num_utts == 10


def test_stage_times_keep_the_shared_stages_and_this_models_latest_runs(tmp_path):
    from espnet_harmonifuse.scoring.results_md import stage_times_md

    tsv = tmp_path / "stage_times.tsv"
    tsv.write_text("stage\tname\tseconds\tmodel_tag\n1\tdata_prep\t60.0\ttrain\n6\tpretrain\t300.0\ttrain\n"
                   "6\ttrain\t400.0\ttrain\n6\ttrain\t50.0\tother\n10\tpack\t8.0\ttrain\n9\tplots\t11.0\ttrain\n"
                   "6\ttrain\t390.0\ttrain\n2\tformat\t7.0\tother\n")
    rows = stage_times_md(tsv, "train")[4:]
    assert rows == ["| 1 | data_prep | 60.0 |", "| 2 | format | 7.0 |", "| 6 | pretrain | 300.0 |",
                    "| 6 | train | 390.0 |", "| 9 | plots | 11.0 |", "| 10 | pack | 8.0 |"]
