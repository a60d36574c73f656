"""Spot grids (legacy ST, Visium hex, Visium HD square bins) and what a synthetic section shows under each spot."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._layout import BACKGROUND, REGIONS, Layout, sample_points
from ._render import expected_stain

__all__ = ["GRIDS", "Grid", "SpotMeasures", "grid_positions", "hd_grid", "measure_spots"]


@dataclass(frozen=True)
class Grid:
    """Spot geometry of a technology (micrometres)."""

    name: str
    pitch_um: float
    spot_diameter_um: float
    technology: str
    square: bool = False  # spots are square bins (side = spot_diameter_um) rather than discs


GRIDS = {
    "st": Grid("st", 200.0, 100.0, "st"),
    "visium": Grid("visium", 100.0, 55.0, "visium"),
    "visium_hd": Grid("visium_hd", 8.0, 8.0, "visium_hd", square=True),
}
"""Grids by name; ``"visium_hd"`` is the 8 µm default of :func:`hd_grid`."""


def hd_grid(bin_um: float) -> Grid:
    """Visium HD: square bins of side ``bin_um`` tiling a square lattice (pitch = side)."""
    return Grid("visium_hd", float(bin_um), float(bin_um), "visium_hd", square=True)


def grid_positions(grid: Grid, spots_per_side: int, margin_um: float):
    """All array positions of a square patch of the grid.

    Returns ``array_row``, ``array_col``, centres ``y_um``, ``x_um`` and the grid's extent ``((y0, y1), (x0, x1))``
    in µm. Legacy ST and Visium HD: a square lattice. Visium: rows ``pitch·√3/2`` apart, odd rows shifted by half a
    pitch, and ``array_col`` stepping by 2 (even columns on even rows, odd on odd rows), as in Space Ranger's
    ``tissue_positions``.
    """
    n = spots_per_side
    if grid.name in ("st", "visium_hd"):
        row, col = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
        y, x = margin_um + row * grid.pitch_um, margin_um + col * grid.pitch_um
        span_x = (n - 1) * grid.pitch_um
    else:
        dy = grid.pitch_um * np.sqrt(3.0) / 2.0
        n_rows = int(np.floor((n - 1) * grid.pitch_um / dy)) + 1
        row, k = (a.ravel() for a in np.meshgrid(np.arange(n_rows), np.arange(n), indexing="ij"))
        col = 2 * k + (row % 2)
        y, x = margin_um + row * dy, margin_um + col * (grid.pitch_um / 2.0)
        span_x = (n - 0.5) * grid.pitch_um
    extent = ((margin_um, float(y.max())), (margin_um, margin_um + span_x))
    return row.astype(np.int64), col.astype(np.int64), y.astype(np.float64), x.astype(np.float64), extent


def _disk_pattern(step: float = 0.28) -> np.ndarray:
    """Hexagonal sample points inside the unit disk, ``(n, 2)`` as (dy, dx)."""
    r = int(np.ceil(1.0 / step)) + 1
    i, j = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij")
    dx = (j + 0.5 * (i % 2)) * step
    dy = i * step * np.sqrt(3.0) / 2.0
    keep = dx**2 + dy**2 <= 1.0
    return np.column_stack([dy[keep], dx[keep]])


_DISK = _disk_pattern()
_SQUARE = np.stack(np.meshgrid(*(2 * [(np.arange(5) + 0.5) / 2.5 - 1.0]), indexing="ij"), axis=-1).reshape(-1, 2)
"""5 × 5 sample points filling the square ``[-1, 1]²``, ``(25, 2)`` as (dy, dx)."""


@dataclass
class SpotMeasures:
    """Per-spot truth measured on the layout (arrays over spots)."""

    tissue_fraction: np.ndarray
    fractions: np.ndarray  # (n, n_regions): area share of each region within the tissue under the spot
    covariates: np.ndarray  # (n, 3): nuclei per 1000 µm², haematoxylin, eosin

    def dominant(self) -> np.ndarray:
        """Index of the region covering most of the spot."""
        return np.argmax(self.fractions, axis=1)


def measure_spots(
    layout: Layout, y_px: np.ndarray, x_px: np.ndarray, radius_px: float, *, square: bool = False, batch: int = 4096
):
    """Measure region fractions and covariates under circular spots, or square bins of half-side ``radius_px``.

    Batched to bound memory.
    """
    pattern = _SQUARE if square else _DISK
    parts = [
        _measure(layout, y_px[s : s + batch], x_px[s : s + batch], radius_px, pattern)
        for s in range(0, len(y_px), batch)
    ]
    if not parts:
        empty = np.zeros((0, len(REGIONS)))
        return SpotMeasures(np.zeros(0), empty, np.zeros((0, 3)))
    return SpotMeasures(*(np.concatenate(p) for p in zip(*parts)))


def _measure(layout: Layout, y: np.ndarray, x: np.ndarray, radius: float, pattern: np.ndarray):
    n, m = len(y), len(pattern)
    py = (y[:, None] + radius * pattern[None, :, 0]).ravel()
    px = (x[:, None] + radius * pattern[None, :, 1]).ravel()
    f = sample_points(layout, py, px)
    label = f["label"]
    nuclei, hem, eos = expected_stain(label, f["density"])
    label = label.reshape(n, m)
    tissue = (label != BACKGROUND).mean(axis=1)
    counts = np.stack([(label == code).sum(axis=1) for code in range(1, len(REGIONS) + 1)], axis=1)
    fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    cov = np.stack(
        [nuclei.reshape(n, m), (hem * f["stain_h"]).reshape(n, m), (eos * f["stain_e"]).reshape(n, m)], axis=2
    ).mean(axis=1)
    return tissue, fractions, cov
