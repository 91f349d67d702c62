"""Read, write and validate Kaldi-style data directories.

A data dir holds ``wav.scp`` (id path), ``text`` (id transcript, or id emotion label for SER),
``utt2spk`` (id speaker) and ``spk2utt`` (speaker id1 id2 ...), every file sorted by its first
column (byte order, as ``LC_ALL=C sort``).

Also a small CLI used by the recipe's decode stage::

    python -m espnet_harmonifuse.data.kaldi_dir split --scp wav.scp --nj 4 --out logdir/keys.JOB.scp
    python -m espnet_harmonifuse.data.kaldi_dir merge --out dir/text logdir/output.*/text
"""
import argparse
import json
import os
import sys
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

PathLike = Union[str, Path]
UTT_FILES = ("wav.scp", "text", "utt2spk")


class KaldiDirError(ValueError):
    """A data dir file the user must fix (the message names the file and the fix)."""


def _lines(path: PathLike) -> Iterable[Tuple[int, str]]:
    """(line number, text) of a UTF-8 file; a clear error names the first line that is not UTF-8."""
    with open(path, "rb") as f:
        for num, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise KaldiDirError(
                    f"{path}: line {num} is not UTF-8 (byte {raw[e.start:e.start + 1]!r} at column "
                    f"{e.start + 1}); convert the file to UTF-8 in local/data.sh, e.g. "
                    f"iconv -f latin1 -t utf-8 {path} > {path}.utf8 && mv {path}.utf8 {path}"
                ) from None
            yield num, line.lstrip("\ufeff") if num == 1 else line


def read_pairs_numbered(path: PathLike) -> List[Tuple[str, str, int]]:
    """(id, rest of line, line number) in file order (duplicates kept; empty lines skipped)."""
    out = []
    for num, line in _lines(path):
        parts = line.strip().split(maxsplit=1)
        if parts:
            out.append((parts[0], parts[1] if len(parts) > 1 else "", num))
    return out


def read_pairs(path: PathLike) -> List[Tuple[str, str]]:
    """Read "id rest-of-line" lines in file order (duplicates kept; empty lines skipped)."""
    return [(k, v) for k, v, _ in read_pairs_numbered(path)]


def read_kv(path: PathLike) -> "OrderedDict[str, str]":
    """Read a Kaldi key-value file into an ordered dict (a later duplicate wins)."""
    return OrderedDict(read_pairs(path))


def read_kv_unique(path: PathLike) -> Tuple["OrderedDict[str, str]", List[str]]:
    """Read a key-value file whose ids must be unique; returns (dict, ids repeated with the same value).

    An id repeated with the same value is kept once (the caller warns); an id repeated with
    another value raises KaldiDirError naming the lines, since either could be the right one.
    """
    seen: "OrderedDict[str, Tuple[str, int]]" = OrderedDict()
    repeated, conflicts = [], []
    for key, value, num in read_pairs_numbered(path):
        if key not in seen:
            seen[key] = (value, num)
        elif seen[key][0] == value:
            repeated.append(key)
        else:
            conflicts.append(f"'{key}' (lines {seen[key][1]} and {num})")
    if conflicts:
        more = f" ... (+{len(conflicts) - 5} more)" if len(conflicts) > 5 else ""
        raise KaldiDirError(
            f"{path}: duplicate ids with different values: {', '.join(conflicts[:5])}{more}; "
            f"each utterance id must appear once: give the utterances distinct ids in local/data.sh"
        )
    return OrderedDict((k, v) for k, (v, _) in seen.items()), sorted(set(repeated))


def write_kv(path: PathLike, data: Union[Dict[str, str], Iterable[Tuple[str, str]]]) -> None:
    """Write "id value" lines sorted by id (byte order)."""
    items = data.items() if isinstance(data, dict) else data
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for k, v in sorted(items, key=lambda kv: kv[0]):
            f.write(f"{k} {v}\n" if v != "" else f"{k}\n")


def utt2spk_to_spk2utt(utt2spk: Dict[str, str]) -> "OrderedDict[str, List[str]]":
    spk2utt: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return OrderedDict(sorted(spk2utt.items()))


def spk2utt_to_utt2spk(spk2utt: Dict[str, Sequence[str]]) -> "OrderedDict[str, str]":
    return OrderedDict(sorted((u, s) for s, utts in spk2utt.items() for u in utts))


def read_spk2utt(path: PathLike) -> "OrderedDict[str, List[str]]":
    return OrderedDict((k, v.split()) for k, v in read_pairs(path))


def write_spk2utt(path: PathLike, spk2utt: Dict[str, Sequence[str]]) -> None:
    write_kv(path, {s: " ".join(sorted(u)) for s, u in spk2utt.items()})


def write_data_dir(
    d: PathLike, wav: Dict[str, str], text: Dict[str, str], utt2spk: Optional[Dict[str, str]] = None
) -> None:
    """Write wav.scp/text/utt2spk/spk2utt; utt2spk defaults to each utterance its own speaker."""
    os.makedirs(d, exist_ok=True)
    utt2spk = utt2spk if utt2spk is not None else {k: k for k in wav}
    write_kv(os.path.join(d, "wav.scp"), wav)
    write_kv(os.path.join(d, "text"), text)
    write_kv(os.path.join(d, "utt2spk"), utt2spk)
    write_spk2utt(os.path.join(d, "spk2utt"), utt2spk_to_spk2utt(utt2spk))


def parse_labels(labels: Union[None, str, Sequence[str]]) -> Optional[List[str]]:
    if labels is None:
        return None
    if isinstance(labels, str):
        labels = labels.split(",")
    out = [x.strip() for x in labels if x.strip()]
    return out or None


def label_problems(text_path: PathLike, labels: Sequence[str], max_report: int = 5) -> List[str]:
    """Problems for each utterance whose label (the whole text) is not in ``labels``."""
    allowed = set(labels)
    probs = []
    bad = [(u, lab) for u, lab in read_pairs(text_path) if lab.strip() not in allowed]
    for utt, lab in bad[:max_report]:
        probs.append(
            f"{text_path}: utterance '{utt}' has label '{lab}', which is not in the label list "
            f"{sorted(allowed)}; add it to ser_labels (and the task's labels in the config) "
            f"or map it to a known label in local/data.sh"
        )
    if len(bad) > max_report:
        probs.append(f"{text_path}: ... and {len(bad) - max_report} more utterances with unknown labels")
    return probs


def _first(ids: Iterable[str], n: int = 5) -> str:
    ids = sorted(ids)
    more = f" ... (+{len(ids) - n} more)" if len(ids) > n else ""
    return ", ".join(ids[:n]) + more


def validate_data_dir(d: PathLike, labels: Union[None, str, Sequence[str]] = None) -> List[str]:
    """Return a list of human-readable problems of a Kaldi data dir (empty when fine)."""
    d = Path(d)
    problems: List[str] = []
    ids: Dict[str, List[str]] = {}
    for name in UTT_FILES + ("spk2utt",):
        p = d / name
        if not p.exists():
            if name in ("wav.scp", "text"):
                problems.append(f"{p}: missing")
            continue
        pairs = read_pairs(p)
        keys = [k for k, _ in pairs]
        if not keys:
            problems.append(f"{p}: empty")
        dup = {k for k, c in Counter(keys).items() if c > 1}
        if dup:
            problems.append(f"{p}: duplicate ids: {_first(dup)}")
        if keys != sorted(keys):
            problems.append(f"{p}: not sorted by id (sort it with LC_ALL=C sort)")
        if name != "spk2utt":
            ids[name] = keys
    present = [n for n in UTT_FILES if n in ids]
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            only_a = set(ids[a]) - set(ids[b])
            only_b = set(ids[b]) - set(ids[a])
            if only_a:
                problems.append(f"{d}: ids in {a} but not in {b}: {_first(only_a)}")
            if only_b:
                problems.append(f"{d}: ids in {b} but not in {a}: {_first(only_b)}")
    if "utt2spk" in ids and (d / "spk2utt").exists():
        expected = utt2spk_to_spk2utt(read_kv(d / "utt2spk"))
        got = {s: sorted(u) for s, u in read_spk2utt(d / "spk2utt").items()}
        if dict(expected) != got:
            diff = {s for s in set(expected) | set(got) if expected.get(s) != got.get(s)}
            problems.append(
                f"{d / 'spk2utt'}: inconsistent with utt2spk for speakers {_first(diff)} "
                f"(regenerate it from utt2spk)"
            )
    elif "utt2spk" in ids:
        problems.append(f"{d / 'spk2utt'}: missing (regenerate it from utt2spk)")
    labels = parse_labels(labels)
    if labels and (d / "text").exists():
        problems += label_problems(d / "text", labels)
    return problems


def split_keys(scp: PathLike, nj: int, out_pattern: str) -> int:
    """Split the ids of ``scp`` into contiguous parts written to ``out_pattern`` (JOB -> 1..n).

    Returns the number of parts actually written (min(nj, number of ids))."""
    pairs = read_pairs(scp)
    if not pairs:
        raise ValueError(f"{scp}: no utterances to split")
    n = max(1, min(nj, len(pairs)))
    size, rem = divmod(len(pairs), n)
    start = 0
    for j in range(n):
        end = start + size + (1 if j < rem else 0)
        write_kv(out_pattern.replace("JOB", str(j + 1)), pairs[start:end])
        start = end
    return n


def _jsonl_key(line: str) -> str:
    try:
        obj = json.loads(line)
    except ValueError:
        return ""
    for k in ("key", "utt_id", "id", "uttid"):
        if isinstance(obj, dict) and k in obj:
            return str(obj[k])
    return ""


def merge_files(inputs: Sequence[PathLike], out: PathLike) -> int:
    """Concatenate per-job outputs sorted by id (jsonl: by its key field); returns line count."""
    lines: List[str] = []
    for p in inputs:
        with open(p, encoding="utf-8") as f:
            lines += [ln.rstrip("\n") for ln in f if ln.strip()]
    if str(out).endswith(".jsonl"):
        lines.sort(key=_jsonl_key)
    else:
        lines.sort(key=lambda ln: ln.split(maxsplit=1)[0])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(ln + "\n" for ln in lines)
    return len(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("split", help="split the ids of an scp into parts; prints the part count")
    sp.add_argument("--scp", required=True)
    sp.add_argument("--nj", type=int, required=True)
    sp.add_argument("--out", required=True, help="output pattern containing JOB")
    mp = sub.add_parser("merge", help="merge per-job output files sorted by id")
    mp.add_argument("--out", required=True)
    mp.add_argument("inputs", nargs="+")
    vp = sub.add_parser("validate", help="validate a data dir; non-zero exit on problems")
    vp.add_argument("--data_dir", required=True)
    vp.add_argument("--labels", default=None)
    args = parser.parse_args(argv)
    if args.cmd == "split":
        if "JOB" not in args.out:
            parser.error("--out must contain JOB")
        print(split_keys(args.scp, args.nj, args.out))
    elif args.cmd == "merge":
        missing = [p for p in args.inputs if not os.path.exists(p)]
        if missing:
            print(f"ERROR: missing {', '.join(missing[:3])}: every job's output dir must hold "
                  f"{os.path.basename(missing[0])}; see the job's log next to it", file=sys.stderr)
            return 1
        merge_files(args.inputs, args.out)
    else:
        try:
            problems = validate_data_dir(args.data_dir, args.labels)
        except KaldiDirError as e:
            problems = [str(e)]
        for p in problems:
            print(f"ERROR: {p}", file=sys.stderr)
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
