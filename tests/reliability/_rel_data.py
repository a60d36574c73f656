"""Shared builders of the reliability catalogue: tiny legacy-ST layouts, file hashes and deep table snapshots.

Imported by name (pytest puts this folder on ``sys.path``); a uniquely named module, so it never clashes with the
other test folders' helpers.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd

_IO_TESTS = str(Path(__file__).resolve().parents[1] / "io")
if _IO_TESTS not in sys.path:  # the Visium/HEST fakes of the reader tests
    sys.path.append(_IO_TESTS)

PX_PER_UNIT = 40.0  # pixels per array unit → 200 µm pitch / 40 px = 5 µm/px
GRID_MPP = 5.0


def write_st(root: Path, name: str = "S1", *, seed: int = 0, n_genes: int = 6) -> dict[str, str]:
    """A clean tiny legacy-ST section (array x 2..9, y 2..8, all selected, every spot with counts); returns its
    samples-table row (paths relative to ``root``)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    xs, ys = np.meshgrid(np.arange(2, 10), np.arange(2, 9))
    x, y = xs.ravel(), ys.ravel()
    spots = pd.DataFrame(
        {
            "x": x,
            "y": y,
            "new_x": x + rng.normal(0, 0.01, x.size),
            "new_y": y + rng.normal(0, 0.01, y.size),
            "selected": 1,
        }
    )
    spots["pixel_x"] = np.round(PX_PER_UNIT * (spots["new_x"] - 1), 2)
    spots["pixel_y"] = np.round(PX_PER_UNIT * (spots["new_y"] - 1), 2)
    ids = [f"{a}x{b}" for a, b in zip(x, y)]
    counts = pd.DataFrame(rng.poisson(3, (len(ids), n_genes)), index=ids, columns=[f"G{i}" for i in range(n_genes)])
    for d in ("cnts", "spots", "imgs"):
        (root / d).mkdir(parents=True, exist_ok=True)
    counts.to_csv(root / "cnts" / f"{name}.tsv", sep="\t")
    spots.to_csv(root / "spots" / f"{name}.tsv", sep="\t", index=False)
    Image.fromarray(rng.integers(0, 256, (360, 420, 3), dtype=np.uint8)).save(root / "imgs" / f"{name}.png")
    return {
        "section": name,
        "patient": f"P{name}",
        "counts": f"cnts/{name}.tsv",
        "spots": f"spots/{name}.tsv",
        "image": f"imgs/{name}.png",
    }


def sha256_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``."""
    return {
        str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(Path(root).rglob("*"))
        if f.is_file()
    }


def _digest(a) -> str:
    import scipy.sparse as sp

    if sp.issparse(a):
        a = a.toarray()
    a = np.asarray(a)
    if a.dtype == object:
        return hashlib.sha256(repr(a.tolist()).encode()).hexdigest()
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest() + str(a.dtype) + str(a.shape)


def snapshot(sdata) -> dict:
    """Deep, comparable summary of a SpatialData: element names, and per table X/layers/obs/var/obsm digests and
    the (recursive) ``uns`` keys."""

    def keys(d):
        return {k: keys(v) if isinstance(v, dict) else type(v).__name__ for k, v in d.items()}

    out = {
        "images": sorted(sdata.images.keys()),
        "shapes": sorted(sdata.shapes.keys()),
        "points": sorted(sdata.points.keys()),
        "labels": sorted(sdata.labels.keys()),
        "tables": sorted(sdata.tables.keys()),
        "coordinate_systems": sorted(sdata.coordinate_systems),
    }
    for name, t in sdata.tables.items():
        out[f"table:{name}"] = {
            "X": _digest(t.X),
            "layers": {k: _digest(v) for k, v in t.layers.items()},
            "obs": pd.util.hash_pandas_object(t.obs.astype(str), index=True).sum(),
            "obs_columns": list(t.obs.columns),
            "var": list(t.var_names),
            "var_columns": list(t.var.columns),
            "obsm": {k: _digest(v) for k, v in t.obsm.items()},
            "uns": keys(dict(t.uns)),
        }
    for name, s in sdata.shapes.items():
        out[f"shapes:{name}"] = _digest(np.column_stack([s.geometry.x, s.geometry.y, s["radius"]]))
    return out
