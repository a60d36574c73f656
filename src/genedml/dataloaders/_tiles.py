"""Tissue tiles for self-supervised training: seeded samples of windows at the encoder's µm geometry.

Tiles are centred near spots (spots lie on tissue; an H&E-only slide gets them from :func:`genedml.pp.spot_grid`),
shifted at random by up to half a window so that the tiles cover the tissue between spots too, and kept only when
most of their pixels are tissue (not white background, not black padding). They are cut from the pyramid level
that :func:`genedml.tl.embed` would use and resampled the same way, so training and feature extraction see the
same physical scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..features import SectionImage, WindowSpec, check_spots_inside, open_source, resample, section_geometry

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["TissueTiles", "tissue_fraction"]

_WHITE = 215  # a pixel whose channels are all above this is background
_BLACK = 20  # … all below this is padding or a scanner artefact


def tissue_fraction(tiles: np.ndarray) -> np.ndarray:
    """Fraction of pixels of ``uint8`` tiles ``(B, 3, H, W)`` that are neither near-white nor near-black."""
    lo, hi = tiles.min(axis=1), tiles.max(axis=1)
    return ((lo <= _WHITE) & (hi >= _BLACK)).mean(axis=(1, 2))


@dataclass
class _Section:
    name: str
    source: Any
    centers: np.ndarray  # (n, 2) level (x, y) of the spots
    crop_px: int
    shape: tuple[int, int]  # level (H, W)


class TissueTiles:
    """Draw tissue tiles of ``out_px`` pixels from all sections; see the module docstring.

    Build with :meth:`from_sdata`. ``sample(n, seed=s)`` is deterministic in ``s``.
    """

    def __init__(self, sections: list[_Section], *, out_px: int, min_tissue: float, info: dict) -> None:
        if not sections or not sum(len(s.centers) for s in sections):
            raise ValueError("`sdata`: no spots to sample tissue tiles around.")
        self.sections = sections
        self.out_px = int(out_px)
        self.min_tissue = float(min_tissue)
        self.info = info
        counts = np.array([len(s.centers) for s in sections], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(counts)])

    @property
    def n_spots(self) -> int:
        """Spots the tiles are drawn around."""
        return int(self._offsets[-1])

    @classmethod
    def from_sdata(
        cls,
        sdata: SpatialData,
        *,
        sections: list[str],
        spec: WindowSpec,
        table_key: str | None = None,
        min_tissue: float = 0.5,
    ) -> TissueTiles:
        """Open every section's image at the level :func:`genedml.tl.embed` uses for ``spec`` (decoded once)."""
        from .._data_model import pixel_size, spot_centers

        out, info = [], {}
        for sec in sections:
            image = SectionImage.from_sdata(sdata, sec)
            xy = spot_centers(sdata, sec, table_key=table_key)
            check_spots_inside(image, xy, section=sec)
            geo = section_geometry(image, spec, xy, mpp_full=pixel_size(sdata, sec), section=sec)
            out.append(_Section(sec, open_source(geo.level), geo.centers, geo.crop_px, geo.level.shape))
            info[sec] = geo.to_dict()
        return cls(out, out_px=spec.out_px, min_tissue=min_tissue, info=info)

    def _cut(self, spot: np.ndarray, shift: np.ndarray) -> np.ndarray:
        """Windows around global spot indices, shifted by ``shift`` (fractions of a window), kept inside the image."""
        tiles = np.empty((len(spot), 3, self.out_px, self.out_px), np.uint8)
        sec_of = np.searchsorted(self._offsets, spot, side="right") - 1
        for k in np.unique(sec_of):
            s = self.sections[k]
            rows = np.flatnonzero(sec_of == k)
            n = s.crop_px
            c = s.centers[spot[rows] - self._offsets[k]] + shift[rows] * n
            origin_xy = np.floor(c - n / 2 + 0.5).astype(np.int64)
            H, W = s.shape
            origin_xy[:, 0] = np.clip(origin_xy[:, 0], 0, max(W - n, 0))
            origin_xy[:, 1] = np.clip(origin_xy[:, 1], 0, max(H - n, 0))
            buf = np.empty((len(rows), 3, n, n), np.uint8)
            s.source.cut(origin_xy[:, ::-1].copy(), n, buf)
            tiles[rows] = resample(buf, self.out_px)
        return tiles

    def sample(self, n: int, *, seed: int, max_rounds: int = 8) -> np.ndarray:
        """``n`` tissue tiles ``(n, 3, out_px, out_px)`` ``uint8``, every spot equally likely as an anchor.

        A shifted tile with less than ``min_tissue`` tissue is redrawn (up to ``max_rounds`` times); tiles still
        rejected after that fall back to the window centred on their spot.
        """
        rng = np.random.default_rng(seed)
        spot = rng.integers(0, self.n_spots, size=n)
        out = np.empty((n, 3, self.out_px, self.out_px), np.uint8)
        todo = np.arange(n)
        for _ in range(max_rounds):
            if not len(todo):
                break
            shift = rng.uniform(-0.5, 0.5, size=(len(todo), 2))
            tiles = self._cut(spot[todo], shift)
            ok = tissue_fraction(tiles) >= self.min_tissue
            out[todo[ok]] = tiles[ok]
            todo = todo[~ok]
            spot[todo] = rng.integers(0, self.n_spots, size=len(todo))
        if len(todo):
            out[todo] = self._cut(spot[todo], np.zeros((len(todo), 2)))
        return out
