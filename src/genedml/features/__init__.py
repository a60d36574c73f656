"""Frozen-encoder features: spot windows, the embedding pass and the on-disk feature store (``gd.features``).

This package sits on the model floor beside :mod:`genedml.encoders`: it cuts windows from the section images, runs the
encoder (torch loads only inside the functions) and keeps the results in a content-addressed store on disk, out of the
user's table. :func:`genedml.tl.embed` is the same function as :func:`embed`.
"""

from ._embed import SCALES, compute_features, embed, load_features, open_features
from ._images import SectionImage as SectionImage
from ._images import open_source as open_source
from ._spec import FeatureSpec
from ._store import FeatureSet, Rows
from ._windows import SpotWindows, spot_windows
from ._windows import WindowSpec as WindowSpec
from ._windows import check_spots_inside as check_spots_inside
from ._windows import resample as resample
from ._windows import section_geometry as section_geometry

__all__ = [
    "SCALES",
    "FeatureSet",
    "FeatureSpec",
    "Rows",
    "SpotWindows",
    "compute_features",
    "embed",
    "load_features",
    "open_features",
    "spot_windows",
]
