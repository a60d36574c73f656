"""``gd.pl.gene_scores`` (per-gene PCC distribution, best and worst genes) and ``gd.pl.predicted_vs_observed``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._keys import Keys
from .._validators import assert_one_of, assert_positive_int
from ..metrics import pearson_per_gene
from . import _figure as f
from . import _utils as u

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from spatialdata import SpatialData

__all__ = ["gene_scores", "predicted_vs_observed"]

_TOP_COLOR, _BOTTOM_COLOR = "#2a788e", "#c0504d"


@f.figure_docs
def gene_scores(
    data: Any,
    *,
    layer: str = Keys.predicted,
    top: int = 10,
    table_key: str | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool = False,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Figure:
    """Distribution of the per-gene Pearson correlation and the best and worst predicted genes.

    Left: a histogram of the per-gene PCC (mean over sections, the paper's PCC(A) before averaging over genes) with
    its mean; right: the ``top`` best and ``top`` worst genes by name (every gene when there are at most
    ``2 * top``).

    Parameters
    ----------
    data
        Where the scores come from: a SpatialData or AnnData with ``var[f"genedml_pcc_{layer}"]`` (written by
        `gd.tl.evaluate`), or, without it, ``layers[layer]`` and ``layers[f"{layer}_observed"]`` to compute it; a
        :class:`~pandas.Series` of PCC indexed by gene; or a :class:`~pandas.DataFrame` of PCC, sections × genes
        (as `gd.metrics.evaluate_sections` returns in ``per_gene``), averaged over its rows.
    layer
        Layer of predicted values whose scores to show (SpatialData / AnnData input).
    top
        How many best and how many worst genes to name.
    table_key
        Spot table of a SpatialData; defaults to ``"table"``.
    ax
        Two Axes to draw in (histogram, ranking); ``None`` makes a Figure.
    {figure}

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> import genedml as gd
    >>> pcc = pd.Series(np.linspace(-0.1, 0.7, 40), index=[f"gene{i}" for i in range(40)])
    >>> fig = gd.pl.gene_scores(pcc, top=5)
    """
    assert_positive_int(top, name="top")
    scores = _gene_pcc(data, layer=layer, table_key=table_key)
    valid = scores.dropna().sort_values(ascending=False)
    if valid.empty:
        raise ValueError("`data` holds no finite per-gene PCC: every gene scored NaN.")
    path = f.check_save(save, overwrite)
    n_show = min(len(valid), 2 * top)
    size = (9.0, max(3.2, 0.2 * n_show + 1.2))
    fig, axes = f.axes_grid(ax, (1, 2), size, what="histogram, ranking", width_ratios=[1.3, 1])
    _histogram(axes[0, 0], valid, n_nan=int(scores.isna().sum()))
    _ranking(axes[0, 1], valid, top)
    return f.finish(fig, show=show, save=path)


def _gene_pcc(data: Any, *, layer: str, table_key: str | None) -> pd.Series:
    if isinstance(data, pd.Series):
        scores = data
    elif isinstance(data, pd.DataFrame):
        if data.empty:
            raise ValueError("`data` is an empty DataFrame: expected PCC values, sections × genes.")
        scores = data.apply(pd.to_numeric, errors="coerce").mean(axis=0, skipna=True)
    else:
        scores = _pcc_from_table(u.table_of(data, table_key=table_key, name="data"), layer)
    if scores.empty:
        raise ValueError("`data` is empty: expected per-gene PCC values.")
    return pd.to_numeric(scores, errors="coerce").astype(np.float64).rename(index=str)


def _pcc_from_table(table, layer: str) -> pd.Series:
    key = u.pcc_key(layer)
    if key in table.var:
        flag = Keys.var_flag(layer)
        mask = table.var[flag].to_numpy(bool) if flag in table.var else table.var[key].notna().to_numpy()
        return table.var.loc[mask, key]
    obs_key = u.observed_key(layer)
    hint = f" Neither var[{key!r}] nor both layers to compute it exist: run `gd.tl.evaluate` first."
    u.check_layer(table, layer, hint=hint)
    u.check_layer(table, obs_key, name="layer", hint=hint)
    pred, meas = np.asarray(table.layers[layer], float), np.asarray(table.layers[obs_key], float)
    labels = u.section_labels(table)
    with np.errstate(all="ignore"):
        per_section = np.vstack([pearson_per_gene(meas[labels == s], pred[labels == s]) for s in dict.fromkeys(labels)])
    keep = np.isfinite(pred).any(axis=0)
    with warnings.catch_warnings():  # "Mean of empty slice" for genes NaN in every section
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(per_section, axis=0)
    return pd.Series(mean[keep], index=table.var_names[keep])


def _histogram(ax, valid: pd.Series, *, n_nan: int) -> None:
    bins = int(np.clip(np.sqrt(len(valid)) * 2, 10, 40))
    ax.hist(valid.to_numpy(), bins=bins, color="#8c8c8c", edgecolor="white")
    mean = float(valid.mean())
    ax.axvline(mean, color="black", linestyle="--", linewidth=1.2, label=f"mean {mean:.3f}")
    if valid.min() < 0.0 < valid.max():
        ax.axvline(0.0, color="#b0b0b0", linewidth=0.8)
    ax.set_xlabel("PCC per gene (mean over sections)")
    ax.set_ylabel("genes")
    ax.yaxis.get_major_locator().set_params(integer=True)
    extra = f", {n_nan} NaN" if n_nan else ""
    ax.set_title(f"{len(valid)} genes{extra}", fontsize=10)
    ax.legend(loc="upper left", fontsize=9, frameon=False)


def _ranking(ax, valid: pd.Series, top: int) -> None:
    if len(valid) <= 2 * top:
        shown = valid
        colors = [_TOP_COLOR if v >= valid.median() else _BOTTOM_COLOR for v in shown]
        ax.set_title("all genes by PCC", fontsize=10)
    else:
        shown = pd.concat([valid.iloc[:top], valid.iloc[-top:]])
        colors = [_TOP_COLOR] * top + [_BOTTOM_COLOR] * top
        ax.set_title(f"top and bottom {top} genes", fontsize=10)
    y = np.arange(len(shown))[::-1].astype(float)
    if len(shown) < len(valid):
        y[top:] -= 0.8  # a gap between the best and the worst
        ax.axhline(y[top - 1] - 0.9, color="#b0b0b0", linewidth=0.8, linestyle=":")
    ax.barh(y, shown.to_numpy(), color=colors, height=0.75)
    ax.set_yticks(y, shown.index, fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("PCC")
    ax.set_ylim(y.min() - 0.7, y.max() + 0.7)


@f.figure_docs
def predicted_vs_observed(
    sdata: SpatialData,
    *,
    gene: str,
    layer: str = Keys.predicted,
    observed: str | None = None,
    sections: str | list[str] | None = None,
    table_key: str | None = None,
    kind: str = "scatter",
    ax: Axes | None = None,
    show: bool = False,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Figure:
    """Predicted against measured expression of one gene, spot by spot, with the identity line.

    The title gives Pearson's r over the shown spots (pooled over the chosen sections; spots where either value
    is missing are left out).

    Parameters
    ----------
    sdata
        SpatialData (or AnnData) with ``layers[layer]`` and the measured values.
    gene
        Gene to show.
    layer
        Layer of predicted values.
    observed
        Layer of measured values in the same units; ``None`` uses ``f"{layer}_observed"`` (`gd.tl.evaluate`).
    sections
        Sections whose spots to show; ``None`` means all. Scatter points are coloured by section.
    table_key
        Spot table of a SpatialData; defaults to ``"table"``.
    kind
        ``"scatter"`` (one point per spot) or ``"hexbin"`` (spot density, for many spots).
    ax
        Axes to draw in; ``None`` makes a new Figure.
    {figure}

    Examples
    --------
    >>> import numpy as np
    >>> import genedml as gd
    >>> adata = gd.datasets.synthetic(preset="tiny").tables["table"]  # an AnnData works too
    >>> adata.layers["predicted_observed"] = np.log1p(adata.layers["counts"].toarray())
    >>> noise = np.random.default_rng(0).normal(0, 0.3, adata.shape)
    >>> adata.layers["predicted"] = adata.layers["predicted_observed"] + noise
    >>> fig = gd.pl.predicted_vs_observed(adata, gene=adata.var_names[0], kind="hexbin")
    """
    assert_one_of(kind, ("scatter", "hexbin"), name="kind")
    table = u.table_of(sdata, table_key=table_key)
    u.check_layer(table, layer, hint=" Run `gd.tl.predict` first.")
    obs_key = u.observed_key(layer) if observed is None else observed
    u.check_layer(table, obs_key, name="observed", hint=" Run `gd.tl.evaluate` first, or name a layer.")
    gene = u.check_genes(table, gene, name="gene", layer=layer)[0]
    labels = u.section_labels(table)
    chosen = u.check_sections(labels, sections)
    x, y = u.column(table, obs_key, gene), u.column(table, layer, gene)
    keep = np.isin(labels, chosen) & np.isfinite(x) & np.isfinite(y)
    if not keep.any():
        raise ValueError(f"`gene`={gene!r} has no spot with both a measured and a predicted value in {chosen}.")
    path = f.check_save(save, overwrite)
    fig, ax = f.single_axes(ax, (4.6, 4.2) if kind == "scatter" else (5.2, 4.2))
    if kind == "scatter":
        _scatter(ax, x[keep], y[keep], labels[keep], chosen)
    else:
        hb = ax.hexbin(x[keep], y[keep], gridsize=30, mincnt=1, cmap="viridis", linewidths=0.2)
        fig.colorbar(hb, ax=ax, label="spots")
    _identity(ax, x[keep], y[keep])
    r = float(pearson_per_gene(x[keep], y[keep])[0])
    ax.set_title(f"{gene}: r = {r:.2f}  (n = {int(keep.sum())} spots)", fontsize=10)
    ax.set_xlabel("measured" if observed is None else f"measured ({obs_key})")
    ax.set_ylabel("predicted" if layer == Keys.predicted else f"predicted ({layer})")
    return f.finish(fig, show=show, save=path)


def _scatter(ax, x: np.ndarray, y: np.ndarray, labels: np.ndarray, chosen: list[str]) -> None:
    many = len(chosen) > 10
    for i, sec in enumerate(chosen):
        m = labels == sec
        color = "#3b6ea8" if many else f"C{i}"
        ax.scatter(
            x[m],
            y[m],
            s=float(np.clip(2000 / max(len(x), 1), 4, 24)),
            alpha=0.6,
            color=color,
            linewidths=0,
            label=None if many else sec,
        )
    if 1 < len(chosen) <= 10:
        ax.legend(title="section", fontsize=8, title_fontsize=8, markerscale=1.5, loc="upper left", frameon=False)


def _identity(ax, x: np.ndarray, y: np.ndarray) -> None:
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    lo, hi = lo - pad, hi + pad
    ax.plot([lo, hi], [lo, hi], color="black", linestyle="--", linewidth=1, label="_identity")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal", adjustable="box")
