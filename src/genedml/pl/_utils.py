"""Helpers shared by the plotting functions: result keys, table columns, section geometry and the H&E underlay.

Nothing here imports matplotlib at module level; functions that draw import it themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._data_model import get_table, image_shape
from .._keys import Keys
from ..io import section_thumbnail

if TYPE_CHECKING:
    import anndata as ad
    from matplotlib.axes import Axes
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
    rows, shapes = _section_shapes(sdata, table, section)
    obs = table.obs
    ids = obs[Keys.instance].to_numpy()[rows] if Keys.instance in obs else shapes.index[: rows.size]
    geo = shapes.geometry.loc[ids]
    xy = np.column_stack([geo.x.to_numpy(), geo.y.to_numpy()]).astype(np.float64)
    radius = shapes["radius"].loc[ids].to_numpy(np.float64)
    m = _affine(shapes, section)
    if m is not None:
        xy = xy @ m[:2, :2].T + m[:2, 2]
        radius = radius * float(np.sqrt(abs(np.linalg.det(m[:2, :2]))))
    return rows, xy, radius


def _section_shapes(sdata: SpatialData, table: ad.AnnData, section: str):
    obs = table.obs
    rows = np.flatnonzero(section_labels(table) == section)
    if rows.size == 0:
        raise KeyError(f"`sections`: {section!r} has no spots in the table.")
    regions = set(obs[Keys.region].astype(str).to_numpy()[rows]) if Keys.region in obs else {Keys.spots(section)}
    if len(regions) != 1 or next(iter(regions)) not in sdata.shapes:
        raise KeyError(f"section {section!r}: its rows must annotate one shapes element of `sdata`, got {regions}.")
    return rows, sdata.shapes[regions.pop()]


def _affine(element, cs: str) -> np.ndarray | None:
    from spatialdata.transformations import get_transformation

    tfs = get_transformation(element, get_all=True)
    return tfs[cs].to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")) if cs in tfs else None


def um_per_px(sdata: SpatialData, table: ad.AnnData, section: str) -> float | None:
    """Micrometres per full-resolution pixel of ``section``, from its spots' transformations; ``None`` if unknown.

    The spots carry a transformation to the section's pixel frame (``section``) and one to its micrometre frame
    (``f"{section}_um"``, genedml's data model); the ratio of their scales is the pixel size.
    """
    _, shapes = _section_shapes(sdata, table, section)
    to_um, to_px = _affine(shapes, Keys.um(section)), _affine(shapes, section)
    if to_um is None:
        return None
    um = float(np.sqrt(abs(np.linalg.det(to_um[:2, :2]))))
    px = float(np.sqrt(abs(np.linalg.det(to_px[:2, :2])))) if to_px is not None else 1.0
    return um / px if um > 0 and px > 0 else None


@dataclass
class Section:
    """What a spatial panel needs of one section: its rows, spot geometry, view box, H&E thumbnail, pixel size."""

    name: str
    rows: np.ndarray
    xy: np.ndarray
    radius: np.ndarray
    box: tuple[float, float, float, float]
    thumb: np.ndarray
    extent: tuple[float, float, float, float]
    um_per_px: float | None


def load_section(sdata: SpatialData, table: ad.AnnData, section: str, max_px: int, *, crop: bool = True) -> Section:
    """Geometry, view box (cropped to the spots, or the whole image) and thumbnail of one section."""
    rows, xy, radius = section_geometry(sdata, table, section)
    shape = image_shape(sdata, section)
    box = crop_box(xy, radius, shape) if crop else (0.0, float(shape[1]), 0.0, float(shape[0]))
    thumb, extent = thumbnail(sdata, section, box, max_px)
    return Section(section, rows, xy, radius, box, thumb, extent, um_per_px(sdata, table, section))


def map_figsize(secs: list[Section], nrows: int, ncols: int, panel_in: float = 2.8) -> tuple[float, float]:
    """Figure size of a grid of map panels, from the tallest section's aspect ratio."""
    aspect = max((s.box[3] - s.box[2]) / max(s.box[1] - s.box[0], 1.0) for s in secs)
    aspect = float(np.clip(aspect, 0.4, 2.5))
    return panel_in * ncols + 1.0, (panel_in * aspect + 0.4) * nrows + 0.1


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


FADE = 0.55  # how far the H&E under an expression map is faded towards white
NA_COLOR, NA_EDGE = "#d9d9d9", "#636363"  # fill and outline of spots without a value


def finite_range(*values: np.ndarray) -> tuple[float, float]:
    """Joint ``(min, max)`` of the finite entries (``(0, 1)`` when none; a constant map gets a tiny span)."""
    finite = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values])
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5) if lo == 0 else (lo - 1e-6 * abs(lo), hi + 1e-6 * abs(hi))


def he_panel(ax: Axes, sec: Section, *, scalebar: bool) -> None:
    """The first panel of a map row: the section's H&E, titled, with the section's name and an optional scale bar."""
    show_he(ax, sec.thumb, sec.extent, sec.box)
    ax.set_title("H&E", fontsize=10)
    ax.set_ylabel(sec.name, fontsize=11)
    if scalebar:
        add_scalebar(ax, sec)


def draw_map(ax: Axes, sec: Section, values: np.ndarray, cmap, clim: tuple[float, float], *, fade: float = FADE):
    """The section's faded H&E with its spots coloured by ``values`` on ``clim``; returns the collection.

    Spots without a value are grey with a dark outline; the collection's ``get_clim()`` is the colour scale.
    """
    import matplotlib as mpl

    show_he(ax, sec.thumb, sec.extent, sec.box, fade=fade)
    cm = (mpl.colormaps[cmap] if isinstance(cmap, str) else cmap).with_extremes(bad=NA_COLOR)
    edges = np.where(np.isfinite(values), "none", NA_EDGE).tolist()
    return add_circles(ax, sec.xy, sec.radius, values, cmap=cm, clim=clim, edgecolors=edges, linewidths=0.8)


def nice_length(target: float) -> float:
    """The largest 1, 2 or 5 × 10^k not above ``target`` (> 0)."""
    exp = np.floor(np.log10(target))
    for m in (5.0, 2.0, 1.0):
        if m * 10**exp <= target:
            return float(m * 10**exp)
    return float(10**exp)


def add_scalebar(ax: Axes, sec: Section, *, fraction: float = 0.25):
    """A micrometre scale bar (lower right) about ``fraction`` of the view wide; ``None`` if the pixel size is unknown.

    The bar is drawn in data units (full-resolution pixels): ``N µm / (µm per px)`` long, ``N`` a round number.
    """
    if sec.um_per_px is None:
        return None
    from matplotlib.font_manager import FontProperties
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    width_um = (sec.box[1] - sec.box[0]) * sec.um_per_px
    um = nice_length(fraction * width_um)
    label = f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} µm"
    bar = AnchoredSizeBar(
        ax.transData,
        um / sec.um_per_px,
        label,
        "lower right",
        pad=0.3,
        sep=2,
        frameon=False,
        size_vertical=0.012 * (sec.box[3] - sec.box[2]),
        color="black",
        fontproperties=FontProperties(size=7),
    )
    bar.length_um = um  # what the bar stands for, for readers of the figure object
    ax.add_artist(bar)
    return bar
