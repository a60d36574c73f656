"""Render H&E-like RGB pixels of a synthetic section from its layout, window by window.

Pixels are a pure function of the layout and the global pixel position: :func:`render_window` gives the same values
for a pixel whichever window contains it (halo for the blur, nuclei enumerated from a position-keyed cell lattice),
so eager rendering (tile by tile) and lazy dask blocks agree exactly and blocks join without seams.

Colour follows Beer–Lambert: haematoxylin and eosin concentration maps times stain optical-density vectors.
"""

from __future__ import annotations

import functools

import numpy as np

from . import _noise as nz
from ._layout import LAYERS, Layout, NucleusLayer, field_range, sample_grid, sample_points

__all__ = ["expected_stain", "layer_centres", "lazy_image", "render_image", "render_window"]

_STR, _FAT = 2, 4  # label codes (see _layout.REGIONS)
_NOISE_PERIOD = 257
_FIBRE_UM = (220.0, 40.0)
_FIBRE_GAIN = 16.0
_FIBRE_WOBBLE = np.float32(0.05)
_FAT_CELL_UM = 72.0
_BLUR_UM = 2.2


def _halo(layout: Layout) -> int:
    sigma = layout.um(_BLUR_UM)
    return int(4.0 * sigma + 0.5) + 2


def render_window(layout: Layout, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """RGB ``uint8`` pixels ``(3, h, w)`` of the window whose top-left pixel is ``(y0, x0)``."""
    halo = _halo(layout)
    ye0, xe0, he, we = y0 - halo, x0 - halo, h + 2 * halo, w + 2 * halo
    ys = np.arange(ye0, ye0 + he, dtype=np.float64)
    xs = np.arange(xe0, xe0 + we, dtype=np.float64)
    f = sample_grid(layout, ys, xs, extra=("stain_h", "stain_e"))
    label = f["label"]
    hem, eos = _cytoplasm(layout, label, ys, xs)
    if label.any():  # some tissue: nuclei and membranes (a background-only window has neither)
        cover, dark = _nuclei(layout, ye0, xe0, he, we)
        hem = hem * (np.float32(1.0) - cover) + dark
        eos *= np.float32(1.0) - np.float32(0.75) * cover
        _fat_membranes(layout, label, ye0, xe0, hem, eos)
    hem *= f["stain_h"] * np.float32(layout.stain["h_scale"])
    eos *= f["stain_e"] * np.float32(layout.stain["e_scale"])
    if field_range(layout, "blur", ys, xs)[1] > 0:  # an out-of-focus patch touches this window
        _defocus(layout, sample_grid(layout, ys, xs, extra=("blur",))["blur"], hem, eos)
    inner = (slice(halo, halo + h), slice(halo, halo + w))
    return _to_rgb(layout, hem[inner], eos[inner], y0, x0)


def _defocus(layout: Layout, weight: np.ndarray, *maps: np.ndarray) -> None:
    """Blend ``maps`` towards a Gaussian blur by ``weight``, computing the blur only around where weight > 0."""
    from scipy.ndimage import gaussian_filter

    rows, cols = np.flatnonzero(weight.any(axis=1)), np.flatnonzero(weight.any(axis=0))
    if rows.size == 0:
        return
    sigma = layout.um(_BLUR_UM)
    r = int(4.0 * sigma + 0.5) + 1
    sy = slice(max(rows[0] - r, 0), rows[-1] + r + 1)
    sx = slice(max(cols[0] - r, 0), cols[-1] + r + 1)
    for arr in maps:
        sub = arr[sy, sx]
        sub += (gaussian_filter(sub, sigma, output=np.float32) - sub) * weight[sy, sx]


def _to_rgb(layout: Layout, hem: np.ndarray, eos: np.ndarray, y0: int, x0: int) -> np.ndarray:
    """Beer–Lambert: ``255 · 10^-(hem · h_vec + eos · e_vec + bg_od)`` plus pixel noise, as ``uint8`` (in place)."""
    st = layout.stain
    h, w = hem.shape
    noise = nz.tile_table(_noise_table(layout.key), y0, x0, h, w)
    out = np.empty((3, h, w), dtype=np.uint8)
    buf = np.empty((h, w), dtype=np.float32)
    tmp = np.empty((h, w), dtype=np.float32)
    ln10 = -np.log(10.0)
    for c in range(3):
        np.multiply(hem, np.float32(ln10 * st["h_vec"][c]), out=buf)
        buf += np.multiply(eos, np.float32(ln10 * st["e_vec"][c]), out=tmp)
        buf += np.float32(ln10 * st["bg_od"][c])
        np.exp(buf, out=buf)
        buf *= np.float32(255.0)
        buf += np.multiply(noise, np.float32(2.5 + 0.5 * c), out=tmp)
        np.rint(buf, out=buf)
        np.clip(buf, 0, 255, out=buf)
        out[c] = buf
    return out


@functools.lru_cache(maxsize=64)
def _noise_table(key: int, sigma: float = 0.0) -> np.ndarray:
    """A periodic table of centred noise, smoothed by ``sigma`` px and rescaled to unit spread (cached).

    Gathering from it is much cheaper than hashing every pixel; the period (:data:`_NOISE_PERIOD`) is far above
    the correlation length, so the repetition is invisible.
    """
    from scipy.ndimage import gaussian_filter

    i = np.arange(_NOISE_PERIOD)
    u = nz.hash_u01(key + 7, i[:, None], i[None, :]) + nz.hash_u01(key + 8, i[:, None], i[None, :])
    u = u - np.float32(1.0)
    if sigma == 0:
        return u * np.float32(1.7)
    u = gaussian_filter(u, sigma, mode="wrap")
    return (u / np.abs(u).max()).astype(np.float32)


# ------------------------------------------------------------------------------------------------ cytoplasm


def _fibre(layout: Layout, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Wavy collagen bundles: bright bands along the iso-lines of smooth noise, two crossing sets, broken up."""
    psi = nz.lattice_noise_grid(layout.key + 21, ys, xs, layout.um(_FIBRE_UM[0]))
    psi += _FIBRE_WOBBLE * nz.lattice_noise_grid(layout.key + 22, ys, xs, layout.um(_FIBRE_UM[1]))
    wave = np.float32(0.5) + np.float32(0.5) * np.sin(np.float32(2 * np.pi * _FIBRE_GAIN) * psi)
    cross = nz.lattice_noise_grid(layout.key + 25, ys, xs, layout.um(0.7 * _FIBRE_UM[0]))
    cross = np.float32(0.5) + np.float32(0.5) * np.sin(np.float32(2 * np.pi * 0.8 * _FIBRE_GAIN) * cross)
    wave = np.maximum(wave * wave * wave, np.float32(0.55) * cross * cross * cross)
    table = _noise_table(layout.key + 24, layout.um(3.0))
    breaks = np.clip(
        np.float32(0.45) + np.float32(1.3) * nz.tile_table(table, int(ys[0]), int(xs[0]), len(ys), len(xs)), 0, 1
    )
    return wave * breaks


# per label code: background, tumour, stroma, immune, fat
_E_BASE = np.array([0.012, 0.36, 0.16, 0.1, 0.012], dtype=np.float32)
_E_FINE = np.array([0.0, 0.1, 0.03, 0.03, 0.0], dtype=np.float32)
_E_MID = np.array([0.008, 0.07, 0.0, 0.0, 0.0], dtype=np.float32)
_H_BASE = np.array([0.012, 0.1, 0.025, 0.16, 0.004], dtype=np.float32)
_H_FINE = np.array([0.0, 0.04, 0.0, 0.03, 0.0], dtype=np.float32)


def _cytoplasm(layout: Layout, label: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Haematoxylin and eosin concentration of everything that is not a nucleus (lookup by region label)."""
    y0, x0, h, w = int(ys[0]), int(xs[0]), len(ys), len(xs)
    fine = nz.tile_table(_noise_table(layout.key + 31, max(layout.um(1.5), 0.5)), y0, x0, h, w)
    mid = nz.tile_table(_noise_table(layout.key + 32, layout.um(9.0)), y0, x0, h, w)
    eos = np.take(_E_BASE, label) + np.take(_E_FINE, label) * fine + np.take(_E_MID, label) * mid
    hem = np.take(_H_BASE, label) + np.take(_H_FINE, label) * fine
    stroma = label == _STR
    if stroma.any():
        loose = np.clip(np.float32(0.8) + np.float32(0.6) * mid, 0.2, 1.0)
        eos += stroma * (np.float32(0.55) * _fibre(layout, ys, xs) * loose)
    return hem, eos


def _fat_membranes(layout: Layout, label: np.ndarray, ye0: int, xe0: int, hem: np.ndarray, eos: np.ndarray) -> None:
    """Thin pink adipocyte membranes: borders of a jittered-lattice Voronoi diagram, inside fat only."""
    py, px = np.nonzero(label == _FAT)
    if py.size == 0:
        return
    cell = layout.um(_FAT_CELL_UM)
    gy, gx = (py + ye0).astype(np.float64), (px + xe0).astype(np.float64)
    ci, cj = np.floor(gy / cell).astype(np.int64), np.floor(gx / cell).astype(np.int64)
    d1 = np.full(py.shape, np.inf, dtype=np.float32)
    d2 = np.full(py.shape, np.inf, dtype=np.float32)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            i, j = ci + di, cj + dj
            sy = (i + np.float32(0.15) + np.float32(0.7) * nz.hash_u01(layout.key + 41, i, j)) * cell
            sx = (j + np.float32(0.15) + np.float32(0.7) * nz.hash_u01(layout.key + 42, i, j)) * cell
            d = np.sqrt((gy - sy) ** 2 + (gx - sx) ** 2).astype(np.float32)
            d2 = np.minimum(d2, np.maximum(d1, d))
            d1 = np.minimum(d1, d)
    width = max(layout.um(1.6), 0.7)
    border = np.clip(np.float32(1.0) - (d2 - d1) / np.float32(2.0 * width), 0.0, 1.0)
    eos[py, px] += np.float32(0.5) * border
    hem[py, px] += np.float32(0.03) * border


# ------------------------------------------------------------------------------------------------ nuclei


def layer_centres(layout: Layout, layer: NucleusLayer, n: int, y_rng: tuple[float, float], x_rng: tuple[float, float]):
    """Kept nuclei of ``layer`` (layer index ``n``) whose lattice cells overlap the given pixel ranges.

    Returns centre y, x (px), the per-cell hash keys (i, j) and the sampled fields at the centres.
    """
    cell = layout.um(layer.cell_um)
    i = np.arange(int(np.floor(y_rng[0] / cell)), int(np.floor(y_rng[1] / cell)) + 1)
    j = np.arange(int(np.floor(x_rng[0] / cell)), int(np.floor(x_rng[1] / cell)) + 1)
    ii, jj = (a.ravel() for a in np.meshgrid(i, j, indexing="ij"))
    key = layout.key + 100 * (n + 1)
    cy = (ii + nz.hash_u01(key, ii, jj, 1)) * cell
    cx = (jj + nz.hash_u01(key, ii, jj, 2)) * cell
    f = sample_points(layout, cy, cx)
    keep_p = np.asarray(layer.keep, dtype=np.float32)[f["label"]] * f["density"]
    keep = nz.hash_u01(key, ii, jj, 0) < keep_p
    f = {k: v[keep] for k, v in f.items()}
    return cy[keep], cx[keep], ii[keep], jj[keep], f


def _orientation(layout: Layout, cy: np.ndarray, cx: np.ndarray) -> np.ndarray:
    """Fibre direction at points: along the iso-lines of the fibre phase field."""

    def psi(y, x):
        a = nz.lattice_noise_points(layout.key + 21, y, x, layout.um(_FIBRE_UM[0]))
        return a + _FIBRE_WOBBLE * nz.lattice_noise_points(layout.key + 22, y, x, layout.um(_FIBRE_UM[1]))

    gy = psi(cy + 1.0, cx) - psi(cy - 1.0, cx)
    gx = psi(cy, cx + 1.0) - psi(cy, cx - 1.0)
    return np.arctan2(gy, gx).astype(np.float32) + np.float32(np.pi / 2)


def _nuclei(layout: Layout, ye0: int, xe0: int, he: int, we: int) -> tuple[np.ndarray, np.ndarray]:
    """Nuclear coverage (0–1) and haematoxylin concentration maps of a window."""
    cover = np.zeros(he * we, dtype=np.float32)
    dark = np.zeros(he * we, dtype=np.float32)
    for n, layer in enumerate(LAYERS):
        reach = layout.um(layer.major_um[1]) * 1.05 + 2.0
        cy, cx, ii, jj, _ = layer_centres(
            layout, layer, n, (ye0 - reach, ye0 + he + reach), (xe0 - reach, xe0 + we + reach)
        )
        if cy.size:
            _stamp(layout, layer, n, cy - ye0, cx - xe0, ii, jj, (he, we), cover, dark, ys0=ye0, xs0=xe0)
    return cover.reshape(he, we), dark.reshape(he, we)


def _stamp(layout, layer, n, cy, cx, ii, jj, shape, cover, dark, *, ys0, xs0) -> None:
    """Rasterise ellipses (soft edge, lumpy outline, chromatin texture) into the flat maps by maximum."""
    key = layout.key + 100 * (n + 1)

    def u(k):
        return nz.hash_u01(key, ii, jj, k)[:, None, None]

    a = layout.um(layer.major_um[0] + (layer.major_um[1] - layer.major_um[0]) * u(3))
    b = layout.um(layer.minor_um[0] + (layer.minor_um[1] - layer.minor_um[0]) * u(4))
    b = np.minimum(a, b)
    if layer.oriented:
        ang = _orientation(layout, cy + ys0, cx + xs0)[:, None, None] + np.float32(0.35) * (u(5) - np.float32(0.5))
    else:
        ang = np.float32(np.pi) * u(5)
    tone = np.float32(layer.darkness[0]) + np.float32(layer.darkness[1] - layer.darkness[0]) * u(6)
    r = int(np.ceil(layout.um(layer.major_um[1]) * 1.05)) + 1
    off = np.arange(-r, r + 1)
    py = np.rint(cy).astype(np.int64)[:, None, None] + off[None, :, None]
    px = np.rint(cx).astype(np.int64)[:, None, None] + off[None, None, :]
    dy = (py - cy[:, None, None]).astype(np.float32)
    dx = (px - cx[:, None, None]).astype(np.float32)
    ca, sa = np.cos(ang), np.sin(ang)
    uu, vv = dx * ca + dy * sa, -dx * sa + dy * ca
    rad = np.sqrt((uu / a) ** 2 + (vv / b) ** 2)
    table = _noise_table(layout.key + 1)
    grain = table[(py + ys0) % _NOISE_PERIOD, (px + xs0) % _NOISE_PERIOD]
    opacity = np.clip(
        np.float32(0.5) + (np.float32(1.0) - rad + np.float32(0.05) * grain) * b / np.float32(0.8), 0.0, 1.0
    )
    rim = np.clip((rad - np.float32(0.5)) / np.float32(0.5), 0.0, 1.0)
    body = tone * (np.float32(1.0) - np.float32(layer.vesicular) * (np.float32(1.0) - rim) + np.float32(0.1) * grain)
    inside = (py >= 0) & (py < shape[0]) & (px >= 0) & (px < shape[1]) & (opacity > 0)
    flat = (py * shape[1] + px)[inside]
    np.maximum.at(cover, flat, opacity[inside])
    np.maximum.at(dark, flat, (opacity * body)[inside])


# ------------------------------------------------------------------------------------------------ whole images


def render_image(layout: Layout, *, block: int = 1024) -> np.ndarray:
    """The whole section ``(3, H, W)`` rendered eagerly tile by tile (same values as :func:`lazy_image`)."""
    hgt, wid = layout.shape
    out = np.empty((3, hgt, wid), dtype=np.uint8)
    for y0 in range(0, hgt, block):
        for x0 in range(0, wid, block):
            h, w = min(block, hgt - y0), min(block, wid - x0)
            out[:, y0 : y0 + h, x0 : x0 + w] = render_window(layout, y0, x0, h, w)
    return out


def _render_block(layout: Layout, block_info=None) -> np.ndarray:
    (_, _), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    return render_window(layout, y0, x0, y1 - y0, x1 - x0)


def lazy_image(layout: Layout, *, block: int = 1024, token: str = ""):
    """A dask array ``(3, H, W)`` whose blocks are rendered on demand (nothing is rendered here)."""
    import dask.array as da

    hgt, wid = layout.shape
    chunks = ((3,), _splits(hgt, block), _splits(wid, block))
    return da.map_blocks(
        functools.partial(_render_block, layout),
        dtype=np.uint8,
        chunks=chunks,
        meta=np.empty((0, 0, 0), dtype=np.uint8),
        name=f"genedml-synthetic-hne-{token}-{layout.name}",
    )


def _splits(n: int, block: int) -> tuple[int, ...]:
    return tuple(min(block, n - s) for s in range(0, n, block))


# ------------------------------------------------------------------------------------------------ measurements


def expected_stain(label: np.ndarray, density: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected nuclei per 1000 µm², haematoxylin and eosin concentration at points (before stain fields).

    The analytic mean of what :func:`render_window` draws there: nuclei of every layer kept with probability
    ``keep[label] · density``, their mean area and darkness, and the region's cytoplasm/fibre stain.
    """
    nuclei = np.zeros(label.shape, dtype=np.float32)
    cover = np.zeros(label.shape, dtype=np.float32)
    dark = np.zeros(label.shape, dtype=np.float32)
    for layer in LAYERS:
        p = np.minimum(np.take(np.asarray(layer.keep, dtype=np.float32), label) * density, 1.0)
        per_um2 = p / np.float32(layer.cell_um**2)
        area = np.pi * np.mean(layer.major_um) * np.mean(layer.minor_um)
        tone = np.mean(layer.darkness) * (1.0 - 0.5 * layer.vesicular)
        nuclei += per_um2
        cover += per_um2 * np.float32(area)
        dark += per_um2 * np.float32(area * tone)
    cover = np.minimum(cover, 1.0)
    hem = np.take(_H_BASE, label) * (1.0 - cover) + dark
    eos = (np.take(_E_BASE, label) + (label == _STR) * np.float32(0.55 * _MEAN_FIBRE)) * (1.0 - 0.75 * cover)
    return nuclei * np.float32(1000.0), hem.astype(np.float32), eos.astype(np.float32)


_MEAN_FIBRE = 0.2
