"""Preprocessing: ``gd.pp`` (gene selection, expression targets, spot-grid smoothing)."""

from ._embed import embed, load_features
from ._genes import select_genes
from ._normalize import normalize, normalize_counts, smooth_grid
from ._spot_grid import spot_grid
from ._windows import SpotWindows, spot_windows

__all__ = [
    "SpotWindows",
    "embed",
    "load_features",
    "normalize",
    "normalize_counts",
    "select_genes",
    "smooth_grid",
    "spot_grid",
    "spot_windows",
]
