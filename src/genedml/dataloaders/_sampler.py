"""Batch samplers that bound how many sections (global-encoder passes) a batch touches, DDP-aware."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ._data import SpotData

__all__ = ["SectionBatchSampler", "SpotIndexDataset", "make_collate"]


class SectionBatchSampler(Sampler[list[int]]):
    """Yield batches of spot rows.

    ``sections_per_batch=None`` shuffles all spots together (every section may appear in a batch, as in the paper);
    an int ``k`` draws each batch from ``k`` sections only, so the global encoder (run once per section present, over
    all its spots) costs at most ``k`` passes per step. Under DDP each rank takes every ``world_size``-th batch; the
    batch list is padded so all ranks step equally often.
    """

    def __init__(
        self,
        section: np.ndarray,
        *,
        batch_size: int,
        sections_per_batch: int | None = None,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be ≥ 1, got {batch_size}.")
        if sections_per_batch is not None and sections_per_batch < 1:
            raise ValueError(f"`sections_per_batch` must be ≥ 1 or None, got {sections_per_batch}.")
        self.section = np.asarray(section)
        self.batch_size = batch_size
        self.sections_per_batch = sections_per_batch
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.rank = rank if rank is not None else (torch.distributed.get_rank() if dist else 0)
        self.world_size = world_size if world_size is not None else (torch.distributed.get_world_size() if dist else 1)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the shuffle for a new epoch (same on every rank)."""
        self.epoch = epoch

    def _all_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.section)
        if self.sections_per_batch is None:
            order = rng.permutation(n) if self.shuffle else np.arange(n)
            batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        else:
            codes = np.unique(self.section)
            codes = rng.permutation(codes) if self.shuffle else codes
            batches = []
            for i in range(0, len(codes), self.sections_per_batch):
                rows = np.flatnonzero(np.isin(self.section, codes[i : i + self.sections_per_batch]))
                rows = rng.permutation(rows) if self.shuffle else rows
                batches += [rows[j : j + self.batch_size] for j in range(0, len(rows), self.batch_size)]
            if self.shuffle:
                batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size] or batches[:1]
        if self.world_size > 1:
            pad = (-len(batches)) % self.world_size
            batches = batches + batches[:pad]
            batches = batches[self.rank :: self.world_size]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for b in self._all_batches():
            yield b.tolist()

    def __len__(self) -> int:
        return len(self._all_batches())


class SpotIndexDataset(Dataset):
    """Items are row indices; `make_collate` turns a list of rows into a `SpotBatch` in one gather."""

    def __init__(self, data: SpotData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> int:
        return i


def make_collate(data: SpotData, *, augment: bool, seed: int = 0):
    """Collate rows into a `SpotBatch`; with ``augment`` each spot gets a random cached dihedral variant."""
    gen = np.random.default_rng(seed)

    def collate(rows: list[int]):
        variants = None
        if augment and data.n_variants > 1:
            variants = gen.integers(0, data.n_variants, size=len(rows))
        return data.batch(rows, variants=variants)

    return collate
