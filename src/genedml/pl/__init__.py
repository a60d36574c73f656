"""Plotting: ``gd.pl`` (matplotlib is imported inside each function; nothing here loads the model stack)."""

from ._cv import ablation, cv_summary
from ._history import history
from ._scores import gene_scores, predicted_vs_observed
from ._spatial import spatial
from ._spots import spots
from ._uncertainty import calibration, uncertainty

__all__ = [
    "ablation",
    "calibration",
    "cv_summary",
    "gene_scores",
    "history",
    "predicted_vs_observed",
    "spatial",
    "spots",
    "uncertainty",
]
