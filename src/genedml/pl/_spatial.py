"""``gd.pl.spatial``: H&E, measured and predicted expression of chosen genes side by side over the tissue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .._data_model import get_table, image_shape
from .._keys import Keys
from .._validators import assert_one_of, assert_positive_int
from ..metrics import pearson_per_gene
from . import _utils as u

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from spatialdata import SpatialData

__all__ = ["spatial"]

_PANEL_IN = 2.8  # width of one map, inches
_FADE = 0.55  # how far the H&E under the expression maps is faded towards white
_NA_COLOR, _NA_EDGE = "#d9d9d9", "#636363"


@dataclass
class _Section:
    rows: np.ndarray
    xy: np.ndarray
    radius: np.ndarray
    box: tuple[float, float, float, float]
    thumb: np.ndarray
    extent: tuple[float, float, float, float]


def spatial(
    sdata: SpatialData,
    *,
    genes: str | list[str],
    sections: str | list[str] | None = None,
    layer: str = Keys.predicted,
    observed: str | None = None,
    table_key: str | None = None,
    max_px: int = 800,
    cmap: str = "viridis",
    scale: str = "own",
    fig: Figure | None = None,
) -> Figure:
    """H&E, measured and predicted expression side by side, one row per gene and section.

    Each row shows the section's H&E, then the measured and the predicted expression of one gene drawn on the spots
    (circles of their true size, over a faded H&E). With ``scale="own"`` every map is min-max normalised to [0, 1] on
    its own, as in the Gene-DML paper's supplementary figure (it shows pattern, not level: a flat prediction looks
    as contrasted as the truth); ``scale="shared"`` puts the measured and the predicted map of a row on one scale
    (their joint min-max), so differences in level and range show. The colour bar says which. The title of the
    predicted panel gives the Pearson correlation of the gene over that section's spots. Without measured values
    (an H&E-only section) a row shows H&E and prediction only. Spots without a value are drawn grey.

    Parameters
    ----------
    sdata
        SpatialData in genedml's data model with predictions in ``layers[layer]`` (see `gd.tl.predict`).
    genes
        Gene or genes to show.
    sections
        Sections to show; ``None`` shows every section with a prediction of the first gene.
    layer
        Layer of predicted values.
    observed
        Layer of measured values in the same units; ``None`` uses ``f"{layer}_observed"`` (written by
        `gd.tl.evaluate`) when present, else shows no measured panels.
    table_key
        Spot table; defaults to ``"table"``.
    max_px
        About how many thumbnail pixels span the tissue (only this much of a lazy slide is read).
    cmap
        Matplotlib colour map of the expression maps.
    scale
        ``"own"`` (each panel scaled to its own range) or ``"shared"`` (measured and predicted of a row on one scale).
    fig
        Empty Figure to draw in; ``None`` makes one sized to the grid.

    Returns
    -------
    The matplotlib Figure.

    Examples
    --------
    >>> import numpy as np
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> table = sdata.tables["table"]
    >>> truth = np.log1p(table.layers["counts"].toarray()).astype("float32")
    >>> table.layers["predicted"] = truth + np.random.default_rng(0).normal(0, 0.3, truth.shape).astype("float32")
    >>> table.layers["predicted_observed"] = truth
    >>> fig = gd.pl.spatial(sdata, genes=table.var_names[0])
    """
    table = get_table(sdata, table_key=table_key)
    u.check_layer(table, layer, hint=" Run `gd.tl.predict` first.")
    assert_one_of(scale, ("own", "shared"), name="scale")
    genes = u.check_genes(table, genes, layer=layer)
    obs_layer = _observed_layer(table, layer, observed)
    assert_positive_int(max_px, name="max_px")
    labels = u.section_labels(table)
    sections = _sections_with_predictions(table, genes, layer, labels, sections)
    secs = {s: _section(sdata, table, s, max_px) for s in sections}
    ncols = 3 if obs_layer is not None else 2
    fig = u.new_figure(fig, _figsize(secs, len(genes) * len(secs), ncols))
    axes = fig.subplots(len(genes) * len(secs), ncols, squeeze=False)
    for i, (gene, sec) in enumerate((g, s) for g in genes for s in sections):
        _draw_row(axes[i], table, gene, sec, secs[sec], layer, obs_layer, cmap, scale)
    _colorbar(fig, axes, cmap, scale if obs_layer is not None else "own")
    return fig


def _sections_with_predictions(table, genes: list[str], layer: str, labels: np.ndarray, sections) -> list[str]:
    """The chosen sections (default: those where the first gene is predicted); every gene must be predicted there."""
    if sections is None:
        first = u.column(table, layer, genes[0])
        sections = [s for s in dict.fromkeys(labels) if np.isfinite(first[labels == s]).any()]
    else:
        sections = u.check_sections(labels, sections)
    chosen = np.isin(labels, sections)
    for gene in genes:
        if not np.isfinite(u.column(table, layer, gene)[chosen]).any():
            where = f" in sections {sections}" if sections else ""
            raise ValueError(f"`genes`: {gene!r} has no predicted value in `layers[{layer!r}]`{where}.")
    return sections


def _observed_layer(table, layer: str, observed: str | None) -> str | None:
    if observed is not None:
        u.check_layer(table, observed, name="observed")
        return observed
    key = u.observed_key(layer)
    return key if key in table.layers else None


def _section(sdata, table, section: str, max_px: int) -> _Section:
    rows, xy, radius = u.section_geometry(sdata, table, section)
    box = u.crop_box(xy, radius, image_shape(sdata, section))
    thumb, extent = u.thumbnail(sdata, section, box, max_px)
    return _Section(rows, xy, radius, box, thumb, extent)


def _figsize(secs: dict[str, _Section], nrows: int, ncols: int) -> tuple[float, float]:
    aspect = max((s.box[3] - s.box[2]) / max(s.box[1] - s.box[0], 1.0) for s in secs.values())
    aspect = float(np.clip(aspect, 0.4, 2.5))
    return _PANEL_IN * ncols + 1.0, (_PANEL_IN * aspect + 0.4) * nrows + 0.1


def _draw_row(axes, table, gene, section: str, sec: _Section, layer: str, obs_layer: str | None, cmap, scale) -> None:
    pred = u.column(table, layer, gene)[sec.rows]
    meas = u.column(table, obs_layer, gene)[sec.rows] if obs_layer is not None else None
    lims = None
    if scale == "shared" and meas is not None:
        both = np.concatenate([meas, pred])
        lims = (float(np.nanmin(both)), float(np.nanmax(both))) if np.isfinite(both).any() else None
    u.show_he(axes[0], sec.thumb, sec.extent, sec.box)
    axes[0].set_title("H&E", fontsize=10)
    axes[0].set_ylabel(section, fontsize=11)
    if meas is not None:
        _draw_map(axes[1], sec, meas, cmap, lims)
        axes[1].set_title(f"{gene} measured" if np.isfinite(meas).any() else f"{gene} not measured", fontsize=10)
    _draw_map(axes[-1], sec, pred, cmap, lims)
    title = f"{gene} predicted"
    if meas is not None and np.isfinite(meas).any():
        r = float(pearson_per_gene(meas, pred)[0])
        title += f" · PCC {r:.2f}" if np.isfinite(r) else " · PCC n/a"
    axes[-1].set_title(title, fontsize=10)


def _draw_map(ax, sec: _Section, values: np.ndarray, cmap, lims: tuple[float, float] | None = None) -> None:
    import matplotlib as mpl

    u.show_he(ax, sec.thumb, sec.extent, sec.box, fade=_FADE)
    cm = mpl.colormaps[cmap].with_extremes(bad=_NA_COLOR)
    edges = [_NA_EDGE if not np.isfinite(v) else "none" for v in values]  # outline the spots without a value
    scaled = u.normalise01(values) if lims is None else u.normalise01(values, lims=lims)
    u.add_circles(ax, sec.xy, sec.radius, scaled, cmap=cm, edgecolors=edges, linewidths=0.8)


def _colorbar(fig, axes, cmap, scale: str) -> None:
    import matplotlib as mpl

    sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0.0, 1.0), cmap=cmap)
    nrows = axes.shape[0]
    cb = fig.colorbar(sm, ax=axes.ravel().tolist(), shrink=max(0.25, min(0.8, 1.6 / nrows)), aspect=20, pad=0.02)
    label = "each panel scaled to its own range" if scale == "own" else "measured & predicted on one scale per row"
    cb.set_label(f"{label} (0 = min, 1 = max)", fontsize=9)
    cb.set_ticks([0.0, 0.5, 1.0])
    cb.ax.tick_params(labelsize=8)
