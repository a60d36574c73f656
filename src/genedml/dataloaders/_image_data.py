"""Spots with their pixels: `ImageSpotData` (windows in memory) and its batches.

For methods that fine-tune a CNN on the image itself (ST-Net) instead of reading cached features.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..encoders import dihedral
from ._data import SpotData

__all__ = ["ImageBatch", "ImageSpotData", "make_image_collate"]


@dataclass
class ImageSpotData(SpotData):
    """`SpotData` that also holds each spot's ``uint8`` target window ``(n, H, W, 3)`` (no cached features)."""

    images: np.ndarray | None = None

    def subset(self, rows: np.ndarray) -> ImageSpotData:
        """The spots ``rows``, windows included."""
        return replace(super().subset(rows), images=None if self.images is None else self.images[np.asarray(rows)])


@dataclass
class ImageBatch:
    """``uint8`` windows ``(B, H, W, 3)``, targets ``(B, G)`` and row indices."""

    images: torch.Tensor
    y: torch.Tensor
    rows: torch.Tensor

    def to(self, device: torch.device | str) -> ImageBatch:
        """Move every tensor to ``device``."""
        return ImageBatch(self.images.to(device), self.y.to(device), self.rows.to(device))


def make_image_collate(data: ImageSpotData, *, augment: bool, seed: int = 0):
    """A collate function turning row indices of ``data`` into an `ImageBatch`.

    With ``augment``, each window gets one of the 8 flips/rotations, drawn from a generator seeded by ``seed``.
    """
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
