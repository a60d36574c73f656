"""Helpers shared by the plotting functions (matplotlib imported lazily)."""

from __future__ import annotations

import numpy as np

from .._keys import Keys
from ..io._model import _scale_of

__all__ = ["section_thumbnail"]


def section_thumbnail(sdata, section: str, *, max_px: int = 1000) -> tuple[np.ndarray, float]:
    """An RGB thumbnail ``(h, w, 3)`` of a section and the full-resolution pixels per thumbnail pixel.

    Uses the coarsest pyramid level that is still at least ``max_px`` wide, then strides down to ``max_px``, so only a
    small part of a lazy slide is read.
    """
    el = sdata.images[Keys.image(section)]
    if hasattr(el, "children") and len(el.children):
        levels = [next(iter(el[k].values())) for k in sorted(el.children, key=lambda s: int(s.replace("scale", "")))]
    else:
        levels = [el]
    base_w = levels[0].sizes["x"]
    arr = levels[0]
    for lvl in levels:
        if max(lvl.sizes["x"], lvl.sizes["y"]) >= max_px:
            arr = lvl
    level_scale = base_w / arr.sizes["x"]
    step = max(1, int(np.ceil(max(arr.sizes["x"], arr.sizes["y"]) / max_px)))
    data = arr.data[:, ::step, ::step]
    thumb = np.asarray(data.compute() if hasattr(data, "compute") else data).transpose(1, 2, 0)
    full_per_stored = _scale_of(el if not levels else levels[0], section, name=f"image {Keys.image(section)!r}")
    return thumb, full_per_stored * level_scale * step
