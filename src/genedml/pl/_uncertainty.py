"""``gd.pl.uncertainty`` and ``gd.pl.calibration``: where predictions are uncertain, and whether intervals cover.

Both read results by key only (`gd.tl.predict` with an ensemble / ``interval``, `gd.tl.evaluate`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._keys import Keys
from . import _figure as f
from . import _utils as u
from ._spatial import map_grid

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from spatialdata import SpatialData

__all__ = ["calibration", "uncertainty"]


@f.figure_docs
def uncertainty(
    sdata: SpatialData,
    *,
    genes: str | list[str],
    sections: str | list[str] | None = None,
    layer: str = Keys.predicted,
    table_key: str | None = None,
    max_px: int = 800,
    scalebar: bool = True,
    cmap: str = "viridis",
    spread_cmap: str = "magma",
    ax: Axes | Sequence[Axes] | None = None,
    show: bool = False,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Figure:
    """Prediction beside its uncertainty, one row per gene and section.

    Columns: H&E, the prediction (``layers[layer]``), the ensemble spread (``layers[f"{layer}_std"]``) and, when
    `gd.tl.predict` wrote intervals, their width (``upper − lower``). Unlike `gd.pl.spatial`'s min-max maps, the
    spread and width panels keep their units (the model's normalised expression), each with its own colour bar, so
    sections and genes compare; the width panel's title gives the interval level.

    Parameters
    ----------
    sdata
        SpatialData after `gd.tl.predict` with an `genedml.models.EnsembleModel` (two or more members) or ``interval``.
    genes
        Gene or genes to show.
    sections
        Sections to show; ``None``: every section with a prediction of the first gene.
    layer
        The ``key_added`` of `gd.tl.predict`.
    table_key
        Spot table.
    max_px
        About how many thumbnail pixels span the tissue.
    scalebar
        Draw a micrometre scale bar on the H&E panels (when the section's pixel size is known).
    cmap, spread_cmap
        Colour maps of the prediction and of the spread / width.
    ax
        ``rows × columns`` Axes to draw in (rows: genes × sections; columns: H&E, prediction, spread, width as
        present); ``None`` makes a Figure.
    {figure}

    Examples
    --------
    >>> import numpy as np
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> t = sdata.tables["table"]
    >>> t.layers["predicted"] = np.log1p(t.layers["counts"].toarray())
    >>> t.layers["predicted_std"] = np.full(t.shape, 0.2)  # as an ensemble of models writes it
    >>> fig = gd.pl.uncertainty(sdata, genes=t.var_names[0], sections="S2")
    """
    table = u.get_table(sdata, table_key=table_key)
    u.check_layer(table, layer, hint=" Run `gd.tl.predict` first.")
    panels = _uncertainty_panels(table, layer)
    genes = u.check_genes(table, genes)
    path = f.check_save(save, overwrite)
    rows, fig, axes = map_grid(sdata, table, genes, layer, sections, max_px=max_px, ax=ax, ncols=2 + len(panels))
    level = (table.uns.get(Keys.uns, {}).get(layer) or {}).get("uncertainty", {}).get("level")
    for (gene, sec), row in zip(rows, axes, strict=True):
        u.he_panel(row[0], sec, scalebar=scalebar)
        _absolute_map(fig, row[1], sec, u.column(table, layer, gene)[sec.rows], cmap)
        row[1].set_title(f"{gene} predicted", fontsize=10)
        for a, (title, values) in zip(row[2:], panels, strict=True):
            _absolute_map(fig, a, sec, values(gene)[sec.rows], spread_cmap)
            a.set_title(title if "width" not in title or level is None else f"{title} ({level:.0%})", fontsize=10)
    return f.finish(fig, show=show, save=path)


def _uncertainty_panels(table, layer: str) -> list:
    std, lo, hi = Keys.std(layer), Keys.lower(layer), Keys.upper(layer)
    panels = []
    if std in table.layers:
        panels.append(("spread (std)", lambda g: u.column(table, std, g)))
    if lo in table.layers and hi in table.layers:
        panels.append(("interval width", lambda g: u.column(table, hi, g) - u.column(table, lo, g)))
    if not panels:
        raise KeyError(
            f"`layer`={layer!r}: no uncertainty layers ({std!r} or {lo!r}/{hi!r}); predict with an EnsembleModel "
            "or with `interval=` (see gd.tl.calibrate)."
        )
    return panels


def _absolute_map(fig, ax, sec: u.Section, values: np.ndarray, cmap) -> None:
    coll = u.draw_map(ax, sec, values, cmap, u.finite_range(values))
    cb = fig.colorbar(coll, ax=ax, shrink=0.7, aspect=15, pad=0.02)
    cb.ax.tick_params(labelsize=7)


@f.figure_docs
def calibration(
    sdata: SpatialData,
    *,
    layer: str = Keys.predicted,
    sections: str | list[str] | None = None,
    table_key: str | None = None,
    ax: Axes | None = None,
    show: bool = False,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Figure:
    """Calibration plot: empirical against nominal coverage of the calibrated intervals, one line per section.

    Reads ``uns["genedml"]["evaluation"][layer]["coverage_curve"]`` written by `gd.tl.evaluate` after
    `gd.tl.predict(..., interval=…)`. Points on the diagonal are perfectly calibrated; below it the intervals
    under-cover (too narrow). The level of the written intervals is marked.

    Parameters
    ----------
    sdata
        SpatialData (or its table) after `gd.tl.evaluate`.
    layer
        The evaluated prediction layer.
    sections
        Sections to draw (``None``: all evaluated).
    table_key
        Spot table.
    ax
        Axes to draw in; ``None`` makes a Figure.
    {figure}

    Examples
    --------
    >>> import pandas as pd
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> curve = pd.DataFrame({"section": ["S1"] * 3, "level": [0.5, 0.8, 0.9], "coverage": [0.52, 0.79, 0.88],
    ...                       "interval_width": [0.4, 0.8, 1.0]})
    >>> sdata.tables["table"].uns["genedml"] = {"evaluation": {"predicted": {"coverage_curve": curve}}}
    >>> fig = gd.pl.calibration(sdata)
    """
    table = u.table_of(sdata, table_key=table_key)
    ev = table.uns.get(Keys.uns, {}).get("evaluation", {}).get(layer) or {}
    curve = ev.get("coverage_curve")
    if curve is None:
        raise KeyError(
            f"`layer`={layer!r}: no calibration curve; run gd.tl.predict(..., interval=0.9) with a calibrated model, "
            "then gd.tl.evaluate."
        )
    curve = pd.DataFrame(curve)
    secs = u.check_sections(curve["section"].astype(str).to_numpy(), sections)
    path = f.check_save(save, overwrite)
    fig, ax = f.single_axes(ax, (4.2, 4.0))
    ax.plot([0, 1], [0, 1], color="0.5", lw=1, ls="--", label="nominal")
    for s in secs:
        df = curve[curve["section"].astype(str) == s].sort_values("level")
        ax.plot(df["level"], df["coverage"], marker="o", ms=3, lw=1.2, label=s)
    level = ev.get("interval", {}).get("level") if isinstance(ev.get("interval"), dict) else None
    if level is not None:
        ax.axvline(level, color="0.7", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage")
    ax.set_title(f"calibration of {layer!r} intervals", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return f.finish(fig, show=show, save=path)
