"""In-memory tensors of everything the Gene-DML network consumes, grouped by section.

`SpotData` is built by the model layer from the table (cached encoder features, grid positions, targets) and only
holds NumPy/torch arrays: no AnnData or SpatialData here, so it pickles cheaply to DDP workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SpotBatch", "SpotData", "collate_spots"]


@dataclass
class SpotData:
    """Per-spot inputs of a set of sections, rows in table order.

    Attributes
    ----------
    target
        ``(n, T, D)`` target tokens (float16/32) or ``(V, n, T, D)`` with ``V`` dihedral variants (variant 0 =
        unaugmented).
    neighbor, neighbor_mask
        ``(n, 25, D)`` neighbour features and ``(n, 25)`` validity mask.
    global_feats
        ``(n, D)`` pooled feature of every spot's target window (input of the global encoder).
    pos
        ``(n, 2)`` integer grid position (array_row, array_col).
    section
        ``(n,)`` integer section code; ``section_names[code]`` is its name.
    y
        ``(n, G)`` float32 targets, or ``None`` when predicting.
    """

    target: np.ndarray
    neighbor: np.ndarray
    neighbor_mask: np.ndarray
    global_feats: np.ndarray
    pos: np.ndarray
    section: np.ndarray
    section_names: list[str]
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.section)
        tgt_n = self.target.shape[-3]
        shapes = {
            "target": tgt_n,
            "neighbor": self.neighbor.shape[0],
            "neighbor_mask": self.neighbor_mask.shape[0],
            "global_feats": self.global_feats.shape[0],
            "pos": self.pos.shape[0],
        }
        if self.y is not None:
            shapes["y"] = self.y.shape[0]
            if not np.isfinite(self.y).all():
                raise ValueError("targets `y` contain NaN or inf: check the counts and the normalisation.")
        bad = {k: v for k, v in shapes.items() if v != n}
        if bad:
            raise ValueError(f"SpotData arrays disagree on the number of spots ({n}): {bad}.")
        self._rows_of = [np.flatnonzero(self.section == s) for s in range(len(self.section_names))]
        self._row_in_section = np.empty(n, dtype=np.int64)
        for rows in self._rows_of:
            self._row_in_section[rows] = np.arange(len(rows))
        self._t = None

    @property
    def n_variants(self) -> int:
        """Number of cached dihedral variants of the target tokens."""
        return self.target.shape[0] if self.target.ndim == 4 else 1

    def __len__(self) -> int:
        return len(self.section)

    def subset(self, rows: np.ndarray) -> SpotData:
        """The spots ``rows`` (sections keep all their spots for the global encoder only through ``rows``)."""
        rows = np.asarray(rows)
        present = np.unique(self.section[rows])
        remap = np.full(len(self.section_names), -1)
        remap[present] = np.arange(len(present))
        tgt = self.target[:, rows] if self.target.ndim == 4 else self.target[rows]
        return SpotData(
            target=tgt,
            neighbor=self.neighbor[rows],
            neighbor_mask=self.neighbor_mask[rows],
            global_feats=self.global_feats[rows],
            pos=self.pos[rows],
            section=remap[self.section[rows]],
            section_names=[self.section_names[i] for i in present],
            y=None if self.y is None else self.y[rows],
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        """Torch views of the arrays (made once, shared by all batches)."""
        if self._t is None:
            self._t = {
                "target": torch.from_numpy(np.ascontiguousarray(self.target)),
                "neighbor": torch.from_numpy(np.ascontiguousarray(self.neighbor, dtype=np.float32)),
                "neighbor_mask": torch.from_numpy(np.ascontiguousarray(self.neighbor_mask, dtype=bool)),
                "global_feats": torch.from_numpy(np.ascontiguousarray(self.global_feats, dtype=np.float32)),
                "pos": torch.from_numpy(np.ascontiguousarray(self.pos, dtype=np.int64)),
                "y": None if self.y is None else torch.from_numpy(np.ascontiguousarray(self.y, dtype=np.float32)),
            }
        return self._t

    def section_rows(self, code: int) -> np.ndarray:
        """Row indices of section ``code``."""
        return self._rows_of[code]

    def batch(self, rows: Sequence[int], *, variants: np.ndarray | None = None) -> SpotBatch:
        """Gather a batch; the global encoder gets **all** spots of each section present in it."""
        rows = np.asarray(rows, dtype=np.int64)
        t = self.tensors()
        sec = self.section[rows]
        present, section_of = np.unique(sec, return_inverse=True)
        idx = torch.from_numpy(rows)
        if self.target.ndim == 4:
            v = torch.zeros(len(rows), dtype=torch.long) if variants is None else torch.from_numpy(variants)
            target = t["target"][v, idx]
        else:
            target = t["target"][idx]
        return SpotBatch(
            target=target.float(),
            neighbor=t["neighbor"][idx],
            neighbor_mask=t["neighbor_mask"][idx],
            section_feats=[t["global_feats"][torch.from_numpy(self._rows_of[s])] for s in present],
            section_pos=[t["pos"][torch.from_numpy(self._rows_of[s])] for s in present],
            section_of=torch.from_numpy(section_of.astype(np.int64)),
            spot_of=torch.from_numpy(self._row_in_section[rows]),
            y=None if t["y"] is None else t["y"][idx],
            rows=idx,
        )


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
