"""Readers and the data model: ``gd.io``."""

from ._model import (
    SectionData,
    ValidationError,
    build_sdata,
    get_table,
    image_shape,
    pixel_size,
    section_obs,
    sections,
    spot_centers,
    validate,
)

__all__ = [
    "SectionData",
    "ValidationError",
    "build_sdata",
    "get_table",
    "image_shape",
    "pixel_size",
    "section_obs",
    "sections",
    "spot_centers",
    "validate",
]
