"""Read side of genedml's data model: the spot table, sections, spot centres, pixel sizes, image sizes.

A core module (no genedml package imported, no torch; spatialdata and anndata load inside the functions), so that
``io``, ``pp``, ``features``, ``dataloaders``, ``models``, ``tl`` and ``pl`` can all read the data model without
reaching into each other. The public accessors are re-exported as ``gd.io.get_table``, ``gd.io.sections``, … ;
the builders and the validator stay in :mod:`genedml.io`. The data model itself is described in
:mod:`genedml.io._model` and the docs' data-model page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ._keys import Keys
from ._validators import assert_keys_in

if TYPE_CHECKING:
    from anndata import AnnData
    from spatialdata import SpatialData

__all__ = [
    "affine_to",
    "finest",
    "get_table",
    "image_levels",
    "image_shape",
    "pixel_size",
    "scale_of",
    "section_obs",
    "section_transforms",
    "sections",
    "select_sections",
    "spot_centers",
]


def get_table(data: SpatialData | AnnData, *, table_key: str | None = None) -> AnnData:
    """The spot table: ``sdata.tables[table_key]`` (default ``"table"``), or the AnnData itself.

    Parameters
    ----------
    data
        A SpatialData in genedml's data model, or a spot table (AnnData), which is returned as it is.
    table_key
        Table of a SpatialData; defaults to ``"table"``. Must be ``None`` for an AnnData.

    Returns
    -------
    The table (not a copy).

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> table = gd.io.get_table(sdata)
    >>> gd.io.get_table(table) is table
    True
    """
    from anndata import AnnData

    if isinstance(data, AnnData):
        if table_key is not None:
            raise ValueError(f"`table_key`={table_key!r} only applies to a SpatialData input; got an AnnData.")
        return data
    if not hasattr(data, "tables"):
        raise TypeError(f"`data` must be a SpatialData or an AnnData, got {type(data).__name__}.")
    key = Keys.table if table_key is None else table_key
    if key not in data.tables:
        raise KeyError(f"`table_key`={key!r} is not in `sdata.tables` (available: {sorted(data.tables.keys())}).")
    return data.tables[key]


def sections(sdata: SpatialData | AnnData, *, table_key: str | None = None) -> list[str]:
    """Section names in table order (from ``obs["section"]``; a SpatialData or its table).

    Examples
    --------
    >>> import genedml as gd
    >>> gd.io.sections(gd.datasets.synthetic(preset="tiny"))
    ['S1', 'S2']
    """
    return _section_names(get_table(sdata, table_key=table_key))


def _section_names(table: AnnData) -> list[str]:
    if Keys.section not in table.obs:
        raise KeyError(f"the table has no obs[{Keys.section!r}] column: is this genedml's data model?")
    return list(dict.fromkeys(table.obs[Keys.section].astype(str)))


def select_sections(
    sdata: SpatialData | AnnData, sections: str | Sequence[str] | None, *, table_key: str | None = None
) -> list[str]:
    """The sections a ``sections=`` argument names (one name or a list; ``None`` = all), checked against the table.

    Order and duplicates: as given, duplicates dropped. A ``KeyError`` names the argument and the unknown sections.
    """
    avail = _section_names(get_table(sdata, table_key=table_key))
    if sections is None:
        return avail
    chosen = [sections] if isinstance(sections, str) else list(dict.fromkeys(sections))
    if not chosen:
        raise ValueError("`sections` is empty: pass None for all sections.")
    assert_keys_in(chosen, avail, name="sections", where="the table's sections")
    return chosen


def section_obs(sdata: SpatialData | AnnData, section: str, *, table_key: str | None = None) -> np.ndarray:
    """Integer row positions in the table of the spots of ``section``.

    Examples
    --------
    >>> import genedml as gd
    >>> gd.io.section_obs(gd.datasets.synthetic(preset="tiny"), "S2")[:3]
    array([49, 50, 51])
    """
    obs = get_table(sdata, table_key=table_key).obs
    known = sections(sdata, table_key=table_key)
    idx = np.flatnonzero((obs[Keys.section].astype(str) == section).to_numpy())
    if idx.size == 0:
        raise KeyError(f"`section`={section!r} has no spots in the table (sections: {known}).")
    return idx


def spot_centers(sdata: SpatialData, section: str, *, table_key: str | None = None) -> np.ndarray:
    """``(n, 2)`` spot centres ``(x, y)`` in full-resolution pixels, in the table's row order for ``section``.

    Examples
    --------
    >>> import genedml as gd
    >>> gd.io.spot_centers(gd.datasets.synthetic(preset="tiny"), "S1").shape
    (49, 2)
    """
    obs = get_table(sdata, table_key=table_key).obs
    rows = section_obs(sdata, section, table_key=table_key)
    shapes = sdata.shapes[Keys.spots(section)]
    ids = obs[Keys.instance].to_numpy()[rows]
    geo = shapes.geometry.loc[ids]
    return np.column_stack([geo.x.to_numpy(), geo.y.to_numpy()])


def pixel_size(sdata: SpatialData, section: str) -> float:
    """Micrometres per full-resolution pixel of ``section`` (from the spots' transformation to ``f"{s}_um"``).

    Examples
    --------
    >>> import genedml as gd
    >>> gd.io.pixel_size(gd.datasets.synthetic(preset="tiny"), "S1")
    2.0
    """
    key = Keys.spots(section)
    if key not in sdata.shapes:
        raise KeyError(f"`section`={section!r}: no shapes element {key!r} in `sdata.shapes`.")
    el = sdata.shapes[key]
    return scale_of(el, Keys.um(section), name=f"shapes {key!r}") / scale_of(el, section, name=f"shapes {key!r}")


def image_shape(sdata: SpatialData, section: str) -> tuple[int, int]:
    """``(height, width)`` of the section image at full resolution (finest scale).

    Examples
    --------
    >>> import genedml as gd
    >>> gd.io.image_shape(gd.datasets.synthetic(preset="tiny"), "S1")
    (950, 950)
    """
    el = sdata.images[Keys.image(section)]
    arr = finest(el)
    scale = scale_of(el, section, name=f"image {Keys.image(section)!r}")
    return int(round(arr.sizes["y"] * scale)), int(round(arr.sizes["x"] * scale))


# ------------------------------------------------------------------------------------------- scale helpers


def affine_to(element, cs: str, *, missing: str) -> np.ndarray:
    """``(3, 3)`` affine matrix (x, y) of ``element``'s transformation to ``cs``; ``ValueError(missing)`` if none."""
    from spatialdata.transformations import get_transformation

    tfs = get_transformation(element, get_all=True)
    if cs not in tfs:
        raise ValueError(missing.replace("{have}", str(sorted(tfs))))
    return tfs[cs].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))


def scale_of(element, cs: str, *, name: str) -> float:
    """Isotropic scale of ``element``'s transformation to the coordinate system ``cs``; ``name`` starts errors."""
    m = affine_to(
        element, cs, missing=f"{name} has no transformation to the coordinate system {cs!r}: the pixel size is "
        f"unknown. Set one, e.g. `set_transformation(element, Scale([mpp, mpp], axes=('y', 'x')), {cs!r})`."
    )  # fmt: skip
    sx, sy = float(np.hypot(m[0, 0], m[1, 0])), float(np.hypot(m[0, 1], m[1, 1]))
    if not np.isclose(sx, sy, rtol=1e-3):
        raise ValueError(f"{name}: anisotropic pixels ({sx} vs {sy}) in {cs!r} are not supported.")
    return sx


def section_transforms(section: str, pixel_size: float, scale_to_full: float = 1.0) -> dict:
    """An element's transformations to the section's pixel frame (``section``) and micrometres (``f"{s}_um"``).

    ``scale_to_full`` is full-resolution pixels per element pixel (``1`` for spots and full-resolution images).
    """
    from spatialdata.transformations import Identity, Scale

    to_px = Identity() if scale_to_full == 1.0 else Scale([scale_to_full, scale_to_full], axes=("y", "x"))
    um = pixel_size * scale_to_full
    return {section: to_px, Keys.um(section): Scale([um, um], axes=("y", "x"))}


def finest(element):
    """The finest-scale ``DataArray`` of an image element (the element itself when it is single-scale)."""
    if hasattr(element, "children") and "scale0" in element.children:
        return next(iter(element["scale0"].values()))
    return element


def image_levels(element) -> list:
    """The ``DataArray`` of every scale of an image element, finest first (one for a single-scale image)."""
    if hasattr(element, "children") and len(element.children):
        names = sorted(element.children, key=lambda n: int(n.removeprefix("scale")) if n[5:].isdigit() else 0)
        return [next(iter(element[n].values())) for n in names]
    return [element]
