#!/usr/bin/env python3
"""Write the benchmark's configs from conf/train.yaml (the full HarmoniFuse model).

    python3 local/make_tuning_configs.py [--base conf/train.yaml] [--out_dir conf/tuning] [--check]

Each variant is a copy of the base config, comments included, with only the lines of its
ablation changed and a header comment saying what differs. Every variant also trains for the
benchmark's budget (BENCH_BUDGET: 25 epochs at learning rate 0.002, the recipe's default until
2026-11-26), whatever conf/train.yaml says, so that its finished runs stay comparable:

    train_harmonifuse.yaml       nothing but the budget          (the benchmark's full HarmoniFuse)
    train_asr_only.yaml          tasks: only asr                 (single-task ASR)
    train_ser_only.yaml          tasks: only ser                 (single-task SER)
    train_naive_multitask.yaml   fusion: static, gate: none      (naive multi-task sharing)
    train_no_gate.yaml           gate: none                      (HarmoniFuse without the gate)
    train_static_fusion.yaml     fusion: static                  (HarmoniFuse with static fusion)

and the fusion settings tried on dev (README, Benchmark, "Fixing the fusion"); conf/train.yaml
itself is the sixth, centred with prompt_scale 1/64:

    train_fusion_s1.yaml           center_prompts false, prompt_scale 1 (the default until 2026-11-25)
    train_fusion_s8.yaml           center_prompts false, prompt_scale 1/8
    train_fusion_s64.yaml          center_prompts false, prompt_scale 1/64
    train_fusion_centred_s1.yaml   center_prompts true,  prompt_scale 1
    train_fusion_centred_s8.yaml   center_prompts true,  prompt_scale 1/8

A changed component keeps only the ``<component>_conf`` keys its new class accepts
(``fusion: static`` drops ``fusion_conf.hidden_size``, which only the prompt MLP uses;
``gate: none`` drops ``gate_conf``; a variant whose fusion and gate both ignore the prompt drops
``model_conf.center_prompts``, which only changes what they see); everything else (backbone, LLM, projector, prompts,
interleaving, optimiser, epochs) stays as in the base. A single-task variant of a base that fixes
``num_iters_per_epoch`` gets that task's share of it (half of it with two tasks), so every model
makes the same number of updates per task. Rerun this script whenever
conf/train.yaml changes; ``--check`` fails if the files on disk are stale.
"""

import argparse
import copy
import inspect
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import yaml

# The benchmark's budget: the recipe's default when the benchmark's 37 runs were made. conf/train.yaml
# has since moved to 35 epochs at 0.001 (benchmarks/results/dev_sweep_h200_e35) and label smoothing 0.1
# (benchmarks/results/dev_sweep_cpu_lsm), chosen on dev. The interleaving is pinned too (1:1, the
# alternate schedule; a multitask_ratio then unread is dropped), and the benchmark's encoder pre-training
# keeps its 15 epochs the same way (BENCH_PRETRAIN_EPOCHS in espnet_harmonifuse/benchmark/plan.py).
BENCH_BUDGET: Dict[str, Any] = {"max_epoch": 25, "optim_conf.lr": 0.002, "model_conf.lsm_weight": 0.0,
                                "multitask_schedule": "alternate"}


class Variant(NamedTuple):
    what: str  # what differs, for the header
    choices: Dict[str, str] = {}  # top-level component choices changed (fusion: static, ...)
    tasks: Optional[Tuple[str, ...]] = None  # tasks kept (None: all)
    settings: Dict[str, Any] = {}  # "<block>.<key>" -> new value of an existing nested key


def _fusion(centred: bool, scale: float, label: str, note: str = "") -> Variant:
    return Variant(
        f"the fusion tried on dev: prompt vectors {'centred' if centred else 'not centred'}, "
        f"prompt_scale {label}{note}",
        settings={"model_conf.center_prompts": centred, "fusion_conf.prompt_scale": scale},
    )


VARIANTS: Dict[str, Variant] = {
    "train_harmonifuse": Variant("nothing (the benchmark's full HarmoniFuse)"),
    "train_asr_only": Variant("single-task ASR: tasks holds only asr", tasks=("asr",)),
    "train_ser_only": Variant("single-task SER: tasks holds only ser", tasks=("ser",)),
    "train_naive_multitask": Variant(
        "naive multi-task: fusion: static (one layer-weight vector for all tasks), gate: none",
        {"fusion": "static", "gate": "none"},
    ),
    "train_no_gate": Variant("HarmoniFuse without the task gate: gate: none", {"gate": "none"}),
    "train_static_fusion": Variant(
        "HarmoniFuse with static fusion: fusion: static (the task gate stays)", {"fusion": "static"}
    ),
    "train_fusion_s1": _fusion(False, 1, "1", " (the method as described; the default until 2026-11-25)"),
    "train_fusion_s8": _fusion(False, 0.125, "1/8"),
    "train_fusion_s64": _fusion(False, 0.015625, "1/64"),
    "train_fusion_centred_s1": _fusion(True, 1, "1"),
    "train_fusion_centred_s8": _fusion(True, 0.125, "1/8"),
}

_TOP_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")
_CHILD_KEY = re.compile(r"^(\s+)([A-Za-z_][A-Za-z0-9_]*)\s*:")
_ITEM = re.compile(r"^(\s*)-\s")


def accepted_conf_keys(choice: str, name: str) -> Optional[List[str]]:
    """Keyword arguments the class ``name`` of ``choice`` (fusion, gate, ...) accepts.

    None when the choice is ``none`` (no module: no conf keys at all).
    """
    from espnet_harmonifuse import tasks

    choices = getattr(tasks, f"{choice}_choices")
    cls = None if name.lower() in ("none", "null") else choices.get_class(name)
    if cls is None:
        return None
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]


# model_conf keys that only change the prompt vector the fusion and the gate read
PROMPT_MODEL_KEYS = ("center_prompts",)


def reads_prompt(choice: str, name: Optional[str]) -> bool:
    """Whether the ``choice`` (fusion or gate) named ``name`` (None: the default) reads the prompt."""
    from espnet_harmonifuse import tasks

    choices = getattr(tasks, f"{choice}_choices")
    name = choices.default if name is None else str(name)
    return name.lower() not in ("none", "null") and choices.get_class(name).reads_prompt


def ignores_prompt(config: dict) -> bool:
    return not (reads_prompt("fusion", config.get("fusion")) or reads_prompt("gate", config.get("gate")))


def _blocks(lines: Sequence[str]) -> List[Tuple[str, int, int]]:
    """``(top-level key, first line, end line)``; a block ends before the next top-level key.

    Comment lines at column 0 just before a key belong to that key.
    """
    starts = [(i, m.group(1)) for i, line in enumerate(lines) if (m := _TOP_KEY.match(line))]
    out = []
    for n, (i, key) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        while end - 1 > i and (lines[end - 1].startswith("#") or not lines[end - 1].strip()):
            end -= 1
        out.append((key, i, end))
    return out


def _find(lines: Sequence[str], key: str) -> Optional[Tuple[int, int]]:
    for k, i, end in _blocks(lines):
        if k == key:
            return i, end
    return None


def _set_choice(lines: List[str], key: str, value: str) -> None:
    span = _find(lines, key)
    if span is None:
        raise ValueError(f"'{key}:' is not a top-level line of the base config")
    i, end = span
    if end - i != 1:
        raise ValueError(f"'{key}:' must be a one-line 'key: value' entry")
    lines[i] = f"{key}: {value}   # changed by local/make_tuning_configs.py"


def _filter_conf(lines: List[str], key: str, keep: Optional[Sequence[str]]) -> None:
    """Keep only the children of block ``key`` named in ``keep`` (drop the block if none is left)."""
    span = _find(lines, key)
    if span is None:
        return
    i, end = span
    head = lines[i]
    if keep is not None and head.split(":", 1)[1].split("#")[0].strip() not in ("", "{}"):
        data = yaml.safe_load(head) or {}  # flow style: key: {a: 1, b: 2}
        kept = {k: v for k, v in (data.get(key) or {}).items() if k in keep}
        new = [f"{key}: {yaml.safe_dump(kept, default_flow_style=True).strip()}"] if kept else []
    else:
        body = lines[i + 1 : end]
        content = [ln for ln in body if ln.strip() and not ln.lstrip().startswith("#")]
        indent = len(content[0]) - len(content[0].lstrip()) if content else 0
        children: List[Tuple[str, List[str]]] = []
        for line in body:
            m = _CHILD_KEY.match(line)
            if m and len(m.group(1)) == indent:
                children.append((m.group(2), [line]))
            elif children:
                children[-1][1].append(line)
        kept_lines = [ln for name, block in children if keep is not None and name in keep for ln in block]
        new = [head] + kept_lines if kept_lines else []
    lines[i:end] = new


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).splitlines()[0]


def _set_nested(lines: List[str], dotted: str, value: Any) -> None:
    """Set the existing child ``key`` of the block-style top-level mapping ``block`` (``block.key``)."""
    block, key = dotted.split(".", 1)
    span = _find(lines, block)
    if span is None:
        raise ValueError(f"'{block}:' is not a top-level block of the base config (needed for {dotted})")
    i, end = span
    if lines[i].split(":", 1)[1].split("#")[0].strip():
        raise ValueError(f"'{block}:' is in flow style; write it one key per line to set {dotted}")
    for n in range(i + 1, end):
        m = _CHILD_KEY.match(lines[n])
        if m and m.group(2) == key:
            lines[n] = f"{m.group(1)}{key}: {_yaml_scalar(value)}   # changed by local/make_tuning_configs.py"
            return
    raise ValueError(f"'{dotted}' is not set in the base config; a variant only changes keys it has")


def _keep_tasks(lines: List[str], keep: Sequence[str]) -> None:
    span = _find(lines, "tasks")
    if span is None:
        raise ValueError("the base config has no top-level 'tasks:' block")
    i, end = span
    items: List[List[str]] = []
    indent = None
    for line in lines[i + 1 : end]:
        m = _ITEM.match(line)
        if m and (indent is None or len(m.group(1)) == indent):
            indent = len(m.group(1))
            items.append([line])
        elif items:
            items[-1].append(line)
        else:
            raise ValueError("cannot parse the tasks block (expected a block list of '- name: ...' items)")
    kept = [it for it in items if (yaml.safe_load("\n".join(it)) or [{}])[0].get("name") in keep]
    lines[i + 1 : end] = [ln for it in kept for ln in it]


def per_task_iters(base: dict, tasks: Optional[Sequence[str]]) -> Optional[int]:
    """``num_iters_per_epoch`` of a variant keeping ``tasks``: their share of the base's (None: unchanged)."""
    n = base.get("num_iters_per_epoch")
    if tasks is None or not isinstance(n, int) or len(tasks) == len(base["tasks"]):
        return None
    return max(1, round(n * len(tasks) / len(base["tasks"])))


def expected_config(
    base: dict, changes: Dict[str, str], tasks: Optional[Sequence[str]], settings: Optional[Dict[str, Any]] = None
) -> dict:
    """The variant as data: what the text edits must produce."""
    out = copy.deepcopy(base)
    for dotted, value in (settings or {}).items():
        block, key = dotted.split(".", 1)
        out[block][key] = value
    iters = per_task_iters(base, tasks)
    if iters is not None:
        out["num_iters_per_epoch"] = iters
    for key, value in changes.items():
        out[key] = value
        keep = accepted_conf_keys(key, value)
        conf = {k: v for k, v in (out.get(f"{key}_conf") or {}).items() if keep is not None and k in keep}
        if conf:
            out[f"{key}_conf"] = conf
        else:
            out.pop(f"{key}_conf", None)
    if ignores_prompt(out) and isinstance(out.get("model_conf"), dict):
        conf = {k: v for k, v in out["model_conf"].items() if k not in PROMPT_MODEL_KEYS}
        if conf:
            out["model_conf"] = conf
        else:
            out.pop("model_conf")
    if tasks is not None:
        out["tasks"] = [t for t in out["tasks"] if t["name"] in tasks]
    return out


def describe_changes(base: dict, variant: dict) -> List[str]:
    """Human-readable list of the top-level differences between two configs."""
    out = []
    for key in list(base) + [k for k in variant if k not in base]:
        if key not in variant:
            out.append(f"{key} removed (unused by the new choice)")
        elif key not in base:
            out.append(f"{key} added")
        elif base[key] != variant[key]:
            if key == "tasks":
                out.append(f"tasks: {[t['name'] for t in variant[key]]}")
            elif isinstance(base[key], dict) and isinstance(variant[key], dict):
                gone = [k for k in base[key] if k not in variant[key]]
                why = "nothing reads the prompt" if key == "model_conf" else "not an argument of the new choice"
                if gone:
                    out.append(f"{key}: {', '.join(gone)} removed ({why})")
                for k, v in variant[key].items():
                    if k in base[key] and base[key][k] != v:
                        out.append(f"{key}.{k}: {_yaml_scalar(base[key][k])} -> {_yaml_scalar(v)}")
            else:
                out.append(f"{key}: {base[key]} -> {variant[key]}")
    return out


def _budgeted(base: dict, budget: Dict[str, Any]) -> dict:
    out = copy.deepcopy(base)
    for dotted, value in budget.items():
        block, _, key = dotted.rpartition(".")
        where = out.get(block) if block else out
        if not isinstance(where, dict) or key not in where:
            raise ValueError(f"the base config does not set {dotted}, which the benchmark's budget fixes; add it")
        where[key] = value
    if out.get("multitask_schedule") != "ratio":  # unread then: dropped, so the config says what it trains
        out.pop("multitask_ratio", None)
    return out


def make_variant(base_text: str, name: str, base_name: str = "conf/train.yaml",
                 budget: Optional[Dict[str, Any]] = None) -> str:
    """The text of variant ``name`` (a key of VARIANTS) derived from ``base_text``, at ``budget``
    (default BENCH_BUDGET: ``{"<block>.<key>" or "<key>": value}``)."""
    what, changes, tasks, settings = VARIANTS[name]
    budget = BENCH_BUDGET if budget is None else budget
    lines = base_text.splitlines()
    orig = yaml.safe_load(base_text)
    base = _budgeted(orig, budget)
    for dotted, value in budget.items():
        block, _, key = dotted.rpartition(".")
        if (orig[block] if block else orig)[key] != value:
            _set_nested(lines, dotted, value) if block else _set_choice(lines, key, _yaml_scalar(value))
    if "multitask_ratio" in orig and "multitask_ratio" not in base:
        _filter_conf(lines, "multitask_ratio", [])
    for dotted, value in settings.items():
        _set_nested(lines, dotted, value)
    for key, value in changes.items():
        _set_choice(lines, key, value)
        _filter_conf(lines, f"{key}_conf", accepted_conf_keys(key, value))
    variant = {**base, **changes}
    if ignores_prompt(variant) and isinstance(base.get("model_conf"), dict):
        _filter_conf(lines, "model_conf", [k for k in base["model_conf"] if k not in PROMPT_MODEL_KEYS])
    if tasks is not None:
        _keep_tasks(lines, tasks)
        iters = per_task_iters(base, tasks)
        if iters is not None:
            _set_choice(lines, "num_iters_per_epoch", str(iters))
    want = expected_config(base, changes, tasks, settings)
    budget_text = ", ".join(f"{k} {_yaml_scalar(v)}" for k, v in budget.items())
    header = [
        f"# GENERATED by local/make_tuning_configs.py from {base_name}: do not edit, rerun the script.",
        f"# Differs from {base_name} only in: {what}; and the benchmark's budget ({budget_text}).",
        f"# Changed keys: {'; '.join(describe_changes(orig, want)) or 'none'}.",
    ]
    text = "\n".join(header + lines) + "\n"
    got = yaml.safe_load(text)
    if got != want:  # the text edits must equal the intended data change, or we refuse to write
        raise RuntimeError(f"{name}: text edit of {base_name} does not give the intended config")
    return text


def write_all(base: Path, out_dir: Path, check: bool = False, names: Optional[Sequence[str]] = None,
              budget: Optional[Dict[str, Any]] = None) -> List[Path]:
    """Write (or with ``check``, compare) the variants ``names`` (default: all of VARIANTS) at ``budget``."""
    base_text = base.read_text(encoding="utf-8")
    written, stale = [], []
    for name in VARIANTS if names is None else names:
        text = make_variant(base_text, name, base_name=f"{base.parent.name}/{base.name}", budget=budget)
        path = out_dir / f"{name}.yaml"
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    if stale:
        raise SystemExit(f"stale or missing (rerun local/make_tuning_configs.py): {', '.join(map(str, stale))}")
    return written


def main(argv=None) -> List[Path]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="conf/train.yaml", help="the full model's config")
    p.add_argument("--out_dir", default="conf/tuning")
    p.add_argument("--check", action="store_true", help="only check that the files on disk are up to date")
    args = p.parse_args(argv)
    paths = write_all(Path(args.base), Path(args.out_dir), args.check)
    for path in paths:
        print(f"wrote {path}")
    if args.check:
        print("tuning configs are up to date", file=sys.stderr)
    return paths


if __name__ == "__main__":
    main()
