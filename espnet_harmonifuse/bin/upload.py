#!/usr/bin/env python3
"""Share a packed model on the Hugging Face Hub (recipe stage 11), as ESPnet's asr.sh upload stage.

    python -m espnet_harmonifuse.bin.upload --exp_dir exp/train --hf_repo org/name \\
        [--packed exp/train/packed.zip] [--train_config conf/train.yaml] [--dry_run true]

Writes the folder to upload into ``--out_dir`` (default ``EXP_DIR/hf_upload``): the packed model's
files (``config.yaml``, ``model.pth``, ``tokenizer/``, ``RESULTS.md``, ``images/``), the training
configs under ``conf/`` and a model card ``README.md``; then creates the repository (if needed) and
uploads the folder with ``huggingface_hub``. ``--dry_run true`` stops after writing the folder.
The uploaded model loads with ``HarmoniFuse.from_pretrained("org/name")``.
"""

import argparse
import logging
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import yaml
from espnet2.utils.types import str2bool

from espnet_harmonifuse.utils.hub import looks_like_repo_id
from espnet_harmonifuse.utils.packed import check_members

PAPER = "https://arxiv.org/abs/2509.18570"


class UploadError(RuntimeError):
    """A missing input or a refused upload; the message says what to do."""


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True, help="the experiment dir (its RESULTS.md goes into the model card)")
    p.add_argument("--hf_repo", required=True, help="the Hub repository, org/name")
    p.add_argument("--packed", default=None, help="the packed model (default: EXP_DIR/packed.zip, stage 10)")
    p.add_argument("--out_dir", default=None, help="the folder to upload (default: EXP_DIR/hf_upload)")
    p.add_argument("--train_config", action="append", default=[],
                   help="a config the model was trained with, copied to conf/ (repeatable)")
    p.add_argument("--recipe", default=None, help="the recipe, egs2/<recipe>/harmonifuse1 (named in the card)")
    p.add_argument("--language", default="en", help="language tag(s) of the card (space or comma list)")
    p.add_argument("--datasets", default=None, help="dataset tag(s) of the card (default: the recipe's name)")
    p.add_argument("--license", default="cc-by-4.0", help="license tag of the card (ESPnet's models use cc-by-4.0)")
    p.add_argument("--private", type=str2bool, default=False, help="create the repository as private")
    p.add_argument("--dry_run", type=str2bool, default=False, help="write the folder only; upload nothing")
    return p


def words(value: Optional[str]) -> List[str]:
    return [w for w in (value or "").replace(",", " ").split() if w]


def front_matter(conf: Dict, args) -> Dict:
    """The card's YAML metadata, as ESPnet's model cards: library, tags, language, datasets, metrics."""
    tasks = conf.get("tasks") or []
    text_tasks = [t for t in tasks if t.get("target", "text") == "text"]
    label_tasks = [t for t in tasks if t.get("target") == "label"]
    tags = ["espnet", "espnet-harmonifuse", "harmonifuse", "audio"]
    tags += ["automatic-speech-recognition"] if text_tasks else []
    tags += ["audio-classification"] if label_tasks else []
    tags += ["speech-emotion-recognition"] if any(t.get("name") == "ser" for t in label_tasks) else []
    metrics = (["wer", "cer"] if text_tasks else []) + (["recall", "accuracy", "f1"] if label_tasks else [])
    meta = {"library_name": "espnet", "tags": tags, "language": words(args.language),
            "datasets": words(args.datasets) or ([args.recipe] if args.recipe else []), "license": args.license,
            "metrics": metrics}
    if text_tasks:
        meta["pipeline_tag"] = "automatic-speech-recognition"
    return {k: v for k, v in meta.items() if v}


def task_table(conf: Dict) -> str:
    rows = ["| task | output | first prompt |", "|---|---|---|"]
    for t in conf.get("tasks") or []:
        out = "one of " + ", ".join(t.get("labels") or []) if t.get("target") == "label" else "transcript"
        rows.append(f"| `{t.get('name')}` | {out} | {(t.get('prompts') or [''])[0]} |")
    return "\n".join(rows)


def model_card(conf: Dict, args, results_md: Optional[str], configs: Sequence[Path]) -> str:
    """README.md of the Hub repository: metadata, what the model does, how to load it, results, configs."""
    meta = yaml.safe_dump(front_matter(conf, args), sort_keys=False, allow_unicode=True)
    recipe = f"the `egs2/{args.recipe}/harmonifuse1` recipe of " if args.recipe else ""
    names = [t.get("name") for t in conf.get("tasks") or []]
    first = names[0] if names else "asr"
    lines = [
        f"---\n{meta}---", "", f"## HarmoniFuse model: `{args.hf_repo}`", "",
        f"A multi-task speech language model ([HarmoniFuse]({PAPER})) trained with {recipe}"
        "espnet-harmonifuse, an [ESPnet](https://github.com/espnet/espnet) plugin: a speech encoder "
        f"({conf.get('backbone')}) whose layers are fused per task prompt ({conf.get('fusion')}) and gated "
        f"({conf.get('gate')}), and a causal LM that writes the answer.", "", task_table(conf), "",
        "### How to use", "", "With the `espnet-harmonifuse` package installed (`pip install -e .` in its source):",
        "", "```python",
        "from espnet_harmonifuse import HarmoniFuse", "",
        f'model = HarmoniFuse.from_pretrained("{args.hf_repo}")  # device="cuda", dtype="bfloat16" also work',
        *[f'model("utt.wav", task="{n}")' for n in names], "```", "",
        "Audio: 16 kHz mono. From the command line (an ESPnet data dir):", "", "```bash",
        f"python -m espnet2.bin.harmonifuse_inference --model_dir {args.hf_repo} --task {first} \\",
        "    --data_path_and_name_and_type data/test/wav.scp,speech,sound --output_dir out", "```", "",
        "With `HF_HUB_OFFLINE=1` a model downloaded before loads from the local hub cache.", "",
    ]
    if results_md:
        lines += ["### Results", "", results_md.strip(), ""]
    for c in configs:
        lines += [f"### Training config (`conf/{c.name}`)", "", "<details><summary>expand</summary>", "",
                  "```yaml", c.read_text(encoding="utf-8").strip(), "```", "", "</details>", ""]
    lines += ["### Files", "", "- `config.yaml`: every option of the model (Hugging Face parts inline), read by "
              "`from_pretrained`", "- `model.pth`: the weights (plain tensors: `torch.load(..., weights_only=True)`)",
              "- `tokenizer/`: the tokenizer", "- `conf/`: the training config(s) of the recipe", "",
              "### Citing", "", f"HarmoniFuse: {PAPER}. ESPnet: https://github.com/espnet/espnet", ""]
    return "\n".join(lines)


def write_folder(args) -> Path:
    """The folder to upload, written anew (into a temporary dir renamed into place)."""
    exp = Path(args.exp_dir)
    packed = Path(args.packed) if args.packed else exp / "packed.zip"
    out = Path(args.out_dir) if args.out_dir else exp / "hf_upload"
    if not packed.is_file():
        raise UploadError(f"packed model '{packed}' not found: run the pack stage first (harmonifuse.sh --stage 10)")
    configs = [Path(c) for c in args.train_config]
    for c in configs:
        if not c.is_file():
            raise UploadError(f"training config '{c}' not found: give the config the model was trained with")
    if len({c.name for c in configs}) < len(configs):
        raise UploadError(f"training configs with the same file name: {', '.join(map(str, configs))}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with zipfile.ZipFile(packed) as zf:
            check_members(zf, packed)
            zf.extractall(tmp)
        conf = yaml.safe_load((tmp / "config.yaml").read_text(encoding="utf-8"))
        if configs:
            (tmp / "conf").mkdir()
        for c in configs:
            shutil.copyfile(c, tmp / "conf" / c.name)
        results = exp / "RESULTS.md"
        results_md = results.read_text(encoding="utf-8") if results.is_file() else None
        (tmp / "README.md").write_text(model_card(conf, args, results_md, configs), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def upload(folder: Path, repo: str, private: bool) -> str:
    """Create ``repo`` (if needed) and upload ``folder`` to it; returns the repository's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, LocalTokenNotFoundError

    api = HfApi()
    try:
        url = api.create_repo(repo, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message="Upload HarmoniFuse model")
    except (HfHubHTTPError, LocalTokenNotFoundError, OSError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UploadError(f"uploading {folder} to {repo} failed: {why}. "
                          "Log in (hf auth login, or set HF_TOKEN) with write access to the repository and run the "
                          f"stage again, or upload the folder later: hf upload {repo} {folder}") from None
    return str(url)


def main(cmd=None) -> Path:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (upload) %(levelname)s: %(message)s")
    try:
        if not looks_like_repo_id(args.hf_repo):
            raise UploadError(f"--hf_repo '{args.hf_repo}' is not a Hub repository id: give org/name")
        folder = write_folder(args)
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        logging.info(f"wrote {folder}: {', '.join(files)}")
        if args.dry_run:
            logging.info(f"dry run: nothing uploaded (hf upload {args.hf_repo} {folder} uploads it)")
        else:
            logging.info(f"uploaded to {upload(folder, args.hf_repo, args.private)}")
    except UploadError as e:
        logging.error(f"{e}")
        sys.exit(1)
    return folder


if __name__ == "__main__":
    main()
