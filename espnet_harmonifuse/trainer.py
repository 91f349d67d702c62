"""ESPnet's Trainer, with files that a kill cannot leave half-written or out of step.

After each epoch ESPnet's ``Trainer.run`` writes ``checkpoint.pth`` (model, optimizers, schedulers,
reporter: what ``--resume true`` restarts from), then ``<N>epoch.pth``, the ``latest.pth`` and
``*.best.pth`` links, and removes the epoch files it no longer keeps. :class:`HarmoniFuseTrainer`
keeps ESPnet's ``run`` and changes how its files are written and read:

- each ``torch.save`` to a path during ``run`` writes a temporary file in the same folder and
  renames it over the target: the target is the old file or the new one, never a part of one;
- ``checkpoint.pth`` is renamed into place last, when the next epoch starts or training ends,
  after the epoch's other files. A run killed before that resumes from the previous checkpoint and
  trains the epoch again, which writes the same files (training is a function of the seed and the
  epoch), so the checkpoint never runs ahead of the epoch files and links;
- the checkpoint it replaces is kept as ``checkpoint.prev.pth``;
- ``--plot_interval N`` draws ESPnet's per-epoch curves (``images/*.png``) every N epochs and after
  the last one instead of after every epoch (each drawing costs about a second on a CPU, while an
  epoch of the mini recipes takes 10-15 s);
- resuming reads the checkpoint without pickle (``weights_only``: utils/checkpoint.py); when
  ``checkpoint.pth`` cannot be read (cut short by a copy or a full disk), it warns and resumes from
  ``checkpoint.prev.pth``, training the last epoch again. With neither readable it stops and says
  so: an ``<N>epoch.pth`` has the weights only, without the optimizer state and the reporter's
  history (best epochs, early stopping), so a resume from it would not end where the uninterrupted
  run ends.

:class:`TaskStatsTrainer` adds the epoch's ``acc_tasks`` (task_stats.py), the checkpoint criterion of
the recipes.
"""

import argparse
import dataclasses
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Tuple

import torch
from espnet2.train.reporter import Reporter
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass

from espnet_harmonifuse.task_stats import accuracy_keys, add_task_mean
from espnet_harmonifuse.utils.checkpoint import CheckpointError, safe_torch_load

CHECKPOINT = "checkpoint.pth"
PREVIOUS = "checkpoint.prev.pth"


def _staging(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


class AtomicSaver:
    """A stand-in for ``torch.save`` that writes paths atomically and holds back the checkpoint."""

    def __init__(self, save=torch.save):
        self._save = save
        self.pending: Optional[Tuple[Path, Path]] = None  # (written temporary file, checkpoint path)

    def __call__(self, obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return self._save(obj, f, *args, **kwargs)
        path = Path(f)
        staged = _staging(path)
        with open(staged, "wb") as out:
            self._save(obj, out, *args, **kwargs)
            out.flush()
            os.fsync(out.fileno())
        if path.name == CHECKPOINT:
            self.commit()
            self.pending = (staged, path)
        else:
            os.replace(staged, path)

    def commit(self) -> None:
        """Put the held-back checkpoint in place; the one it replaces becomes ``checkpoint.prev.pth``."""
        if self.pending is None:
            return
        staged, path = self.pending
        self.pending = None
        if path.exists():
            previous = path.with_name(PREVIOUS)
            keep = _staging(previous)
            keep.unlink(missing_ok=True)
            try:
                os.link(path, keep)
            except OSError:  # a file system without hard links
                shutil.copyfile(path, keep)
            os.replace(keep, previous)
        os.replace(staged, path)


_active: Optional[AtomicSaver] = None


@contextmanager
def atomic_saves():
    """Within the block, ``torch.save`` to a path is atomic and the checkpoint is held back."""
    global _active
    saver, original = AtomicSaver(torch.save), torch.save
    _active, torch.save = saver, saver
    try:
        yield saver
    finally:
        _active, torch.save = None, original


def load_resumable(checkpoint: Path, map_location: str = "cpu") -> Tuple[dict, Path]:
    """The states of ``checkpoint``, or of ``checkpoint.prev.pth`` (with a warning) when it cannot be read."""
    try:
        return safe_torch_load(checkpoint, map_location), checkpoint
    except CheckpointError as e:
        error = e
    previous = checkpoint.with_name(PREVIOUS)
    fix = (
        f"Fix: remove '{checkpoint}' to train this model from the first epoch (its <N>epoch.pth files hold "
        "weights only, without the optimizer and reporter states that a resume needs)"
    )
    if not previous.is_file():
        raise CheckpointError(f"cannot resume: {error}\nThere is no '{previous}' to resume from instead. {fix}")
    try:
        states = safe_torch_load(previous, map_location)
    except CheckpointError as e:
        raise CheckpointError(f"cannot resume: {error}\nand the previous one cannot be read either: {e}\n{fix}") from None
    logging.warning(
        f"cannot read '{checkpoint}' ({error}); resuming from the previous checkpoint '{previous}' "
        f"(after epoch {states['reporter']['epoch']}): epoch {states['reporter']['epoch'] + 1} is trained again"
    )
    return states, previous


@contextmanager
def sparse_plots(interval: int):
    """Within the block, ESPnet's ``Reporter.matplotlib_plot`` draws every ``interval`` epochs only;
    leaving the block draws the last epoch if it was skipped."""
    original = Reporter.matplotlib_plot
    skipped = {}

    def plot(reporter, output_dir):
        if reporter.get_epoch() % interval == 0:
            skipped.pop("last", None)
            return original(reporter, output_dir)
        skipped["last"] = (reporter, output_dir)

    Reporter.matplotlib_plot = plot
    try:
        yield
    finally:
        Reporter.matplotlib_plot = original
    if "last" in skipped:
        original(*skipped["last"])


@dataclasses.dataclass
class HarmoniFuseTrainerOptions(TrainerOptions):
    plot_interval: int


class HarmoniFuseTrainer(Trainer):
    """ESPnet's Trainer with atomic checkpoint writes, a resume that survives a damaged checkpoint
    and ESPnet's per-epoch plots every ``--plot_interval`` epochs."""

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser):
        parser.add_argument(
            "--plot_interval",
            type=int,
            default=1,
            help="Draw the training curves (images/*.png, with --use_matplotlib true) every N epochs and "
            "after the last one; 1 draws them after every epoch, as ESPnet does",
        )

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> TrainerOptions:
        if args.plot_interval < 1:
            raise ValueError(f"--plot_interval must be 1 or more (got {args.plot_interval})")
        return build_dataclass(HarmoniFuseTrainerOptions, args)

    @classmethod
    def run(cls, *args, **kwargs) -> None:
        options = kwargs.get("trainer_options")
        interval = getattr(options, "plot_interval", 1)
        fit_targets(kwargs.get("model"), kwargs.get("train_iter_factory"), options)
        with atomic_saves() as saver, sparse_plots(interval):
            super().run(*args, **kwargs)
            saver.commit()

    @classmethod
    def train_one_epoch(cls, *args, **kwargs) -> bool:
        if _active is not None:  # the previous epoch's files are all written: its checkpoint goes in place
            _active.commit()
        return super().train_one_epoch(*args, **kwargs)

    @staticmethod
    def resume(checkpoint, model, reporter, optimizers, schedulers, scaler, ngpu: int = 0, strict: bool = True):
        """ESPnet's ``Trainer.resume``, reading without pickle and falling back on ``checkpoint.prev.pth``."""
        location = f"cuda:{torch.cuda.current_device()}" if ngpu > 0 else "cpu"
        states, used = load_resumable(Path(checkpoint), location)
        model.load_state_dict(states["model"], strict=strict)
        reporter.load_state_dict(states["reporter"])
        for optimizer, state in zip(optimizers, states["optimizers"]):
            optimizer.load_state_dict(state)
        for scheduler, state in zip(schedulers, states["schedulers"]):
            if scheduler is not None:
                scheduler.load_state_dict(state)
        if scaler is not None:
            if states["scaler"] is None:
                logging.warning("scaler state is not found")
            else:
                scaler.load_state_dict(states["scaler"])
        logging.info(f"The training was resumed using {used}")


def fit_targets(model, train_iter_factory, options) -> None:
    """Fit what a model learns from before its first step (``encoder_pretrain``'s cluster centroids:
    ``fit_clusters``) on the first training batches, unless it has them or a checkpoint to resume
    from holds them. Under DDP rank 0 fits and the others receive its result."""
    inner = getattr(model, "module", model)
    if model is None or not hasattr(inner, "fit_clusters") or inner.fitted:
        return
    if getattr(options, "resume", False) and (Path(options.output_dir) / CHECKPOINT).exists():
        return
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if not distributed or torch.distributed.get_rank() == 0:
        from espnet2.torch_utils.device_funcs import to_device

        device = next(inner.parameters()).device
        logging.info("fitting the model's %d cluster centroids on up to %d frames of the first training batches",
                     inner.num_clusters, inner.cluster_frames)
        batches = (to_device(batch, device) for _, batch in train_iter_factory.build_iter(1))
        inner.fit_clusters(batches, seed=getattr(options, "seed", 0))
    if distributed:
        for t in (inner.centroids, inner.clusters_fitted, inner.mask_embedding.data):
            torch.distributed.broadcast(t, 0)


class TaskStatsTrainer(HarmoniFuseTrainer):
    """:class:`HarmoniFuseTrainer` that reports ``acc_tasks`` for every training and validation epoch,
    so that ``best_model_criterion`` can select and average checkpoints on it."""

    @classmethod
    def train_one_epoch(cls, **kwargs) -> bool:
        all_steps_are_invalid = super().train_one_epoch(**kwargs)
        add_task_mean(kwargs["reporter"], accuracy_keys(kwargs["model"]))
        return all_steps_are_invalid

    @classmethod
    def validate_one_epoch(cls, **kwargs) -> None:
        super().validate_one_epoch(**kwargs)
        add_task_mean(kwargs["reporter"], accuracy_keys(kwargs["model"]))
