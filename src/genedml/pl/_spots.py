"""``gd.pl.spots``: the H&E of each section with its spots, optionally coloured by a gene."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._data_model import get_table, image_shape
from .._keys import Keys
from ._utils import add_circles, check_sections, crop_box, section_geometry, section_labels, show_he, thumbnail

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from spatialdata import SpatialData

__all__ = ["spots"]


def spots(
    sdata: SpatialData,
    *,
    color: str | None = None,
    sections: list[str] | None = None,
    layer: str | None = Keys.counts,
    table_key: str | None = None,
    max_px: int = 1000,
    cmap: str = "viridis",
    ncols: int = 4,
    crop: bool = True,
) -> Figure:
    """Draw each section's H&E with its spots at their true size, coloured by ``color`` (a gene) if given.

    Gene values are ``log1p`` of ``layers[layer]`` (raw counts by default) and share one colour bar.

    Parameters
    ----------
    sdata
        SpatialData in genedml's data model.
    color
        Gene to colour by; ``None`` draws outlines only. ``"auto"`` picks the most variable gene.
    sections
        Sections to draw; ``None`` draws all.
    layer
        Table layer holding the values (``None`` uses ``X``).
    table_key
        Spot table; defaults to ``"table"``.
    max_px
        About this many pixels across each panel's (cropped) view; only that resolution of a lazy slide is read.
    cmap
        Matplotlib colour map.
    ncols
        Panels per row.
    crop
        Zoom each panel to its spots (plus a margin of two spot radii); ``False`` shows the whole image.

    Returns
    -------
    The matplotlib Figure.

    Examples
    --------
    >>> import genedml as gd
    >>> fig = gd.pl.spots(gd.datasets.synthetic(preset="tiny"), color="auto")
    """
    import matplotlib.pyplot as plt

    table = get_table(sdata, table_key=table_key)
    secs = check_sections(section_labels(table), sections)
    values = None
    if color is not None:
        values, color = _gene_values(table, color, layer)
    n = len(secs)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.2 * nrows), squeeze=False, layout="constrained")
    vmin, vmax = (np.nanmin(values), np.nanmax(values)) if values is not None else (0, 1)
    mappable = None
    for ax, sec in zip(axes.ravel(), secs):
        rows, xy, radius = section_geometry(sdata, table, sec)
        shape = image_shape(sdata, sec)
        box = crop_box(xy, radius, shape) if crop else (0.0, float(shape[1]), 0.0, float(shape[0]))
        thumb, extent = thumbnail(sdata, sec, box, max_px)
        show_he(ax, thumb, extent, box)
        if values is not None:
            mappable = add_circles(ax, xy, radius, values[rows], cmap=cmap, clim=(vmin, vmax), edgecolor="none")
        else:
            add_circles(ax, xy, radius, facecolor="none", edgecolor="black", linewidth=0.5)
        ax.set_title(f"{sec} ({len(xy)} spots)")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    if mappable is not None:
        fig.colorbar(mappable, ax=axes.ravel().tolist(), shrink=0.7, label=f"{color} log1p({layer or 'X'})")
    return fig


def _gene_values(table, color: str, layer: str | None) -> tuple[np.ndarray, str]:
    import scipy.sparse as sp

    X = table.X if layer is None else table.layers[layer]
    if color == "auto":
        dense = X.toarray() if sp.issparse(X) else np.asarray(X)
        logx = np.log1p(dense)
        color = str(table.var_names[int(np.argmax(logx.var(axis=0)))])
    if color not in table.var_names:
        raise KeyError(f"`color`={color!r} is not a gene of the table (e.g. {list(table.var_names[:5])}).")
    col = X[:, table.var_names.get_loc(color)]
    col = col.toarray().ravel() if sp.issparse(col) else np.asarray(col).ravel()
    return np.log1p(col.astype(np.float64)), color
