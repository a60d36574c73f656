"""Readers and the data model: ``gd.io``."""

from .._data_model import get_table, image_shape, pixel_size, section_obs, sections, spot_centers
from ._hest import read_hest
from ._model import SectionData, ValidationError, build_sdata, validate
from ._predictions import read_predictions
from ._slide import read_slide
from ._st import read_st
from ._views import he_only, section_thumbnail
from ._visium import read_visium
from ._visium_hd import read_visium_hd
from ._zarr import read_zarr, write_zarr

__all__ = [
    "SectionData",
    "ValidationError",
    "build_sdata",
    "get_table",
    "he_only",
    "image_shape",
    "pixel_size",
    "read_hest",
    "read_predictions",
    "read_slide",
    "read_st",
    "read_visium",
    "read_visium_hd",
    "read_zarr",
    "section_obs",
    "section_thumbnail",
    "sections",
    "spot_centers",
    "validate",
    "write_zarr",
]
