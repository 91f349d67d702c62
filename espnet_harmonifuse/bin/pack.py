#!/usr/bin/env python3
"""Pack a trained model into one zip that ``HarmoniFuse.from_pretrained(zip)`` loads anywhere.

The zip holds ``config.yaml``, ``model.pth``, the tokenizer and, when present,
``RESULTS.md`` and ``images/``. Hugging Face components given by hub name or local
directory are rewritten to their inline configs (the weights are in model.pth),
so loading the zip needs neither the original directories nor the hub.
"""

import argparse
import logging
import tempfile
import zipfile
from pathlib import Path

import yaml


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--exp_dir", required=True)
    p.add_argument("--model_file", default=None, help="file name in exp_dir (default: the best model)")
    p.add_argument("--out", required=True, help="output .zip")
    return p


def _inline_hf_config(conf: dict, hf_model) -> dict:
    """``model_name_or_path`` -> ``config`` (the loaded model's own config)."""
    conf = dict(conf)
    if conf.get("model_name_or_path") is not None:
        base = hf_model.get_base_model() if hasattr(hf_model, "get_base_model") else hf_model
        cfg = base.config.to_dict()
        for key in ("_name_or_path", "transformers_version", "architectures"):
            cfg.pop(key, None)
        conf["config"], conf["model_name_or_path"] = cfg, None
    return conf


def main(cmd=None) -> Path:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s: %(message)s")
    from espnet_harmonifuse.api import HarmoniFuse, resolve_model_dir

    exp = Path(args.exp_dir)
    config_file, model_file = resolve_model_dir(exp, args.model_file)
    hf = HarmoniFuse.from_pretrained(exp, args.model_file)
    conf = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    if conf.get("backbone") == "hf_ssl":
        conf["backbone_conf"] = _inline_hf_config(conf["backbone_conf"], hf.model.backbone.model)
    conf["decoder_conf"] = _inline_hf_config(conf["decoder_conf"], hf.model.decoder.lm)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        if conf.get("token_type") == "sentencepiece":
            zf.write(conf["bpemodel"], "tokenizer/bpe.model")
            conf["bpemodel"] = "tokenizer/bpe.model"
        else:
            hf.tokenizer.tok.save_pretrained(Path(tmp) / "hf")
            for f in sorted((Path(tmp) / "hf").iterdir()):
                zf.write(f, f"tokenizer/hf/{f.name}")
            conf["tokenizer_name_or_path"] = "tokenizer/hf"
        zf.writestr("config.yaml", yaml.safe_dump(conf, sort_keys=False, allow_unicode=True))
        zf.write(model_file, "model.pth")
        for extra in [exp / "RESULTS.md", *sorted((exp / "images").glob("*.png"))]:
            if extra.is_file():
                zf.write(extra, extra.relative_to(exp).as_posix())
    logging.info(f"packed {model_file} into {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return out


if __name__ == "__main__":
    main()
