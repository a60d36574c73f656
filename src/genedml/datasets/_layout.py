"""Low-resolution tissue layout of a synthetic section, and the fields read from it.

A layout holds smooth float32 fields on a coarse lattice (``spacing`` px apart): region scores (a region is
present where its score, plus fine position-keyed boundary noise, is > 0), a nuclei-density modulation, stain
intensity fields and an out-of-focus weight. Both the pixel renderer and the per-spot measurements read the fields
through :func:`sample_grid` / :func:`sample_points`, so what the image shows and what the counts were drawn from
agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _noise as nz

__all__ = [
    "BACKGROUND",
    "LAYERS",
    "REGIONS",
    "Layout",
    "NucleusLayer",
    "field_range",
    "make_layout",
    "sample_grid",
    "sample_points",
    "smooth_field",
]

REGIONS = ("tumour", "stroma", "immune", "fat")
"""Tissue regions; label codes are 1 + index (0 is background outside the tissue)."""
BACKGROUND = 0
_TUMOUR, _STROMA, _IMMUNE, _FAT = 1, 2, 3, 4
_SCORES = ("tissue", "fat", "immune", "tumour")
_RENDER_FIELDS = (*_SCORES, "density", "stain_h", "stain_e", "blur")
_BOUNDARY_NOISE_UM = 22.0
_BOUNDARY_NOISE_AMP = np.float32(0.3)


@dataclass(frozen=True)
class NucleusLayer:
    """One population of nuclei, placed at most one per cell of a square lattice (``cell_um`` apart)."""

    name: str
    cell_um: float
    keep: tuple[float, float, float, float, float]  # keep probability per label code (bg, tum, str, imm, fat)
    major_um: tuple[float, float]  # semi-axis ranges
    minor_um: tuple[float, float]
    darkness: tuple[float, float]  # haematoxylin concentration range
    oriented: bool = False  # align with the stroma fibres
    vesicular: float = 0.0  # paler centre (open chromatin), 0–1


LAYERS = (
    NucleusLayer("tumour", 12.5, (0.0, 0.85, 0.0, 0.0, 0.0), (5.0, 7.8), (4.0, 6.2), (0.9, 1.4), vesicular=0.35),
    NucleusLayer("immune", 7.5, (0.0, 0.05, 0.07, 0.9, 0.0), (2.9, 3.7), (2.6, 3.4), (1.5, 2.0)),
    NucleusLayer("stroma", 20.0, (0.0, 0.0, 0.45, 0.0, 0.04), (5.5, 9.0), (1.3, 2.2), (1.0, 1.4), oriented=True),
)
"""Nuclei populations: dense large pleomorphic (tumour), dense small round dark (immune), sparse elongated (stroma)."""


@dataclass
class Layout:
    """Everything needed to render a section or measure it under spots (pure data, picklable)."""

    name: str
    patient: str
    shape: tuple[int, int]  # (height, width) px
    pixel_size: float
    spacing: float  # lattice spacing of ``fields`` in px
    fields: dict[str, np.ndarray]
    key: int  # stream key of this section's position-keyed noise
    stain: dict[str, np.ndarray | float] = field(default_factory=dict)

    def um(self, value: float) -> float:
        """Micrometres → pixels of this section."""
        return value / self.pixel_size


# --------------------------------------------------------------------------------------------- field sampling


def _labels(s: dict[str, np.ndarray]) -> np.ndarray:
    label = np.full(s["tissue"].shape, _STROMA, dtype=np.int8)
    label[s["tumour"] > 0] = _TUMOUR
    label[s["immune"] > 0] = _IMMUNE
    label[s["fat"] > 0] = _FAT
    label[s["tissue"] <= 0] = BACKGROUND
    return label


def _crop(lattice: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The lattice rows/columns a sorted pixel grid needs, and the indices shifted into the crop."""
    y0, x0 = int(iy[0]), int(ix[0])
    return lattice[y0 : int(iy[-1]) + 2, x0 : int(ix[-1]) + 2], iy - y0, ix - x0


def sample_grid(
    layout: Layout, ys: np.ndarray, xs: np.ndarray, *, extra: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """Region ``label`` (with boundary noise) and the fields ``extra`` on the sorted pixel grid ``ys × xs``.

    A score whose lattice values over the window cannot reach 0 (even with the noise) is not interpolated: the
    smoothstep interpolation never leaves the range of its corner values, so skipping it changes nothing.
    """
    ny, nx = layout.fields["tissue"].shape
    iy, ty = nz.axis_weights(ys, layout.spacing, ny)
    ix, tx = nz.axis_weights(xs, layout.spacing, nx)
    spacing = layout.um(_BOUNDARY_NOISE_UM)
    out: dict[str, np.ndarray] = {}
    constant: dict[str, bool] = {}
    noise = None
    for k in _SCORES:
        lat, cy, cx = _crop(layout.fields[k], iy, ix)
        if lat.max() < -_BOUNDARY_NOISE_AMP or lat.min() > _BOUNDARY_NOISE_AMP:
            constant[k] = bool(lat.max() > 0)
            continue
        if noise is None:
            noise = _BOUNDARY_NOISE_AMP * nz.lattice_noise_grid(layout.key + 11, ys, xs, spacing)
        out[k] = nz.interp_grid(lat, cy, ty, cx, tx)
        out[k] += noise
    out["label"] = _labels_partial(out, constant, (len(ys), len(xs)))
    for k in extra:
        lat, cy, cx = _crop(layout.fields[k], iy, ix)
        out[k] = nz.interp_grid(lat, cy, ty, cx, tx)
    return out


def _labels_partial(s: dict[str, np.ndarray], constant: dict[str, bool], shape: tuple[int, int]) -> np.ndarray:
    label = np.full(shape, _STROMA, dtype=np.int8)
    for k, code in (("tumour", _TUMOUR), ("immune", _IMMUNE), ("fat", _FAT)):
        if k in s:
            label[s[k] > 0] = code
        elif constant[k]:
            label[...] = code
    if "tissue" in s:
        label[s["tissue"] <= 0] = BACKGROUND
    elif not constant["tissue"]:
        label[...] = BACKGROUND
    return label


def field_range(layout: Layout, name: str, ys: np.ndarray, xs: np.ndarray) -> tuple[float, float]:
    """Bounds of a layout field over a sorted pixel grid (exact bounds of its interpolation)."""
    ny, nx = layout.fields[name].shape
    iy, _ = nz.axis_weights(ys[[0, -1]], layout.spacing, ny)
    ix, _ = nz.axis_weights(xs[[0, -1]], layout.spacing, nx)
    lat, _, _ = _crop(layout.fields[name], iy, ix)
    return float(lat.min()), float(lat.max())


def sample_points(layout: Layout, ys: np.ndarray, xs: np.ndarray) -> dict[str, np.ndarray]:
    """Pointwise twin of :func:`sample_grid` at scattered pixel positions ``(ys[i], xs[i])``."""
    ny, nx = layout.fields["tissue"].shape
    iy, ty = nz.axis_weights(ys, layout.spacing, ny)
    ix, tx = nz.axis_weights(xs, layout.spacing, nx)
    out = {k: nz.interp_points(layout.fields[k], iy, ty, ix, tx) for k in _RENDER_FIELDS}
    noise = _BOUNDARY_NOISE_AMP * nz.lattice_noise_points(layout.key + 11, ys, xs, layout.um(_BOUNDARY_NOISE_UM))
    for k in _SCORES:
        out[k] += noise
    out["label"] = _labels(out)
    return out


# --------------------------------------------------------------------------------------------- layout generation


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with correlation length ``sigma`` (lattice cells).

    Long correlation lengths are drawn on a coarser lattice and interpolated up, which keeps the cost independent
    of ``sigma``.
    """
    from scipy.ndimage import gaussian_filter, zoom

    factor = max(1, int(sigma // 3))
    coarse = (shape[0] // factor + 3, shape[1] // factor + 3)
    f = gaussian_filter(rng.standard_normal(coarse).astype(np.float32), sigma=max(sigma / factor, 0.5), mode="reflect")
    if factor > 1:
        f = zoom(f, factor, order=1, grid_mode=False)
    f = np.ascontiguousarray(f[: shape[0], : shape[1]])
    f -= f.mean()
    return f / max(float(f.std()), 1e-6)


def _shift_to_fraction(score: np.ndarray, where: np.ndarray, fraction: float) -> np.ndarray:
    """Shift ``score`` so that ``score > 0`` covers ``fraction`` of the cells in ``where``."""
    vals = score[where]
    if vals.size == 0:
        return score - score.max() - 1.0
    return score - np.float32(np.quantile(vals, 1.0 - fraction))


def _tissue_score(rng: np.random.Generator, shape: tuple[int, int], spacing_um: float, grid_um: tuple) -> np.ndarray:
    """Irregular tissue blob over the spot grid: a rotated ellipse with a noisy rim."""
    (y0, y1), (x0, x1) = grid_um
    yy = (np.arange(shape[0], dtype=np.float32) * np.float32(spacing_um))[:, None]
    xx = (np.arange(shape[1], dtype=np.float32) * np.float32(spacing_um))[None, :]
    cy = 0.5 * (y0 + y1) + rng.uniform(-0.04, 0.04) * (y1 - y0)
    cx = 0.5 * (x0 + x1) + rng.uniform(-0.04, 0.04) * (x1 - x0)
    ang = rng.uniform(0, np.pi)
    ay, ax = rng.uniform(0.46, 0.5) * (y1 - y0), rng.uniform(0.48, 0.53) * (x1 - x0)
    c, s = np.float32(np.cos(ang)), np.float32(np.sin(ang))
    dx, dy = xx - np.float32(cx), yy - np.float32(cy)
    r = np.sqrt(((dx * c + dy * s) / np.float32(ax)) ** 2 + ((dy * c - dx * s) / np.float32(ay)) ** 2)
    rim = smooth_field(rng, shape, 450.0 / spacing_um)
    return (((1.0 - r) * 4.0 + 0.55 * rim) * 6.0).astype(np.float32)


def _immune_score(rng: np.random.Generator, shape: tuple[int, int], spacing_um: float, tissue: np.ndarray):
    """Round lymphoid aggregates: Gaussian bumps at random tissue positions plus a little texture."""
    area_mm2 = float((tissue > 0).sum()) * (spacing_um / 1000.0) ** 2
    n = max(2, int(rng.poisson(2.2 * area_mm2)))
    cand = np.argwhere(tissue > 2.0)
    score = np.zeros(shape, dtype=np.float32)
    if len(cand) == 0:
        return score
    centres = cand[rng.integers(0, len(cand), n)]
    yy, xx = np.arange(shape[0])[:, None], np.arange(shape[1])[None, :]
    for (cy, cx), rad in zip(centres, rng.uniform(70.0, 190.0, n) / spacing_um):
        box = int(3 * rad) + 1
        sy, sx = slice(max(cy - box, 0), cy + box + 1), slice(max(cx - box, 0), cx + box + 1)
        d2 = (yy[sy] - cy) ** 2 + (xx[:, sx] - cx) ** 2
        score[sy, sx] = np.maximum(score[sy, sx], np.exp(-0.5 * d2 / rad**2))
    return score + 0.12 * smooth_field(rng, shape, 60.0 / spacing_um)


def _fractions(rng: np.random.Generator, base: np.ndarray) -> tuple[float, float, float]:
    """Section target area fractions (fat, immune, tumour) around the patient's ``base``."""
    f = base * np.exp(rng.normal(0.0, 0.12, 3))
    return float(np.clip(f[0], 0.02, 0.3)), float(np.clip(f[1], 0.02, 0.2)), float(np.clip(f[2], 0.1, 0.6))


def make_layout(
    *,
    name: str,
    patient: str,
    shape: tuple[int, int],
    pixel_size: float,
    grid_um: tuple[tuple[float, float], tuple[float, float]],
    patient_rng: np.random.Generator,
    section_rng: np.random.Generator,
    key: int,
) -> Layout:
    """Draw one section's layout. Sections of a patient share ``patient_rng``-drawn fields (serial sections)."""
    h_um, w_um = shape[0] * pixel_size, shape[1] * pixel_size
    spacing_um = max(8.0, max(h_um, w_um) / 1024.0)
    lat = (int(np.ceil(h_um / spacing_um)) + 2, int(np.ceil(w_um / spacing_um)) + 2)
    p_fields = {
        k: smooth_field(patient_rng, lat, s / spacing_um) for k, s in (("tum", 110.0), ("tum_c", 500.0), ("fat", 300.0))
    }
    p_frac = np.array(
        [patient_rng.uniform(0.05, 0.14), patient_rng.uniform(0.05, 0.1), patient_rng.uniform(0.25, 0.42)]
    )
    stain = _patient_stain(patient_rng)

    tissue = _tissue_score(section_rng, lat, spacing_um, grid_um)
    f_fat, f_imm, f_tum = _fractions(section_rng, p_frac)
    in_tissue = tissue > 0
    edge = np.clip(1.0 - tissue / 24.0, 0.0, 1.0)  # 1 at the rim: fat sits towards the periphery
    fat = 0.75 * p_fields["fat"] + 0.45 * smooth_field(section_rng, lat, 200.0 / spacing_um) + 1.2 * edge
    fat = _shift_to_fraction(fat, in_tissue, f_fat) * 2.5
    immune = _immune_score(section_rng, lat, spacing_um, tissue)
    immune = _shift_to_fraction(immune, in_tissue & (fat <= 0), f_imm) * 6.0
    tum = 0.6 * p_fields["tum"] + 0.35 * smooth_field(section_rng, lat, 110.0 / spacing_um) + 0.8 * p_fields["tum_c"]
    tumour = _shift_to_fraction(tum, in_tissue & (fat <= 0) & (immune <= 0), f_tum) * 2.0
    blur = np.clip((smooth_field(section_rng, lat, 350.0 / spacing_um) - 1.3) * 1.5, 0.0, 0.85)
    fields = {
        "tissue": tissue,
        "fat": fat,
        "immune": immune,
        "tumour": tumour,
        "density": np.exp(0.22 * smooth_field(section_rng, lat, 220.0 / spacing_um)),
        "stain_h": np.exp(0.07 * smooth_field(section_rng, lat, 700.0 / spacing_um)),
        "stain_e": np.exp(0.09 * smooth_field(section_rng, lat, 700.0 / spacing_um)),
        "blur": blur,
    }
    stain = _section_stain(section_rng, stain)
    return Layout(
        name=name,
        patient=patient,
        shape=shape,
        pixel_size=pixel_size,
        spacing=spacing_um / pixel_size,
        fields={k: np.ascontiguousarray(v, dtype=np.float32) for k, v in fields.items()},
        key=key,
        stain=stain,
    )


_H_VEC = np.array([0.60, 0.75, 0.28])
_E_VEC = np.array([0.08, 0.86, 0.50])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _patient_stain(rng: np.random.Generator) -> dict:
    """Patient-level stain batch: stain vectors tilted and intensities scaled (a stain batch effect)."""
    return {
        "h_vec": _unit(np.clip(_H_VEC + rng.normal(0.0, 0.03, 3), 0.05, None)),
        "e_vec": _unit(np.clip(_E_VEC + rng.normal(0.0, 0.035, 3), 0.02, None)),
        "h_scale": float(rng.uniform(0.8, 1.2)),
        "e_scale": float(rng.uniform(0.75, 1.25)),
        "bg_od": np.clip(np.array([0.035, 0.045, 0.03]) + rng.normal(0.0, 0.008, 3), 0.005, None),
    }


def _section_stain(rng: np.random.Generator, patient: dict) -> dict:
    out = dict(patient)
    out["h_scale"] = float(patient["h_scale"] * rng.uniform(0.95, 1.05))
    out["e_scale"] = float(patient["e_scale"] * rng.uniform(0.95, 1.05))
    return out
