"""``gd.pl.spatial``: H&E, measured and predicted expression (and their difference) side by side over the tissue."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .._keys import Keys
from .._validators import assert_one_of, assert_positive_int
from ..metrics import pearson_per_gene
from . import _figure as f
from . import _utils as u

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from spatialdata import SpatialData

__all__ = ["spatial"]


@f.figure_docs
def spatial(
    sdata: SpatialData,
    *,
    genes: str | list[str],
    sections: str | list[str] | None = None,
    layer: str = Keys.predicted,
    observed: str | None = None,
    table_key: str | None = None,
    scale: str = "shared",
    residual: bool = False,
    scalebar: bool = True,
    max_px: int = 800,
    cmap: str = "viridis",
    residual_cmap: str = "RdBu_r",
    ax: Axes | Sequence[Axes] | None = None,
    show: bool = False,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Figure:
    """H&E, measured and predicted expression side by side, one row per gene and section.

    Each row shows the section's H&E, then the measured and the predicted expression of one gene drawn on the spots
    (circles of their true size, over a faded H&E), and optionally the residual (predicted − measured). With
    ``scale="shared"`` (the default) the measured and the predicted map of a row share one colour scale in the
    layer's units (their joint min–max, one colour bar per row), so a prediction that is shrunk towards the mean
    looks flat; ``scale="panel"`` min–max scales every map on its own, as in the Gene-DML paper's supplementary
    figure (it shows pattern, not level: a flat prediction then looks as contrasted as the truth). The residual uses
    a diverging colour map centred at 0 (symmetric limits). The title of the predicted panel gives the Pearson
    correlation of the gene over that section's spots. Without measured values (an H&E-only section) a row shows
    H&E and prediction only. Spots without a value are drawn grey. A micrometre scale bar sits on the H&E panels.

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
    scale
        ``"shared"``: measured and predicted of a row on one scale, in units; ``"panel"``: each map min–max scaled on
        its own (one 0–1 colour bar).
    residual
        Add a panel of predicted − measured per row (needs measured values).
    scalebar
        Draw a micrometre scale bar on the H&E panels (when the section's pixel size is known).
    max_px
        About how many thumbnail pixels span the tissue (only this much of a lazy slide is read).
    cmap
        Matplotlib colour map of the expression maps.
    residual_cmap
        Diverging colour map of the residual panel.
    ax
        ``rows × columns`` Axes to draw in (rows: genes × sections, gene-major; columns: H&E, measured, predicted,
        residual as shown), as an array or a flat sequence in reading order; ``None`` makes a Figure.
    {figure}

    Examples
    --------
    >>> import numpy as np
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> table = sdata.tables["table"]
    >>> table.layers["predicted_observed"] = np.log1p(table.layers["counts"].toarray())
    >>> table.layers["predicted"] = 0.5 * table.layers["predicted_observed"] + 0.4  # a prediction shrunk to the mean
    >>> fig = gd.pl.spatial(sdata, genes=table.var_names[0], sections="S1", residual=True)
    """
    table = u.get_table(sdata, table_key=table_key)
    u.check_layer(table, layer, hint=" Run `gd.tl.predict` first.")
    assert_one_of(scale, ("shared", "panel"), name="scale")
    genes = u.check_genes(table, genes, layer=layer)
    obs_layer = _observed_layer(table, layer, observed)
    if residual and obs_layer is None:
        raise ValueError(
            f"`residual=True` needs measured values: no `observed` layer given and no {u.observed_key(layer)!r} "
            "(run `gd.tl.evaluate` first)."
        )
    path = f.check_save(save, overwrite)
    ncols = 2 + (obs_layer is not None) + bool(residual)
    rows, fig, axes = map_grid(sdata, table, genes, layer, sections, max_px=max_px, ax=ax, ncols=ncols, extra_w=0.6)
    for i, (gene, sec) in enumerate(rows):
        res_cmap = residual_cmap if residual else None
        u.he_panel(axes[i][0], sec, scalebar=scalebar)
        _draw_row(fig, axes[i], table, gene, sec, layer, obs_layer, cmap, scale, res_cmap)
    if scale == "panel":
        _unit_colorbar(fig, axes[:, 1 : 2 + (obs_layer is not None)], cmap)
    return f.finish(fig, show=show, save=path)


def map_grid(sdata, table, genes: list[str], layer: str, sections, *, max_px, ax, ncols: int, extra_w: float = 0.0):
    """Rows of ``(gene, Section)`` (gene-major), the Figure and its ``rows × ncols`` Axes of a per-section map plot."""
    assert_positive_int(max_px, name="max_px")
    sections = sections_with_predictions(table, genes, layer, u.section_labels(table), sections)
    secs = {s: u.load_section(sdata, table, s, max_px) for s in sections}
    rows = [(g, secs[s]) for g in genes for s in sections]
    figsize = u.map_figsize(list(secs.values()), len(rows), ncols)
    fig, axes = f.axes_grid(ax, (len(rows), ncols), (figsize[0] + extra_w, figsize[1]), what="genes × sections rows")
    return rows, fig, axes


def sections_with_predictions(table, genes: list[str], layer: str, labels: np.ndarray, sections) -> list[str]:
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


def _draw_row(fig, axes, table, gene: str, sec: u.Section, layer, obs_layer, cmap, scale, residual_cmap) -> None:
    pred = u.column(table, layer, gene)[sec.rows]
    meas = u.column(table, obs_layer, gene)[sec.rows] if obs_layer is not None else None
    measured = meas is not None and bool(np.isfinite(meas).any())
    maps = [(axes[1], meas)] if meas is not None else []
    maps.append((axes[1 + (meas is not None)], pred))
    shared = u.finite_range(*[v for _, v in maps])
    colls = [u.draw_map(a, sec, v, cmap, shared if scale == "shared" else u.finite_range(v)) for a, v in maps]
    if meas is not None:
        axes[1].set_title(f"{gene} measured" if measured else f"{gene} not measured", fontsize=10)
    title = f"{gene} predicted"
    if measured:
        r = float(pearson_per_gene(meas, pred)[0])
        title += f" · PCC {r:.2f}" if np.isfinite(r) else " · PCC n/a"
    maps[-1][0].set_title(title, fontsize=10)
    if scale == "shared":
        label = "shared by measured & predicted" if meas is not None else "predicted"
        _colorbar(fig, colls[-1], [a for a, _ in maps], label)
    if residual_cmap is not None:
        _residual(fig, axes[-1], sec, gene, pred - meas, residual_cmap)


def _residual(fig, ax, sec: u.Section, gene: str, diff: np.ndarray, cmap) -> None:
    finite = np.abs(diff[np.isfinite(diff)])
    m = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    coll = u.draw_map(ax, sec, diff, cmap, (-m, m))
    ax.set_title(f"{gene} predicted − measured" if finite.size else f"{gene} residual n/a", fontsize=10)
    _colorbar(fig, coll, [ax], "residual")


def _colorbar(fig, mappable, axes, label: str) -> None:
    cb = fig.colorbar(mappable, ax=list(axes), shrink=0.8, aspect=15, pad=0.02)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)


def _unit_colorbar(fig, axes, cmap) -> None:
    import matplotlib as mpl

    sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0.0, 1.0), cmap=cmap)
    nrows = axes.shape[0]
    cb = fig.colorbar(sm, ax=axes.ravel().tolist(), shrink=max(0.25, min(0.8, 1.6 / nrows)), aspect=20, pad=0.02)
    cb.set_label("each panel scaled to its own range (0 = min, 1 = max)", fontsize=9)
    cb.set_ticks([0.0, 0.5, 1.0])
    cb.ax.tick_params(labelsize=8)
