"""The provenance record of an embedding: the only thing :func:`genedml.tl.embed` writes into the user's table.

The features themselves stay in the feature store (see ``_store.py``); ``uns["genedml"]["features"][encoder]`` holds
the parameters, the encoder's identity and weights hash, the store folder and each section's geometry and entry keys,
so that :func:`genedml.features.load_features` can find them again.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._keys import Keys
from .._records import plain, records_equal
from ._windows import GRID, WindowSpec

__all__ = ["embed_params", "feature_record", "section_record", "table_rows", "write_reference"]


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
        "neighbor_grid_side": GRID,
    }
    if weights is not None:
        out["weights"] = os.fspath(weights)
    return out


def table_rows(table, section: str) -> np.ndarray:
    """Integer rows of ``section`` in the table."""
    return np.flatnonzero((table.obs[Keys.section].astype(str) == section).to_numpy())


def feature_record(enc, params: dict[str, Any], scales: tuple[str, ...], store, sections: dict[str, dict]) -> dict:
    """The small provenance record of one embedding (no arrays): what :func:`genedml.tl.embed` puts in ``uns``."""
    return {
        "params": params,
        "encoder": enc.describe(),
        "D": int(enc.num_features),
        "scales": list(scales),
        "store": os.fspath(store.root),
        "sections": sections,
    }


def section_record(task) -> dict[str, Any]:
    """Geometry and store keys of one section (pairs, not a dict: names such as ``"target/0"`` are not zarr keys)."""
    return {
        **task.geometry.to_dict(),
        "n_spots": len(task.geometry.origins),
        "entries": [[k, v] for k, v in task.keys.items()],
    }


def write_reference(table, record: dict[str, Any], *, key: str) -> None:
    """Put the record into ``uns["genedml"]["features"][key]``, merging the sections of an earlier identical call."""
    root = table.uns.setdefault(Keys.uns, {}).setdefault("features", {})
    old = root.get(key)
    sections = dict(record["sections"])
    if old is not None and records_equal(old.get("params", {}), record["params"]):
        sections = {**plain(dict(old.get("sections", {}))), **sections}
    root[key] = {**record, "sections": sections}
