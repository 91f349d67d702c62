"""The open-vocabulary ASR text of mini_emo and the scoring of in- and out-of-vocabulary words."""

import json
import re

import pytest

from espnet_harmonifuse.bin import make_results, score_asr
from espnet_harmonifuse.corpus.mini_emo import DEFAULT_SIZES, default_sizes, plan_corpus
from espnet_harmonifuse.corpus.mini_emo_text import ASR_VOCAB
from espnet_harmonifuse.corpus.open_vocab import NUM_FUNCTION_WORDS, OpenVocabulary, load_words, oov_stats
from espnet_harmonifuse.scoring.asr_metrics import score_pairs
from espnet_harmonifuse.scoring.vocab_split import split_rates, vocabulary


def test_word_list_is_large_plain_and_ordered_by_frequency():
    rows = load_words()
    words = [w for w, _ in rows]
    assert len(set(words)) == len(words) >= 2000
    assert all(re.fullmatch(r"[A-Z]+", w) for w in words)
    freqs = [f for _, f in rows]
    assert freqs == sorted(freqs, reverse=True)
    assert not {"SHIT", "FUCK", "RAPE"} & set(words)


def _words(specs):
    return {w for s in specs for w in s.words.split()}


def test_open_text_keeps_the_held_out_words_out_of_training():
    plan = plan_corpus("/nonexistent", seed=3, asr_text="open")
    vocab = OpenVocabulary.build(3)
    train, test = _words(plan["asr_train"]), _words(plan["asr_test"])
    assert not train & vocab.heldout
    assert test & vocab.heldout and _words(plan["asr_dev"]) & vocab.heldout
    assert not set(vocab.words[:NUM_FUNCTION_WORDS]) & vocab.heldout
    stats = oov_stats([s.words for s in plan["asr_train"]], [s.words for s in plan["asr_test"]])
    assert stats["oov_types_pct"] >= 20.0  # the corpus's promise
    assert len(plan["asr_train"]) == default_sizes("open")["asr_train"] == 4 * DEFAULT_SIZES["asr_train"]
    assert len(train | test) >= 2000
    # the SER corpus is the same whatever the ASR text
    closed = plan_corpus("/nonexistent", seed=3)
    assert [s.words for s in closed["ser_test"]] == [s.words for s in plan["ser_test"]]
    assert _words(closed["asr_train"]) <= set(ASR_VOCAB)


def test_open_text_is_reproducible_and_seeded():
    a = plan_corpus("/x", seed=1, asr_text="open", sizes={"asr_test": 50})
    b = plan_corpus("/x", seed=1, asr_text="open", sizes={"asr_test": 50})
    c = plan_corpus("/x", seed=2, asr_text="open", sizes={"asr_test": 50})
    assert [s.words for s in a["asr_test"]] == [s.words for s in b["asr_test"]]
    assert [s.words for s in a["asr_test"]] != [s.words for s in c["asr_test"]]
    assert OpenVocabulary.build(1).heldout != OpenVocabulary.build(2).heldout
    with pytest.raises(ValueError, match="asr_text"):
        plan_corpus("/x", asr_text="grammar")


def test_split_rates_on_known_alignments():
    utts = score_pairs([("u1", "A CAT SAT", "A CAB SAT"), ("u2", "THE DOG", "THE DOG RAN"), ("u3", "A SAT", "A")],
                       "word")
    rates = split_rates(utts, vocabulary(["a sat", "the dog"]))
    # IV: A SAT THE DOG A (correct) and SAT (deleted: 3 characters); the insertion RAN counts nowhere
    assert rates["iv"] == {"num_words": 6, "num_word_err": 1, "wer": pytest.approx(100 / 6),
                           "num_chars": 14, "num_char_err": 3, "cer": pytest.approx(300 / 14)}
    # OOV: CAT -> CAB: one word wrong, one character of three
    assert rates["oov"]["num_words"] == 1 and rates["oov"]["wer"] == 100.0
    assert rates["oov"]["cer"] == pytest.approx(100 / 3)


def test_scoring_with_training_text_reports_both_classes(tmp_path):
    (tmp_path / "train").write_text("t1 a sat\nt2 the dog\n")
    (tmp_path / "ref").write_text("u1 A CAT SAT\nu2 THE DOG\nu3 A SAT\n")
    (tmp_path / "hyp").write_text("u1 A CAB SAT\nu2 THE DOG RAN\nu3 A\n")
    exp = tmp_path / "exp" / "decode_x" / "asr_test"
    score_asr.main(["--ref", str(tmp_path / "ref"), "--hyp", str(tmp_path / "hyp"), "--out_dir",
                    str(exp / "score_wer"), "--train_text", str(tmp_path / "train")])
    scores = json.loads((exp / "score_wer" / "scores.json").read_text())
    split = scores["by_vocabulary"]
    assert split["vocabulary_size"] == 4 and split["oov"]["wer"] == 100.0
    assert scores["wer"] == pytest.approx(100 * 3 / 7)  # the overall WER keeps the insertion
    make_results.main(["--exp_dir", str(tmp_path / "exp"), "--out", str(tmp_path / "RESULTS.md")])
    md = (tmp_path / "RESULTS.md").read_text()
    assert "|IV words|IV WER|IV CER|OOV words|OOV WER|OOV CER|" in md
    assert "|decode_x/asr_test|6|16.7|21.4|1|100.0|33.3|" in md
