"""Lightning data modules: `SpotDataModule` over cached features (`SpotData`), `ImageDataModule` over windows."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from ...dataloaders import (
    ImageBatch,
    ImageSpotData,
    SectionBatchSampler,
    SpotData,
    SpotIndexDataset,
    make_collate,
    make_image_collate,
)
from .._train_config import TrainConfig

__all__ = ["ImageDataModule", "SpotDataModule"]


class SpotDataModule(L.LightningDataModule):
    """Loaders whose batches gather every section present for the global encoder (see `SpotData.batch`)."""

    def __init__(self, train_data: SpotData, val_data: SpotData | None, train_config: TrainConfig) -> None:
        super().__init__()
        self.train_data = train_data
        self.val_data = val_data
        self.tc = train_config
        self._train_sampler: SectionBatchSampler | None = None

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        """Move a `SpotBatch` (a dataclass of tensors and lists of tensors)."""
        return batch.to(device)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, section-bounded batches; DDP ranks each take their share."""
        tc = self.tc
        bs = min(tc.batch_size, len(self.train_data))
        self._train_sampler = SectionBatchSampler(
            self.train_data.section,
            batch_size=bs,
            sections_per_batch=tc.sections_per_batch,
            shuffle=True,
            drop_last=len(self.train_data) > bs,
            seed=tc.seed,
        )
        return DataLoader(
            SpotIndexDataset(self.train_data),
            batch_sampler=self._train_sampler,
            collate_fn=make_collate(self.train_data, augment=tc.augment, seed=tc.seed),
            num_workers=0,
        )

    def val_dataloader(self) -> DataLoader | list:
        """All validation spots, unshuffled, one section group per batch; not sharded (metric identical on ranks)."""
        if self.val_data is None:
            return []
        sampler = SectionBatchSampler(
            self.val_data.section,
            batch_size=max(1, min(self.tc.batch_size * 4, len(self.val_data))),
            sections_per_batch=1,
            shuffle=False,
            rank=0,
            world_size=1,
        )
        return DataLoader(
            SpotIndexDataset(self.val_data),
            batch_sampler=sampler,
            collate_fn=make_collate(self.val_data, augment=False),
            num_workers=0,
        )


class ImageDataModule(L.LightningDataModule):
    """Shuffled training batches of windows (dihedral augmentation) and unshuffled validation batches (ST-Net)."""

    def __init__(self, train_data: ImageSpotData, val_data: ImageSpotData | None, train_config: TrainConfig) -> None:
        super().__init__()
        self.train_data, self.val_data, self.tc = train_data, val_data, train_config

    def transfer_batch_to_device(self, batch: ImageBatch, device: torch.device, dataloader_idx: int) -> ImageBatch:
        """Move an `ImageBatch`."""
        return batch.to(device)

    def train_dataloader(self) -> DataLoader:
        """Shuffled batches; the last partial batch is dropped when there is more than one batch."""
        bs = min(self.tc.batch_size, len(self.train_data))
        return DataLoader(
            SpotIndexDataset(self.train_data),
            batch_size=bs,
            shuffle=True,
            drop_last=len(self.train_data) > bs,
            collate_fn=make_image_collate(self.train_data, augment=self.tc.augment, seed=self.tc.seed),
            generator=torch.Generator().manual_seed(self.tc.seed),
        )

    def val_dataloader(self) -> DataLoader | list:
        """Every validation window, in order, without augmentation."""
        if self.val_data is None:
            return []
        return DataLoader(
            SpotIndexDataset(self.val_data),
            batch_size=max(1, min(self.tc.batch_size * 2, len(self.val_data))),
            shuffle=False,
            collate_fn=make_image_collate(self.val_data, augment=False),
        )
