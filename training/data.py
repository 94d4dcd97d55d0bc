"""Training and validation data: a resumable infinite sampler and per-sample seeded augmentation.

Reproducibility contract (what makes `--resume` continue exactly):

- Order: epoch e visits a permutation drawn from a generator seeded with `seed + e`, padded
  and sharded over ranks as `torch.utils.data.DistributedSampler` does (rank r takes every
  world_size-th index from r). `ResumableSampler(start=p)` begins at position p of this rank's
  endless stream, so after k updates the trainer restarts at `k * batch_size * grad_accum`.
- Augmentation: each sample's random scale / crop / flip is drawn from generators seeded with
  `(seed, slot)`, slot being the sample's position in the global (all ranks) stream, so it does
  not depend on DataLoader workers, their start-up seeds or how far a previous run got.
"""
from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["ResumableSampler", "SeededAugmentation", "ShardSampler"]


class ResumableSampler(Sampler[tuple[int, int]]):
    """Endless (index, slot) pairs over epochs, sharded by rank, startable at any position.

    Args:
        num_samples: dataset length N >= 1.
        seed: base seed; epoch e shuffles with `seed + e`.
        rank, world_size: this process's shard (DistributedSampler semantics: each epoch is
            padded by repeating its first indices to a multiple of world_size).
        start: position in this rank's stream to begin at (samples already consumed).

    Yields:
        (index into the dataset, slot): slot = e * per_epoch + j * world_size + rank for the
        j-th sample of this rank in epoch e, unique over the whole run and all ranks.
    """

    def __init__(
        self, num_samples: int, *, seed: int, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank!r}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start!r}")
        self.num_samples = num_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.per_rank = math.ceil(num_samples / world_size)  # samples of one epoch per rank

    def epoch_order(self, epoch: int) -> list[int]:
        """The padded global order of `epoch` (length per_rank * world_size)."""
        g = torch.Generator()
        g.manual_seed(self.seed + epoch)
        order = torch.randperm(self.num_samples, generator=g).tolist()
        total = self.per_rank * self.world_size
        while len(order) < total:  # pad like DistributedSampler(drop_last=False)
            order += order[: total - len(order)]
        return order

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, offset = divmod(self.start, self.per_rank)
        per_epoch = self.per_rank * self.world_size
        while True:
            order = self.epoch_order(epoch)
            for j in range(offset, self.per_rank):
                slot = j * self.world_size + self.rank
                yield order[slot], epoch * per_epoch + slot
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:  # endless; DataLoader only needs len() for progress estimates
        return 2**62


class SeededAugmentation(Dataset):
    """A dataset whose items are augmented with generators seeded per sample slot.

    Args:
        dataset: returns item dicts with `image` (H, W, 3) uint8 and `label` (H, W) uint8 or
            None (image-level tags only).
        transform: a `wsdeploy.training.transforms.PairTransform` (e.g. `train_transform(...)`);
            its albumentations `compose` is reseeded with (seed, slot) before each item.
        seed: base seed.

    Item access takes the sampler's `(index, slot)` pairs (see `ResumableSampler`). Items are
    the dataset's, augmented.
    """

    def __init__(self, dataset: Dataset, transform: Any, *, seed: int) -> None:
        self.dataset = dataset
        self.compose = transform.compose
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, slot = key
        item = dict(self.dataset[index])
        # (seed, slot) -> independent numpy and Python generators for this sample only
        seeds = np.random.SeedSequence([self.seed, slot]).generate_state(2)
        self.compose.set_random_state(np.random.default_rng(seeds[0]), random.Random(int(seeds[1])))
        label = item["label"]  # None when training on tags alone: augment a stand-in mask
        mask = np.zeros(item["image"].shape[:2], np.uint8) if label is None else label
        result = self.compose(image=item["image"], mask=mask)
        item["image"] = result["image"]
        item["label"] = None if label is None else result["mask"]
        return item


class ShardSampler(Sampler[int]):
    """Indices rank, rank + world_size, ... of `range(num_samples)`: each validation image is
    seen by exactly one rank (no padding, so summed confusion matrices count it once)."""

    def __init__(self, num_samples: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, num_samples, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
