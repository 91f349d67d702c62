"""Python API: ``HarmoniFuse.from_pretrained(exp dir, packed zip or Hub id)`` then ``model(wav, task="asr")``."""

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from espnet_harmonifuse.decoder.inputs import pack
from espnet_harmonifuse.decoding import beam_search, greedy_search, score_labels
from espnet_harmonifuse.espnet_model import HarmoniFuseModel
from espnet_harmonifuse.utils.checkpoint import CheckpointError, load_state_dict_strict
from espnet_harmonifuse.utils.device import autocast_method, resolve_device, resolve_dtype
from espnet_harmonifuse.utils.hub import looks_like_repo_id, snapshot_dir
from espnet_harmonifuse.utils.packed import extract_packed

# the packed model; the recipes' selection (valid.acc_tasks: task_stats.py); ESPnet's own criteria
MODEL_FILE_CANDIDATES = (
    "model.pth", "valid.acc_tasks.ave.pth", "valid.loss.best.pth", "valid.acc.best.pth", "valid.loss.ave.pth",
    "latest.pth",
)


def resolve_model_dir(path: Union[str, Path], model_file: Optional[str] = None, revision: Optional[str] = None):
    """``(config.yaml, model file)`` of an exp dir, a packed zip (extracted into a cache dir:
    ``$ESPNET_HARMONIFUSE_CACHE``, default ``~/.cache/espnet_harmonifuse``; see utils/packed.py) or a
    Hugging Face Hub model ``org/name`` at ``revision`` (through the hub's cache; see utils/hub.py)."""
    path = Path(path)
    if not path.exists() and looks_like_repo_id(path):
        path = snapshot_dir(str(path), revision)
    if not path.exists():
        raise FileNotFoundError(f"'{path}' does not exist: give an exp dir (with config.yaml) or a packed .zip, "
                                "or a Hugging Face Hub model id (org/name)")
    if path.is_file() and path.suffix == ".zip":
        path = extract_packed(path)
    config = path / "config.yaml" if path.is_dir() else path
    base = config.parent
    if model_file is not None:
        mf = Path(model_file) if Path(model_file).exists() else base / model_file
    else:
        found = [base / c for c in MODEL_FILE_CANDIDATES if (base / c).is_file()]
        if not found:
            raise FileNotFoundError(f"no model file in '{base}' (looked for {', '.join(MODEL_FILE_CANDIDATES)})")
        mf = found[0]
    return config, mf


def _rebase_paths(args, base: Path) -> None:
    """Relative tokenizer paths in a packed config are relative to the config's dir."""
    for key in ("bpemodel", "tokenizer_name_or_path"):
        value = getattr(args, key, None)
        if value and not Path(value).is_absolute() and (base / value).exists():
            setattr(args, key, str(base / value))


def load_model(path: Union[str, Path], model_file: Optional[str] = None, revision: Optional[str] = None):
    """``(model, args, (config.yaml, model file))``: the model a config describes (HarmoniFuse or an
    encoder pre-training), on the CPU, with the weights of ``model_file`` loaded strictly; ``path`` as
    :func:`resolve_model_dir` takes it."""
    import argparse

    import yaml

    from espnet_harmonifuse.builder import build_model

    config, mf = resolve_model_dir(path, model_file, revision)
    with open(config, encoding="utf-8") as f:
        args = argparse.Namespace(**yaml.safe_load(f))
    _rebase_paths(args, config.parent)
    model = build_model(args)
    try:
        load_state_dict_strict(model, mf, config)
    except CheckpointError as e:
        if Path(path).suffix == ".zip":  # its cache dir alone would not say which model
            raise CheckpointError(f"packed model '{path}': {e}") from None
        raise
    return model, args, (config, mf)


class HarmoniFuse:
    """A trained HarmoniFuse model ready to decode.

    >>> hf = HarmoniFuse.from_pretrained("exp/harmonifuse_train")   # or packed.zip
    >>> hf("sample.wav", task="asr")
    'THE RED DOG SEES A BIRD'
    >>> hf("sample.wav", task="ser")
    'happy'
    """

    def __init__(self, model: HarmoniFuseModel, train_args, device: str = "cpu", dtype=None):
        """``dtype`` (float32, bfloat16, float16; default: the model's own) casts the weights, and decoding
        runs under autocast to it (utils/device.py)."""
        from espnet_harmonifuse.builder import build_tokenizer_from_args

        self.device = resolve_device(device)
        self.dtype = None if dtype is None else resolve_dtype(dtype)
        if self.dtype is not None and hasattr(model.decoder, "keep_dtype"):
            model.decoder.keep_dtype = False  # asked for by name: the LLM too, unlike training's blanket cast
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.model.state_cache = None  # each utterance is decoded once: the training-time cache would only fill memory
        self.args = train_args
        self.tokenizer = build_tokenizer_from_args(train_args)
        self.task_names = [t.name for t in model.tasks]

    @classmethod
    def from_pretrained(
        cls,
        path: Union[str, Path],
        model_file: Optional[str] = None,
        device: str = "cpu",
        dtype: Optional[str] = None,
        revision: Optional[str] = None,
    ) -> "HarmoniFuse":
        """Load an exp dir, a packed .zip or a Hub model ``org/name`` (``revision``: its branch, tag or
        commit) onto ``device`` (cpu, cuda, cuda:N) in ``dtype`` (float32, bfloat16, float16)."""
        resolve_device(device)  # a wrong device or dtype stops before the model is built
        resolve_dtype(dtype)
        model, args, (config, mf) = load_model(path, model_file, revision)
        logging.info(f"loaded {mf} with {config} on {device}{f' in {dtype}' if dtype else ''}")
        return cls(model, args, device, dtype)

    def task_index(self, task: str) -> int:
        if task not in self.task_names:
            raise ValueError(f"unknown task '{task}'; this model knows {self.task_names}")
        return self.task_names.index(task)

    def __call__(self, wav: Union[str, np.ndarray, torch.Tensor], task: str = "asr", **kwargs) -> str:
        return self.decode([wav], task, **kwargs)[0]["text"]

    def decode(self, wavs: Sequence[Union[str, np.ndarray, torch.Tensor]], task: str, **kwargs) -> List[Dict]:
        """Decode waveforms (paths or 16 kHz mono arrays) as one batch."""
        arrays = [load_wav(w) for w in wavs]
        lengths = torch.tensor([len(a) for a in arrays])
        speech = torch.nn.utils.rnn.pad_sequence([torch.as_tensor(a, dtype=torch.float32) for a in arrays], batch_first=True)
        return self.decode_tensors(speech, lengths, task, **kwargs)

    @torch.no_grad()
    @autocast_method
    def decode_tensors(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        task: str,
        beam_size: int = 1,
        max_new_tokens: int = 128,
        prompt_index: int = 0,
        label_decoding: str = "score",
        length_penalty: float = 0.0,
        use_cache: bool = True,
    ) -> List[Dict]:
        """Decode a padded batch ``(B, S)``; one dict per utterance (text, score, tokens, ...)."""
        index = self.task_index(task)
        spec = self.model.tasks[index]
        task_id = torch.full((speech.size(0),), index, dtype=torch.long)
        parts, extra = self.model.prefix_parts(speech.to(self.device), speech_lengths.to(self.device), task_id, prompt_index)
        embeds, mask, positions = pack(parts, left_pad=True)
        dec, eos = self.model.decoder, self.model.eos_id
        results = []
        if spec.is_label and label_decoding == "score":
            scores = score_labels(dec, embeds, mask, positions, self.model.label_ids[index], eos)
            post = torch.softmax(scores, dim=-1)
            for row, prow in zip(scores.tolist(), post.tolist()):
                best = int(np.argmax(row))
                results.append(
                    dict(text=spec.labels[best], score=row[best], label_posteriors=dict(zip(spec.labels, prow)))
                )
        else:
            if label_decoding not in ("score", "generate"):
                raise ValueError(f"label_decoding must be score or generate, not '{label_decoding}'")
            if beam_size > 1:
                hyps = beam_search(dec, embeds, mask, positions, eos, beam_size, max_new_tokens, length_penalty)
            else:
                hyps = greedy_search(dec, embeds, mask, positions, eos, max_new_tokens, use_cache)
            for tokens, score in hyps:
                results.append(dict(text=self.tokenizer.decode(tokens), score=score, tokens=tokens))
        weights = extra["layer_weights"].cpu().tolist()
        for i, r in enumerate(results):
            r["task"] = task
            r["layer_weights"] = weights[i]
        return results


def load_wav(wav) -> np.ndarray:
    if isinstance(wav, (str, Path)):
        import soundfile as sf

        try:
            data, rate = sf.read(str(wav), dtype="float32", always_2d=True)
        except Exception as e:  # soundfile raises several types for bad files
            raise ValueError(f"cannot read audio '{wav}': {e}") from e
        if rate != 16000:
            raise ValueError(f"'{wav}' is {rate} Hz; HarmoniFuse expects 16 kHz (resample it, e.g. sox in.wav -r 16000 out.wav)")
        data = data.mean(axis=1)
    else:
        data = np.asarray(wav.cpu() if isinstance(wav, torch.Tensor) else wav, dtype=np.float32)
        if data.ndim != 1:
            raise ValueError(f"expected a mono waveform (1-D), got shape {data.shape}")
    if data.size == 0:
        raise ValueError(f"empty audio{f' in {wav}' if isinstance(wav, (str, Path)) else ''}")
    return data
