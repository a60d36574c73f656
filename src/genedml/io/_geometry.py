"""Sanity checks of a section's pixel size against its spot grid (legacy ST, Visium and synthetic lattices).

The array positions of spots fix their distance in micrometres: legacy ST is a square lattice with ``pitch_um``
between neighbouring array units; Visium (``array_col`` stepping by 2, odd rows shifted) has ``pitch_um / 2`` per
column unit and ``pitch_um · √3 / 2`` per row unit. A least-squares fit of the spot centres (pixels) on the array
positions gives pixels per array unit, hence a pixel size implied by the grid. A pixel size that disagrees beyond
:data:`WARN_TOLERANCE` is warned about, one more than :data:`ERROR_FACTOR` times off is an error, and spot centres
that follow ``array_row`` along x (swapped ``pixel_x`` / ``pixel_y`` columns) are an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ERROR_FACTOR", "WARN_TOLERANCE", "GridFit", "fit_grid", "lattice_of", "pixel_size_problems"]

WARN_TOLERANCE = 0.15
"""Relative disagreement between a pixel size and the grid's above which a warning is issued."""
ERROR_FACTOR = 2.0
"""A pixel size more than this factor off the grid's is refused."""
_MIN_R2 = 0.95  # a fit below this tells nothing (tests and H&E-only grids with arbitrary array positions)


@dataclass(frozen=True)
class GridFit:
    """Pixels per array unit along x (on ``array_col``) and y (on ``array_row``), with the fits' R²."""

    px_per_col: float
    px_per_row: float
    r2: float  # min R² of x~col and y~row
    r2_swapped: float  # min R² of x~row and y~col
    px_per_col_swapped: float = 0.0  # |slope| of y on col (an image turned by 90°)
    px_per_row_swapped: float = 0.0  # |slope| of x on row

    def turned(self) -> GridFit:
        """The fit of an image turned by 90° (columns run along y)."""
        return GridFit(self.px_per_col_swapped, self.px_per_row_swapped, self.r2_swapped, self.r2)

    @property
    def swapped(self) -> bool:
        """Spot centres follow the array the other way round (``pixel_x`` ↔ ``pixel_y``)."""
        return self.r2_swapped >= _MIN_R2 and self.r2 < 0.5

    @property
    def reliable(self) -> bool:
        """The fit explains the centres well enough to judge a pixel size."""
        return self.r2 >= _MIN_R2 and self.px_per_col > 0 and self.px_per_row > 0


def _r2_slope(a: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    a = a - a.mean()
    p = p - p.mean()
    saa, spp = float(a @ a), float(p @ p)
    if saa == 0 or spp == 0:
        return 0.0, 0.0
    sap = float(a @ p)
    return sap / saa, sap * sap / (saa * spp)


def fit_grid(xy: np.ndarray, array_row: np.ndarray, array_col: np.ndarray) -> GridFit | None:
    """Fit spot centres ``(n, 2)`` ``(x, y)`` on their array positions; ``None`` with too few distinct positions."""
    xy = np.asarray(xy, dtype=np.float64)
    row = np.asarray(array_row, dtype=np.float64)
    col = np.asarray(array_col, dtype=np.float64)
    ok = np.isfinite(xy).all(axis=1) & np.isfinite(row) & np.isfinite(col)
    xy, row, col = xy[ok], row[ok], col[ok]
    if len(xy) < 6 or np.unique(row).size < 3 or np.unique(col).size < 3:
        return None
    sx, r2x = _r2_slope(col, xy[:, 0])
    sy, r2y = _r2_slope(row, xy[:, 1])
    sxs, r2xs = _r2_slope(row, xy[:, 0])
    sys_, r2ys = _r2_slope(col, xy[:, 1])
    return GridFit(abs(sx), abs(sy), min(r2x, r2y), min(r2xs, r2ys), abs(sys_), abs(sxs))


def lattice_of(technology: str | None) -> str | None:
    """The lattice a technology fixes: ``"square"`` (legacy ST), ``"hex"`` (Visium) or ``None``.

    ``None`` (not judged) for any other technology (Visium HD bins, Xenium, `gd.pp.spot_grid` grids, unknown): their
    array indices do not fix a spacing in µm.
    """
    tech = str(technology or "").strip().lower()
    if tech in ("st", "legacy_st", "spatial_transcriptomics", "spatial transcriptomics"):
        return "square"
    if tech == "visium":
        return "hex"
    return None


def _um_per_unit(lattice: str, pitch_um: float) -> tuple[float, float]:
    """µm per array unit along (col → x, row → y)."""
    if lattice == "hex":
        return 0.5 * pitch_um, pitch_um * np.sqrt(3.0) / 2.0
    return pitch_um, pitch_um


def pixel_size_problems(
    pixel_size: float,
    xy: np.ndarray,
    array_row: np.ndarray,
    array_col: np.ndarray,
    *,
    pitch_um: float,
    lattice: str,
    where: str,
    name: str = "pixel_size",
    allow_turned: bool = False,
) -> tuple[str | None, str | None]:
    """Compare ``pixel_size`` (µm/px) with the spot grid; return ``(error, warning)`` messages (either may be None).

    ``where`` names the section (and file) in messages; ``name`` the user's argument. Centres that follow the array
    the other way round are an error (swapped x/y columns) unless ``allow_turned`` (an image turned by 90°, as
    Space Ranger allows): then the turned fit is judged.
    """
    fit = fit_grid(xy, array_row, array_col)
    if fit is None:
        return None, None
    if fit.swapped and allow_turned:
        fit = fit.turned()
    elif fit.swapped:
        return (
            f"{where}: the spot centres' x follows array_row and y follows array_col (R² {fit.r2_swapped:.2f} vs "
            f"{fit.r2:.2f} the right way round): the pixel x/y columns look swapped (pixel_x ↔ pixel_y).",
            None,
        )
    if not fit.reliable:
        return None, None
    ux, uy = _um_per_unit(lattice, pitch_um)
    implied = 0.5 * (ux / fit.px_per_col + uy / fit.px_per_row)
    ratio = float(pixel_size) / implied
    off = max(ratio, 1.0 / ratio)
    msg = (
        f"{where}: `{name}`={float(pixel_size):.4g} µm/px disagrees with the spot grid, whose {pitch_um:g} µm pitch "
        f"({lattice} lattice) spans {fit.px_per_col:.2f} px per array column and {fit.px_per_row:.2f} px per array "
        f"row, i.e. {implied:.4g} µm/px ({ratio:.2f}×)"
    )
    if off > ERROR_FACTOR:
        return msg + f": more than {ERROR_FACTOR:g}× off. Check the pixel size (µm per full-resolution pixel).", None
    if off > 1.0 + WARN_TOLERANCE:
        return None, msg + f", beyond the {100 * WARN_TOLERANCE:.0f}% tolerance. Check the pixel size."
    return None, None
