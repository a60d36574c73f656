"""``gd.pl.history``: training curves of every loss term, the validation metrics and the schedule."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import _figure as f

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["history"]

_NAMES = {
    "train_loss": "total",
    "train_reg": "regression",
    "train_inst": "instance (sum)",
    "train_inst_local": "instance · local",
    "train_inst_neighbor": "instance · neighbour",
    "train_inst_global": "instance · global",
    "train_ig": "instance-group",
    "train_cluster_acc": "cluster accuracy",
    "val_pcc": "PCC",
    "val_mse": "MSE",
    "val_mae": "MAE",
    "val_loss": "loss",
    "lr": "learning rate",
}


@f.figure_docs
def history(
    data: Any,
    *,
    ax: Axes | Sequence[Axes] | None = None,
    show: bool = False,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Figure:
    """Training curves: every loss term, the validation metrics, and (when recorded) cluster accuracy and the LR.

    Panels appear for what the history holds: training losses (``train_*`` columns; the total drawn thick),
    validation (``val_pcc`` on the left axis, errors such as ``val_mse`` on a right axis), clustering accuracy
    (``*acc*`` columns) and the learning rate (log scale). A dotted line marks the best epoch (highest ``val_pcc``,
    else lowest ``val_loss`` / ``val_mse``) in every panel. Epochs without a value (e.g. no validation that epoch)
    are skipped, not drawn as zero.

    Parameters
    ----------
    data
        The history: a list of dicts (one per epoch, key ``epoch`` optional), a :class:`~pandas.DataFrame`, a dict
        of lists, or an object with a ``history_`` attribute holding one of these (a trained `GeneDML`).
    ax
        One Axes per panel to draw in (as many as the history has panel groups, in the order above); ``None``
        makes a Figure.
    {figure}

    Examples
    --------
    >>> import genedml as gd
    >>> hist = [{"epoch": e, "train_loss": 1 / (e + 1), "val_pcc": 0.3 * e / 9, "lr": 1e-4} for e in range(10)]
    >>> fig = gd.pl.history(hist)
    """
    df = _frame(data)
    groups = _groups(df)
    if not groups:
        raise ValueError(f"`data` has no numeric training metric to draw (columns: {list(df.columns)}).")
    best = _best_epoch(df)
    path = f.check_save(save, overwrite)
    n = len(groups)
    nrows, ncols = (1, n) if n <= 2 else (2, 2) if n == 4 else (1, n)
    what = "one per panel group: " + ", ".join(groups)
    fig, axes = f.axes_grid(ax, (nrows, ncols), (4.6 * ncols, 3.4 * nrows), what=what, n=n)
    axes = axes.ravel()
    for ax, (title, cols) in zip(axes, groups.items()):
        _DRAW[title](ax, df, cols)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.spines[["top"]].set_visible(False)
        if best is not None:
            ax.axvline(best[0], color="#7f7f7f", linestyle=":", linewidth=1)
    if best is not None:
        fig.suptitle(f"best epoch {best[0]:g} ({best[1]}; dotted line)", fontsize=10)
    return f.finish(fig, show=show, save=path)


def _frame(data: Any) -> pd.DataFrame:
    if hasattr(data, "history_"):
        data = data.history_
    if isinstance(data, pd.DataFrame):
        df = data.copy()
    elif isinstance(data, Mapping):
        df = pd.DataFrame(dict(data))
    elif isinstance(data, list | tuple) and all(isinstance(r, Mapping) for r in data):
        df = pd.DataFrame(list(data))
    else:
        raise TypeError(
            "`data` must be a list of dicts, a DataFrame, a dict of lists or an object with `history_`, "
            f"got {type(data).__name__}."
        )
    if df.empty:
        raise ValueError("`data` is an empty history: nothing to draw (was the model trained?).")
    if "epoch" not in df:
        df["epoch"] = np.arange(len(df))
    df = df.apply(pd.to_numeric, errors="coerce")
    return df.groupby("epoch", sort=True).last().reset_index() if df["epoch"].duplicated().any() else df


def _numeric(df: pd.DataFrame, cols) -> list[str]:
    return [c for c in cols if c in df and df[c].notna().any()]


def _groups(df: pd.DataFrame) -> dict[str, list[str]]:
    acc = _numeric(df, [c for c in df.columns if "acc" in str(c)])
    losses = _numeric(df, [c for c in df.columns if str(c).startswith("train_") and c not in acc])
    losses = sorted(losses, key=lambda c: c != "train_loss")  # the total first
    val = _numeric(df, [c for c in df.columns if str(c).startswith("val_") and c not in acc])
    lr = _numeric(df, [c for c in df.columns if str(c) == "lr" or str(c).startswith("lr_")])
    out = {"training losses": losses, "validation": val, "clustering accuracy": acc, "learning rate": lr}
    return {k: v for k, v in out.items() if v}


def _best_epoch(df: pd.DataFrame) -> tuple[float, str] | None:
    for col, fn, word in (
        ("val_pcc", "idxmax", "highest"),
        ("val_loss", "idxmin", "lowest"),
        ("val_mse", "idxmin", "lowest"),
    ):
        if col in df and df[col].notna().any():
            return float(df.loc[getattr(df[col], fn)(), "epoch"]), f"{word} {col}"
    return None


def _line(ax, df: pd.DataFrame, col: str, **kw):
    s = df[["epoch", col]].dropna()
    marker = "o" if len(s) <= 15 else None
    return ax.plot(s["epoch"], s[col], marker=marker, markersize=3, label=_NAMES.get(col, col), **kw)[0]


def _draw_losses(ax, df: pd.DataFrame, cols: list[str]) -> None:
    for i, col in enumerate(cols):
        total = col == "train_loss"
        _line(ax, df, col, color="black" if total else f"C{i}", linewidth=2.2 if total else 1.3)
    values = df[cols].to_numpy(float)
    positive = values[np.isfinite(values)]
    if positive.size and (positive > 0).all() and positive.max() / positive.min() > 30:
        ax.set_yscale("log")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8, frameon=False, loc="best")


def _draw_validation(ax, df: pd.DataFrame, cols: list[str]) -> None:
    left = [c for c in cols if "pcc" in c or "r2" in c or "ccc" in c] or cols[:1]
    right = [c for c in cols if c not in left]
    _side(ax, df, left, start=0, linestyle="-")
    if right:
        _side(ax.twinx(), df, right, start=len(left), linestyle="--")


def _side(ax, df: pd.DataFrame, cols: list[str], *, start: int, linestyle: str) -> None:
    """Draw ``cols`` on one y axis; a single series colours its axis label instead of needing a legend."""
    for i, c in enumerate(cols):
        _line(ax, df, c, color=f"C{start + i}", linewidth=1.5, linestyle=linestyle)
    style = "" if linestyle == "-" else " (dashed)"
    ax.set_ylabel(" / ".join(_NAMES.get(c, c) for c in cols) + style)
    if len(cols) == 1:
        ax.yaxis.label.set_color(f"C{start}")
        ax.tick_params(axis="y", colors=f"C{start}")
    else:
        ax.legend(fontsize=8, frameon=False, loc="best")


def _draw_acc(ax, df: pd.DataFrame, cols: list[str]) -> None:
    for i, col in enumerate(cols):
        _line(ax, df, col, color=f"C{i + 4}", linewidth=1.5)
    ax.set_ylabel("accuracy")
    if len(cols) > 1:
        ax.legend(fontsize=8, frameon=False)


def _draw_lr(ax, df: pd.DataFrame, cols: list[str]) -> None:
    for i, col in enumerate(cols):
        _line(ax, df, col, color=f"C{i + 7}", linewidth=1.5, drawstyle="steps-post")
    values = df[cols].to_numpy(float)
    values = values[np.isfinite(values)]
    if values.size and (values > 0).all() and values.max() / values.min() > 20:
        ax.set_yscale("log")
    elif values.size and values.max() == values.min():  # a constant rate: one labelled level, not an offset axis
        v = float(values[0])
        ax.set_ylim(v * 0.5, v * 1.5) if v > 0 else ax.set_ylim(-1, 1)
        ax.set_yticks([v], [f"{v:.3g}"])
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.set_ylabel("learning rate")


_DRAW = {
    "training losses": _draw_losses,
    "validation": _draw_validation,
    "clustering accuracy": _draw_acc,
    "learning rate": _draw_lr,
}
