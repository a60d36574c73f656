"""Neighbour tiles on a square bin lattice (Visium HD): each tile is a bin's own window, or one per empty cell.

With bins the target window is about the bin pitch, and that pitch is rarely a whole number of pixels (8 µm at
0.2737 µm/px is 29.23 px). Tiles stepped by the window size in pixels (the ``"spot"`` grid) then drift against the
bins and almost none coincide with another bin's window: about 25 distinct tiles, hence encoder passes, per bin.
Here the tile at grid offset ``(dy, dx)`` of a bin at lattice cell ``(r, c)`` is the target window of the bin at
``(r + m·dy, c + m·dx)`` itself (same origin, so :func:`genedml.tl.embed` reuses its pooled feature), ``m`` being
the window / pitch ratio rounded; where the tissue has no such bin, the tile is placed at that cell's position on
the lattice, fitted to the bins' centres, so every bin that sees the empty cell shares its one tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["BinLattice", "bin_lattice", "bin_neighbor_origins", "lattice_step"]

_GRID = 5  # the 5 × 5 neighbour grid (features._windows.GRID)
_CHUNK = 65536  # spots per block of lookups


@dataclass(frozen=True)
class BinLattice:
    """A section's square bin lattice: every spot's ``array_row``/``array_col`` (table order) and the bin side."""

    rows: np.ndarray  # (n,) int64
    cols: np.ndarray  # (n,) int64
    bin_um: float

    def to_dict(self) -> dict:
        """Provenance (with a hash of the lattice indices, so that cache keys follow them)."""
        from ._cache import hash_array

        return {"bin_um": float(self.bin_um), "cells": hash_array(np.stack([self.rows, self.cols]).astype(np.int64))}


def bin_lattice(sdata: SpatialData, section: str, *, table_key: str | None = None) -> BinLattice | None:
    """The section's :class:`BinLattice` when its metadata say it is made of square bins (Visium HD), else ``None``.

    ``uns["genedml"]["sections"][section]`` must hold a positive ``bin_size_um`` and ``spot_shape="square"``, as
    :func:`genedml.io.read_visium_hd` and ``gd.datasets.synthetic(grid="visium_hd")`` write.
    """
    from .._data_model import get_table, section_obs
    from .._keys import Keys

    table = get_table(sdata, table_key=table_key)
    meta = table.uns.get(Keys.uns, {}).get("sections", {}).get(section, {})
    bin_um = meta.get("bin_size_um")
    if meta.get("spot_shape") != "square" or bin_um is None or not np.isfinite(bin_um) or float(bin_um) <= 0:
        return None
    obs = table.obs.iloc[section_obs(sdata, section, table_key=table_key)]
    rows = obs[Keys.array_row].to_numpy().astype(np.int64)
    cols = obs[Keys.array_col].to_numpy().astype(np.int64)
    return BinLattice(rows, cols, float(bin_um))


def lattice_step(crop_px: int, pitch_px: float) -> int:
    """Bins between neighbour tiles: the window (``crop_px``) over the bin pitch, rounded, at least 1."""
    return max(1, int(np.floor(crop_px / pitch_px + 0.5)))


def _lattice_fit(centers: np.ndarray, rows: np.ndarray, cols: np.ndarray, pitch_px: float) -> np.ndarray:
    """``(3, 2)`` affine map ``(col, row, 1) → (x, y)`` of the bins' centres (least squares).

    A lattice with a single row or column cannot be fitted along the other axis: then the nominal square lattice
    (``pitch_px`` per index, no rotation) through the centres' mean is used.
    """
    design = np.column_stack([cols, rows, np.ones(len(rows))]).astype(np.float64)
    if np.unique(rows).size >= 2 and np.unique(cols).size >= 2:
        return np.linalg.lstsq(design, centers.astype(np.float64), rcond=None)[0]
    lin = np.array([[pitch_px, 0.0], [0.0, pitch_px]])
    shift = (centers - design[:, :2] @ lin).mean(axis=0)
    return np.vstack([lin, shift])


def bin_neighbor_origins(
    origins: np.ndarray,
    centers: np.ndarray,
    lattice: BinLattice,
    *,
    step: int,
    crop_px: int,
    pitch_px: float,
    spots: np.ndarray | None = None,
) -> np.ndarray:
    """``(k, 25, 2)`` neighbour tile origins ``(y, x)`` of ``spots`` (default all), row-major over the 5 × 5 grid.

    ``origins`` ``(n, 2)`` are the target windows' origins ``(y, x)`` and ``centers`` ``(n, 2)`` the spot centres
    ``(x, y)``, both in level pixels, for all ``n`` bins of the section (table order, as ``lattice``); ``pitch_px``
    is the bin pitch in level pixels (used only for a lattice of one row or column). The tile at
    offset ``(dy, dx)`` is ``origins[j]`` of the bin ``j`` at ``(row + step·dy, col + step·dx)``; an empty cell gets
    the window centred on the cell's fitted position, the same for every bin that sees it.
    """
    rows, cols = lattice.rows, lattice.cols
    n = len(rows)
    idx = np.arange(n) if spots is None else np.asarray(spots, dtype=np.int64).ravel()
    if n == 0 or idx.size == 0:
        return np.zeros((idx.size, _GRID * _GRID, 2), np.int64)
    reach = step * (_GRID // 2)
    r0, c0 = int(rows.min()) - reach, int(cols.min()) - reach
    width = int(cols.max()) + reach - c0 + 1
    keys = (rows - r0) * width + (cols - c0)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    off = (np.arange(_GRID) - _GRID // 2) * step
    dr, dc = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
    out = np.empty((idx.size, _GRID * _GRID, 2), np.int64)
    fit = None
    for s in range(0, idx.size, _CHUNK):  # chunks of spots bound the temporaries at a million bins
        sl = idx[s : s + _CHUNK]
        nr = rows[sl, None] + dr[None]  # (k, 25) lattice cells of the tiles
        nc = cols[sl, None] + dc[None]
        want = (nr - r0) * width + (nc - c0)
        pos = np.minimum(np.searchsorted(sorted_keys, want), n - 1)
        found = sorted_keys[pos] == want
        part = out[s : s + len(sl)]
        part[found] = origins[order[pos[found]]]
        if not found.all():
            fit = _lattice_fit(centers, rows, cols, pitch_px) if fit is None else fit
            cells = np.column_stack([nc[~found], nr[~found], np.ones(int((~found).sum()))]).astype(np.float64)
            part[~found] = np.floor(cells @ fit - crop_px / 2 + 0.5).astype(np.int64)[:, ::-1]
    return out
