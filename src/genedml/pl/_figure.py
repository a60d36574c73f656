"""The contract every ``gd.pl`` function keeps: ``ax=`` in, the Figure out, ``show=`` / ``save=`` / ``overwrite=``.

* ``ax``: ``None`` makes a new constrained-layout Figure. A one-panel plot takes one Axes; a plot of several panels
  takes a sequence (or array) of exactly that many Axes, all in one Figure, filled in reading order.
* ``save``: a path whose suffix names a format matplotlib writes (``.png``, ``.pdf``, ``.svg``, …). It is checked
  *before* anything is drawn: an existing file raises `FileExistsError` unless ``overwrite=True`` (as every writer
  of the library does); the figure is written to a temporary sibling and renamed onto the path, so a failed write
  never leaves a half-written file.
* ``show``: call ``plt.show()`` once the figure is drawn (and saved).
* The return value is always the matplotlib `~matplotlib.figure.Figure` (the root Figure of ``ax`` when given).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__: list[str] = []


def check_save(save: str | os.PathLike | None, overwrite: bool) -> Path | None:
    """The path to save to, after checking its format and that it may be written (before any drawing)."""
    if save is None:
        return None
    if not isinstance(save, str | os.PathLike):
        raise TypeError(f"`save` must be a file path (str or os.PathLike) or None, got {type(save).__name__}.")
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(save)
    formats = FigureCanvasBase.get_supported_filetypes()
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in formats:
        raise ValueError(
            f"`save`={str(save)!r}: the file name must end in a format matplotlib writes: {', '.join(sorted(formats))}."
        )
    if path.is_dir():
        raise IsADirectoryError(f"`save`={str(save)!r} is a directory; name a file, e.g. {str(path / 'figure.png')!r}.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"`save`={str(save)!r} exists; pass overwrite=True to replace it.")
    return path


def root_figure(ax: Axes) -> Figure:
    """The top-level Figure of ``ax`` (through any SubFigure)."""
    try:
        return ax.get_figure(root=True)
    except TypeError:  # matplotlib < 3.10: a SubFigure's `figure` is the root Figure, a Figure's is itself
        return ax.get_figure().figure


def finish(fig: Figure, *, show: bool, save: Path | None) -> Figure:
    """Save (atomically) and show ``fig`` as asked; return it."""
    if save is not None:
        from .._utils import atomic_path

        with atomic_path(save) as tmp:  # same file name in a temporary folder: the format follows the suffix
            fig.savefig(tmp, bbox_inches="tight")
    if show:
        import matplotlib.pyplot as plt

        plt.show()
    return fig


def _is_axes(obj) -> bool:
    from matplotlib.axes import Axes

    return isinstance(obj, Axes)


def axes_grid(
    ax: Axes | Sequence[Axes] | None,
    shape: tuple[int, int],
    figsize: tuple[float, float],
    *,
    what: str,
    n: int | None = None,
    **subplots,
) -> tuple[Figure, np.ndarray]:
    """The Figure and a ``shape`` array of Axes: new ones, or the user's ``ax`` checked against the panel count.

    ``n`` (default ``rows × cols``) is how many panels are drawn; with new Axes the grid's extra cells are hidden, with
    the user's Axes exactly ``n`` are required. ``what`` says what the panels are, for the error message.
    """
    nrows, ncols = shape
    n = nrows * ncols if n is None else n
    if ax is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=figsize, layout="constrained")
        grid = fig.subplots(nrows, ncols, squeeze=False, **subplots)
        for extra in grid.ravel()[n:]:
            extra.set_visible(False)
        return fig, grid
    given = [ax] if _is_axes(ax) else list(np.asarray(ax, dtype=object).ravel()) if _sequence(ax) else None
    if given is None or not all(_is_axes(a) for a in given):
        raise TypeError(f"`ax` must be a matplotlib Axes or a sequence of Axes, got {type(ax).__name__}.")
    if len(given) != n:
        layout = f"{nrows} × {ncols}" if n == nrows * ncols else f"{n}"
        raise ValueError(
            f"`ax`: this plot draws {n} panel(s) ({what}; {layout}), so pass {n} Axes "
            f"(e.g. `plt.subplots({nrows}, {ncols})[1]`), got {len(given)}."
        )
    figs = {id(root_figure(a)) for a in given}
    if len(figs) != 1:
        raise ValueError("`ax`: all Axes must belong to one Figure.")
    grid = np.empty(nrows * ncols, dtype=object)
    grid[:n] = given
    return root_figure(given[0]), grid.reshape(nrows, ncols) if n == nrows * ncols else grid[:n].reshape(1, n)


def single_axes(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    """The Figure and Axes of a one-panel plot: ``ax`` itself, or a new constrained-layout Figure's."""
    fig, grid = axes_grid(ax, (1, 1), figsize, what="one panel")
    return fig, grid[0, 0]


def _sequence(obj) -> bool:
    return isinstance(obj, Sequence | np.ndarray) and not isinstance(obj, str)


_FIGURE_PARAMS = """show
        Call ``plt.show()`` at the end.
    save
        File to write the figure to (format from the suffix), atomically; checked before drawing.
    overwrite
        Replace an existing ``save`` file (otherwise `FileExistsError`).

    Returns
    -------
    The matplotlib Figure (the root Figure of ``ax`` when given); its Axes are ``fig.axes``."""


def figure_docs(func):
    """Put the shared parameters and the Returns section where a docstring says ``{figure}``.

    ``{figure}`` stands as the last line of the Parameters section: it becomes ``show``, ``save``, ``overwrite`` and
    the Returns section (the Figure).
    """
    if func.__doc__:
        func.__doc__ = func.__doc__.replace("{figure}", _FIGURE_PARAMS)
    return func
