#!/usr/bin/env python3
"""Fault matrix: bad inputs fed to what a user runs, and what the user sees.

    python benchmarks/fault_matrix.py              # every row
    python benchmarks/fault_matrix.py --rows 8khz,flac --keep /tmp/fm   # some rows, inputs kept

Each row builds one bad input in a temp dir next to a few good utterances and runs the recipe's
stages 2-3 (``harmonifuse.sh``: format to 16 kHz mono, then filter by length), a command-line
tool (``local/data.sh``, ``harmonifuse_train``, ``tokenizer_train``) or the Python API
(``HarmoniFuse.from_pretrained`` / ``decode``). It prints: input | what the user sees (the first
line of the message, or "ok") | exit status | good utterances kept | good utterances lost.

A row passes when it works and its output is right (e.g. 8 kHz audio comes out 16 kHz mono with
the right length), or it stops (exit != 0) with a message, not a bare traceback, that names the
offending file and the fix; and in both cases no good utterance is lost. An API row's exit status
is 1 when the call raised (the exception's message is what the user sees). The rows themselves are
in ``fault_matrix_rows.py``; ``test/test_fault_matrix.py`` runs each one as a test.
"""
import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def _rows_module():
    """benchmarks/fault_matrix_rows.py (imported by path: benchmarks/ is not a package)."""
    name = "fault_matrix_rows"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


rows_module = _rows_module()
Case, Row, ROWS = rows_module.Case, rows_module.Row, rows_module.ROWS


@dataclass
class Result:
    row: Row
    rc: int
    output: str
    seen: str
    good: int = 0  # good utterances in the input
    kept: Optional[int] = None
    lost: Optional[int] = None
    seconds: float = 0.0
    problems: List[str] = field(default_factory=list)


def env() -> Dict[str, str]:
    """The environment of a row's commands: this checkout importable, this Python first on PATH."""
    out = dict(os.environ, MAIN_ROOT=str(ROOT), OMP_NUM_THREADS="1", PYTHONIOENCODING="UTF-8")
    out["PYTHONPATH"] = str(ROOT) + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    out["PATH"] = str(Path(sys.executable).parent) + os.pathsep + out.get("PATH", "")
    return out


ERROR_RE = re.compile(r"(?:\bERROR\b:?|\bError:|\berror:)\s*(.*)")


def first_message(output: str, rc: int) -> str:
    """What the user sees: "ok" (with the first warning), or the first line of the error message
    ("Traceback: <last line>" when a bare traceback is all there is)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    if rc == 0:
        warn = next((ln.split("WARNING:", 1)[1].strip() for ln in lines if "WARNING:" in ln), "")
        return "ok" + (f" (warning: {warn})" if warn else "")
    in_traceback = False
    for ln in lines:
        in_traceback = in_traceback or ln.startswith("Traceback (most recent call last)")
        m = ERROR_RE.search(ln)
        if m and m.group(1) and "WARNING" not in ln and not in_traceback:
            return m.group(1)
    if in_traceback:
        return f"Traceback: {lines[-1]}"
    return lines[-1] if lines else f"(no message, exit status {rc})"


def run_case(case: Case) -> tuple:
    """(exit status, output) of the case's command or API call."""
    if case.call is not None:
        try:
            case.call()
            return 0, ""
        except Exception as e:  # noqa: BLE001 - the exception is what the API user sees
            return 1, f"ERROR: {type(e).__name__}: {e}"
    try:
        proc = subprocess.run(case.cmd, cwd=case.cwd, env=env(), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        return 124, (e.output or b"").decode("utf-8", errors="replace") + f"\n(timed out after {TIMEOUT_S} s)"
    return proc.returncode, proc.stdout.decode("utf-8", errors="replace")


def kept_ids(out_dir: Optional[Path]) -> Optional[set]:
    scp = out_dir / "wav.scp" if out_dir else None
    if scp is None or not scp.is_file():
        return None
    return {ln.split(maxsplit=1)[0] for ln in scp.read_text(encoding="utf-8").splitlines() if ln.strip()}


def judge(row: Row, case: Case, res: Result) -> List[str]:
    """What is wrong with a row's outcome (empty when it is as the row expects)."""
    problems = []
    if "Traceback (most recent call last)" in res.output:
        problems.append("the output holds a Python traceback")
    if row.expect == "ok":
        if res.rc != 0:
            return problems + [f"expected to work, stopped with exit status {res.rc}: {res.seen}"]
        warnings = "\n".join(ln for ln in res.output.splitlines() if "WARNING" in ln)
        problems += [f"no warning names '{n}'" for n in case.names if n not in warnings]
        if res.lost:
            problems.append(f"{res.lost} good utterance(s) lost")
        problems += case.check() if case.check else []
    else:
        if res.rc == 0:
            return problems + ["expected to stop with a message, but it finished (exit status 0)"]
        if case.names and case.names[0] not in res.seen:
            problems.append(f"the message's first line does not name '{case.names[0]}': {res.seen}")
        problems += [f"the message does not name '{n}'" for n in case.names[1:] if n not in res.output]
    return problems


def run_row(row: Row, root: Path) -> Result:
    """Build the row's input under ``root``, run it and judge the outcome."""
    root.mkdir(parents=True, exist_ok=True)
    case = row.build(root)
    t0 = time.time()
    rc, output = run_case(case)
    res = Result(row, rc, output, first_message(output, rc), good=len(case.good), seconds=time.time() - t0)
    if case.good and rc == 0:
        kept = kept_ids(case.out_dir) or set()
        res.kept, res.lost = len(set(case.good) & kept), len(set(case.good) - kept)
    elif case.good:
        res.lost = 0  # it stopped: nothing is dropped, the user fixes the input and runs it again
    res.problems = judge(row, case, res)
    return res


def available(row: Row) -> bool:
    return row.needs is None or shutil.which(row.needs) is not None


def table(results: Sequence[Result], width: int = 120) -> str:
    def cell(v):
        return "-" if v is None else str(v)

    lines = ["| input | what the user sees | exit | good kept | good lost | as expected |",
             "|---|---|---:|---:|---:|---|"]
    for r in results:
        seen = r.seen if len(r.seen) <= width else r.seen[: width - 3] + "..."
        verdict = "yes" if not r.problems else "NO: " + "; ".join(r.problems)[:200]
        lines.append(f"| {r.row.title.replace('|', '/')} | {seen.replace('|', '/')} | {r.rc} | {cell(r.kept)} | "
                     f"{cell(r.lost)} | {verdict.replace('|', '/')} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", default="", help="comma list of row keys (default: all): "
                        + ", ".join(r.key for r in ROWS))
    parser.add_argument("--keep", default=None, help="build the inputs here and keep them")
    parser.add_argument("--no_slow", action="store_true", help="skip the rows that start torch in a subprocess")
    args = parser.parse_args(argv)
    wanted = [k for k in args.rows.split(",") if k]
    unknown = sorted(set(wanted) - {r.key for r in ROWS})
    if unknown:
        parser.error(f"unknown row(s) {', '.join(unknown)}; the rows are {', '.join(r.key for r in ROWS)}")
    rows = [r for r in ROWS if (not wanted or r.key in wanted) and not (args.no_slow and r.slow)]
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="fault_matrix_"))
    results = []
    try:
        for row in rows:
            if not available(row):
                print(f"skipped {row.key}: needs {row.needs}", file=sys.stderr)
                continue
            res = run_row(row, base / row.key)
            results.append(res)
            print(f"{row.key}: {res.seconds:.1f} s", file=sys.stderr)
            if res.problems:
                print(f"--- {row.key} is not as expected; its output:\n{res.output}---", file=sys.stderr)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(table(results))
    failed = [r.row.key for r in results if r.problems]
    print(f"\n{len(results) - len(failed)} of {len(results)} rows as expected"
          + (f"; not: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
