"""Handcrafted morphology features of H&E windows: colour, stain, texture and nuclei, no weights.

Every feature is computed on a batch of windows at once with NumPy/SciPy (GLCM and LBP by integer shifts and
``bincount``, nuclei by one 3-D labelling with no connection across windows), at the window's physical scale: the
embedding pipeline tells the encoder its µm per pixel (:meth:`MorphologyFeatures.set_um_per_px`), and distances,
smoothing and nucleus sizes are set in µm. Features are grouped as follows (``FEATURE_NAMES``):

* colour: RGB mean, s.d. and 10/50/90th percentiles per channel (15);
* stain: the same five statistics of the haematoxylin, eosin and DAB optical densities of Ruifrok–Johnston colour
  deconvolution (:func:`skimage.color.rgb2hed`) (15); fractions of strongly H- and E-stained, white (background)
  and dark pixels (4);
* texture: GLCM contrast, homogeneity, energy and correlation of the 16-level grey image, averaged over 4 angles, at
  2, 4 and 8 µm (12); uniform rotation-invariant LBP histogram (8 neighbours, 10 bins) (10);
* nuclei, from the Gaussian-smoothed haematoxylin density thresholded per window (Otsu, floored): density per
  10,000 µm² (local maxima at least ~4 µm apart, so touching nuclei count one by one), covered fraction, mean
  and s.d. of nucleus area (µm²), mean eccentricity, mean H density inside nuclei, share of large (> 60 µm²)
  nuclei (7).
"""

from __future__ import annotations

import numpy as np

__all__ = ["FEATURE_NAMES", "morphology_features"]

_STATS = ("mean", "sd", "p10", "p50", "p90")
_GLCM_UM = (2.0, 4.0, 8.0)
_GLCM_PROPS = ("contrast", "homogeneity", "energy", "correlation")
FEATURE_NAMES: tuple[str, ...] = (
    *(f"{c}_{s}" for c in ("R", "G", "B") for s in _STATS),
    *(f"{c}_{s}" for c in ("H", "E", "D") for s in _STATS),
    "frac_H_strong",
    "frac_E_strong",
    "frac_white",
    "frac_dark",
    *(f"glcm_{p}_{d:g}um" for d in _GLCM_UM for p in _GLCM_PROPS),
    *(f"lbp_{i}" for i in range(10)),
    "nuc_density",
    "nuc_area_frac",
    "nuc_area_mean",
    "nuc_area_sd",
    "nuc_eccentricity",
    "nuc_H_mean",
    "nuc_large_frac",
)
# optical-density thresholds (rgb2hed units) and grey levels; chosen on typical H&E (H of nuclei ≈ 0.1–0.3)
_H_STRONG, _E_STRONG, _H_FLOOR = 0.08, 0.12, 0.05
_WHITE, _DARK = 0.86, 0.31
_LEVELS = 16


def _stats(v: np.ndarray) -> np.ndarray:
    """``(B, n)`` → ``(B, 5)``: mean, s.d., 10/50/90th percentiles."""
    q = np.percentile(v, (10, 50, 90), axis=1).T
    return np.concatenate([v.mean(1, keepdims=True), v.std(1, keepdims=True), q], axis=1)


def _glcm(grey: np.ndarray, dist: int) -> np.ndarray:
    """``(B, H, W)`` ints in [0, L) → ``(B, 4)`` symmetric-normalised GLCM properties averaged over 4 angles."""
    B, H, W = grey.shape
    L = _LEVELS
    i, j = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    acc = np.zeros((B, 4))
    for dy, dx in ((0, dist), (dist, dist), (dist, 0), (dist, -dist)):
        if dy >= H or abs(dx) >= W:
            continue
        a = grey[:, : H - dy, max(0, -dx) : W - max(0, dx)]
        b = grey[:, dy:, max(0, dx) : W - max(0, -dx)]
        codes = (np.arange(B)[:, None] * L * L + (a * L + b).reshape(B, -1)).ravel()
        m = np.bincount(codes, minlength=B * L * L).reshape(B, L, L).astype(np.float64)
        m = m + m.transpose(0, 2, 1)
        m /= np.maximum(m.sum((1, 2), keepdims=True), 1.0)
        contrast = (m * (i - j) ** 2).sum((1, 2))
        homog = (m / (1.0 + (i - j) ** 2)).sum((1, 2))
        energy = np.sqrt((m**2).sum((1, 2)))
        mu = (m * i).sum((1, 2))
        var = (m * (i - mu[:, None, None]) ** 2).sum((1, 2))
        cov = (m * (i - mu[:, None, None]) * (j - mu[:, None, None])).sum((1, 2))
        corr = np.where(var > 1e-12, cov / np.maximum(var, 1e-12), 1.0)
        acc += np.stack([contrast, homog, energy, corr], axis=1)
    return acc / 4.0


def _lbp_hist(grey: np.ndarray) -> np.ndarray:
    """Uniform rotation-invariant LBP (8 neighbours at 1 px) histogram, ``(B, H, W)`` → ``(B, 10)``."""
    B, H, W = grey.shape
    c = grey[:, 1:-1, 1:-1]
    ring = ((0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0), (1, 0))  # circular order
    bits = np.stack([grey[:, dy : H - 2 + dy, dx : W - 2 + dx] >= c for dy, dx in ring], axis=-1)
    ones = bits.sum(-1)
    transitions = (bits != np.roll(bits, 1, axis=-1)).sum(-1)
    code = np.where(transitions <= 2, ones, 9).reshape(B, -1)
    hist = np.stack([np.bincount(row, minlength=10) for row in code]).astype(np.float64)
    return hist / max(code.shape[1], 1)


def _otsu(v: np.ndarray, bins: int = 64) -> np.ndarray:
    """Per-row Otsu threshold of ``(B, n)`` values."""
    lo, hi = v.min(1), v.max(1)
    span = np.maximum(hi - lo, 1e-9)
    idx = np.clip(((v - lo[:, None]) / span[:, None] * (bins - 1)).astype(np.int64), 0, bins - 1)
    B = v.shape[0]
    hist = np.bincount((np.arange(B)[:, None] * bins + idx).ravel(), minlength=B * bins).reshape(B, bins)
    p = hist / hist.sum(1, keepdims=True)
    w0 = np.cumsum(p, 1)
    centres = np.arange(bins)
    m0 = np.cumsum(p * centres, 1)
    mt = m0[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        between = (mt * w0 - m0) ** 2 / (w0 * (1 - w0))
    between = np.nan_to_num(between)
    k = between.argmax(1)
    return lo + (k + 0.5) / (bins - 1) * span


def _nuclei(h: np.ndarray, um_per_px: float) -> np.ndarray:
    """``(B, H, W)`` haematoxylin density → ``(B, 7)`` nucleus statistics."""
    from scipy import ndimage

    B, H, W = h.shape
    sigma = max(0.5, 1.0 / um_per_px)  # ~1 µm
    hs = ndimage.gaussian_filter(h, sigma=(0, sigma, sigma))
    thr = np.maximum(_otsu(hs.reshape(B, -1)), _H_FLOOR)
    fg = hs > thr[:, None, None]
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    labels, n = ndimage.label(fg, structure=structure)
    out = np.zeros((B, 7))
    px_area = um_per_px**2
    out[:, 1] = fg.reshape(B, -1).mean(1)
    # count: local maxima of the smoothed density inside the foreground, at least ~4 µm apart, so that touching
    # nuclei (merged by the labelling) are still counted one by one
    k = max(3, int(round(4.0 / um_per_px)) | 1)
    peaks = fg & (hs >= ndimage.maximum_filter(hs, size=(1, k, k), mode="nearest"))
    plab, pn = ndimage.label(peaks, structure=structure)  # a flat top (plateau) is one maximum
    if pn:
        pidx = np.flatnonzero(plab)
        p_owner = np.zeros(pn + 1, np.int64)
        p_owner[plab.ravel()[pidx]] = pidx // (H * W)
        out[:, 0] = np.bincount(p_owner[1:], minlength=B) / (H * W * px_area) * 1e4
    if n == 0:
        return out
    lab = labels.ravel()
    idx = np.flatnonzero(lab)
    ll = lab[idx]
    b_of = idx // (H * W)
    yy = (idx % (H * W)) // W
    xx = idx % W
    cnt = np.bincount(ll, minlength=n + 1).astype(np.float64)
    owner = np.zeros(n + 1, np.int64)
    owner[ll] = b_of
    sy, sx = np.bincount(ll, yy, n + 1), np.bincount(ll, xx, n + 1)
    syy, sxx, sxy = np.bincount(ll, yy * yy, n + 1), np.bincount(ll, xx * xx, n + 1), np.bincount(ll, yy * xx, n + 1)
    hsum = np.bincount(ll, hs.ravel()[idx], n + 1)
    c = np.maximum(cnt, 1.0)
    my, mx = sy / c, sx / c
    vyy, vxx, vxy = syy / c - my**2 + 1 / 12, sxx / c - mx**2 + 1 / 12, sxy / c - my * mx
    tr, det = vyy + vxx, vyy * vxx - vxy**2
    disc = np.sqrt(np.maximum(tr**2 / 4 - det, 0))
    l1, l2 = tr / 2 + disc, np.maximum(tr / 2 - disc, 0)
    ecc = np.sqrt(np.clip(1 - l2 / np.maximum(l1, 1e-12), 0, 1))
    area = cnt * px_area
    keep = np.arange(n + 1) > 0
    keep &= area >= 8.0  # smaller blobs are noise at any resolution (a lymphocyte nucleus is ≈ 30 µm²)
    kb = owner[keep]
    k_area, k_ecc, k_h = area[keep], ecc[keep], hsum[keep] / c[keep]
    num = np.bincount(kb, minlength=B).astype(np.float64)
    den = np.maximum(num, 1.0)
    mean_a = np.bincount(kb, k_area, B) / den
    sd_a = np.sqrt(np.maximum(np.bincount(kb, k_area**2, B) / den - mean_a**2, 0))
    out[:, 2] = mean_a / 100.0
    out[:, 3] = sd_a / 100.0
    out[:, 4] = np.bincount(kb, k_ecc, B) / den
    out[:, 5] = np.bincount(kb, k_h, B) / den
    out[:, 6] = np.bincount(kb, (k_area > 60.0).astype(np.float64), B) / den
    return out


def morphology_features(rgb: np.ndarray, *, um_per_px: float) -> np.ndarray:
    """Morphology features of a batch of windows.

    Parameters
    ----------
    rgb
        ``(B, H, W, 3)`` images, ``uint8`` or float in [0, 1].
    um_per_px
        Physical pixel size of the windows (µm).

    Returns
    -------
    ``(B, len(FEATURE_NAMES))`` float32, in the order of ``FEATURE_NAMES``.

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.full((2, 32, 32, 3), 230, np.uint8)
    >>> f = morphology_features(rgb, um_per_px=1.0)
    >>> f.shape, float(f[0, FEATURE_NAMES.index("frac_white")])
    ((2, 63), 1.0)
    """
    from skimage.color import rgb2hed

    x = np.asarray(rgb)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"`rgb` must be shaped (B, H, W, 3), got {x.shape}.")
    if not um_per_px > 0:
        raise ValueError(f"`um_per_px` must be positive, got {um_per_px!r}.")
    if x.shape[1] < 4 or x.shape[2] < 4:
        raise ValueError(f"windows must be at least 4 × 4 pixels for texture features, got {x.shape[1:3]}.")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    B, H, W, _ = x.shape
    flat = x.reshape(B, H * W, 3)
    parts = [_stats(flat[..., c]) for c in range(3)]
    hed = rgb2hed(x.reshape(B * H, W, 3)).reshape(B, H, W, 3).astype(np.float32)
    hflat = hed.reshape(B, H * W, 3)
    parts += [_stats(hflat[..., c]) for c in range(3)]
    grey = flat.mean(-1)
    parts.append(
        np.stack(
            [
                (hflat[..., 0] > _H_STRONG).mean(1),
                (hflat[..., 1] > _E_STRONG).mean(1),
                (flat.min(-1) > _WHITE).mean(1),
                (grey < _DARK).mean(1),
            ],
            axis=1,
        )
    )
    q = np.clip((x.mean(-1) * _LEVELS).astype(np.int64), 0, _LEVELS - 1)
    for d_um in _GLCM_UM:
        d = max(1, int(round(d_um / um_per_px)))
        parts.append(_glcm(q, min(d, max(1, min(H, W) // 2))))
    parts.append(_lbp_hist(np.round(x.mean(-1) * 255).astype(np.int16)))
    parts.append(_nuclei(hed[..., 0], um_per_px))
    return np.concatenate(parts, axis=1).astype(np.float32)
