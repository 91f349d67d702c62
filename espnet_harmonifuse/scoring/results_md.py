"""ESPnet-style ``RESULTS.md`` writer.

Collects ``EXP/**/decode*/<test_set>/score*/scores.json`` files (written by
:mod:`espnet_harmonifuse.scoring.score_files`, field ``"kind"`` is ``"asr"``
or ``"ser"``) and renders, per model directory (the parent of ``decode*``):
WER and CER tables ``|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|``, a SER
table ``|dataset|Snt|UA|WA|Macro-F1|`` and one confusion-matrix table per SER
set.  The dataset column reads ``<decode_dir>/<test_set>`` (plus
``/<score_dir>`` when several score dirs of one kind exist for a set).
"""

from __future__ import annotations

import datetime
import json
import logging
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

PathLike = Union[str, Path]
logger = logging.getLogger(__name__)


@dataclass
class ScoreEntry:
    """One ``scores.json`` found under the experiment directory."""

    model_dir: str
    dataset: str
    score_dir: str
    scores: Dict[str, object]

    @property
    def kind(self) -> str:
        return str(self.scores.get("kind", ""))


def collect_scores(exp_dir: PathLike) -> List[ScoreEntry]:
    """Find and load every ``decode*/<set>/score*/scores.json``."""
    exp = Path(exp_dir)
    entries: List[ScoreEntry] = []
    for p in sorted(exp.glob("**/decode*/*/score*/scores.json")):
        with p.open(encoding="utf-8") as f:
            scores = json.load(f)
        if scores.get("kind") not in ("asr", "ser"):
            logger.warning("Skipping %s: unknown kind %r", p, scores.get("kind"))
            continue
        score_dir, test_dir = p.parent, p.parent.parent
        decode_dir = test_dir.parent
        model = decode_dir.parent.relative_to(exp).as_posix()
        dataset = f"{decode_dir.name}/{test_dir.name}"
        entries.append(ScoreEntry(model, dataset, score_dir.name, scores))
    seen: Dict[tuple, int] = {}
    for e in entries:
        key = (e.model_dir, e.kind, e.dataset)
        seen[key] = seen.get(key, 0) + 1
    for e in entries:
        if seen[(e.model_dir, e.kind, e.dataset)] > 1:
            e.dataset = f"{e.dataset}/{e.score_dir}"
    return entries


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        if dist == "espnet-harmonifuse":
            import espnet_harmonifuse

            return str(getattr(espnet_harmonifuse, "__version__", "unknown"))
        return "not installed"


def _md_cell(text: object) -> str:
    """Escape a label for a markdown table cell (``<other>`` -> code span)."""
    s = str(text).replace("|", "\\|")
    return f"`{s}`" if "<" in s or ">" in s else s


def _git_hash(path: Path) -> Optional[str]:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment_lines(exp_dir: PathLike) -> List[str]:
    """``## Environments`` bullet list (date, versions, platform, git)."""
    now = datetime.datetime.now().astimezone()
    lines = [
        "## Environments",
        f"- date: `{now.strftime('%a %b %d %H:%M:%S %Z %Y')}`",
        f"- python version: `{platform.python_version()}`",
        f"- espnet version: `espnet {_version('espnet')}`",
        f"- pytorch version: `pytorch {_version('torch')}`",
        f"- espnet-harmonifuse version: `{_version('espnet-harmonifuse')}`",
        f"- platform: `{platform.platform()}`",
    ]
    git = _git_hash(Path(exp_dir))
    if git:
        lines.append(f"- Git hash: `{git}`")
    lines.append(f"- exp dir: `{exp_dir}`")
    return lines


def _f(x: object) -> str:
    try:
        return f"{float(x):.1f}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "-"


def asr_table(entries: Sequence[ScoreEntry], unit: str) -> List[str]:
    """WER (``unit="word"``) or CER (``unit="char"``) markdown table."""
    lines = [
        "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        s = e.scores.get(unit) or {}
        assert isinstance(s, dict)
        cols = [e.dataset, str(s.get("num_snt", "-")),
                str(s.get("num_ref_tokens", "-"))]
        cols += [_f(s.get(k)) for k in ("corr", "sub", "del", "ins", "err", "s_err")]
        lines.append("|" + "|".join(cols) + "|")
    return lines


def vocabulary_table(entries: Sequence[ScoreEntry]) -> List[str]:
    """Word and character error rates of the in- and out-of-vocabulary reference words (the sets
    scored with the training transcripts: ``by_vocabulary``); no lines when none was."""
    rows = [e for e in entries if isinstance(e.scores.get("by_vocabulary"), dict)]
    if not rows:
        return []
    lines = ["|dataset|IV words|IV WER|IV CER|OOV words|OOV WER|OOV CER|", "|---|---|---|---|---|---|---|"]
    for e in rows:
        v = e.scores["by_vocabulary"]
        cols = [e.dataset]
        for c in ("iv", "oov"):
            none = v[c]["num_words"] == 0  # e.g. no unseen word in a closed-vocabulary test set
            cols += [str(v[c]["num_words"]), "-" if none else _f(v[c]["wer"]), "-" if none else _f(v[c]["cer"])]
        lines.append("|" + "|".join(cols) + "|")
    return lines


def ser_table(entries: Sequence[ScoreEntry]) -> List[str]:
    """``|dataset|Snt|UA|WA|Macro-F1|`` markdown table."""
    lines = ["|dataset|Snt|UA|WA|Macro-F1|", "|---|---|---|---|---|"]
    for e in entries:
        s = e.scores
        lines.append(
            f"|{e.dataset}|{s.get('num_utts', '-')}|{_f(s.get('ua'))}|"
            f"{_f(s.get('wa'))}|{_f(s.get('macro_f1'))}|"
        )
    return lines


def confusion_table(scores: Dict[str, object]) -> List[str]:
    """Confusion matrix as markdown (rows: reference, columns: hypothesis)."""
    labels: List[str] = list(scores.get("labels") or [])  # type: ignore
    cols: List[str] = list(scores.get("confusion_columns") or labels)  # type: ignore
    conf: List[List[int]] = list(scores.get("confusion") or [])  # type: ignore
    lines = [
        "|ref \\ hyp|" + "|".join(_md_cell(c) for c in cols) + "|",
        "|---" * (len(cols) + 1) + "|",
    ]
    for lab, row in zip(labels, conf):
        counts = "|".join(str(int(v)) for v in row)
        lines.append(f"|{_md_cell(lab)}|{counts}|")
    return lines


def stage_times_md(stage_times: PathLike, model_tag: str) -> List[str]:
    """The wall times of a recipe's stages (``<expdir>/stage_times.tsv``: stage, name, seconds,
    model_tag) as a table: stages 1-5, shared by all models, and this model's 6-10, the latest run of
    each (stage 6 may have two rows, pretrain and train)."""
    latest: Dict[tuple, str] = {}
    path = Path(stage_times)
    rows = path.read_text(encoding="utf-8").splitlines()[1:] if path.is_file() else []
    for row in rows:
        stage, name, seconds, tag = (row.split("\t") + [""] * 4)[:4]
        if stage.isdigit() and (int(stage) < 6 or tag == model_tag):
            latest[int(stage), name] = seconds
    lines = [f"## Stage wall times ({stage_times})", "", "| stage | name | seconds |", "|---:|:---|---:|"]
    return lines + [f"| {stage} | {name} | {seconds} |" for (stage, name), seconds in sorted(latest.items())]


def make_results_md(
    exp_dir: PathLike, title: str = "RESULTS", extra_md: Optional[PathLike] = None,
    stage_times: Optional[PathLike] = None, model_tag: str = "",
) -> str:
    """Render the RESULTS.md text for ``exp_dir`` (+ the stage times of ``model_tag``)."""
    exp = Path(exp_dir)
    entries = collect_scores(exp)
    lines = [
        "<!-- Generated by espnet_harmonifuse/bin/make_results.py -->",
        f"# {title}",
    ]
    lines += environment_lines(exp)
    if (exp / "config.yaml").is_file():
        lines.append(f"- model config: `{exp / 'config.yaml'}`")
    if not entries:
        logger.warning("No decode*/*/score*/scores.json found under %s", exp)
        lines += ["", "No scores found."]
    for model in sorted({e.model_dir for e in entries}):
        mdir = exp / model
        lines += ["", f"## {mdir.as_posix()}"]
        if model != "." and (mdir / "config.yaml").is_file():
            lines.append(f"- model config: `{mdir / 'config.yaml'}`")
        asr = [e for e in entries if e.model_dir == model and e.kind == "asr"]
        ser = [e for e in entries if e.model_dir == model and e.kind == "ser"]
        if asr:
            lines += ["", "### WER", ""] + asr_table(asr, "word")
            lines += ["", "### CER", ""] + asr_table(asr, "char")
            split = vocabulary_table(asr)
            if split:
                lines += ["", "### In- and out-of-vocabulary words (IV: in the training transcripts; insertions "
                          "count in neither)", ""] + split
        if ser:
            lines += ["", "### SER", ""] + ser_table(ser)
            for e in ser:
                lines += ["", f"#### Confusion matrix: {e.dataset}", ""]
                lines += confusion_table(e.scores)
    if stage_times is not None:
        lines += [""] + stage_times_md(stage_times, model_tag)
    text = "\n".join(lines) + "\n"
    if extra_md is not None:
        extra = Path(extra_md)
        if not extra.is_file():
            raise FileNotFoundError(f"--extra_md file not found: {extra}")
        text += "\n" + extra.read_text(encoding="utf-8")
    return text


def write_results_md(
    exp_dir: PathLike,
    out: PathLike,
    title: str = "RESULTS",
    extra_md: Optional[PathLike] = None,
    stage_times: Optional[PathLike] = None,
    model_tag: str = "",
) -> str:
    """Write RESULTS.md to ``out`` and return its path."""
    text = make_results_md(exp_dir, title, extra_md, stage_times, model_tag)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return str(out)
