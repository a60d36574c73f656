"""``gd.pl.spots``: the H&E of each section with its spots, optionally coloured by a gene or an ``obs`` column."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._keys import Keys
from .._validators import assert_one_of, assert_positive_int
from . import _figure as f
from . import _utils as u

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from spatialdata import SpatialData

__all__ = ["spots"]


@dataclass
class _Colour:
    """What to colour the spots by: numbers on a colour bar, or categories with one colour each."""

    label: str
    values: np.ndarray | None = None  # numeric, per table row
    codes: np.ndarray | None = None  # categorical: index into categories per row, -1 for missing
    categories: list[str] | None = None
    colors: list | None = None


@f.figure_docs
def spots(
    sdata: SpatialData,
    *,
    color: str | None = None,
    sections: list[str] | None = None,
    layer: str | None = Keys.counts,
    table_key: str | None = None,
    max_px: int = 1000,
    cmap: str = "viridis",
    palette: str | Sequence | None = None,
    legend_loc: str | None = "right margin",
    ncols: int = 4,
    crop: bool = True,
    scalebar: bool = True,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool = False,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Figure:
    """Draw each section's H&E with its spots at their true size, coloured by a gene or an ``obs`` column if given.

    ``color`` is looked up in the table's ``obs`` columns, then in its genes:

    * a **categorical** ``obs`` column (``category``, string or boolean dtype; e.g. Leiden clusters) gives every
      category one colour, the same in every section, and a legend with one entry per category (spots without a
      label are grey, ``"NA"``). Colours come from ``palette``, else ``uns[f"{color}_colors"]`` (scanpy's
      convention) when it has one colour per category, else ``tab10`` / ``tab20``.
    * a **numeric** ``obs`` column is drawn as is, on one colour bar shared by all sections.
    * a **gene** is drawn as ``log1p`` of ``layers[layer]`` (raw counts by default), on one shared colour bar.

    A micrometre scale bar sits in every panel.

    Parameters
    ----------
    sdata
        SpatialData in genedml's data model.
    color
        ``obs`` column or gene to colour by; ``None`` draws outlines only; ``"auto"`` picks the most variable gene.
    sections
        Sections to draw; ``None`` draws all.
    layer
        Table layer holding gene values (``None`` uses ``X``).
    table_key
        Spot table; defaults to ``"table"``.
    max_px
        About this many pixels across each panel's (cropped) view; only that resolution of a lazy slide is read.
    cmap
        Matplotlib colour map of numeric values.
    palette
        Colours of the categories: a matplotlib colour map name or a sequence of colours (one per category, in the
        order of the categories).
    legend_loc
        ``"right margin"`` puts the categories' legend right of the panels; ``None`` draws none (e.g. when a second
        call adds the same legend to the same figure).
    ncols
        Panels per row of a new Figure.
    crop
        Zoom each panel to its spots (plus a margin of two spot radii); ``False`` shows the whole image.
    scalebar
        Draw a micrometre scale bar in each panel (when the section's pixel size is known).
    ax
        One Axes per section to draw in (a sequence or array of exactly as many); ``None`` makes a Figure.
    {figure}

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> fig = gd.pl.spots(sdata, color="auto")
    >>> fig = gd.pl.spots(sdata, color="patient")  # a categorical obs column: one colour and legend entry each
    """
    table = u.get_table(sdata, table_key=table_key)
    secs = u.check_sections(u.section_labels(table), sections)
    assert_positive_int(max_px, name="max_px")
    assert_positive_int(ncols, name="ncols")
    if legend_loc is not None:
        assert_one_of(legend_loc, ("right margin",), name="legend_loc")
    colour = _resolve(table, color, layer, palette) if color is not None else None
    path = f.check_save(save, overwrite)
    n = len(secs)
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = f.axes_grid(ax, (nrows, ncols), (4.2 * ncols, 4.2 * nrows), what="one per section", n=n)
    clim = u.finite_range(colour.values) if colour is not None and colour.values is not None else (0.0, 1.0)
    mappable = None
    for a, s in zip(axes.ravel(), secs):
        sec = u.load_section(sdata, table, s, max_px, crop=crop)
        u.show_he(a, sec.thumb, sec.extent, sec.box)
        mappable = _draw_spots(a, sec, colour, cmap, clim) or mappable
        a.set_title(f"{s} ({len(sec.xy)} spots)")
        if scalebar:
            u.add_scalebar(a, sec)
    used = list(axes.ravel()[:n])
    if mappable is not None:
        fig.colorbar(mappable, ax=used, shrink=0.7, label=colour.label)
    elif colour is not None and legend_loc is not None:
        _legend(fig, colour, table, secs)
    return f.finish(fig, show=show, save=path)


def _draw_spots(ax, sec: u.Section, colour: _Colour | None, cmap, clim):
    """Draw the spots; return the collection when it needs a colour bar."""
    if colour is None:
        u.add_circles(ax, sec.xy, sec.radius, facecolor="none", edgecolor="black", linewidth=0.5)
        return None
    if colour.values is not None:
        import matplotlib as mpl

        cm = mpl.colormaps[cmap].with_extremes(bad=u.NA_COLOR)
        return u.add_circles(ax, sec.xy, sec.radius, colour.values[sec.rows], cmap=cm, clim=clim, edgecolor="none")
    codes = colour.codes[sec.rows]
    faces = [colour.colors[c] if c >= 0 else u.NA_COLOR for c in codes]
    u.add_circles(ax, sec.xy, sec.radius, facecolors=faces, edgecolors="none")
    return None


def _legend(fig, colour: _Colour, table, secs: list[str]) -> None:
    from matplotlib.lines import Line2D

    shown = np.isin(u.section_labels(table), secs)
    present = set(colour.codes[shown].tolist())
    entries = [(c, colour.colors[i]) for i, c in enumerate(colour.categories)]
    if -1 in present:
        entries.append(("NA", u.NA_COLOR))
    handles = [Line2D([], [], marker="o", linestyle="", markersize=8, color=c, label=lab) for lab, c in entries]
    fig.legend(handles=handles, title=colour.label, loc="outside right center", frameon=False, fontsize=9)


def _resolve(table, color: str, layer: str | None, palette) -> _Colour:
    if not isinstance(color, str):
        raise TypeError(f"`color` must be an obs column or a gene name (str) or None, got {type(color).__name__}.")
    in_obs, in_var = color in table.obs.columns, color in table.var_names
    if in_obs and in_var:
        raise ValueError(f"`color`={color!r} is both an obs column and a gene; rename the obs column.")
    if in_obs:
        col = table.obs[color]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            return _Colour(color, values=col.to_numpy(dtype=np.float64, na_value=np.nan))
        return _categorical(table, color, palette)
    if color != "auto" and not in_var:
        raise KeyError(
            f"`color`={color!r} is neither an obs column ({list(table.obs.columns)}) nor a gene of the table "
            f"(e.g. {list(table.var_names[:5])})."
        )
    if layer is not None:
        u.check_layer(table, layer)
    values, gene = _gene_values(table, color, layer)
    return _Colour(f"{gene} log1p({layer or 'X'})", values=values)


def _categorical(table, key: str, palette) -> _Colour:
    col = table.obs[key]
    cat = col if isinstance(col.dtype, pd.CategoricalDtype) else col.astype("category")
    categories = [str(c) for c in cat.cat.categories]
    if not categories:
        raise ValueError(f"`color`={key!r}: the obs column holds no category (every value is missing).")
    colors = _palette(table, key, categories, palette)
    return _Colour(key, codes=cat.cat.codes.to_numpy(), categories=categories, colors=colors)


def _palette(table, key: str, categories: list[str], palette) -> list:
    import matplotlib as mpl
    from matplotlib.colors import to_rgba

    k = len(categories)
    if palette is None:
        stored = table.uns.get(f"{key}_colors")
        if stored is not None and len(stored) == k:
            return [to_rgba(c) for c in stored]
        palette = "tab10" if k <= 10 else "tab20" if k <= 20 else "turbo"
    if isinstance(palette, str):
        if palette not in mpl.colormaps:
            raise ValueError(f"`palette`={palette!r} is not a matplotlib colour map name.")
        cm = mpl.colormaps[palette]
        n = getattr(cm, "N", 256)
        return [cm(i % n) if n < 256 else cm(i / max(k - 1, 1)) for i in range(k)]
    colors = list(palette)
    if len(colors) < k:
        raise ValueError(f"`palette` has {len(colors)} colours for the {k} categories of `color`={key!r}.")
    try:
        return [to_rgba(c) for c in colors[:k]]
    except ValueError as err:
        raise ValueError(f"`palette`: {err}") from None


def _gene_values(table, color: str, layer: str | None) -> tuple[np.ndarray, str]:
    import scipy.sparse as sp

    X = table.X if layer is None else table.layers[layer]
    if color == "auto":
        dense = X.toarray() if sp.issparse(X) else np.asarray(X)
        logx = np.log1p(dense)
        color = str(table.var_names[int(np.argmax(logx.var(axis=0)))])
    col = X[:, table.var_names.get_loc(color)]
    col = col.toarray().ravel() if sp.issparse(col) else np.asarray(col).ravel()
    return np.log1p(col.astype(np.float64)), color
