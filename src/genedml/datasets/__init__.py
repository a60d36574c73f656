"""Datasets: the built-in synthetic data, public-data downloaders and published gene panels (``gd.datasets``)."""

from ._fetch import DownloadError, her2st, hest, hest_cohort, visium_10x
from ._panels import gene_panel, panel_coverage
from ._synthetic import synthetic, toy

__all__ = [
    "DownloadError",
    "gene_panel",
    "her2st",
    "hest",
    "hest_cohort",
    "panel_coverage",
    "synthetic",
    "toy",
    "visium_10x",
]
