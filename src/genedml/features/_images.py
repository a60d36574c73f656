"""Section images: pyramid levels with their scale to full resolution, fingerprints, and fast pixel sources.

A *level* is one resolution of a section's image element (a single-scale image has one level). ``scale`` is the
number of full-resolution pixels per level pixel and ``offset`` the full-resolution position of the level's
origin, so a full-resolution coordinate ``c`` sits at ``(c - offset) / scale`` in the level (continuous
coordinates: pixel ``i`` covers ``[i, i + 1)``, as in spatialdata).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._data_model import affine_to, image_levels
from .._keys import Keys
from .._utils import file_sha256

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["INMEMORY_MAX_BYTES", "Level", "SectionImage", "cut_windows", "open_source"]

INMEMORY_MAX_BYTES = 512 * 1024**2
"""Levels up to this many bytes (a whole HER2ST or Visium image: 0.1–0.3 GiB) are decoded once into memory; larger
ones (whole slides) are read lazily, chunk by chunk, within :data:`LAZY_CACHE_BYTES`, so no more than this many
decoded bytes of an image are ever held."""
LAZY_CACHE_BYTES = 512 * 1024**2
"""Decoded chunks kept by a lazily read level."""

_FP_GRID = 4  # fingerprint: _FP_GRID × _FP_GRID sampled patches …
_FP_PATCH = 32  # … of this many pixels a side
_FP_FULL_LEVEL_MAX = 4_000_000  # hash a whole (coarsest) level up to this many pixels
_FP_MEMO: dict[tuple, str] = {}


@dataclass(frozen=True)
class Level:
    """One resolution of a section image."""

    index: int
    data: Any  # dask array (c, y, x)
    scale: float
    offset: tuple[float, float]  # (x, y) in full-resolution pixels

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in level pixels."""
        return int(self.data.shape[1]), int(self.data.shape[2])

    @property
    def nbytes(self) -> int:
        """Decoded size in bytes."""
        return int(np.prod(self.data.shape)) * np.dtype(self.data.dtype).itemsize

    def to_level(self, xy: np.ndarray) -> np.ndarray:
        """Full-resolution ``(x, y)`` → continuous level coordinates ``(x, y)``."""
        return (np.asarray(xy, dtype=np.float64) - np.asarray(self.offset)) / self.scale


class SectionImage:
    """The image of one section: validated RGB ``uint8`` levels, finest first."""

    def __init__(self, key: str, levels: list[Level]) -> None:
        self.key = key
        self.levels = levels

    @classmethod
    def from_sdata(cls, sdata: SpatialData, section: str) -> SectionImage:
        """Read the levels of ``images[f"{section}_hne"]`` with their transformation to the section's pixels."""
        key = Keys.image(section)
        if key not in sdata.images:
            raise KeyError(f"`sections`: section {section!r} has no image element {key!r} in `sdata.images`.")
        el = sdata.images[key]
        arrays = _level_arrays(el)
        base_scale, offset = _base_transform(el, section, key)
        h0, w0 = arrays[0].shape[1:]
        levels = []
        for i, arr in enumerate(arrays):
            _check_pixels(arr, key)
            sy, sx = h0 / arr.shape[1], w0 / arr.shape[2]
            if not np.isclose(sx, sy, rtol=0.02):
                raise ValueError(f"image {key!r}: level {i} is downscaled anisotropically ({sx:.3f} vs {sy:.3f}).")
            levels.append(Level(i, arr, base_scale * float(np.sqrt(sx * sy)), offset))
        return cls(key, levels)

    @property
    def full_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the image in full-resolution pixels."""
        lv = self.levels[0]
        return int(round(lv.shape[0] * lv.scale)), int(round(lv.shape[1] * lv.scale))

    def choose_level(self, full_px_per_out_px: float) -> Level:
        """The coarsest level not coarser than the wanted resolution (the finest one when all are coarser)."""
        fitting = [lv for lv in self.levels if lv.scale <= full_px_per_out_px * (1 + 1e-3)]
        return max(fitting, key=lambda lv: lv.scale) if fitting else min(self.levels, key=lambda lv: lv.scale)

    def _memo_key(self) -> tuple:
        return tuple((lv.data.name, lv.data.shape, lv.scale, lv.offset) for lv in self.levels)

    def known_fingerprint(self) -> str | None:
        """The fingerprint computed earlier in this process for the same dask arrays, if any."""
        return _FP_MEMO.get(self._memo_key())

    def identity(self) -> str:
        """The cheapest exact content id: from the image files when there are any, else from sampled pixels."""
        return self.file_fingerprint() or self.fingerprint()

    def file_fingerprint(self) -> str | None:
        """Content id from the image *files* behind the levels, without decoding a pixel; ``None`` when there are none.

        Applies to images read lazily from files (a JPEG/PNG/TIFF decoded by a dask task that names the file): the
        id combines each level's dask name (which changes with any operation applied to the pixels), shape,
        transformation and the sha256 of every file the graph reads. Zarr-backed and in-memory images return
        ``None`` (their sampled-pixel :meth:`fingerprint` is cheap or already exact).
        """
        memo = ("file", *self._memo_key())
        if memo in _FP_MEMO:
            return _FP_MEMO[memo]
        files = sorted({f for lv in self.levels for f in _graph_files(lv.data)})
        if not files:
            return None
        h = hashlib.sha256(b"files|")
        for lv in self.levels:
            h.update(f"{lv.index}|{lv.data.name}|{lv.data.shape}|{lv.data.dtype}|{lv.scale:.9g}|{lv.offset}|".encode())
        for f in files:
            h.update(file_sha256(f).encode())
        _FP_MEMO[memo] = h.hexdigest()
        return _FP_MEMO[memo]

    def fingerprint(self, finest: np.ndarray | None = None) -> str:
        """Cheap content id: shapes, dtype, transformation, sampled patches of the finest level, coarsest level.

        Reads ``4 × 4`` patches of ``32 × 32`` pixels of the finest level (from ``finest``, its decoded pixels,
        when given) and the whole coarsest level of a pyramid when small, never the full image through dask. The
        result is memoised per dask graph for the rest of the process.
        """
        import dask

        memo = self._memo_key()
        if memo in _FP_MEMO:
            return _FP_MEMO[memo]
        h = hashlib.sha256()
        for lv in self.levels:
            h.update(f"{lv.index}|{lv.data.shape}|{lv.data.dtype}|{lv.scale:.9g}|{lv.offset}|".encode())
        fine = self.levels[0]
        H, W = fine.shape
        src = fine.data if finest is None else finest
        ys = np.linspace(0, max(H - _FP_PATCH, 0), _FP_GRID).astype(int)
        xs = np.linspace(0, max(W - _FP_PATCH, 0), _FP_GRID).astype(int)
        parts = [src[:, y : y + _FP_PATCH, x : x + _FP_PATCH] for y in ys for x in xs]
        coarse = self.levels[-1]
        if len(self.levels) > 1 and coarse.shape[0] * coarse.shape[1] <= _FP_FULL_LEVEL_MAX:
            parts.append(coarse.data)
        for arr in dask.compute(*parts, scheduler="synchronous"):
            h.update(np.ascontiguousarray(arr).tobytes())
        _FP_MEMO[memo] = h.hexdigest()
        return _FP_MEMO[memo]


def _graph_files(arr) -> set[str]:
    """Existing files named by string arguments of the tasks of a dask array's graph."""
    import os

    found: set[str] = set()

    def visit(obj, depth: int = 0) -> None:
        if depth > 6:
            return
        if isinstance(obj, str):
            if len(obj) < 4096 and os.path.isfile(obj):
                found.add(os.path.realpath(obj))
        elif isinstance(obj, tuple | list):
            for o in obj:
                visit(o, depth + 1)
        elif hasattr(obj, "args") and hasattr(obj, "func"):  # dask._task_spec.Task
            for o in obj.args:
                visit(o, depth + 1)
            for o in getattr(obj, "kwargs", {}).values():
                visit(o, depth + 1)
        elif hasattr(obj, "value") and isinstance(getattr(obj, "value", None), str):  # DataNode
            visit(obj.value, depth + 1)

    for task in dict(arr.__dask_graph__()).values():
        visit(task)
    return found


def _level_arrays(el) -> list:
    """Dask arrays ``(c, y, x)`` of every level, finest first."""
    return [_dask(a) for a in image_levels(el)]


def _dask(arr):
    import dask.array as da

    if tuple(arr.dims) != ("c", "y", "x"):
        arr = arr.transpose("c", "y", "x")
    data = arr.data
    return data if isinstance(data, da.Array) else da.from_array(np.asarray(data))


def _base_transform(el, section: str, key: str) -> tuple[float, tuple[float, float]]:
    m = affine_to(
        el, section, missing=f"image {key!r} has no transformation to the section's pixel coordinate system "
        f"{section!r} (it has {{have}}): cannot place spots on it."
    )  # fmt: skip
    if abs(m[0, 1]) > 1e-9 or abs(m[1, 0]) > 1e-9:
        raise ValueError(f"image {key!r}: rotated or sheared images are not supported (matrix {m.tolist()}).")
    if not np.isclose(m[0, 0], m[1, 1], rtol=1e-3) or m[0, 0] <= 0:
        raise ValueError(f"image {key!r}: pixels must be square with a positive scale, got {m[0, 0]} × {m[1, 1]}.")
    return float(m[0, 0]), (float(m[0, 2]), float(m[1, 2]))


def _check_pixels(arr, key: str) -> None:
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ValueError(f"image {key!r} must be RGB with 3 channels (c, y, x), got shape {tuple(arr.shape)}.")
    if np.dtype(arr.dtype) != np.uint8:
        raise ValueError(f"image {key!r} must be uint8 (0–255), got dtype {arr.dtype}.")


# --------------------------------------------------------------------------------------------- pixel sources


def cut_windows(img: np.ndarray, origins: np.ndarray, n: int, out: np.ndarray, *, offset=(0, 0), bounds=None) -> None:
    """Copy ``n × n`` windows at integer ``origins`` ``(B, 2)`` as ``(y, x)`` from ``img`` ``(3, h, w)`` into ``out``.

    ``offset`` is the level position of ``img[:, 0, 0]`` and ``bounds`` the level's ``(H, W)``; pixels outside the
    level are zero (windows are never shifted).
    """
    H, W = bounds if bounds is not None else img.shape[1:]
    oy, ox = offset
    y0, x0 = origins[:, 0], origins[:, 1]
    inside = (y0 >= 0) & (x0 >= 0) & (y0 + n <= H) & (x0 + n <= W)
    for i in range(len(origins)):
        y, x = int(y0[i]) - oy, int(x0[i]) - ox
        if inside[i]:
            out[i] = img[:, y : y + n, x : x + n]
            continue
        out[i] = 0
        ya, yb = max(int(y0[i]), 0), min(int(y0[i]) + n, H)
        xa, xb = max(int(x0[i]), 0), min(int(x0[i]) + n, W)
        if ya < yb and xa < xb:
            out[i, :, ya - y0[i] : yb - y0[i], xa - x0[i] : xb - x0[i]] = img[:, ya - oy : yb - oy, xa - ox : xb - ox]


class _InMemory:
    """A level decoded once into a contiguous ``(3, H, W)`` array."""

    lazy = False

    def __init__(self, level: Level) -> None:
        self.shape = level.shape
        self.array = np.ascontiguousarray(level.data.compute(scheduler="threads"))
        if self.array.shape != (3, *self.shape):
            raise RuntimeError(f"decoded level has shape {self.array.shape}, expected {(3, *self.shape)}.")

    def cut(self, origins: np.ndarray, n: int, out: np.ndarray) -> None:
        cut_windows(self.array, origins, n, out)


class _Lazy:
    """A level read chunk by chunk: each dask chunk under a window is computed once and kept in a small LRU.

    Windows are cut piecewise from the chunks they overlap, so no region larger than a window is assembled;
    with windows sorted row-major, every chunk is computed about once and memory stays at ``cache_bytes``.
    """

    lazy = True

    def __init__(self, level: Level, *, cache_bytes: int | None = None) -> None:
        import threading
        from collections import OrderedDict

        self.shape = level.shape
        self.data = level.data
        self._ys = np.cumsum((0, *self.data.chunks[1]))
        self._xs = np.cumsum((0, *self.data.chunks[2]))
        self._lru: OrderedDict = OrderedDict()
        self._bytes = 0
        self._budget = LAZY_CACHE_BYTES if cache_bytes is None else cache_bytes
        self._lock = threading.Lock()
        self.chunks_read = 0

    def _blocks(self, ids: list[tuple[int, int]]) -> dict[tuple[int, int], np.ndarray]:
        import dask

        with self._lock:
            have = {i: self._lru[i] for i in ids if i in self._lru}
            for i in have:
                self._lru.move_to_end(i)
        missing = [i for i in ids if i not in have]
        if missing:
            c = self.data.numblocks[0] - 1
            arrays = dask.compute(*[self.data.blocks[c, iy, ix] for iy, ix in missing], scheduler="threads")
            with self._lock:
                for i, a in zip(missing, arrays):
                    a = np.ascontiguousarray(a)
                    have[i] = a
                    if i not in self._lru:
                        self._lru[i] = a
                        self._bytes += a.nbytes
                self.chunks_read += len(missing)
                while self._bytes > self._budget and len(self._lru) > len(ids):
                    self._bytes -= self._lru.popitem(last=False)[1].nbytes
        return have

    def cut(self, origins: np.ndarray, n: int, out: np.ndarray) -> None:
        H, W = self.shape
        y0 = np.clip(origins[:, 0], 0, H)
        y1 = np.clip(origins[:, 0] + n, 0, H)
        x0 = np.clip(origins[:, 1], 0, W)
        x1 = np.clip(origins[:, 1] + n, 0, W)
        iy0 = np.searchsorted(self._ys, y0, side="right") - 1
        iy1 = np.searchsorted(self._ys, np.maximum(y1 - 1, 0), side="right") - 1
        ix0 = np.searchsorted(self._xs, x0, side="right") - 1
        ix1 = np.searchsorted(self._xs, np.maximum(x1 - 1, 0), side="right") - 1
        empty = (y0 >= y1) | (x0 >= x1)
        ids = sorted(
            {
                (a, b)
                for i in np.flatnonzero(~empty)
                for a in range(iy0[i], iy1[i] + 1)
                for b in range(ix0[i], ix1[i] + 1)
            }
        )
        blocks = self._blocks(ids)
        for i in range(len(origins)):
            oy, ox = int(origins[i, 0]), int(origins[i, 1])
            if empty[i] or y1[i] - y0[i] < n or x1[i] - x0[i] < n:
                out[i] = 0
            if empty[i]:
                continue
            for a in range(iy0[i], iy1[i] + 1):
                ya, yb = max(int(y0[i]), int(self._ys[a])), min(int(y1[i]), int(self._ys[a + 1]))
                for b in range(ix0[i], ix1[i] + 1):
                    xa, xb = max(int(x0[i]), int(self._xs[b])), min(int(x1[i]), int(self._xs[b + 1]))
                    blk = blocks[(a, b)]
                    out[i, :, ya - oy : yb - oy, xa - ox : xb - ox] = blk[
                        :, ya - self._ys[a] : yb - self._ys[a], xa - self._xs[b] : xb - self._xs[b]
                    ]


def open_source(level: Level, *, max_bytes: int | None = None):
    """Pixel source for ``level``: decoded once when it fits ``max_bytes`` (default :data:`INMEMORY_MAX_BYTES`)."""
    limit = INMEMORY_MAX_BYTES if max_bytes is None else max_bytes
    return _InMemory(level) if level.nbytes <= limit else _Lazy(level)
