"""In-memory tensors of everything the Gene-DML network consumes, grouped by section.

`SpotData` is built by the model layer from the feature store (memory-mapped entries), grid positions and targets; it
holds no AnnData or SpatialData, and each batch reads only its own rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

__all__ = ["SpotBatch", "SpotData", "collate_spots"]


@dataclass
class SpotData:
    """Per-spot inputs of a set of sections, rows in table order, gathered per batch from the feature store.

    Features are not copied per spot: ``tiles`` holds every distinct window feature once (each spot's own target
    window and the neighbour tiles that are no spot's window), and the spots point into it. Arrays may be
    memory-mapped store entries (:class:`genedml.features.Rows`) or plain NumPy arrays.

    Attributes
    ----------
    target
        ``(n, T, D)`` target tokens of variant 0 (float16/32), or ``None`` when the method does not use them.
    tiles
        ``(m, D)`` pooled window features.
    global_index
        ``(n,)`` row of ``tiles`` holding each spot's target window (input of the global encoder).
    neighbor_index
        ``(n, 25)`` rows of ``tiles`` of each spot's 5 × 5 neighbour grid, ``-1`` where masked (``(n, 0)``: unused).
    pos
        ``(n, 2)`` integer grid position (array_row, array_col).
    section
        ``(n,)`` integer section code; ``section_names[code]`` is its name.
    section_names
        Section names by code.
    y
        ``(n, G)`` float32 targets, or ``None`` when predicting.
    target_variants
        The ``V`` dihedral variants of the target tokens (variant 0 first), each ``(n, T, D)``; ``None``: variant 0
        only.
    """

    target: Any
    tiles: Any
    global_index: np.ndarray
    neighbor_index: np.ndarray
    pos: np.ndarray
    section: np.ndarray
    section_names: list[str]
    y: np.ndarray | None = None
    target_variants: list | None = None

    def __post_init__(self) -> None:
        n = len(self.section)
        self.global_index = np.asarray(self.global_index, dtype=np.int64)
        nb = np.asarray(self.neighbor_index)
        self.neighbor_index = nb if nb.dtype in (np.int32, np.int64) else nb.astype(np.int64)
        shapes = {
            "global_index": len(self.global_index),
            "neighbor_index": len(self.neighbor_index),
            "pos": len(self.pos),
        }
        if self.target is not None:
            shapes["target"] = len(self.target)
        if self.y is not None:
            shapes["y"] = len(self.y)
            if not np.isfinite(self.y).all():
                raise ValueError("targets `y` contain NaN or inf: check the counts and the normalisation.")
        bad = {k: v for k, v in shapes.items() if v != n}
        if bad:
            raise ValueError(f"SpotData arrays disagree on the number of spots ({n}): {bad}.")
        self._rows_of = [np.flatnonzero(self.section == s) for s in range(len(self.section_names))]
        self._row_in_section = np.empty(n, dtype=np.int64)
        for rows in self._rows_of:
            self._row_in_section[rows] = np.arange(len(rows))
        self._section_cache: dict[int, tuple] = {}

    @classmethod
    def dense(cls, *, target, neighbor, neighbor_mask, global_feats, pos, section, section_names, y=None) -> SpotData:
        """Build from dense in-memory arrays (for tests and small data).

        ``neighbor`` is ``(n, 25, D)`` with ``neighbor_mask`` ``(n, 25)``; ``target`` is ``(n, T, D)`` or
        ``(V, n, T, D)`` with dihedral variants.
        """
        g = np.asarray(global_feats, dtype=np.float32)
        n = len(g)
        mask = np.asarray(neighbor_mask, dtype=bool)
        nb = np.asarray(neighbor, dtype=np.float32)
        index = np.full(mask.shape, -1, np.int64)
        index[mask] = n + np.arange(int(mask.sum()))
        tiles = np.concatenate([g.reshape(n, -1), nb[mask].reshape(int(mask.sum()), -1)]) if g.size else g
        target = np.asarray(target)
        variants = list(target) if target.ndim == 4 else None
        return cls(
            target=variants[0] if variants else target,
            tiles=tiles,
            global_index=np.arange(n),
            neighbor_index=index,
            pos=pos,
            section=section,
            section_names=section_names,
            y=y,
            target_variants=variants,
        )

    @property
    def n_variants(self) -> int:
        """Number of stored dihedral variants of the target tokens."""
        return len(self.target_variants) if self.target_variants else 1

    @property
    def neighbor_mask(self) -> np.ndarray:
        """``(n, 25)`` validity of the neighbour tiles."""
        return self.neighbor_index >= 0

    @property
    def global_feats(self) -> np.ndarray:
        """``(n, D)`` pooled feature of every spot's target window (read from the store)."""
        return _take(self.tiles, self.global_index).astype(np.float32, copy=False)

    def neighbor_mean(self, *, chunk: int = 4096) -> np.ndarray:
        """``(n, D)`` mean of the valid neighbour tiles of every spot (zeros where none), read in chunks."""
        n, D = len(self), int(self.tiles.shape[1])
        out = np.zeros((n, D), np.float64)
        for i in range(0, n, chunk):
            idx = self.neighbor_index[i : i + chunk]
            m = idx >= 0
            feats = _take(self.tiles, np.where(m, idx, 0).ravel()).reshape(*idx.shape, D).astype(np.float64)
            feats[~m] = 0.0
            out[i : i + chunk] = feats.sum(axis=1) / np.maximum(m.sum(axis=1), 1)[:, None]
        return out

    def __len__(self) -> int:
        return len(self.section)

    def subset(self, rows: np.ndarray) -> SpotData:
        """The spots ``rows`` (no feature is copied: the tiles are shared, the indices subset)."""
        rows = np.asarray(rows, dtype=np.int64)
        present = np.unique(self.section[rows])
        remap = np.full(len(self.section_names), -1)
        remap[present] = np.arange(len(present))
        return replace(
            self,
            target=None if self.target is None else _subset(self.target, rows),
            global_index=self.global_index[rows],
            neighbor_index=self.neighbor_index[rows],
            pos=self.pos[rows],
            section=remap[self.section[rows]],
            section_names=[self.section_names[i] for i in present],
            y=None if self.y is None else self.y[rows],
            target_variants=None if self.target_variants is None else [_subset(t, rows) for t in self.target_variants],
        )

    def section_rows(self, code: int) -> np.ndarray:
        """Row indices of section ``code``."""
        return self._rows_of[code]

    def global_rows(self, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), D)`` float32 pooled features of the spots ``rows`` (read from the store)."""
        return np.ascontiguousarray(_take(self.tiles, self.global_index[rows]), dtype=np.float32)

    def _section_inputs(self, code: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features and grid positions of all spots of section ``code`` (read once, then kept)."""
        if code not in self._section_cache:
            rows = self._rows_of[code]
            feats = _take(self.tiles, self.global_index[rows]).astype(np.float32, copy=False)
            self._section_cache[code] = (
                torch.from_numpy(np.ascontiguousarray(feats)),
                torch.from_numpy(np.ascontiguousarray(self.pos[rows], dtype=np.int64)),
            )
        return self._section_cache[code]

    def _target(self, rows: np.ndarray, variants: np.ndarray | None) -> torch.Tensor:
        if self.target is None:
            return torch.zeros((len(rows), 0, int(self.tiles.shape[1])))
        if variants is None or self.target_variants is None:
            return torch.from_numpy(_take(self.target, rows).astype(np.float32))
        out = None
        for v in np.unique(variants):
            sel = variants == v
            part = _take(self.target_variants[int(v)], rows[sel]).astype(np.float32)
            if out is None:
                out = np.empty((len(rows), *part.shape[1:]), np.float32)
            out[sel] = part
        return torch.from_numpy(out)

    def _neighbors(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.neighbor_index[rows]
        mask = idx >= 0
        D = int(self.tiles.shape[1])
        feats = _take(self.tiles, np.where(mask, idx, 0).ravel()).astype(np.float32).reshape(*idx.shape, D)
        feats[~mask] = 0.0
        return torch.from_numpy(feats), torch.from_numpy(mask)

    def batch(
        self, rows: Sequence[int], *, variants: np.ndarray | None = None, with_sections: bool = True
    ) -> SpotBatch:
        """Gather a batch; the global encoder gets **all** spots of each section present in it.

        ``with_sections=False`` leaves ``section_feats``/``section_pos`` empty, for a caller that passes
        precomputed global tokens.
        """
        rows = np.ascontiguousarray(rows, dtype=np.int64)  # a reversed or strided view too
        sec = self.section[rows]
        present, section_of = np.unique(sec, return_inverse=True)
        neighbor, neighbor_mask = self._neighbors(rows)
        inputs = [self._section_inputs(int(s)) for s in present] if with_sections else []
        return SpotBatch(
            target=self._target(rows, variants),
            neighbor=neighbor,
            neighbor_mask=neighbor_mask,
            section_feats=[f for f, _ in inputs],
            section_pos=[p for _, p in inputs],
            section_of=torch.from_numpy(section_of.astype(np.int64)),
            spot_of=torch.from_numpy(self._row_in_section[rows]),
            y=None if self.y is None else torch.from_numpy(np.ascontiguousarray(self.y[rows], dtype=np.float32)),
            rows=torch.from_numpy(rows),
        )


def _take(arr, rows: np.ndarray) -> np.ndarray:
    """Rows of a NumPy array, memory map or `Rows` (reads only those rows)."""
    return arr.take(rows) if hasattr(arr, "subset") else np.asarray(arr[rows])


def _subset(arr, rows: np.ndarray):
    """A row subset that stays lazy for `Rows` (a copy for in-memory arrays)."""
    return arr.subset(rows) if hasattr(arr, "subset") else arr[rows]


@dataclass
class SpotBatch:
    """One batch of network inputs (see ``GeneDMLNet.forward``)."""

    target: torch.Tensor
    neighbor: torch.Tensor
    neighbor_mask: torch.Tensor
    section_feats: list[torch.Tensor]
    section_pos: list[torch.Tensor]
    section_of: torch.Tensor
    spot_of: torch.Tensor
    y: torch.Tensor | None
    rows: torch.Tensor

    def to(self, device: torch.device | str) -> SpotBatch:
        """Move every tensor to ``device``."""
        mv = lambda x: None if x is None else x.to(device, non_blocking=True)  # noqa: E731
        return SpotBatch(
            target=mv(self.target),
            neighbor=mv(self.neighbor),
            neighbor_mask=mv(self.neighbor_mask),
            section_feats=[mv(x) for x in self.section_feats],
            section_pos=[mv(x) for x in self.section_pos],
            section_of=mv(self.section_of),
            spot_of=mv(self.spot_of),
            y=mv(self.y),
            rows=mv(self.rows),
        )

    def inputs(self) -> dict:
        """Keyword arguments of ``GeneDMLNet.forward`` (without ``y``)."""
        return {
            "target": self.target,
            "neighbor": self.neighbor,
            "neighbor_mask": self.neighbor_mask,
            "section_feats": self.section_feats,
            "section_pos": self.section_pos,
            "section_of": self.section_of,
            "spot_of": self.spot_of,
        }


def collate_spots(batch):  # pragma: no cover - batches are assembled by the sampler-driven dataset
    """Identity collate: `SpotBatchDataset` already yields whole batches."""
    return batch[0] if isinstance(batch, list) and len(batch) == 1 else batch
