"""Lazy (pyramidal) TIFF images, shared by the readers (``read_hest``, ``read_st``, ``read_visium``).

Every level of a TIFF becomes a dask array whose chunks are read on demand through tifffile's zarr interface
(``aszarr``), so a whole slide is never decoded unless asked for, and no open file handle outlives a read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import dask.array as da
    from xarray import DataTree

__all__ = ["TiffLevel", "is_tiff", "tiff_level_array", "tiff_levels", "tiff_pyramid"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_TARGET_CHUNK = 4096  # pixels per side of a dask chunk (rounded to whole TIFF tiles)


# --------------------------------------------------------------------------------------------------- TIFF levels


@dataclass(frozen=True)
class TiffLevel:
    """One RGB resolution level of a TIFF: where it lives and how it is stored."""

    series: int
    level: int
    shape: tuple[int, ...]
    axes: str
    chunks: tuple[int, ...]
    dtype: str

    @property
    def height(self) -> int:
        """Rows of the level."""
        return self.shape[self.axes.index("Y")]

    @property
    def width(self) -> int:
        """Columns of the level."""
        return self.shape[self.axes.index("X")]


def is_tiff(path: str | os.PathLike) -> bool:
    """Whether the file starts with a (Big)TIFF signature."""
    with open(path, "rb") as fh:
        return fh.read(4) in _TIFF_MAGIC


def tiff_levels(path: str | os.PathLike, *, where: str = "`image`") -> list[TiffLevel]:
    """RGB ``uint8`` resolution levels of a TIFF, finest first, read from the header only.

    Levels are the pyramid of the first series (SubIFDs or reduced-resolution pages) plus any further series that
    are smaller copies of it with the same aspect ratio (pyramids written as plain pages). ``where`` starts error
    messages (it names the argument).
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            found = [_level_info(tf, 0, i) for i in range(len(tf.series[0].levels))]
            for s in range(1, len(tf.series)):
                found.append(_level_info(tf, s, 0))
    except Exception as e:  # any failure of the TIFF/zarr stack means the file cannot be used
        raise ValueError(f"{where}: cannot read the TIFF {str(path)!r} ({type(e).__name__}: {e}).") from None
    base = found[0]
    _check_rgb(base, path, where)
    levels = [base]
    aspect = base.width / base.height
    for lvl in found[1:]:
        same_kind = (lvl.axes, lvl.dtype, lvl.shape[lvl.axes.index("S")] if "S" in lvl.axes else 0) == (
            base.axes,
            base.dtype,
            base.shape[base.axes.index("S")],
        )
        smaller = lvl.width < levels[-1].width and lvl.height < levels[-1].height
        if same_kind and smaller and abs(lvl.height - lvl.width / aspect) <= max(2.0, 0.01 * lvl.height):
            levels.append(lvl)
    return levels


def _level_info(tf, series: int, level: int) -> TiffLevel:
    import zarr

    axes = tf.series[series].levels[level].axes
    z = zarr.open_array(tf.aszarr(series=series, level=level), mode="r")
    shape, chunks = tuple(int(v) for v in z.shape), tuple(int(v) for v in z.chunks)
    return TiffLevel(series, level, shape, axes, chunks, str(np.dtype(z.dtype)))


def _check_rgb(lvl: TiffLevel, path, where: str) -> None:
    ok = set(lvl.axes) == {"Y", "X", "S"} and lvl.shape[lvl.axes.index("S")] in (3, 4) and lvl.dtype == "uint8"
    if not ok:
        raise ValueError(
            f"{where}: {str(path)!r} must be an RGB (or RGBA) uint8 image with axes Y, X and 3–4 samples; got "
            f"shape {lvl.shape}, axes {lvl.axes!r}, dtype {lvl.dtype}."
        )


def _chunk_shape(lvl: TiffLevel) -> tuple[int, ...]:
    """Dask chunks: whole TIFF tiles/strips, about ``_TARGET_CHUNK``² pixels each."""
    iy, ix = lvl.axes.index("Y"), lvl.axes.index("X")
    th, tw = lvl.chunks[iy], lvl.chunks[ix]
    cw = min(lvl.width, tw * max(1, _TARGET_CHUNK // tw))
    ch = min(lvl.height, th * max(1, (_TARGET_CHUNK * _TARGET_CHUNK) // (th * cw)))
    out = list(lvl.shape)
    out[iy], out[ix] = ch, cw
    return tuple(out)


def _read_tiff_block(path: str, series: int, level: int, block_info=None) -> np.ndarray:
    """Read one dask block of a TIFF level (opens and closes the file: no handle outlives the call)."""
    import tifffile
    import zarr

    loc = block_info[None]["array-location"]
    try:
        with tifffile.TiffFile(path) as tf:
            z = zarr.open_array(tf.aszarr(series=series, level=level), mode="r")
            return np.asarray(z[tuple(slice(a, b) for a, b in loc)])
    except Exception as e:  # a decode failure deep in tifffile/imagecodecs: say which file and where
        raise ValueError(f"cannot read TIFF {path!r} (level {level}, region {loc}): {type(e).__name__}: {e}") from e


def tiff_level_array(path: str | os.PathLike, lvl: TiffLevel) -> da.Array:
    """Lazy ``(3, y, x)`` ``uint8`` dask array of one TIFF level, read chunk by chunk on demand.

    Each chunk opens the file, reads only the TIFF tiles it covers through ``tifffile``'s zarr store
    (``aszarr``) and closes it again, so the array holds no open file handle (safe to pickle and to use from
    forked data-loader workers).
    """
    import dask.array as da
    from dask.base import tokenize

    path = os.fspath(Path(path).resolve())
    chunks = _chunk_shape(lvl)
    normalized = tuple(
        tuple(min(c, n - i) for i in range(0, n, c)) for n, c in zip(lvl.shape, chunks)
    )  # explicit block sizes
    token = tokenize(path, os.stat(path).st_mtime_ns, lvl)
    arr = da.map_blocks(
        _read_tiff_block,
        path,
        lvl.series,
        lvl.level,
        chunks=normalized,
        dtype=np.uint8,
        meta=np.empty((0,) * len(lvl.shape), dtype=np.uint8),
        name=f"genedml-tiff-{token}",
    )
    arr = arr.transpose([lvl.axes.index(a) for a in "SYX"])
    return arr[:3]


def tiff_pyramid(path: str | os.PathLike, levels: list[TiffLevel], transformations: dict) -> DataTree:
    """Multiscale image element (``scale0`` … ``scaleN``) of lazy TIFF levels.

    ``transformations`` map ``scale0`` to its coordinate systems; each coarser level gets the scale to ``scale0``
    composed in front (spatialdata's convention for multiscale images).
    """
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import set_transformation
    from xarray import DataArray, Dataset, DataTree

    h0, w0 = levels[0].height, levels[0].width
    nodes = {}
    for i, lvl in enumerate(levels):
        arr = tiff_level_array(path, lvl)
        coords = {
            "c": ["r", "g", "b"],
            "y": (np.arange(lvl.height) + 0.5) * (h0 / lvl.height),
            "x": (np.arange(lvl.width) + 0.5) * (w0 / lvl.width),
        }
        nodes[f"scale{i}"] = Dataset({"image": DataArray(arr, dims=("c", "y", "x"), coords=coords, name="image")})
    tree = DataTree.from_dict(nodes)
    set_transformation(tree, transformations, set_all=True)
    Image2DModel().validate(tree)
    return tree
