"""``gd.pp.spot_grid``: lay a tissue-masked spot grid over an H&E-only image so a model can predict on it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._keys import Keys
from .._logging import logger
from .._validators import assert_in_range, assert_key_in_sdata, assert_one_of

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["spot_grid", "tissue_mask"]


def tissue_mask(thumb: np.ndarray) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail: Otsu threshold on saturation, cleaned by morphology."""
    from scipy import ndimage as ndi
    from skimage.color import rgb2hsv
    from skimage.filters import gaussian, threshold_otsu
    from skimage.morphology import disk

    sat = gaussian(rgb2hsv(thumb[..., :3])[..., 1], sigma=2)
    if np.ptp(sat) < 1e-3:
        return np.zeros(sat.shape, dtype=bool)
    mask = sat > max(threshold_otsu(sat), 0.05)
    mask = ndi.binary_opening(ndi.binary_closing(mask, structure=disk(3)), structure=disk(2))
    labels, n = ndi.label(mask)
    if n:
        sizes = np.bincount(labels.ravel())
        small = sizes < max(16, mask.size // 2000)
        small[0] = True
        mask = ~small[labels]
    return mask


def spot_grid(
    sdata: SpatialData,
    *,
    image_key: str,
    pitch_um: float | None = None,
    diameter_um: float | None = None,
    model=None,
    grid: str | None = None,
    min_tissue_fraction: float = 0.5,
    patient: str | None = None,
    new_shapes_key: str | None = None,
    new_table_key: str | None = None,
) -> None:
    """Lay a tissue-masked grid of spots over an H&E image that has no spots, for `gd.tl.predict`.

    The section name is ``image_key`` without its ``"_hne"`` suffix; the image needs a transformation to the
    section's micrometre coordinate system ``f"{section}_um"`` (the pixel size). Pitch and diameter default to the
    model's training geometry, else legacy ST (200 µm / 100 µm).

    Writes ``shapes[new_shapes_key]`` (default ``f"{section}_spots"``: circles, radius in full-resolution pixels,
    the image's transformations) and ``tables[new_table_key]`` (default ``"table"`` when free, else
    ``f"{section}_table"``): an empty table (no genes) annotating the new shapes, with ``obs`` ``section``,
    ``patient``, ``array_row``, ``array_col`` and the region/instance keys, and ``obsm["spatial"]``.

    Parameters
    ----------
    sdata
        SpatialData holding the image.
    image_key
        H&E image element.
    pitch_um, diameter_um
        Centre-to-centre distance and spot diameter in µm.
    model
        A trained `GeneDML`; supplies the default geometry.
    grid
        ``"st"`` (square) or ``"hex"`` (Visium: odd rows offset by half a pitch, columns numbered in steps of 2), or
        ``"bins"``: Visium-HD-like square bins of side ``pitch_um`` (``diameter_um`` defaults to the pitch), recorded
        as a bin lattice (``bin_size_um``, ``spot_shape="square"``) so that neighbour tiles are the neighbouring
        bins' own windows (about one encoder pass per bin at any pixel size). ``None``: ``"bins"`` for a model
        trained on bins, else ``"st"``.
    min_tissue_fraction
        Keep a spot when at least this fraction of its disc is tissue.
    patient
        ``obs["patient"]`` label; default: the one `gd.io.read_slide` recorded for the section, else ``"unknown"``.
    new_shapes_key, new_table_key
        Output element names.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> hne = gd.io.he_only(sdata, section="S1")
    >>> gd.pp.spot_grid(hne, image_key="S1_hne")
    >>> hne["table"].n_vars
    0
    """
    assert_key_in_sdata(sdata, image_key, attr="images", name="image_key")
    if grid is None:
        grid = "bins" if ((getattr(model, "geometry_", None) or {}).get("spot_shape") == "square") else "st"
    assert_one_of(grid, ("st", "hex", "bins"), name="grid")
    assert_in_range(min_tissue_fraction, name="min_tissue_fraction", low=0.0, high=1.0)
    section = image_key[: -len(Keys.image_suffix)] if image_key.endswith(Keys.image_suffix) else image_key
    bin_side = grid == "bins" and diameter_um is None  # a bin's side is the pitch
    pitch_um, diameter_um = _geometry(model, pitch_um, diameter_um)
    if bin_side:
        diameter_um = pitch_um
    if grid == "bins" and abs(diameter_um - pitch_um) > 1e-6 * pitch_um:
        raise ValueError(
            f"`grid`='bins' lays square bins of side `pitch_um`={pitch_um:g}: `diameter_um`={diameter_um:g} must "
            "equal it (or be left out)."
        )
    if patient is None:
        slide = getattr(sdata, "attrs", {}).get(Keys.uns, {}).get("slides", {}).get(section, {})
        patient = str(slide.get("patient", "unknown"))
    shapes_key = Keys.spots(section) if new_shapes_key is None else new_shapes_key
    table_key = new_table_key or (Keys.table if Keys.table not in sdata.tables else f"{section}_table")
    if shapes_key in sdata.shapes:
        raise ValueError(f"`new_shapes_key`={shapes_key!r} exists already in `sdata.shapes`; choose another key.")
    if table_key in sdata.tables:
        raise ValueError(f"`new_table_key`={table_key!r} exists already in `sdata.tables`; choose another key.")
    el = sdata.images[image_key]
    mpp = _pixel_size(el, section)
    from ..io import section_thumbnail

    thumb, thumb_scale = section_thumbnail(sdata, section, max_px=1500)
    mask = tissue_mask(thumb)
    xy, rc = _lattice(thumb.shape[:2], thumb_scale, pitch_um / mpp, grid)
    radius_px = 0.5 * diameter_um / mpp
    keep = _tissue_fraction(mask, xy / thumb_scale, radius_px / thumb_scale) >= min_tissue_fraction
    xy, rc = xy[keep], rc[keep]
    if not len(xy):
        raise ValueError(f"`image_key`={image_key!r}: no tissue found under any grid spot (min_tissue_fraction).")
    logger.info("spot_grid: %d spots on tissue over %s (pitch %.0f µm)", len(xy), image_key, pitch_um)
    _write(sdata, section, patient, xy, rc, radius_px, mpp, shapes_key, table_key, pitch_um, diameter_um, grid)


def _geometry(model, pitch_um, diameter_um) -> tuple[float, float]:
    if model is not None and not hasattr(model, "geometry_"):
        raise TypeError(f"`model` must be a trained genedml model (e.g. GeneDML), got {type(model).__name__}.")
    geo = (model.geometry_ if model is not None else None) or {}
    pitch = pitch_um if pitch_um is not None else (geo.get("pitch_um") or 200.0)
    diam = diameter_um if diameter_um is not None else (geo.get("spot_diameter_um") or 100.0)
    assert_in_range(pitch, name="pitch_um", low=0, inclusive=False)
    assert_in_range(diam, name="diameter_um", low=0, inclusive=False)
    return float(pitch), float(diam)


def _pixel_size(el, section: str) -> float:
    from spatialdata.transformations import get_transformation

    from .._data_model import scale_of

    tfs = get_transformation(el, get_all=True)
    if Keys.um(section) not in tfs:
        raise ValueError(
            f"image of section {section!r} has no transformation to {Keys.um(section)!r}: the pixel size is unknown. "
            f"Set it with set_transformation(image, Scale([mpp, mpp], axes=('y', 'x')), {Keys.um(section)!r})."
        )
    to_px = scale_of(el, section, name="image") if section in tfs else 1.0
    return scale_of(el, Keys.um(section), name="image") / to_px


def _lattice(shape_hw, thumb_scale: float, pitch_px: float, grid: str) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape_hw[0] * thumb_scale, shape_hw[1] * thumb_scale
    dy = pitch_px * (np.sqrt(3) / 2 if grid == "hex" else 1.0)
    rows = np.arange(int(h // dy) + 1)
    xs, ys, rr, cc = [], [], [], []
    for r in rows:
        off = 0.5 * pitch_px if (grid == "hex" and r % 2) else 0.0
        cols = np.arange(int((w - off) // pitch_px) + 1)
        xs.append(pitch_px / 2 + off + cols * pitch_px)
        ys.append(np.full(len(cols), dy / 2 + r * dy))
        rr.append(np.full(len(cols), r))
        cc.append(cols * 2 + (r % 2) if grid == "hex" else cols)
    xy = np.column_stack([np.concatenate(xs), np.concatenate(ys)])
    rc = np.column_stack([np.concatenate(rr), np.concatenate(cc)]).astype(np.int64)
    inside = (xy[:, 0] < w) & (xy[:, 1] < h)
    return xy[inside], rc[inside]


def _tissue_fraction(mask: np.ndarray, centers: np.ndarray, radius: float) -> np.ndarray:
    r = max(1, int(np.ceil(radius)))
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    disc = (ox**2 + oy**2) <= max(radius, 0.5) ** 2
    oy, ox = oy[disc], ox[disc]
    cy = np.clip(np.round(centers[:, 1])[:, None].astype(int) + oy[None], 0, mask.shape[0] - 1)
    cx = np.clip(np.round(centers[:, 0])[:, None].astype(int) + ox[None], 0, mask.shape[1] - 1)
    return mask[cy, cx].mean(axis=1)


def _write(sdata, section, patient, xy, rc, radius_px, mpp, shapes_key, table_key, pitch_um, diameter_um, grid):
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp
    from spatialdata.models import ShapesModel, TableModel

    n = len(xy)
    from .._data_model import section_transforms

    shapes = ShapesModel.parse(
        xy.astype(np.float64),
        geometry=0,
        radius=np.full(n, radius_px),
        index=pd.RangeIndex(n, name=Keys.instance),
        transformations=section_transforms(section, mpp),  # spots live in the full-resolution pixel frame
    )
    barcodes = [f"{r}x{c}" for r, c in rc]
    obs = pd.DataFrame(
        {
            Keys.section: pd.Categorical([section] * n),
            Keys.patient: pd.Categorical([patient] * n),
            Keys.array_row: rc[:, 0],
            Keys.array_col: rc[:, 1],
            Keys.barcode: barcodes,
            Keys.region: pd.Categorical([shapes_key] * n),
            Keys.instance: np.arange(n),
        },
        index=[f"{section}_{b}" for b in barcodes],
    )
    adata = ad.AnnData(X=sp.csr_matrix((n, 0), dtype=np.float32), obs=obs)
    adata.obsm[Keys.spatial] = xy.astype(np.float64)
    meta = {
        "patient": patient,
        "technology": "spot_grid",
        "grid": grid,
        "spot_diameter_um": diameter_um,
        "pitch_um": pitch_um,
    }
    if grid == "bins":  # the bin lattice of features._bins: neighbour tiles are neighbouring bins' windows
        meta |= {"bin_size_um": pitch_um, "spot_shape": "square"}
    adata.uns[Keys.uns] = {"sections": {section: meta}}
    sdata.shapes[shapes_key] = shapes
    sdata.tables[table_key] = TableModel.parse(
        adata, region=shapes_key, region_key=Keys.region, instance_key=Keys.instance
    )
