"""Helpers shared by the plotting functions: result keys, table columns, section geometry and the H&E underlay.

Nothing here imports matplotlib at module level; functions that draw import it themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .._data_model import get_table, image_shape
from .._keys import Keys
from ..io import section_thumbnail

if TYPE_CHECKING:
    import anndata as ad
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from spatialdata import SpatialData

__all__: list[str] = []


def observed_key(layer: str) -> str:
    """Layer of the measured values that `gd.tl.evaluate` writes beside ``layers[layer]``."""
    return Keys.observed(layer)


def pcc_key(layer: str) -> str:
    """``var`` column of the per-gene PCC that `gd.tl.evaluate` writes for ``layers[layer]``."""
    return Keys.pcc(layer)


def table_of(data: Any, *, table_key: str | None, name: str = "sdata") -> ad.AnnData:
    """The spot table of a SpatialData, or an AnnData itself."""
    if hasattr(data, "tables"):
        return get_table(data, table_key=table_key)
    if hasattr(data, "layers") and hasattr(data, "var_names"):
        return data
    raise TypeError(f"`{name}` must be a SpatialData or an AnnData, got {type(data).__name__}.")


def check_layer(table: ad.AnnData, layer: str, *, name: str = "layer", hint: str = "") -> None:
    """Raise a ``KeyError`` naming the argument when ``table.layers`` lacks ``layer``."""
    if layer not in table.layers:
        raise KeyError(f"`{name}`={layer!r} is not in table.layers (available: {sorted(table.layers.keys())}).{hint}")


def check_genes(
    table: ad.AnnData, genes: str | list[str], *, name: str = "genes", layer: str | None = None
) -> list[str]:
    """A list of genes that are all in ``table.var_names`` (``KeyError`` listing the unknown ones otherwise).

    With ``layer`` (a prediction layer flagged by ``var[f"genedml_{layer}"]``), every gene must have been predicted;
    the error then says how many genes were and suggests the best-scoring ones.
    """
    genes = [genes] if isinstance(genes, str) else [str(g) for g in genes]
    if not genes:
        raise ValueError(f"`{name}` is empty: name at least one gene.")
    flag = Keys.var_flag(layer) if layer is not None else None
    if flag is not None and flag in table.var:
        predicted = table.var_names[table.var[flag].to_numpy(dtype=bool)]
        missing = [g for g in genes if g not in predicted]
        if missing:
            raise KeyError(
                f"`{name}`: {missing} not predicted in `layers[{layer!r}]`; {len(predicted)} genes were. "
                f"Best-scoring: {best_genes(table, layer, 5)} (all: table.var_names[table.var[{flag!r}]])."
            )
        return genes
    missing = [g for g in genes if g not in table.var_names]
    if missing:
        raise KeyError(f"`{name}`: gene(s) {missing} not in the table's var_names (e.g. {list(table.var_names[:5])}).")
    return genes


def best_genes(table: ad.AnnData, layer: str, n: int) -> list[str]:
    """The ``n`` best predicted genes: by PCC from `gd.tl.evaluate`, else the model's validation ranking, else order."""
    predicted = table.var_names[table.var[Keys.var_flag(layer)].to_numpy(dtype=bool)]
    pcc_key = Keys.pcc(layer)
    if pcc_key in table.var:
        r = table.var.loc[predicted, pcc_key].to_numpy(dtype=np.float64)
        order = np.argsort(-np.nan_to_num(r, nan=-np.inf), kind="stable")
        return [str(predicted[i]) for i in order[:n]]
    ranked = [str(g) for g in (table.uns.get(Keys.uns, {}).get(layer, {}).get("hpg") or []) if str(g) in predicted]
    return (ranked or [str(g) for g in predicted])[:n]


def column(table: ad.AnnData, layer: str | None, gene: str) -> np.ndarray:
    """One gene's values from ``layers[layer]`` (``X`` when ``None``) as a dense float64 vector."""
    import scipy.sparse as sp

    X = table.X if layer is None else table.layers[layer]
    col = X[:, table.var_names.get_loc(gene)]
    col = col.toarray().ravel() if sp.issparse(col) else np.asarray(col).ravel()
    return col.astype(np.float64)


def section_labels(table: ad.AnnData) -> np.ndarray:
    """``obs["section"]`` as strings (every spot in one section when the column is absent)."""
    if Keys.section not in table.obs:
        return np.full(table.n_obs, "all", dtype=object)
    return table.obs[Keys.section].astype(str).to_numpy()


def check_sections(labels: np.ndarray, sections: str | list[str] | None) -> list[str]:
    """The chosen sections (all, in table order, when ``None``); ``KeyError`` naming unknown ones."""
    known = list(dict.fromkeys(labels))
    if sections is None:
        return known
    sections = [sections] if isinstance(sections, str) else [str(s) for s in sections]
    missing = [s for s in sections if s not in known]
    if missing:
        raise KeyError(f"`sections`: {missing} not in the table (sections: {known}).")
    if not sections:
        raise ValueError("`sections` is empty: name at least one section or pass None for all.")
    return sections


def section_geometry(sdata: SpatialData, table: ad.AnnData, section: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, centres ``(n, 2)`` and radii of a section's spots, in the section's full-resolution pixel frame.

    The shapes element is the one the table's rows annotate (``obs["region"]``), so grids laid by `gd.pp.spot_grid`
    work too; its transformation to the coordinate system ``section`` is applied.
    """
    from spatialdata.transformations import get_transformation

    obs = table.obs
    rows = np.flatnonzero(section_labels(table) == section)
    if rows.size == 0:
        raise KeyError(f"`sections`: {section!r} has no spots in the table.")
    regions = set(obs[Keys.region].astype(str).to_numpy()[rows]) if Keys.region in obs else {Keys.spots(section)}
    if len(regions) != 1 or next(iter(regions)) not in sdata.shapes:
        raise KeyError(f"section {section!r}: its rows must annotate one shapes element of `sdata`, got {regions}.")
    shapes = sdata.shapes[regions.pop()]
    ids = obs[Keys.instance].to_numpy()[rows] if Keys.instance in obs else shapes.index[: rows.size]
    geo = shapes.geometry.loc[ids]
    xy = np.column_stack([geo.x.to_numpy(), geo.y.to_numpy()]).astype(np.float64)
    radius = shapes["radius"].loc[ids].to_numpy(np.float64)
    tfs = get_transformation(shapes, get_all=True)
    if section in tfs:
        m = tfs[section].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
        xy = xy @ m[:2, :2].T + m[:2, 2]
        radius = radius * float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
    return rows, xy, radius


def crop_box(xy: np.ndarray, radius: np.ndarray, shape: tuple[int, int]) -> tuple[float, float, float, float]:
    """``(x0, x1, y0, y1)`` around the spots with a margin of two radii, clipped to the image."""
    pad = 2.0 * float(np.max(radius)) if radius.size else 0.0
    x0, y0 = np.min(xy, axis=0) - pad
    x1, y1 = np.max(xy, axis=0) + pad
    h, w = shape
    return max(0.0, x0), min(float(w), x1), max(0.0, y0), min(float(h), y1)


def thumbnail(sdata: SpatialData, section: str, box: tuple[float, float, float, float], max_px: int):
    """The section's H&E thumbnail and its extent ``(x0, x1, y1, y0)`` in full-resolution pixels.

    The thumbnail is read at a resolution where the crop ``box`` spans about ``max_px`` pixels.
    """
    h, w = image_shape(sdata, section)
    crop = max(box[1] - box[0], box[3] - box[2], 1.0)
    want = int(min(max(h, w), max_px * max(h, w) / crop, 4 * max_px))
    thumb, scale = section_thumbnail(sdata, section, max_px=max(want, 1))
    extent = (0.0, thumb.shape[1] * scale, thumb.shape[0] * scale, 0.0)
    return thumb, extent


def show_he(ax: Axes, thumb: np.ndarray, extent: tuple, box: tuple, *, fade: float = 0.0) -> None:
    """Draw the H&E (optionally faded towards white) at its full-resolution extent and zoom to ``box``."""
    img = thumb
    if fade > 0:
        img = (np.asarray(thumb, dtype=np.float32) * (1 - fade) + 255.0 * fade).astype(np.uint8)
    ax.imshow(img, extent=extent, interpolation="antialiased")
    ax.set_xlim(box[0], box[1])
    ax.set_ylim(box[3], box[2])
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def add_circles(ax: Axes, xy: np.ndarray, radius: np.ndarray, values=None, *, cmap=None, clim=(0.0, 1.0), **kw):
    """Add the spots as circles of their true radius (data units = full-resolution pixels); returns the collection."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Circle

    circles = PatchCollection([Circle((x, y), r) for (x, y), r in zip(xy, radius)], **kw)
    if values is not None:
        circles.set_array(np.ma.masked_invalid(values))
        circles.set_cmap(cmap)
        circles.set_clim(*clim)
    ax.add_collection(circles)
    return circles


def new_figure(fig: Figure | None, figsize: tuple[float, float]) -> Figure:
    """A new constrained-layout Figure, or ``fig`` after checking it is empty."""
    if fig is None:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize, layout="constrained")
    if not hasattr(fig, "subplots"):
        raise TypeError(f"`fig` must be a matplotlib Figure (or SubFigure), got {type(fig).__name__}.")
    if fig.axes:
        raise ValueError("`fig` already holds Axes: pass an empty Figure (e.g. `plt.figure()`).")
    return fig


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    """``ax``, or the Axes of a new constrained-layout Figure."""
    if ax is not None:
        if not hasattr(ax, "add_collection"):
            raise TypeError(f"`ax` must be a matplotlib Axes, got {type(ax).__name__}.")
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def normalise01(v: np.ndarray, *, lims: tuple[float, float] | None = None) -> np.ndarray:
    """Min-max scale the finite values of ``v`` to [0, 1] (by ``lims`` if given; a constant map becomes 0.5)."""
    v = np.asarray(v, dtype=np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return v
    lo, hi = (float(v[finite].min()), float(v[finite].max())) if lims is None else lims
    if hi <= lo:
        return np.where(finite, 0.5, np.nan)
    return (v - lo) / (hi - lo)
