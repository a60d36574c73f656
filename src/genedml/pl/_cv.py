"""``gd.pl.cv_summary`` and ``gd.pl.ablation``: cross-validation tables (the paper's Tables 1 and 3) as figures."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._validators import assert_keys_in
from . import _figure as f

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["ablation", "cv_summary"]

_METRICS = ("pcc_a", "pcc_h", "mse", "mae")
_LABEL = {"pcc_a": "PCC(A)", "pcc_h": "PCC(H)", "mse": "MSE", "mae": "MAE", "ccc": "CCC"}
_LOWER_IS_BETTER = {"mse", "mae"}


def _label(metric: str) -> str:
    arrow = "↓" if metric in _LOWER_IS_BETTER else "↑"
    return f"{_LABEL.get(metric, metric)} {arrow}"


def fold_stats(data: pd.DataFrame, *, metrics: Sequence[str], methods: Sequence[str] | None) -> pd.DataFrame:
    """Per method and metric: mean and standard deviation over folds of the per-fold means over sections.

    Returns a frame indexed by method (in ``methods`` order, else order of first appearance) with columns
    ``(metric, "mean" | "std")`` and ``n_folds``.
    """
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"`data` must be a pandas DataFrame (one row per method × fold × section), got {type(data)}.")
    if data.empty:
        raise ValueError("`data` is empty: expected one row per method × fold × section.")
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    if not metrics:
        raise ValueError("`metrics` is empty: name at least one metric column.")
    assert_keys_in(["method", "fold"], data.columns, name="data", where="the DataFrame's columns")
    assert_keys_in(metrics, data.columns, name="metrics", where=f"`data`'s columns {list(data.columns)}")
    order = list(dict.fromkeys(data["method"].astype(str)))
    if methods is not None:
        assert_keys_in(list(methods), order, name="methods", where=f"data['method'] {order}")
        order = [str(m) for m in methods]
    df = data.assign(method=data["method"].astype(str))
    df = df[df["method"].isin(order)]
    per_fold = df.groupby(["method", "fold"], sort=False)[metrics].mean()
    grouped = per_fold.groupby(level="method", sort=False)
    out = pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1)}, axis=1).swaplevel(axis=1)
    out["n_folds"] = grouped.size()
    return out.reindex(order)


def _metric_docs(func):
    """``{metric_axes}``: the ``ax`` parameter of a one-panel-per-metric figure, then ``{figure}``."""
    func.__doc__ = func.__doc__.replace(
        "{metric_axes}",
        "ax\n        One Axes per metric to draw in (a sequence of exactly ``len(metrics)``); ``None`` makes a "
        "Figure.\n    {figure}",
    )
    return func


@f.figure_docs
@_metric_docs
def cv_summary(
    data: pd.DataFrame,
    *,
    metrics: Sequence[str] = _METRICS,
    methods: Sequence[str] | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool = False,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Figure:
    """Methods × metrics bars with error bars from a cross-validation table (the paper's Table 1 as a figure).

    For each method and metric, the height is the mean over folds of the per-fold mean over that fold's test
    sections, and the error bar the standard deviation over folds (none with a single fold). The best method per
    metric has its value in bold.

    Parameters
    ----------
    data
        Tidy results, one row per method × fold × section, with columns ``method``, ``fold`` and the metrics (as
        `gd.tl.cross_validate` returns).
    metrics
        Metric columns to show, one panel each.
    methods
        Methods to show, in this order; ``None`` shows all in order of appearance.
    {metric_axes}

    Examples
    --------
    >>> import pandas as pd
    >>> import genedml as gd
    >>> df = pd.DataFrame({"method": ["Gene-DML"] * 2 + ["ST-Net"] * 2, "fold": [0, 1, 0, 1],
    ...                    "section": ["A", "B", "A", "B"], "mse": [0.4, 0.42, 0.5, 0.48],
    ...                    "mae": [0.5, 0.5, 0.55, 0.56], "pcc_a": [0.31, 0.29, 0.15, 0.17],
    ...                    "pcc_h": [0.45, 0.47, 0.3, 0.28]})
    >>> fig = gd.pl.cv_summary(df)
    """
    stats = fold_stats(data, metrics=metrics, methods=methods)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    n = len(stats)
    path = f.check_save(save, overwrite)
    size = (max(2.2, 0.45 * n + 1.0) * len(metrics) + 0.3, 3.8)
    fig, axes = f.axes_grid(ax, (1, len(metrics)), size, what="one per metric")
    axes = axes[0]
    colors = [f"C{i % 10}" for i in range(n)]
    for ax, metric in zip(axes, metrics):
        _bars(ax, stats, metric, colors)
    folds = sorted(set(stats["n_folds"]))
    fold_txt = f"{folds[0]} folds" if len(folds) == 1 else f"{folds[0]}–{folds[-1]} folds"
    fig.suptitle(f"mean ± s.d. over {fold_txt} (per-fold mean over sections)", fontsize=10)
    return f.finish(fig, show=show, save=path)


def _bars(ax, stats: pd.DataFrame, metric: str, colors: list[str]) -> None:
    mean, std = stats[(metric, "mean")].to_numpy(float), stats[(metric, "std")].to_numpy(float)
    x = np.arange(len(stats))
    ax.bar(x, mean, yerr=np.nan_to_num(std), color=colors, capsize=3, error_kw={"linewidth": 1}, width=0.7)
    top = np.nanmax(np.abs(mean) + np.nan_to_num(std)) if np.isfinite(mean).any() else 1.0
    best = _best(mean, metric)
    for xi, m, s in zip(x, mean, np.nan_to_num(std)):
        if np.isfinite(m):
            y = m + s if m >= 0 else m - s
            va = "bottom" if m >= 0 else "top"
            weight = "bold" if xi == best else "normal"
            ax.text(xi, y + 0.02 * top * np.sign(m or 1), f"{m:.3f}", ha="center", va=va, fontsize=8, weight=weight)
        else:  # e.g. the mean predictor's PCC: a constant prediction has none
            ax.text(xi, 0.02 * top, "n/a", ha="center", va="bottom", fontsize=8, color="#7f7f7f")
    ax.set_xticks(x, stats.index, rotation=30 if len(stats) > 2 else 0, ha="right" if len(stats) > 2 else "center")
    ax.set_title(_label(metric), fontsize=10)
    if not np.isfinite(mean).any():
        ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center", va="center", color="#7f7f7f")
    lo = min(0.0, float(np.nanmin(mean - np.nan_to_num(std)))) if np.isfinite(mean).any() else 0.0
    ax.set_ylim(lo * 1.15, top * 1.15)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.spines[["top", "right"]].set_visible(False)


def _best(mean: np.ndarray, metric: str) -> int:
    if not np.isfinite(mean).any():
        return -1
    return int(np.nanargmin(mean) if metric in _LOWER_IS_BETTER else np.nanargmax(mean))


def _delta_color(delta: float, metric: str) -> str:
    worse = delta > 0 if metric in _LOWER_IS_BETTER else delta < 0
    return "#b2182b" if worse and delta != 0 else "#1a6e2e" if delta != 0 else "black"


def _variant_label(name: str, reference: str | None) -> str:
    if name == reference:
        return f"{name} (reference)"
    if name.startswith("no_"):
        return "w/o " + name[3:].replace("_", " ")
    return name.replace("_", " ")


@f.figure_docs
@_metric_docs
def ablation(
    data: pd.DataFrame,
    *,
    metrics: Sequence[str] = _METRICS,
    reference: str | None = "full",
    methods: Sequence[str] | None = None,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool = False,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Figure:
    """Ablation variants × metrics as points with error bars against the full model (the paper's Table 3).

    Same statistics as :func:`cv_summary` (mean ± s.d. over folds of the per-fold means). Each panel is one metric;
    a dashed line marks the ``reference`` variant and every other variant is labelled with its difference to it.
    Names ``no_<part>`` read as "w/o <part>".

    Parameters
    ----------
    data
        Tidy results, one row per variant × fold × section: columns ``method`` (the variant, e.g. ``"full"``,
        ``"no_instance_level"``), ``fold`` and the metrics.
    metrics
        Metric columns to show, one panel each.
    reference
        Variant to compare against; ``None`` draws no reference.
    methods
        Variants to show, top to bottom; ``None`` shows the reference first, then the rest in order of appearance.
    {metric_axes}

    Examples
    --------
    >>> import pandas as pd
    >>> import genedml as gd
    >>> df = pd.DataFrame({"method": ["full", "full", "no_instance_level", "no_instance_level"],
    ...                    "fold": [0, 1, 0, 1], "section": ["A", "B", "A", "B"],
    ...                    "pcc_a": [0.31, 0.29, 0.27, 0.28], "mse": [0.40, 0.42, 0.44, 0.43]})
    >>> fig = gd.pl.ablation(df, metrics=["pcc_a", "mse"])
    """
    if reference is not None and isinstance(data, pd.DataFrame) and "method" in data:
        known = list(dict.fromkeys(data["method"].astype(str)))
        if reference not in known:
            raise KeyError(f"`reference`={reference!r} is not a method of `data` ({known}); pass None for none.")
        if methods is None:
            methods = [reference, *[m for m in known if m != reference]]
    stats = fold_stats(data, metrics=metrics, methods=methods)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    n = len(stats)
    path = f.check_save(save, overwrite)
    size = (2.6 * len(metrics) + 1.6, 0.42 * n + 1.3)
    fig, axes = f.axes_grid(ax, (1, len(metrics)), size, what="one per metric", sharey=True)
    axes = axes[0]
    labels = [_variant_label(m, reference) for m in stats.index]
    for ax, metric in zip(axes, metrics):
        _points(ax, stats, metric, reference)
    axes[0].set_yticks(np.arange(n), labels)
    for a in axes:  # given Axes need not share y: align every panel with the labelled first one
        if not a.get_shared_y_axes().joined(a, axes[0]):
            a.set_yticks(np.arange(n))
            a.tick_params(labelleft=False)
        a.set_ylim(n - 0.5, -0.5)
    return f.finish(fig, show=show, save=path)


def _points(ax, stats: pd.DataFrame, metric: str, reference: str | None) -> None:
    mean, std = stats[(metric, "mean")].to_numpy(float), stats[(metric, "std")].to_numpy(float)
    y = np.arange(len(stats))
    is_ref = np.array([m == reference for m in stats.index])
    ax.errorbar(mean, y, xerr=np.nan_to_num(std), fmt="none", ecolor="#7f7f7f", capsize=3, linewidth=1)
    ax.scatter(mean[~is_ref], y[~is_ref], color="C0", zorder=3, s=30)
    ax.scatter(mean[is_ref], y[is_ref], color="black", marker="D", zorder=3, s=30)
    ref = float(mean[is_ref][0]) if is_ref.any() else None
    if ref is not None:
        ax.axvline(ref, color="black", linestyle="--", linewidth=0.8)
    if np.isfinite(mean).any():
        lo, hi = np.nanmin(mean - np.nan_to_num(std)), np.nanmax(mean + np.nan_to_num(std))
        span = hi - lo if hi > lo else abs(hi) or 1.0
        ax.set_xlim(lo - 0.15 * span, hi + 0.6 * span)
    else:
        ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center", va="center", color="#7f7f7f")
    for yi, m, s, r in zip(y, mean, np.nan_to_num(std), is_ref):
        if np.isfinite(m):
            txt = f"{m:.3f}" if r or ref is None else f"{m - ref:+.3f}"
            color = "black" if r or ref is None else _delta_color(m - ref, metric)
            ax.annotate(
                txt,
                (m + s, yi),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color=color,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5},
            )
    ax.set_title(_label(metric), fontsize=10)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
