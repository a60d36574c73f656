"""Lightning pieces of the ST-Net baseline: image batches, a plan on the Gene-DML plan, and the fit."""

from __future__ import annotations

from dataclasses import dataclass, field

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ...encoders import dihedral
from .._train_config import TrainConfig
from ..nn._baselines import STNetNet
from ..train import GeneDMLPlan, run_fit
from ._stnet import ImageSpotData

__all__ = ["ImageBatch", "ImageDataModule", "STNetPlan", "fit_stnet"]


@dataclass
class ImageBatch:
    """``uint8`` windows ``(B, H, W, 3)``, targets ``(B, G)`` and row indices."""

    images: torch.Tensor
    y: torch.Tensor
    rows: torch.Tensor

    def to(self, device: torch.device | str) -> ImageBatch:
        """Move every tensor to ``device``."""
        return ImageBatch(self.images.to(device), self.y.to(device), self.rows.to(device))


class _Rows(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _collate(data: ImageSpotData, *, augment: bool, seed: int):
    gen = np.random.default_rng(seed)
    y = torch.from_numpy(np.ascontiguousarray(data.y, dtype=np.float32))

    def collate(rows: list[int]) -> ImageBatch:
        idx = np.asarray(rows, dtype=np.int64)
        images = torch.from_numpy(data.images[idx])
        if augment:
            ks = gen.integers(0, 8, size=len(idx))
            for k in np.unique(ks):
                sel = torch.from_numpy(np.flatnonzero(ks == k))
                images[sel] = dihedral(images[sel], int(k), channels_last=True)
        return ImageBatch(images, y[idx], torch.from_numpy(idx))

    return collate


class ImageDataModule(L.LightningDataModule):
    """Shuffled training batches of windows (dihedral augmentation) and unshuffled validation batches."""

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
            _Rows(len(self.train_data)),
            batch_size=bs,
            shuffle=True,
            drop_last=len(self.train_data) > bs,
            collate_fn=_collate(self.train_data, augment=self.tc.augment, seed=self.tc.seed),
            generator=torch.Generator().manual_seed(self.tc.seed),
        )

    def val_dataloader(self) -> DataLoader | list:
        """Every validation window, in order, without augmentation."""
        if self.val_data is None:
            return []
        return DataLoader(
            _Rows(len(self.val_data)),
            batch_size=max(1, min(self.tc.batch_size * 2, len(self.val_data))),
            shuffle=False,
            collate_fn=_collate(self.val_data, augment=False, seed=0),
        )


class STNetPlan(GeneDMLPlan):
    """The Gene-DML plan (Adam + StepLR, validation PCC(A)) with MSE on image batches."""

    def training_step(self, batch: ImageBatch, batch_idx: int) -> torch.Tensor:
        """MSE of the fine-tuned CNN's predictions."""
        loss = F.mse_loss(self.net(batch.images), batch.y)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(batch.rows), prog_bar=True)
        return loss

    def validation_step(self, batch: ImageBatch, batch_idx: int) -> None:
        """Collect predictions for the epoch-end PCC(A)."""
        pred = self.net(batch.images)
        self._val.append((pred.detach().float().cpu().numpy(), batch.y.cpu().numpy(), batch.rows.cpu().numpy()))


@dataclass
class STNetFit:
    """Trained network and the fit's record."""

    net: STNetNet
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_pcc: float | None = None
    epochs_run: int = 0


def fit_stnet(
    net: STNetNet, train_data: ImageSpotData, val_data: ImageSpotData | None, tc: TrainConfig, *, progress: bool
) -> STNetFit:
    """Fine-tune ``net`` and return it with the best-validation weights."""
    plan = STNetPlan(net, torch.nn.MSELoss(), tc)
    res = run_fit(plan, ImageDataModule(train_data, val_data, tc), tc, progress=progress)
    return STNetFit(plan.net, res.history, res.best_epoch, res.best_val_pcc, res.epochs_run)
