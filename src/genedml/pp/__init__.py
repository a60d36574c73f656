"""Preprocessing: ``gd.pp`` (gene selection, expression targets, spot-grid smoothing, spot grids); no torch here.

Windows, the embedding pass and the feature store live in :mod:`genedml.features` (``gd.tl.embed``).
"""

from ._genes import select_genes
from ._normalize import RECIPES as RECIPES
from ._normalize import detect_grid as detect_grid
from ._normalize import normalize, normalize_counts, smooth_grid
from ._spot_grid import spot_grid
from ._targets import TargetSpec

__all__ = ["RECIPES", "TargetSpec", "normalize", "normalize_counts", "select_genes", "smooth_grid", "spot_grid"]
