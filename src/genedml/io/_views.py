"""Light views of a SpatialData: a section thumbnail, and an H&E-only copy of a section."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._data_model import image_levels, scale_of
from .._keys import Keys

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["he_only", "section_thumbnail"]


def section_thumbnail(sdata: SpatialData, section: str, *, max_px: int = 1000) -> tuple[np.ndarray, float]:
    """An RGB thumbnail ``(h, w, 3)`` of a section and the full-resolution pixels per thumbnail pixel.

    Uses the coarsest pyramid level that is still at least ``max_px`` on its longest side, then strides down to about
    ``max_px``, so only a small part of a lazy, chunked slide is read.
    """
    el = sdata.images[Keys.image(section)]
    levels = image_levels(el)
    arr = levels[0]
    for lvl in levels:
        if max(lvl.sizes["x"], lvl.sizes["y"]) >= max_px:
            arr = lvl
    level_scale = levels[0].sizes["x"] / arr.sizes["x"]
    step = max(1, int(np.ceil(max(arr.sizes["x"], arr.sizes["y"]) / max_px)))
    data = arr.data[:, ::step, ::step]
    thumb = np.asarray(data.compute() if hasattr(data, "compute") else data).transpose(1, 2, 0)
    full_per_stored = scale_of(el, section, name=f"image {Keys.image(section)!r}")
    return thumb, full_per_stored * level_scale * step


def he_only(sdata: SpatialData, *, section: str) -> SpatialData:
    """A new SpatialData with only the H&E image of ``section`` (transformations kept; no spots, no table).

    Useful to try prediction on an image without spots (`gd.pp.spot_grid` → `gd.tl.predict`). The image data is
    shared, not copied.
    """
    from spatialdata import SpatialData

    key = Keys.image(section)
    if key not in sdata.images:
        raise KeyError(f"`section`={section!r}: no image {key!r} in `sdata.images`.")
    return SpatialData(images={key: sdata.images[key]})
