"""One task's ESPnet iterator factory whose batches every DDP rank can share.

ESPnet's ``build_sequence_iter_factory`` splits each batch as ``batch[rank::world_size]`` and stops
with an error when a batch holds fewer utterances than there are ranks (a rank would get an empty
batch). Its ``sorted`` and ``unsorted`` samplers make such batches when ``--batch_size`` is below the
world size or a task's data set is smaller than it (a small validation set). Here, before the split,
a short batch joins its neighbour (with ``sorted`` batches, utterances of similar length), and a data
set smaller than the world size is repeated to fill one batch, so every rank gets at least one
utterance of every batch, the same batches on every rank, and the ranks' shares are disjoint.
"""

import itertools
import logging
from pathlib import Path
from typing import List, Sequence, Tuple

import torch
from espnet2.iterators.sequence_iter_factory import SequenceIterFactory
from espnet2.samplers.build_batch_sampler import build_batch_sampler

Batch = Tuple[str, ...]


def fit_batches_to_world(batches: Sequence[Sequence[str]], world_size: int, where: str = "") -> List[Batch]:
    """``batches`` regrouped so that each holds at least ``world_size`` utterances, in their order.

    A batch shorter than ``world_size`` is merged into the one before it (the first into the next);
    when all utterances together are fewer than ``world_size``, they are repeated cyclically to
    fill one batch of ``world_size``.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    out: List[Batch] = []
    for batch in batches:
        if out and len(out[-1]) < world_size:
            out[-1] += tuple(batch)
        else:
            out.append(tuple(batch))
    if len(out) > 1 and len(out[-1]) < world_size:
        last = out.pop()
        out[-1] += last
    merged = len(batches) - len(out)
    if out and len(out[0]) < world_size:
        keys = out[0]
        out[0] = tuple(keys[i % len(keys)] for i in range(world_size))
        logging.warning(
            f"{where}: {len(keys)} utterance(s) for {world_size} DDP ranks: repeated to fill one batch "
            f"(some utterances count twice in each step)"
        )
    elif merged:
        logging.warning(
            f"{where}: {merged} batch(es) held fewer utterances than the {world_size} DDP ranks and were merged "
            f"into their neighbours; set --batch_size to {world_size} or more to keep the batch size"
        )
    return out


def build_task_iter_factory(task_cls, args, options, mode: str) -> SequenceIterFactory:
    """ESPnet's sequence iterator factory for one task (``options``: its IteratorOptions), with the
    batches fitted to the world size before ESPnet's ``batch[rank::world_size]`` split."""
    world_size = torch.distributed.get_world_size() if options.distributed else 1
    category = Path(options.data_path_and_name_and_type[0][0]).parent / "utt2category"
    sampler = build_batch_sampler(
        type=options.batch_type, shape_files=options.shape_files, fold_lengths=args.fold_length,
        batch_size=options.batch_size, batch_bins=options.batch_bins, sort_in_batch=args.sort_in_batch,
        sort_batch=args.sort_batch, drop_last=args.drop_last_iter,
        min_batch_size=world_size if options.distributed else args.min_batch_size,
        utt2category_file=str(category) if category.exists() else None,
    )
    batches = [tuple(b) for b in sampler]
    if options.num_batches is not None:
        batches = batches[: options.num_batches]
    if options.distributed:
        batches = fit_batches_to_world(batches, world_size, f"[{mode}] {options.shape_files[0]}")
        rank = torch.distributed.get_rank()
        batches = [b[rank::world_size] for b in batches]
    sizes = [len(b) for b in batches]
    logging.info(f"[{mode}] {sampler}: {len(batches)} batches of {min(sizes)}-{max(sizes)} utterances per rank")
    dataset = task_cls.build_dataset(args, options, set(itertools.chain(*batches)))
    return SequenceIterFactory(
        dataset=dataset,
        batches=batches,
        seed=args.seed,
        num_iters_per_epoch=options.num_iters_per_epoch,
        shuffle=options.train,
        shuffle_within_batch=args.shuffle_within_batch,
        num_workers=args.num_workers,
        collate_fn=options.collate_fn,
        pin_memory=args.ngpu > 0,
    )
