"""The feature store as the models see it: per-section entries on disk, gathered per batch.

:func:`genedml.features.embed` leaves, per section, memory-mapped entries in the store (see ``_cache.py``):

* ``global``: ``pooled`` ``(n, D)``, the pooled feature of every spot's target window;
* ``neighbor``: ``tiles`` ``(m, D)``, the distinct neighbour tiles that are no spot's target window, and ``index``
  ``(n, 25)``, each spot's 5 × 5 tiles: ``-1`` masked, ``j < n`` = spot ``j``'s window (row ``j`` of ``pooled``),
  ``n + t`` = row ``t`` of ``tiles``;
* ``target/<v>``: ``tokens`` ``(n, T, D)`` float16, dihedral variant ``v`` of the target tokens.

:class:`FeatureSet` holds the entries of the sections of one call and their provenance record; :class:`Rows` stacks
arrays of several sections without copying them and reads only the rows asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FeatureSet", "Rows"]


class Rows:
    """Rows of one or more arrays stacked along axis 0, optionally re-indexed, read on demand (no copy).

    Parameters
    ----------
    parts
        Arrays (NumPy or memory maps) with the same trailing shape and dtype.
    index
        Row ``i`` of this object is row ``index[i]`` of the stacked parts; ``None``: all rows in order.
    """

    def __init__(self, parts, index: np.ndarray | None = None) -> None:
        self.parts = list(parts)
        if not self.parts:
            raise ValueError("`parts` must hold at least one array.")
        self._offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.index = None if index is None else np.asarray(index, dtype=np.int64)
        self.dtype = np.result_type(*[p.dtype for p in self.parts])
        self.shape = (len(self), *self.parts[0].shape[1:])

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the stacked parts (on disk when they are memory maps)."""
        return int(sum(p.nbytes for p in self.parts))

    def __len__(self) -> int:
        return int(self._offsets[-1]) if self.index is None else len(self.index)

    def take(self, rows) -> np.ndarray:
        """The rows ``rows`` (int array) as a new in-memory array."""
        rows = np.asarray(rows, dtype=np.int64)
        g = rows if self.index is None else self.index[rows]
        if len(self.parts) == 1:
            return np.asarray(self.parts[0][g])
        part = np.searchsorted(self._offsets, g, side="right") - 1
        out = np.empty((len(g), *self.shape[1:]), self.dtype)
        for p in np.unique(part):
            sel = part == p
            out[sel] = self.parts[p][g[sel] - self._offsets[p]]
        return out

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, slice):
            rows = np.arange(len(self))[rows]
        return self.take(rows)

    def subset(self, rows) -> Rows:
        """A view of the rows ``rows`` (no data read)."""
        rows = np.asarray(rows, dtype=np.int64)
        return Rows(self.parts, rows if self.index is None else self.index[rows])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.take(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype, copy=False)


@dataclass
class FeatureSet:
    """Features of some sections of one table in the store, with their provenance record.

    Attributes
    ----------
    identity
        The encoder's identity (``uns["genedml"]["features"]`` key).
    record
        Parameters, encoder description, ``D``, ``T``, store folder and per-section geometry and entry keys: the
        small reference :func:`genedml.tl.embed` writes to the table.
    entries
        ``section → entry name → arrays`` (memory maps).
    """

    identity: str
    record: dict[str, Any]
    entries: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)

    @property
    def sections(self) -> list[str]:
        """Sections held, in the order they were computed."""
        return list(self.entries)

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.record["D"])

    def nbytes(self, entry: str | None = None) -> int:
        """Bytes of the stored arrays (all entries, or those named ``entry``)."""
        return int(
            sum(a.nbytes for ents in self.entries.values() for name, arrs in ents.items()
                if entry is None or name == entry for a in arrs.values())
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------------- stacking
    def stack(self, sections: list[str], local_rows: dict[str, np.ndarray], *, variants: int = 1) -> dict[str, Any]:
        """Stack ``sections`` for a model: rows ``local_rows[s]`` (indices into each section's spots), in order.

        Returns a dict with ``tokens`` (list of ``variants`` :class:`Rows` ``(n, T, D)``, or ``None``), ``tiles``
        (:class:`Rows` over every section's ``pooled`` and ``tiles``), ``global_index`` ``(n,)`` and
        ``neighbor_index`` ``(n, 25)`` (``-1`` masked; ``None`` without neighbour features) into ``tiles``.
        """
        tile_parts: list[np.ndarray] = []
        tok_parts: list[list[np.ndarray]] = [[] for _ in range(variants)]
        g_idx, nb_idx, tok_idx = [], [], []
        tile_off = tok_off = 0
        total = sum(
            len(self.entries[s]["global"]["pooled"]) + len(self.entries[s].get("neighbor", {}).get("tiles", ()))
            for s in sections
        )
        idx_dtype = np.int32 if total < 2**31 else np.int64  # half the memory of a whole slide's (n, 25) index
        for s in sections:
            ents, rows = self.entries[s], np.asarray(local_rows[s], dtype=np.int64)
            pooled = ents["global"]["pooled"]
            n = len(pooled)
            tile_parts.append(pooled)
            g_idx.append(tile_off + rows)
            if "neighbor" in ents:
                tiles = ents["neighbor"]["tiles"]
                index = np.array(ents["neighbor"]["index"][rows], dtype=idx_dtype)  # one copy, shifted in place
                if tile_off:
                    index[index >= 0] += tile_off
                tile_parts.append(tiles)
                nb_idx.append(index)
                tile_off += n + len(tiles)
            else:
                tile_off += n
            if "target/0" in ents:
                for v in range(variants):
                    tok_parts[v].append(ents[f"target/{v}"]["tokens"])
                tok_idx.append(tok_off + rows)
                tok_off += n
        out: dict[str, Any] = {
            "tiles": Rows(tile_parts),
            "global_index": np.concatenate(g_idx),
            "neighbor_index": _concat(nb_idx) if len(nb_idx) == len(sections) else None,
            "tokens": None,
        }
        if len(tok_idx) == len(sections):
            idx = np.concatenate(tok_idx)
            out["tokens"] = [Rows(parts, idx) for parts in tok_parts]
        return out

    # ------------------------------------------------------------------------------------------------- assembly
    def dense(self, section: str, scale: str, *, variant: int = 0) -> np.ndarray:
        """One section's features as a dense in-memory array (``neighbor``: ``(n, 25, D)`` with zeros where masked)."""
        ents = self.entries[section]
        if scale == "global":
            return np.asarray(ents["global"]["pooled"], dtype=np.float32)
        if scale == "target":
            return np.asarray(ents[f"target/{variant}"]["tokens"])
        pooled, tiles = ents["global"]["pooled"], ents["neighbor"]["tiles"]
        index = np.asarray(ents["neighbor"]["index"], np.int64)
        table = np.concatenate([np.asarray(pooled, np.float32), np.asarray(tiles, np.float32)])
        out = np.zeros((*index.shape, table.shape[1]), np.float32)
        out[index >= 0] = table[index[index >= 0]]
        return out


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate, without a copy for a single part (a whole-slide section's index is large)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
