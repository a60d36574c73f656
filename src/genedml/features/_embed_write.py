"""Write-back of :func:`genedml.tl.embed`: the ``obsm`` feature arrays and the ``uns`` provenance record.

Arrays are filled section by section as each finishes (so at most one section's results exist twice) and are put
into the table only by :meth:`FeatureWriter.finish`, together with the record: a failed call leaves the table as
it was.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._keys import Keys
from .._records import plain, records_equal
from ._windows import GRID, WindowSpec

__all__ = ["FeatureWriter", "embed_params", "table_rows"]


def embed_params(opts: dict, spec: WindowSpec, enc, amp_dtype, weights, pretrained) -> dict[str, Any]:
    """Every parameter that defines the features, for ``uns`` (JSON/HDF5 friendly: no ``None``)."""
    out = {
        "scales": list(opts["scales"]),
        **spec.to_dict(),
        "dihedral": opts["dihedral"],
        "input_px": int(enc.input_px(spec.out_px)),
        "amp": str(amp_dtype).removeprefix("torch.") if amp_dtype is not None else "none",
        "pretrained": bool(pretrained),
        "weights_hash": enc.weights_hash,
        "neighbor_grid": GRID,
    }
    if weights is not None:
        out["weights"] = os.fspath(weights)
    return out


def table_rows(table, section: str) -> np.ndarray:
    """Integer rows of ``section`` in the table."""
    return np.flatnonzero((table.obs[Keys.section].astype(str) == section).to_numpy())


class FeatureWriter:
    """Collects per-section features into full-table arrays, then writes ``obsm`` and ``uns`` at once."""

    def __init__(self, table, enc, params: dict[str, Any], scales: tuple[str, ...], store) -> None:
        self.table, self.enc, self.params, self.scales, self.store = table, enc, params, scales, store
        root = table.uns.get(Keys.uns, {}).get("features", {})
        self.old = root.get(enc.identity)
        # a record read back from zarr/h5ad holds arrays where lists were written: compare plain forms
        self.fresh = self.old is None or not records_equal(self.old.get("params", {}), params)
        self.D = enc.num_features
        self.T: int | None = None  # from the first section's tokens (no dummy forward on a cache hit)
        self.arrays: dict[str, np.ndarray] = {}
        self.sections: dict[str, dict] = {}

    def _specs(self) -> list[tuple[str, tuple, Any, str, str]]:
        n, D, ident = self.table.n_obs, self.D, self.enc.identity
        out = []
        if "global" in self.scales:
            out.append((Keys.features(ident, "global"), (n, D), np.float32, "global", "pooled"))
        if "neighbor" in self.scales:
            key = Keys.features(ident, "neighbor")
            out.append((key, (n, GRID * GRID, D), np.float32, "neighbor", "features"))
            out.append((key + "_mask", (n, GRID * GRID), np.bool_, "neighbor", "mask"))
        if "target" in self.scales:
            out.append((Keys.features(ident, "target"), (n, self.T, D), np.float16, "target/0", "tokens"))
        return out

    def _array(self, key: str, shape: tuple, dtype) -> np.ndarray:
        if key not in self.arrays:
            old = self.table.obsm.get(key)
            if self.fresh or old is None or old.shape != shape or old.dtype != np.dtype(dtype):
                fill = False if dtype is np.bool_ else np.nan
                self.arrays[key] = np.full(shape, fill, dtype)
            else:  # same parameters: keep the other sections' rows
                self.arrays[key] = np.array(old, copy=True)
        return self.arrays[key]

    def add(self, task, entries: dict[str, dict]) -> None:
        """Copy one finished section into the arrays and note its geometry and cache keys."""
        if "target" in self.scales and self.T is None:
            self.T = int(entries["target/0"]["tokens"].shape[1])
        rows = table_rows(self.table, task.section)
        for key, shape, dtype, entry, field in self._specs():
            self._array(key, shape, dtype)[rows] = entries[entry][field]
        # pairs, not a dict: entry names such as "target/0" are not valid zarr keys
        pairs = [[k, v] for k, v in task.keys.items()]
        self.sections[task.section] = {**task.geometry.to_dict(), "cache_keys": pairs}

    def finish(self) -> None:
        """Put the arrays into ``obsm`` and the provenance record into ``uns["genedml"]["features"]``."""
        for key, arr in self.arrays.items():
            self.table.obsm[key] = arr
        record = {
            "params": self.params,
            "encoder": self.enc.describe(),
            "D": int(self.D),
            "obsm_keys": {s: Keys.features(self.enc.identity, s) for s in self.scales},
            "cachedir": os.fspath(self.store.root),
            "sections": {**({} if self.fresh else plain(dict(self.old.get("sections", {})))), **self.sections},
        }
        if self.T is not None:
            record["T"] = int(self.T)
        self.table.uns.setdefault(Keys.uns, {}).setdefault("features", {})[self.enc.identity] = record
