"""Window geometry of the three scales (method.md §1.3) and ``gd.features.spot_windows`` to look at them.

* **target**: a square window centred on the spot, ``target_px`` pixels a side at native full resolution
  (the paper's choice), or a physical size (``target_um`` at ``target_mpp`` µm/px) resampled;
* **neighbour**: a 5 × 5 grid of tiles of the target window's size centred on the spot, row-major (row = y); a tile
  that is not entirely inside the image is masked (``False``) and left zero. On a square bin lattice (Visium HD:
  sections whose metadata give ``bin_size_um`` and ``spot_shape="square"``) the grid follows the lattice instead:
  the tile at grid offset ``(dy, dx)`` is the target window of the bin ``m·dy`` rows and ``m·dx`` columns away
  (``m`` = window / bin pitch, rounded, at least 1), or, where no such bin exists, one tile per empty lattice cell
  shared by every bin that sees it (:class:`BinLattice`), so a bin pitch that is not a whole number of pixels
  cannot make every bin's 25 tiles distinct;
* **global**: the pooled target windows of all spots of a section (no extra pixels).

Pixels of a partly outside target window are zero-padded; windows are never shifted. When more than 25% of the
target windows' pixels of a section are padding (a window too large for the image), a ``UserWarning`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .._docs import inject_docs
from .._validators import assert_one_of, assert_positive_int
from ._bins import BinLattice, bin_lattice, bin_neighbor_origins, lattice_step
from ._images import Level, SectionImage, open_source

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = [
    "GRID",
    "BinLattice",
    "SectionGeometry",
    "SpotWindows",
    "WindowSpec",
    "bin_lattice",
    "resample",
    "section_geometry",
    "spot_windows",
]

GRID = 5
"""Side of the neighbour grid (5 × 5 tiles)."""


@dataclass(frozen=True)
class WindowSpec:
    """Resolved window request: output size and either native resolution or a physical size."""

    out_px: int
    target_um: float | None = None  # None → native full resolution
    neighbor_grid: str = "spot"  # "spot": tiles centred on each spot; "lattice": snapped to a section-wide grid

    @property
    def mode(self) -> str:
        """``"native"`` or ``"physical"``."""
        return "native" if self.target_um is None else "physical"

    @classmethod
    def resolve(
        cls, *, target_px: int, target_um: float | None, target_mpp: float | None, neighbor_grid: str = "spot"
    ) -> WindowSpec:
        """Validate the window arguments and combine them."""
        assert_positive_int(target_px, name="target_px")
        assert_one_of(neighbor_grid, ("spot", "lattice"), name="neighbor_grid")
        for name, val in (("target_um", target_um), ("target_mpp", target_mpp)):
            if val is not None and (isinstance(val, bool) or not isinstance(val, int | float) or not val > 0):
                raise ValueError(f"`{name}` must be a positive number of micrometres, got {val!r}.")
        if target_um is None and target_mpp is None:
            return cls(int(target_px), None, neighbor_grid)
        if target_um is None:
            return cls(int(target_px), float(target_px * target_mpp), neighbor_grid)
        if target_mpp is None:
            return cls(int(target_px), float(target_um), neighbor_grid)
        px = target_um / target_mpp
        if abs(px - target_px) > 0.5:
            raise ValueError(
                f"`target_um`={target_um} at `target_mpp`={target_mpp} is {px:g} px but `target_px`={target_px}: "
                f"pass `target_px={round(px)}` or give only one of `target_um` / `target_mpp`."
            )
        return cls(int(target_px), float(target_um), neighbor_grid)

    def to_dict(self) -> dict:
        """Parameters for ``uns`` and cache keys."""
        out = {"mode": self.mode, "target_px": self.out_px, "neighbor_grid": self.neighbor_grid}
        if self.target_um is not None:
            out |= {"target_um": self.target_um, "target_mpp": self.target_um / self.out_px}
        return out


@dataclass
class SectionGeometry:
    """Where the windows of one section lie on the chosen pyramid level."""

    section: str
    level: Level
    crop_px: int  # window side in level pixels (cut), resampled to out_px
    out_px: int
    mpp_full: float  # µm per full-resolution pixel
    centers: np.ndarray  # (n, 2) continuous level coordinates (x, y)
    origins: np.ndarray  # (n, 2) int64 target-window origin (y, x) in level pixels
    neighbor_grid: str = "spot"
    lattice: BinLattice | None = None  # square bins: neighbour tiles follow the bin lattice (both grids)

    @property
    def window_um(self) -> float:
        """Field of view of a window in micrometres."""
        return self.crop_px * self.level.scale * self.mpp_full

    @property
    def out_mpp(self) -> float:
        """µm per pixel of the resampled window."""
        return self.window_um / self.out_px

    def neighbor_origins(self, spots: np.ndarray | None = None) -> np.ndarray:
        """``(n, 25, 2)`` tile origins ``(y, x)``, row-major over the 5 × 5 grid (row = y), of ``spots`` (default all).

        ``"spot"`` grid: tiles centred on the spot's window. ``"lattice"``: each tile snapped to the nearest tile of a
        section-wide grid of ``crop_px`` tiles (anchored by `lattice_anchor`), so that neighbouring spots share tiles.
        On a bin lattice (``lattice`` set), either grid: the windows of the bins ``lattice_step`` cells apart (see
        `bin_neighbor_origins`).
        """
        if self.lattice is not None:
            return self.bin_neighbor_origins(spots)
        origins = self.origins if spots is None else self.origins[np.asarray(spots, dtype=np.int64)]
        return self._neighbor_origins_of(origins)

    def _neighbor_origins_of(self, origins: np.ndarray) -> np.ndarray:
        steps = (np.arange(GRID) - GRID // 2) * self.crop_px
        dy, dx = np.meshgrid(steps, steps, indexing="ij")
        delta = np.stack([dy.ravel(), dx.ravel()], axis=1)
        if self.neighbor_grid == "lattice":
            # the centre tile is the lattice tile nearest to the spot's window; the grid around it stays 5 × 5
            anchor = self.lattice_anchor()
            steps_ = np.floor((origins - anchor) / self.crop_px + 0.5).astype(np.int64)
            centre = steps_ * self.crop_px + anchor
            return centre[:, None, :] + delta[None]
        return origins[:, None, :] + delta[None]

    @property
    def lattice_step(self) -> int:
        """Bins between neighbour tiles on a bin lattice: window / bin pitch, rounded, at least 1 (0 without one)."""
        if self.lattice is None:
            return 0
        return lattice_step(self.crop_px, self.bin_pitch_px)

    @property
    def bin_pitch_px(self) -> float:
        """Bin pitch in level pixels (NaN without a bin lattice)."""
        if self.lattice is None:
            return float("nan")
        return self.lattice.bin_um / (self.mpp_full * self.level.scale)

    def bin_neighbor_origins(self, spots: np.ndarray | None = None) -> np.ndarray:
        """``(n, 25, 2)`` neighbour tile origins on the bin lattice: bins' own windows, one tile per empty cell."""
        if self.lattice is None:
            raise ValueError(f"section {self.section!r} has no bin lattice.")
        return bin_neighbor_origins(
            self.origins,
            self.centers,
            self.lattice,
            step=self.lattice_step,
            crop_px=self.crop_px,
            pitch_px=self.bin_pitch_px,
            spots=spots,
        )

    def lattice_anchor(self) -> np.ndarray:
        """``(2,)`` offset of the ``"lattice"`` grid: per axis, the most common spot-window origin modulo ``crop_px``.

        On a spot grid whose pitch is a whole number of windows, the lattice then runs through the spots' own windows,
        so neighbour tiles are the spots' target windows (encoded once, for both scales).
        """
        if not len(self.origins):
            return np.zeros(2, np.int64)
        res = np.mod(self.origins, self.crop_px)
        return np.array([np.bincount(res[:, k], minlength=self.crop_px).argmax() for k in (0, 1)], np.int64)

    def neighbor_mask(self, origins: np.ndarray | None = None) -> np.ndarray:
        """``(n, 25)`` bool: tile entirely inside the image."""
        o = self.neighbor_origins() if origins is None else origins
        H, W = self.level.shape
        n = self.crop_px
        return (o[..., 0] >= 0) & (o[..., 1] >= 0) & (o[..., 0] + n <= H) & (o[..., 1] + n <= W)

    def to_dict(self) -> dict:
        """Per-section provenance for ``uns``; ``bin_lattice`` only on a bin lattice (so other keys are unchanged)."""
        out = {
            "level": int(self.level.index),
            "neighbor_grid": self.neighbor_grid,
            "level_scale": float(self.level.scale),
            "crop_px": int(self.crop_px),
            "out_px": int(self.out_px),
            "window_um": float(self.window_um),
            "um_per_px": float(self.out_mpp),
            "neighbor_um": float(GRID * self.window_um),
        }
        if self.lattice is not None:
            out["bin_lattice"] = {**self.lattice.to_dict(), "step_bins": self.lattice_step}
        return out


def section_geometry(
    image: SectionImage,
    spec: WindowSpec,
    xy_full: np.ndarray,
    *,
    mpp_full: float,
    section: str,
    lattice: BinLattice | None = None,
) -> SectionGeometry:
    """Choose the pyramid level and place the target windows of spots at full-resolution ``xy_full`` ``(n, 2)``.

    ``lattice`` (the section's square bin lattice, :func:`bin_lattice`, one cell per spot of ``xy_full``) makes the
    neighbour tiles follow the bins.
    """
    if lattice is not None and len(lattice.rows) != len(xy_full):
        n_cells = len(lattice.rows)
        raise ValueError(f"section {section!r}: the bin lattice has {n_cells} cells for {len(xy_full)} spots.")
    side_full = spec.out_px if spec.target_um is None else spec.target_um / mpp_full
    level = image.choose_level(side_full / spec.out_px)
    crop = max(1, int(round(side_full / level.scale)))
    centers = level.to_level(xy_full)
    origin_xy = np.floor(centers - crop / 2 + 0.5).astype(np.int64)
    origins = origin_xy[:, ::-1].copy()
    return SectionGeometry(
        section, level, crop, spec.out_px, mpp_full, centers, origins, spec.neighbor_grid, lattice=lattice
    )


def check_spots_inside(image: SectionImage, xy_full: np.ndarray, *, section: str, ids=None) -> None:
    """Raise when a spot centre lies outside the section image."""
    H, W = image.full_shape
    bad = ~((xy_full[:, 0] >= 0) & (xy_full[:, 1] >= 0) & (xy_full[:, 0] < W) & (xy_full[:, 1] < H))
    bad |= ~np.isfinite(xy_full).all(axis=1)
    if bad.any():
        shown = list((np.arange(len(xy_full)) if ids is None else np.asarray(ids))[bad][:5])
        raise ValueError(
            f"section {section!r}: {int(bad.sum())} spot centre(s) lie outside the {W}×{H} px image "
            f"{image.key!r} (first: {shown}); check the spot coordinates and the image transformation."
        )


PAD_WARN_FRACTION = 0.25
"""Mean fraction of zero-padded target-window pixels above which `warn_padding` warns."""


def padded_fraction(geo: SectionGeometry) -> np.ndarray:
    """``(n,)`` fraction of each target window's pixels that lie outside the image (zero-padded)."""
    H, W = geo.level.shape
    n = geo.crop_px
    oy, ox = geo.origins[:, 0], geo.origins[:, 1]
    in_y = np.clip(np.minimum(oy + n, H) - np.maximum(oy, 0), 0, n)
    in_x = np.clip(np.minimum(ox + n, W) - np.maximum(ox, 0), 0, n)
    return 1.0 - (in_y * in_x) / float(n * n)


def warn_padding(geo: SectionGeometry, *, stacklevel: int = 3) -> None:
    """``UserWarning`` when target windows are mostly zero padding (a window too large for the image)."""
    import warnings

    if not len(geo.origins):
        return
    frac = padded_fraction(geo)
    if frac.mean() > PAD_WARN_FRACTION:
        H, W = geo.level.shape
        warnings.warn(
            f"section {geo.section!r}: {100 * frac.mean():.0f}% of the target windows' pixels are zero padding "
            f"(windows of {geo.crop_px} px ≈ {geo.window_um:.4g} µm on a {W}×{H} px image level; "
            f"{int((frac > 0.5).sum())} of {len(frac)} windows are more than half padding): the features describe "
            "mostly empty borders. Use a smaller `target_px`/`target_um` or check the pixel size.",
            UserWarning,
            stacklevel=stacklevel,
        )


def resample(batch: np.ndarray, out_px: int) -> np.ndarray:
    """Resize ``uint8`` windows ``(B, 3, n, n)`` to ``(B, 3, out_px, out_px)`` (bilinear, antialiased)."""
    if batch.shape[-1] == out_px:
        return batch
    import torch

    x = torch.from_numpy(np.ascontiguousarray(batch)).float()
    y = torch.nn.functional.interpolate(x, size=(out_px, out_px), mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8).numpy()


class SpotWindows(NamedTuple):
    """Windows returned by :func:`spot_windows`."""

    images: np.ndarray
    """``uint8``; target ``(n, H, W, 3)``, neighbour ``(n, 25, H, W, 3)`` (masked tiles are zero)."""
    mask: np.ndarray
    """``bool``; target ``(n,)`` (all ``True``), neighbour ``(n, 25)`` (tile inside the image)."""
    info: dict
    """Geometry: pyramid level, crop and output size in pixels, field of view in µm, µm/px."""


@inject_docs()
def spot_windows(
    sdata: SpatialData,
    *,
    section: str,
    scale: str = "target",
    spots: np.ndarray | list[int] | None = None,
    target_px: int = 224,
    target_um: float | None = None,
    target_mpp: float | None = None,
    neighbor_grid: str = "spot",
    table_key: str | None = None,
) -> SpotWindows:
    """Cut the target or neighbour windows of spots, exactly as :func:`genedml.tl.embed` feeds them to the encoder.

    Parameters
    ----------
    {sdata}
    section
        Section name.
    scale
        ``"target"`` (the spot's window) or ``"neighbor"`` (the 5 × 5 tile grid around it).
    spots
        Positions of the spots within the section (table order); ``None`` means all (mind the memory for
        ``"neighbor"``: 25 tiles per spot).
    target_px
        Window side in output pixels.
    target_um
        Physical window side in µm; ``None`` with ``target_mpp=None`` means ``target_px`` native pixels.
    target_mpp
        Output resolution in µm/px (e.g. 0.5 → 224 px cover 112 µm).
    neighbor_grid
        ``"spot"`` (tiles centred on the spot) or ``"lattice"`` (tiles snapped to a section-wide grid); see
        :class:`~genedml.features.FeatureSpec`. On a square bin lattice (Visium HD) both follow the bins: the tile
        at grid offset ``(dy, dx)`` is the window of the bin ``m·dy`` rows and ``m·dx`` columns away (``m`` =
        window / bin pitch, rounded, at least 1), one shared tile per empty lattice cell.
    {table_key}

    Returns
    -------
    :class:`~genedml.features.SpotWindows` with ``images``, ``mask`` and ``info``.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> sec = gd.io.sections(sdata)[0]
    >>> w = gd.features.spot_windows(sdata, section=sec, scale="neighbor", spots=[0], target_px=32)
    >>> w.images.shape, w.mask.shape
    ((1, 25, 32, 32, 3), (1, 25))
    """
    from .._data_model import pixel_size, spot_centers

    assert_one_of(scale, ("target", "neighbor"), name="scale")
    spec = WindowSpec.resolve(
        target_px=target_px, target_um=target_um, target_mpp=target_mpp, neighbor_grid=neighbor_grid
    )
    image = SectionImage.from_sdata(sdata, section)
    xy = spot_centers(sdata, section, table_key=table_key)
    idx = np.arange(len(xy)) if spots is None else np.asarray(spots, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= len(xy)):
        raise ValueError(f"`spots` must index the {len(xy)} spots of section {section!r}, got {idx.tolist()[:5]}.")
    check_spots_inside(image, xy[idx], section=section, ids=idx)
    lattice = bin_lattice(sdata, section, table_key=table_key) if scale == "neighbor" else None
    mpp = pixel_size(sdata, section)
    if lattice is None:
        geo = section_geometry(image, spec, xy[idx], mpp_full=mpp, section=section)
        nb = geo.neighbor_origins()
    else:  # the neighbours of a bin are other bins: place every bin, then take the tiles of those asked for
        geo = section_geometry(image, spec, xy, mpp_full=mpp, section=section, lattice=lattice)
        nb = geo.neighbor_origins(idx)
        geo.origins, geo.centers = geo.origins[idx], geo.centers[idx]
    warn_padding(geo)
    source = open_source(geo.level)
    if scale == "target":
        buf = np.empty((len(idx), 3, geo.crop_px, geo.crop_px), np.uint8)
        if len(idx):
            source.cut(geo.origins, geo.crop_px, buf)
        imgs = resample(buf, geo.out_px).transpose(0, 2, 3, 1)
        return SpotWindows(np.ascontiguousarray(imgs), np.ones(len(idx), bool), geo.to_dict())
    origins = nb.reshape(-1, 2)
    mask = geo.neighbor_mask(nb).reshape(-1)
    buf = np.zeros((len(origins), 3, geo.crop_px, geo.crop_px), np.uint8)
    if mask.any():
        tiles = np.empty((int(mask.sum()), 3, geo.crop_px, geo.crop_px), np.uint8)
        source.cut(origins[mask], geo.crop_px, tiles)
        buf[mask] = tiles
    imgs = resample(buf, geo.out_px).transpose(0, 2, 3, 1).reshape(len(idx), GRID * GRID, geo.out_px, geo.out_px, 3)
    return SpotWindows(np.ascontiguousarray(imgs), mask.reshape(len(idx), GRID * GRID), geo.to_dict())
