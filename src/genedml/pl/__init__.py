"""Plotting: ``gd.pl`` (matplotlib is imported inside each function; nothing here loads the model stack).

**One contract for every function.** Each takes the data first, then keyword-only options, and

* ``ax=``: ``None`` makes a new Figure; otherwise the Axes to draw in: one Axes for a one-panel plot
  (`calibration`, `predicted_vs_observed`), else a sequence or array of exactly as many Axes as the plot has panels
  (all in one Figure; a wrong count raises a `ValueError` that says how many are needed);
* ``show=False``: ``True`` calls ``plt.show()`` at the end;
* ``save=None``: a file path whose suffix names the format (``.png``, ``.pdf``, ``.svg`` …). It is checked before
  anything is drawn and never clobbered: an existing file raises `FileExistsError` unless ``overwrite=True``, as
  every writer of genedml does; the file is written to a temporary sibling and renamed, so a failure leaves no
  half-written file;
* **returns the matplotlib** `~matplotlib.figure.Figure` (the root Figure of ``ax`` when given), whatever the
  number of panels: one rule instead of "Axes for one panel, Figure for grids"; the Axes are ``fig.axes``.

Spatial maps (`spatial`, `spots`, `uncertainty`) draw spots as circles of their true size over an H&E thumbnail,
with a micrometre scale bar from the section's pixel size. `spatial` puts measured and predicted expression of a
row on one colour scale by default (``scale="panel"`` restores per-map min–max) and can add a residual panel;
`spots` colours by a gene or any ``obs`` column (categorical: a legend, one colour per category; numeric: a colour
bar).

**Why hand-written matplotlib, not spatialdata-plot or squidpy.** spatialdata-plot draws what `spots` draws (H&E
plus spots coloured by a table column on a given norm), but (1) it reads each single-scale image at full
resolution, where genedml reads a thumbnail of about ``max_px`` pixels: on 8 synthetic sections of 3300 × 3300 px
it took 8.0 s against 1.9 s for `gd.pl.spots` (4.2×; ``benchmarks/bench_pl.py``, 2 loaded cores); (2) it colours
only by values stored in the table, so a residual, a ``log1p`` of counts or a spread would first have to be written
into the user's table, which a plotting function must not do; squidpy's ``spatial_scatter`` reads AnnData with
images in ``uns["spatial"]``, not SpatialData elements, so each section would have to be copied into that layout
first. Neither is imported by ``gd.pl``.
"""

from ._cv import ablation, cv_summary
from ._history import history
from ._scores import gene_scores, predicted_vs_observed
from ._spatial import spatial
from ._spots import spots
from ._uncertainty import calibration, uncertainty

__all__ = [
    "ablation",
    "calibration",
    "cv_summary",
    "gene_scores",
    "history",
    "predicted_vs_observed",
    "spatial",
    "spots",
    "uncertainty",
]
