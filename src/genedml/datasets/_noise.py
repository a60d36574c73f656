"""Position-keyed procedural noise for the synthetic tissue.

Every value here is a pure function of a seed, a stream key and a *global* integer position, never of the window
being rendered: a pixel gets the same value whichever block (or arbitrary window) computes it, so lazily rendered
dask blocks join without seams. Two forms of the same interpolation exist, one on a grid (separable, for rendering
windows) and one on scattered points (for measurements under spots and nuclei centres); they run the same float32
operations in the same order, so they agree exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "axis_weights",
    "hash_u01",
    "interp_grid",
    "interp_points",
    "lattice_noise_grid",
    "lattice_noise_points",
    "stream_key",
    "tile_table",
]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_G = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def stream_key(*parts: int | str) -> int:
    """A 63-bit key from ints and strings (stable across runs, unlike ``hash``)."""
    h = np.atleast_1d(np.uint64(0x243F6A8885A308D3))
    with np.errstate(over="ignore"):
        for p in parts:
            if isinstance(p, str):
                for ch in p.encode():
                    h = _mix(h ^ np.atleast_1d(np.uint64(ch)) + _G)
            else:
                h = _mix(h ^ np.atleast_1d(np.uint64(int(p) & 0xFFFFFFFFFFFFFFFF)) + _G)
    return int(h[0] >> np.uint64(1))


def hash_u01(key: int, i: np.ndarray, j: np.ndarray, k: int = 0) -> np.ndarray:
    """Uniform [0, 1) float32 values keyed by ``key`` at integer positions ``(i, j)`` (broadcast), channel ``k``."""
    i = np.atleast_1d(np.asarray(i, dtype=np.int64)).view(np.uint64)
    j = np.atleast_1d(np.asarray(j, dtype=np.int64)).view(np.uint64)
    with np.errstate(over="ignore"):
        h = _mix(np.atleast_1d(np.uint64(key)) ^ (np.uint64(k) * _G))
        h = _mix(h ^ (i * _M1 + _G))
        h = _mix(h ^ (j * _M2 + _G))
    return ((h >> np.uint64(40)).astype(np.float32)) * np.float32(2.0**-24)


def axis_weights(coords: np.ndarray, spacing: float, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lattice index and smoothstep weight of pixel coordinates along one axis.

    With ``n`` (lattice length) the coordinate is clamped to the lattice, so fields extend flat past their edges.
    """
    f = np.asarray(coords, dtype=np.float64) / spacing
    if n is not None:
        f = np.clip(f, 0.0, n - 1 - 1e-9)
    i = np.floor(f).astype(np.int64)
    t = (f - i).astype(np.float32)
    return i, t * t * (np.float32(3.0) - np.float32(2.0) * t)


def interp_grid(lattice: np.ndarray, iy: np.ndarray, ty: np.ndarray, ix: np.ndarray, tx: np.ndarray) -> np.ndarray:
    """Separable smoothstep interpolation of ``lattice`` onto the grid ``iy × ix`` (indices into ``lattice``)."""
    a = lattice[:, ix]
    row = a + (lattice[:, ix + 1] - a) * tx
    step = row[1:] - row[:-1]
    out = np.take(row, iy, axis=0)
    inc = np.take(step, iy, axis=0)
    inc *= ty[:, None]
    out += inc
    return out


def interp_points(lattice: np.ndarray, iy: np.ndarray, ty: np.ndarray, ix: np.ndarray, tx: np.ndarray) -> np.ndarray:
    """Pointwise twin of :func:`interp_grid` (same operations, same order)."""
    v00 = lattice[iy, ix]
    top = v00 + (lattice[iy, ix + 1] - v00) * tx
    v10 = lattice[iy + 1, ix]
    bot = v10 + (lattice[iy + 1, ix + 1] - v10) * tx
    return top + (bot - top) * ty


def lattice_noise_grid(key: int, ys: np.ndarray, xs: np.ndarray, spacing: float) -> np.ndarray:
    """Smooth value noise in [-1, 1] with lattice ``spacing`` (px) on the pixel grid ``ys × xs``."""
    iy, ty = axis_weights(ys, spacing)
    ix, tx = axis_weights(xs, spacing)
    y0, x0 = int(iy.min()), int(ix.min())
    ly = np.arange(y0, int(iy.max()) + 2)[:, None]
    lx = np.arange(x0, int(ix.max()) + 2)[None, :]
    lattice = hash_u01(key, ly, lx) * np.float32(2.0) - np.float32(1.0)
    return interp_grid(lattice, iy - y0, ty, ix - x0, tx)


def lattice_noise_points(key: int, ys: np.ndarray, xs: np.ndarray, spacing: float) -> np.ndarray:
    """Pointwise twin of :func:`lattice_noise_grid`."""
    iy, ty = axis_weights(ys, spacing)
    ix, tx = axis_weights(xs, spacing)

    def val(di: int, dj: int) -> np.ndarray:
        return hash_u01(key, iy + di, ix + dj) * np.float32(2.0) - np.float32(1.0)

    v00 = val(0, 0)
    top = v00 + (val(0, 1) - v00) * tx
    v10 = val(1, 0)
    bot = v10 + (val(1, 1) - v10) * tx
    return top + (bot - top) * ty


def tile_table(table: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Window ``[y0, y0+h) × [x0, x0+w)`` of the infinite periodic tiling of the square ``table`` (a view)."""
    p = table.shape[0]
    ry, rx = y0 % p, x0 % p
    start = np.concatenate([table[ry:], table[:ry]])
    start = np.concatenate([start[:, rx:], start[:, :rx]], axis=1)
    return np.tile(start, (-(-h // p), -(-w // p)))[:h, :w]
