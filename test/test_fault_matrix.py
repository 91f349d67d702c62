"""The fault matrix (benchmarks/fault_matrix.py): each bad input either works, with the data
right and the bad utterance dropped with a warning naming it, or stops with a message naming
the offending file and the fix; no good utterance is ever lost."""
import shutil

import pytest
from conftest import ROOT, load_script

fm = load_script(ROOT / "benchmarks" / "fault_matrix.py")


def _param(row):
    marks = [pytest.mark.slow] if row.slow else []
    if row.needs:
        marks.append(pytest.mark.skipif(shutil.which(row.needs) is None, reason=f"needs {row.needs}"))
    return pytest.param(row, id=row.key, marks=marks)


@pytest.mark.parametrize("row", [_param(r) for r in fm.ROWS])
def test_fault_matrix_row(row, tmp_path):
    res = fm.run_row(row, tmp_path / row.key)
    assert "Traceback (most recent call last)" not in res.output, res.output
    if row.expect == "ok":
        assert res.rc == 0, res.output
        assert (res.kept, res.lost) == (res.good, 0), res.output
    else:
        assert res.rc != 0, res.output
        assert res.lost in (None, 0)
        assert res.seen and not res.seen.startswith("Traceback"), res.output
    assert res.problems == [], f"{res.problems}\n{res.output}"


def _result(rc, output, good=0, kept=None, lost=None):
    row = fm.Row("x", "x", lambda root: None, "stop" if rc else "ok")
    return fm.Result(row, rc, output, fm.first_message(output, rc), good=good, kept=kept, lost=lost)


def test_first_message_and_judge_catch_what_a_row_must_not_show():
    traceback = "Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: size mismatch\n"
    res = _result(1, traceback)
    assert res.seen == "Traceback: RuntimeError: size mismatch"
    assert "the output holds a Python traceback" in fm.judge(res.row, fm.Case(names=["a.pth"]), res)
    res = _result(1, "2025 (format_data) ERROR: data/train/text: line 4 is not UTF-8\n  more\n")
    assert res.seen == "data/train/text: line 4 is not UTF-8"
    assert fm.judge(res.row, fm.Case(names=["data/train/text", "line 4"]), res) == []
    assert fm.judge(res.row, fm.Case(names=["data/train/wav.scp"]), res) != []
    res = _result(0, "x WARNING: dropped 'bad'\n", good=3, kept=2, lost=1)
    assert res.seen == "ok (warning: dropped 'bad')"
    ok_row = fm.Row("x", "x", lambda root: None, "ok")
    assert fm.judge(ok_row, fm.Case(names=["'bad'"]), res) == ["1 good utterance(s) lost"]
    assert fm.judge(ok_row, fm.Case(names=["'other'"]), _result(0, "")) == ["no warning names ''other''"]
