"""Reproducible, resumable data order for single-process and DDP training.

For a map-style dataset, epoch ``e`` visits ``randperm(N, seed=hash(seed, e))``. The permutation is cut into
global batches of ``batch_size * world_size`` indices; process ``r`` takes every ``world_size``-th index starting
at ``r`` (as ``DistributedSampler`` does), so a step of two processes with batch 1 sees the same samples as one
process with batch 2. An incomplete final global batch is dropped. The position (epoch, batches done) is part of
every checkpoint, so a resumed run continues with the very next batch.

Each sample is fetched with a seed derived from ``(seed, epoch, index)``; :class:`SeededDataset` uses it to seed
the dataset's random transforms and adds it to the sample as ``sample_seed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from wdm_inpaint.seeding import derive_seed
from wdm_inpaint.training.task import SAMPLE_SEED_KEY



class ResumableSampler(Sampler[tuple[int, int]]):
    """Yields ``(dataset_index, sample_seed)`` in a seeded order, sharded over DDP ranks, resumable mid-epoch.

    Args:
        num_samples: dataset length.
        batch_size: samples per process and step.
        seed: base seed.
        rank: this process' rank.
        world_size: number of processes.

    Raises:
        ValueError: the dataset holds fewer samples than one global batch.
    """

    def __init__(self, num_samples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.global_batch = batch_size * world_size
        if num_samples < self.global_batch:
            raise ValueError(
                f"the dataset has {num_samples} samples, fewer than one global batch "
                f"({batch_size} per process x {world_size} processes)"
            )
        self.batches_per_epoch = num_samples // self.global_batch
        self.epoch = 0
        self.batches_done = 0
        """Batches of the current epoch already handed out (and consumed) before a resume."""

    def permutation(self, epoch: int) -> torch.Tensor:
        """The dataset order of ``epoch``."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
        return torch.randperm(self.num_samples, generator=g)

    def set_position(self, epoch: int, batches_done: int) -> None:
        """Continue at batch ``batches_done`` of ``epoch`` (from a checkpoint)."""
        self.epoch, self.batches_done = epoch, batches_done

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.batches_done) * self.batch_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, start = self.epoch, self.batches_done
        perm = self.permutation(epoch)
        for b in range(start, self.batches_per_epoch):
            chunk = perm[b * self.global_batch : (b + 1) * self.global_batch]
            for idx in chunk[self.rank :: self.world_size].tolist():
                yield idx, derive_seed(self.seed, "sample", epoch, idx)


class SeededDataset(Dataset):
    """Wraps a map-style dataset: ``ds[(index, seed)]`` seeds the random transforms, then adds ``sample_seed``.

    Random transforms are seeded when the dataset (or its ``transform``) has MONAI's ``set_random_state``.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        for target in (self.dataset, getattr(self.dataset, "transform", None)):
            if target is not None and hasattr(target, "set_random_state"):
                target.set_random_state(seed=seed % 2**32)
        sample = self.dataset[index]
        if not isinstance(sample, dict):
            raise TypeError(f"training samples must be dicts of tensors, got {type(sample).__name__} at index {index}")
        sample = dict(sample)
        sample[SAMPLE_SEED_KEY] = torch.tensor(seed, dtype=torch.int64)
        return sample


class BatchStream:
    """Endless stream of batches with a restorable position.

    A map-style ``torch.utils.data.Dataset`` (of sample dicts) goes through a ``DataLoader`` with
    :class:`ResumableSampler`; any other iterable (of batch dicts, e.g. a list) is re-iterated every epoch and,
    on resume, the batches already consumed in the current epoch are skipped (so the iterable must yield the same
    batches each time it is iterated).
    """

    def __init__(
        self,
        data: Dataset | Iterable[dict[str, Any]],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        collate_fn: Any = None,
    ) -> None:
        self.map_style = isinstance(data, Dataset) and not isinstance(data, torch.utils.data.IterableDataset)
        self.data = data
        self.seed = seed
        self.epoch = 0
        self.batches_done = 0
        if self.map_style:
            self.sampler: ResumableSampler | None = ResumableSampler(
                len(data), batch_size, seed, rank, world_size  # type: ignore[arg-type]
            )
            self.loader = torch.utils.data.DataLoader(
                SeededDataset(data),  # type: ignore[arg-type]
                batch_size=batch_size,
                sampler=self.sampler,
                num_workers=num_workers,
                collate_fn=collate_fn,
                drop_last=True,
                persistent_workers=False,
            )
        else:
            if world_size > 1:
                raise ValueError("DDP training needs a map-style dataset (with __len__ and __getitem__)")
            self.sampler = None
        self._iter: Iterator[dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, int]:
        """Position: epoch and batches consumed in it."""
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a :meth:`state_dict` position."""
        self.epoch, self.batches_done = int(state["epoch"]), int(state["batches_done"])
        self._iter = None

    def _start_epoch(self) -> Iterator[dict[str, Any]]:
        if self.sampler is not None:
            self.sampler.set_position(self.epoch, self.batches_done)
            # the loader draws its workers' base seed from this generator, not from the global RNG, so starting an
            # epoch (or resuming mid-epoch) leaves the global RNG untouched
            self.loader.generator = torch.Generator().manual_seed(
                derive_seed(self.seed, "loader", self.epoch, self.batches_done)
            )
            return iter(self.loader)
        it = iter(self.data)
        for _ in range(self.batches_done):
            next(it)
        return it

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        for _attempt in range(2):
            if self._iter is None:
                self._iter = self._start_epoch()
            try:
                batch = next(self._iter)
            except StopIteration:
                if self.batches_done == 0:
                    raise ValueError("the training data yielded no batch") from None
                self.epoch += 1
                self.batches_done = 0
                self._iter = None
                continue
            self.batches_done += 1
            return batch
        raise ValueError("the training data yielded no batch")


__all__ = ["BatchStream", "ResumableSampler", "SeededDataset"]
