"""``gd.datasets.synthetic``: a deterministic, offline, H&E-like spatial transcriptomics dataset with known truth."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .._keys import Keys
from .._logging import logger
from .._validators import assert_in_range, assert_one_of, assert_positive_int
from ..io import SectionData, build_sdata
from . import _noise as nz
from ._expression import COVARIATES, N_LATENT, GeneDesign, design_genes, sample_counts
from ._layout import REGIONS, Layout, make_layout, smooth_field
from ._render import lazy_image, render_window
from ._spots import GRIDS, Grid, SpotMeasures, grid_positions, hd_grid, measure_spots

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["synthetic", "toy"]

PRESETS = {
    "tiny": {"n_sections": 2, "n_patients": 2, "n_genes": 50, "spots_per_side": 9, "pixel_size": 2.0, "lazy": False},
    "small": {"n_sections": 4, "n_patients": 2, "n_genes": 250, "spots_per_side": 16, "pixel_size": 1.0, "lazy": False},
    "large": {"n_sections": 2, "n_patients": 2, "n_genes": 250, "spots_per_side": 185, "pixel_size": 1.0, "lazy": True},
    "visium_hd": {
        "n_sections": 2, "n_patients": 2, "n_genes": 50, "spots_per_side": 5, "pixel_size": 0.5, "lazy": True,
        "grid": "visium_hd",
    },
}  # fmt: skip
"""Preset sizes. ``spots_per_side`` counts legacy-ST positions; Visium grids cover the same area (``"visium_hd"``:
800 µm, i.e. 101 bins of 8 µm per side). ``grid`` defaults to ``"st"``."""

BIN_UM = 8.0
"""Default Visium HD bin side (µm) of ``grid="visium_hd"``."""
BIN_UM_RANGE = (2.0, 16.0)

OBS_REGION = "tissue_region"
OBS_TISSUE_FRACTION = "tissue_fraction"
OBSM_LOGMU = "synthetic_logmu"
OBSM_LATENT = "synthetic_latent"
VAR_ROLE = "synthetic_role"
UNS_KEY = "synthetic"
_BLOCK = 1024
_MIN_TISSUE = 0.5
_MAX_EAGER_PX = 250_000_000


def fraction_key(region: str) -> str:
    """``obs`` column holding the area fraction of ``region`` within the tissue under each spot."""
    return f"{region}_fraction"


@dataclass
class _Config:
    preset: str
    n_sections: int
    n_patients: int
    n_genes: int
    grid: str
    spots_per_side: int
    pixel_size: float
    seed: int
    lazy: bool
    bin_um: float | None = field(default=None, repr=False)  # Visium HD bin side (µm); None for the other grids
    section_effect: float = field(default=0.0, repr=False)  # s.d. of the per-section, per-gene log-mean shift
    section_stain: float = field(default=0.0, repr=False)  # s.d. of the per-section log stain intensity factor

    @property
    def spot_grid(self) -> Grid:
        """The grid's geometry (Visium HD: with this bin size)."""
        return hd_grid(self.bin_um) if self.grid == "visium_hd" else GRIDS[self.grid]


def synthetic(
    *,
    preset: str = "small",
    n_sections: int | None = None,
    n_patients: int | None = None,
    n_genes: int | None = None,
    grid: str | None = None,
    spots_per_side: int | None = None,
    pixel_size: float | None = None,
    seed: int = 0,
    lazy: bool | None = None,
    bin_um: float | None = None,
    section_effect: float = 0.0,
    section_stain: float = 0.0,
) -> SpatialData:
    """Synthetic H&E sections with spot counts generated from the tissue they show.

    Each section is drawn as a low-resolution layout (tissue outline; tumour nests, stroma, lymphoid aggregates
    and fat; nuclei density; stain intensity; out-of-focus patches), measured under every spot, and rendered to an
    RGB ``uint8`` H&E-like image: pink fibrous stroma with elongated nuclei, purple tumour nests of large
    pleomorphic nuclei, dense small dark lymphocytes, white adipocytes with thin pink membranes, a near-white
    background. Serial sections of a patient share their large-scale layout; each patient has its own stain
    vectors and intensities (a stain batch effect). Counts are negative binomial with a log-mean built from the
    region fractions, nuclei density and stain under the spot, a low-rank latent factor (gene–gene covariance) and
    library-size noise; some genes are strongly morphology-driven, some weakly, some not at all.

    The same arguments give an identical object (image bytes and counts). The image is a pure function of pixel
    position, so the lazy image (a dask array rendered block by block on demand) equals the eager one.

    Parameters
    ----------
    preset
        ``"tiny"`` (unit tests: 2 sections of ~50 spots, 950 px images, 50 genes), ``"small"`` (the demo: 4
        sections, 2 patients, ~160 spots each, 250 genes, 1 µm/px) or ``"large"`` (scale tests: ~50,000 spots on
        two 37,000 px sections, rendered lazily), ``"visium_hd"`` (Visium HD bins: 2 sections of 800 µm × 800 µm,
        101 × 101 positions of 8 µm bins, 50 genes, 0.5 µm/px, rendered lazily). Explicit arguments below override
        it.
    n_sections, n_patients
        Number of sections, split into contiguous runs of consecutive sections per patient.
    n_genes
        Number of genes: named markers first (``ERBB2``, ``CD74``, ``COL1A1``, ``ADIPOQ`` …), then
        ``GENE_0001`` ….
    grid
        ``"st"``: legacy ST, 100 µm spots on a 200 µm square lattice; ``"visium"``: 55 µm spots, 100 µm apart on a
        hexagonal lattice (odd rows shifted by half a pitch, ``array_col`` stepping by 2); ``"visium_hd"``: square
        bins of ``bin_um`` tiling a square lattice (``array_row``/``array_col`` = the bin's lattice indices, pitch
        = side; each bin's shape is the circle inscribed in it, and ``uns["genedml"]["sections"][s]`` records
        ``bin_size_um`` and ``spot_shape="square"``, as :func:`genedml.io.read_visium_hd` does). ``None``: the
        preset's grid (``"st"`` but for ``"visium_hd"``).
    spots_per_side
        Grid positions per row (only those on tissue are kept; bins per side for ``"visium_hd"``). By default the
        preset's ST extent. The generated objects grow with it (counts and truth are spots × genes), the images
        do not: a lazy image renders only the blocks that are read.
    pixel_size
        Micrometres per pixel.
    seed
        Random seed; everything derives from it.
    lazy
        Render the image on demand (dask) instead of now; default from the preset.
    bin_um
        Bin side in µm for ``grid="visium_hd"``, 2–16 (default 8); an error for the other grids.
    section_effect
        Standard deviation (natural-log units, 0–3) of a per-section, per-gene shift of the log-mean: section ``s``
        adds ``δ[s, g] ~ N(0, section_effect²)`` to gene ``g`` at every one of its spots — the section-to-section
        variation of real data (tissue handling, fixation, permeabilisation, RNA quality), which no image feature
        predicts on a new section. It is not part of ``obsm["synthetic_logmu"]`` (not image-predictable); the
        shifts are stored in ``uns["genedml"]["synthetic"]["section_effect"]`` (sections × genes). ``0``: none,
        and the object is identical to one made without the argument.
    section_stain
        Standard deviation (natural-log units, 0–1) of a per-section factor on the haematoxylin and the eosin
        intensity (``exp(N(0, section_stain²))`` each, on top of the patient's stain batch and the ±5 % every
        section has anyway): each slide stained on its own, so its colour identifies it. It changes the image only,
        not the expression or the ``obs`` stain columns (which exclude batch factors). Combined with
        ``section_effect``, a model can learn a training section's expression shift from its stain, which does not
        transfer to a new section (the case where spot-level conformal calibration is optimistic). The factors are
        stored in ``uns["genedml"]["synthetic"]["section_stain"]`` (sections × [H, E]). ``0``: as without it.

    Returns
    -------
    SpatialData in genedml's data model. Besides the standard elements and columns (see
    :func:`genedml.io.build_sdata`), the table holds the truth:

    - ``obs["tissue_region"]``: dominant region under the spot (categorical: tumour, stroma, immune, fat);
    - ``obs[f"{region}_fraction"]``: area share of each region in the tissue under the spot;
      ``obs["tissue_fraction"]``: tissue coverage of the spot;
    - ``obs["nuclei_density"]`` (nuclei per 1000 µm²), ``obs["hematoxylin"]``, ``obs["eosin"]``: expected stain
      concentrations under the spot (section stain variation included, patient batch factor excluded);
    - ``obsm["synthetic_logmu"]``: noise-free, image-predictable log-mean per spot and gene;
      ``obsm["synthetic_latent"]``: the latent factors (not visible in the image);
    - ``var["synthetic_role"]``: region marker, ``proliferation``, ``housekeeping``, ``strong``, ``weak`` or ``noise``;
    - ``uns["genedml"]["synthetic"]``: the generating parameters (regions, per-gene baseline, region effects,
      covariate coefficients with their standardisation, NB size, latent loadings, seed, preset, formula; the
      section shifts and stain factors when ``section_effect`` / ``section_stain`` are on).

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny", seed=1)
    >>> gd.io.sections(sdata)
    ['S1', 'S2']

    Visium HD bins of 16 µm, small enough for a test:

    >>> hd = gd.datasets.synthetic(preset="visium_hd", bin_um=16, spots_per_side=12, n_sections=1, n_patients=1)
    >>> table = hd.tables["table"]
    >>> table.uns["genedml"]["sections"]["S1"]["bin_size_um"], int(table.obs["array_col"].max())
    (16.0, 11)

    Serial sections that differ by more than their layout (a shift per section and gene, and per-section staining):

    >>> sd = gd.datasets.synthetic(preset="tiny", n_sections=3, section_effect=0.5, section_stain=0.1)
    >>> sd.tables["table"].uns["genedml"]["synthetic"]["section_effect"].shape
    (3, 50)
    """
    cfg = _resolve(preset, n_sections, n_patients, n_genes, grid, spots_per_side, pixel_size, seed, lazy, bin_um)
    cfg.section_effect = _check_sd(section_effect, "section_effect", 3.0)
    cfg.section_stain = _check_sd(section_stain, "section_stain", 1.0)
    design = design_genes(cfg.n_genes, np.random.default_rng([cfg.seed, 1]))
    layouts, spots = _sections(cfg)
    sdata = _assemble(cfg, design, layouts, spots)
    n = sdata.tables[Keys.table].n_obs
    logger.info(f"synthetic: {cfg.n_sections} section(s), {n} spots, {cfg.n_genes} genes (preset {cfg.preset!r}).")
    return sdata


def toy(*, seed: int = 0) -> SpatialData:
    """The tiny synthetic dataset, ``synthetic(preset="tiny")``: for examples and fast tests.

    Parameters
    ----------
    seed
        Random seed.

    Returns
    -------
    See :func:`synthetic`.

    Examples
    --------
    >>> import genedml as gd
    >>> gd.datasets.toy().tables["table"].n_vars
    50
    """
    return synthetic(preset="tiny", seed=seed)


# ------------------------------------------------------------------------------------------------ configuration


def _resolve(
    preset, n_sections, n_patients, n_genes, grid, spots_per_side, pixel_size, seed, lazy, bin_um=None
) -> _Config:
    assert_one_of(preset, PRESETS, name="preset")
    p = PRESETS[preset]
    grid = p.get("grid", "st") if grid is None else grid
    assert_one_of(grid, GRIDS, name="grid")
    if grid == "visium_hd":
        bin_um = BIN_UM if bin_um is None else bin_um
        assert_in_range(bin_um, name="bin_um", low=BIN_UM_RANGE[0], high=BIN_UM_RANGE[1])
        bin_um = float(bin_um)
    elif bin_um is not None:
        raise ValueError(f"`bin_um` applies to grid='visium_hd' only, got grid={grid!r}.")
    pitch = hd_grid(bin_um).pitch_um if grid == "visium_hd" else GRIDS[grid].pitch_um
    n_sections = p["n_sections"] if n_sections is None else n_sections
    n_patients = p["n_patients"] if n_patients is None else n_patients
    n_genes = p["n_genes"] if n_genes is None else n_genes
    for value, name in ((n_sections, "n_sections"), (n_patients, "n_patients"), (n_genes, "n_genes")):
        assert_positive_int(value, name=name)
    if n_patients > n_sections:
        raise ValueError(f"`n_patients` ({n_patients}) cannot exceed `n_sections` ({n_sections}).")
    if spots_per_side is None:
        st = p["spots_per_side"]
        spots_per_side = st if grid == "st" else int(round((st - 1) * GRIDS["st"].pitch_um / pitch)) + 1
    assert_positive_int(spots_per_side, name="spots_per_side")
    if spots_per_side < 3:
        raise ValueError(f"`spots_per_side` must be at least 3, got {spots_per_side}.")
    pixel_size = p["pixel_size"] if pixel_size is None else pixel_size
    assert_in_range(pixel_size, name="pixel_size", low=0.1, high=20.0)
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer, got {seed!r}.")
    lazy = p["lazy"] if lazy is None else lazy
    if not isinstance(lazy, bool):
        raise ValueError(f"`lazy` must be True, False or None (preset default), got {lazy!r}.")
    return _Config(
        preset,
        int(n_sections),
        int(n_patients),
        int(n_genes),
        grid,
        int(spots_per_side),
        float(pixel_size),
        int(seed),
        lazy,
        bin_um,
    )


def _check_sd(value, name: str, high: float) -> float:
    assert_in_range(value, name=name, low=0.0, high=high)
    return float(value)


# ------------------------------------------------------------------------------------------------ sections


@dataclass
class _Spots:
    row: np.ndarray
    col: np.ndarray
    xy: np.ndarray  # (n, 2) pixels
    measures: SpotMeasures


def _sections(cfg: _Config) -> tuple[list[Layout], list[_Spots]]:
    grid = cfg.spot_grid
    margin = 0.75 * grid.pitch_um
    row, col, y_um, x_um, extent = grid_positions(grid, cfg.spots_per_side, margin)
    shape = (
        int(np.ceil((extent[0][1] + margin) / cfg.pixel_size)),
        int(np.ceil((extent[1][1] + margin) / cfg.pixel_size)),
    )
    if not cfg.lazy and shape[0] * shape[1] > _MAX_EAGER_PX:
        raise ValueError(
            f"the image of one section would have {shape[0] * shape[1]:,} px: too large to render now; "
            "pass `lazy=True`."
        )
    layouts, spots = [], []
    for s in range(cfg.n_sections):
        p = s * cfg.n_patients // cfg.n_sections
        layout = make_layout(
            name=f"S{s + 1}",
            patient=f"P{p + 1}",
            shape=shape,
            pixel_size=cfg.pixel_size,
            grid_um=extent,
            patient_rng=np.random.default_rng([cfg.seed, 2, p]),
            section_rng=np.random.default_rng([cfg.seed, 3, s]),
            key=nz.stream_key(cfg.seed, "section", s),
        )
        if cfg.section_stain > 0:  # its own stream, so the other draws (and the default output) stay as they are
            factor = np.exp(np.random.default_rng([cfg.seed, 6, s]).normal(0.0, cfg.section_stain, 2))
            h, e = layout.stain["h_scale"] * float(factor[0]), layout.stain["e_scale"] * float(factor[1])
            layout.stain = {**layout.stain, "h_scale": h, "e_scale": e, "section_factor": factor}
        radius = 0.5 * grid.spot_diameter_um / cfg.pixel_size
        m = measure_spots(layout, y_um / cfg.pixel_size, x_um / cfg.pixel_size, radius, square=grid.square)
        keep = m.tissue_fraction >= _MIN_TISSUE
        if not keep.any():
            raise ValueError(f"section {layout.name!r} has no spot on tissue: increase `spots_per_side`.")
        m = type(m)(m.tissue_fraction[keep], m.fractions[keep], m.covariates[keep])
        xy = np.column_stack([x_um[keep], y_um[keep]]) / cfg.pixel_size
        layouts.append(layout)
        spots.append(_Spots(row[keep], col[keep], xy, m))
    return layouts, spots


def _images(cfg: _Config, layouts: list[Layout]) -> list:
    ident = repr(cfg) if cfg.bin_um is None else f"{cfg!r}, bin_um={cfg.bin_um!r}"
    if cfg.section_stain > 0:
        ident += f", section_stain={cfg.section_stain!r}"
    token = f"{nz.stream_key(ident, _BLOCK):016x}"  # distinct dask keys for distinct images
    if cfg.lazy:
        return [lazy_image(lay, block=_BLOCK, token=token) for lay in layouts]
    images = [np.empty((3, *lay.shape), dtype=np.uint8) for lay in layouts]
    jobs = []
    for img, lay in zip(images, layouts):
        h, w = lay.shape
        jobs += [
            (img, lay, y, x, min(_BLOCK, h - y), min(_BLOCK, w - x))
            for y in range(0, h, _BLOCK)
            for x in range(0, w, _BLOCK)
        ]

    def run(job):
        img, lay, y, x, bh, bw = job
        img[:, y : y + bh, x : x + bw] = render_window(lay, y, x, bh, bw)

    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        list(pool.map(run, jobs))
    return images


# ------------------------------------------------------------------------------------------------ expression


def _latent(cfg: _Config, layout: Layout, xy: np.ndarray, s: int) -> np.ndarray:
    """Per-spot latent factors: half spatially smooth (σ ≈ 300 µm), half independent, unit variance."""
    rng = np.random.default_rng([cfg.seed, 4, s])
    lat_shape = layout.fields["tissue"].shape
    sigma = 300.0 / (layout.spacing * layout.pixel_size)
    iy, ty = nz.axis_weights(xy[:, 1], layout.spacing, lat_shape[0])
    ix, tx = nz.axis_weights(xy[:, 0], layout.spacing, lat_shape[1])
    fields = [smooth_field(rng, lat_shape, sigma) for _ in range(N_LATENT)]
    smooth = np.stack([nz.interp_points(f, iy, ty, ix, tx) for f in fields], axis=1)
    return (np.sqrt(0.5) * smooth + np.sqrt(0.5) * rng.standard_normal(smooth.shape)).astype(np.float32)


def _expression(cfg: _Config, design: GeneDesign, layouts: list[Layout], spots: list[_Spots]):
    cov = np.concatenate([sp.measures.covariates for sp in spots])
    center, scale = cov.mean(axis=0), np.maximum(cov.std(axis=0), 1e-6)
    out = []
    for s, (lay, sp) in enumerate(zip(layouts, spots)):
        z = (sp.measures.covariates - center) / scale
        logmu = design.logmu(sp.measures.fractions, z)
        latent = _latent(cfg, lay, sp.xy, s)
        rng = np.random.default_rng([cfg.seed, 5, s])
        library = rng.normal(0.0, 0.3) + rng.normal(0.0, 0.2, len(z)) + np.log(sp.measures.tissue_fraction)
        full = latent @ design.loadings.T.astype(np.float32)
        full += logmu
        full += library.astype(np.float32)[:, None]
        if cfg.section_effect > 0:
            full += _section_shift(cfg, s, design)[None, :]
        out.append((sample_counts(full, design.size, rng), logmu, latent))
    return out, center, scale


def _section_shift(cfg: _Config, s: int, design: GeneDesign) -> np.ndarray:
    """Section ``s``'s log-mean shift per gene, ``N(0, section_effect²)`` from its own stream (float32)."""
    rng = np.random.default_rng([cfg.seed, 7, s])
    return rng.normal(0.0, cfg.section_effect, len(design.names)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ assembly


def _extra_obs(sp: _Spots) -> dict[str, np.ndarray]:
    import pandas as pd

    m = sp.measures
    obs = {OBS_REGION: pd.Categorical.from_codes(m.dominant(), categories=list(REGIONS))}
    obs |= {fraction_key(r): m.fractions[:, i].astype(np.float32) for i, r in enumerate(REGIONS)}
    obs[OBS_TISSUE_FRACTION] = m.tissue_fraction.astype(np.float32)
    obs |= {c: m.covariates[:, i].astype(np.float32) for i, c in enumerate(COVARIATES)}
    return obs


def _assemble(cfg: _Config, design: GeneDesign, layouts: list[Layout], spots: list[_Spots]) -> SpatialData:
    grid = cfg.spot_grid
    expr, center, scale = _expression(cfg, design, layouts, spots)
    images = _images(cfg, layouts)
    secs = [
        SectionData(
            name=lay.name,
            patient=lay.patient,
            image=img,
            pixel_size=cfg.pixel_size,
            xy=sp.xy,
            array_row=sp.row,
            array_col=sp.col,
            counts=counts,
            genes=design.names,
            barcodes=_barcodes(cfg, sp),
            spot_diameter_um=grid.spot_diameter_um,
            pitch_um=grid.pitch_um,
            technology=grid.technology,
            extra_obs=_extra_obs(sp),
        )
        for lay, sp, img, (counts, _, _) in zip(layouts, spots, images, expr)
    ]
    sdata = build_sdata(secs, image_chunks=_BLOCK if cfg.lazy else 4096)
    table = sdata.tables[Keys.table]
    table.obsm[OBSM_LOGMU] = np.concatenate([e[1] for e in expr])
    table.obsm[OBSM_LATENT] = np.concatenate([e[2] for e in expr])
    table.var[VAR_ROLE] = design.role
    table.uns[Keys.uns][UNS_KEY] = _truth(cfg, design, center, scale)
    _section_truth(cfg, design, layouts, table.uns[Keys.uns][UNS_KEY])
    if grid.square:
        for lay in layouts:
            table.uns[Keys.uns]["sections"][lay.name].update(bin_size_um=grid.pitch_um, spot_shape="square")
    return sdata


def _section_truth(cfg: _Config, design: GeneDesign, layouts: list[Layout], truth: dict) -> None:
    """Record the section effects that are on (none by default, so the default object is unchanged)."""
    if cfg.section_effect > 0:
        truth["section_effect_sd"] = cfg.section_effect
        truth["section_effect"] = np.stack([_section_shift(cfg, s, design) for s in range(cfg.n_sections)])
        truth["formula"] = truth["formula"].replace(" + log library", " + section_effect[section] + log library")
    if cfg.section_stain > 0:
        truth["section_stain_sd"] = cfg.section_stain
        truth["section_stain"] = np.stack([lay.stain["section_factor"] for lay in layouts]).astype(np.float32)


def _barcodes(cfg: _Config, sp: _Spots) -> list[str]:
    """``"{col}x{row}"`` (legacy ST style), or Space Ranger's ``"s_008um_00012_00034-1"`` for Visium HD bins."""
    if cfg.bin_um is None:
        return [f"{c}x{r}" for r, c in zip(sp.row, sp.col)]
    size = f"{int(cfg.bin_um):03d}" if float(cfg.bin_um).is_integer() else f"{cfg.bin_um:g}"
    return [f"s_{size}um_{r:05d}_{c:05d}-1" for r, c in zip(sp.row.tolist(), sp.col.tolist())]


def _truth(cfg: _Config, design: GeneDesign, center: np.ndarray, scale: np.ndarray) -> dict:
    return {
        "preset": cfg.preset,
        "seed": cfg.seed,
        "grid": cfg.grid,
        **({} if cfg.bin_um is None else {"bin_um": cfg.bin_um}),
        "pixel_size": cfg.pixel_size,
        "regions": np.array(REGIONS),
        "covariates": np.array(COVARIATES),
        "baseline": design.baseline.astype(np.float32),
        "region_effects": design.region_effect.astype(np.float32),
        "covariate_coef": design.coef.astype(np.float32),
        "covariate_center": center.astype(np.float32),
        "covariate_scale": scale.astype(np.float32),
        "nb_size": design.size.astype(np.float32),
        "latent_loadings": design.loadings.astype(np.float32),
        "formula": (
            "log mu = baseline + fractions @ region_effects.T + ((covariates - covariate_center) / covariate_scale)"
            " @ covariate_coef.T [= obsm['synthetic_logmu']] + obsm['synthetic_latent'] @ latent_loadings.T"
            " + log library; counts ~ NB(mu, size=nb_size)"
        ),
    }
