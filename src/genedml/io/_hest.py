"""Reader for one HEST-1k sample (``.h5ad`` + pyramidal ``.tif`` + metadata ``.json``); the TIFF is read lazily."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genedml._keys import Keys
from genedml._logging import logger

from .._data_model import get_table, section_transforms
from ._model import SectionData, anndata_fields, build_sdata, integer_counts, validate
from ._tiff import tiff_levels, tiff_pyramid

if TYPE_CHECKING:
    import anndata as ad
    from spatialdata import SpatialData

__all__ = ["read_hest"]

_TECHNOLOGY = {"visium": "visium", "visium hd": "visium_hd", "spatial transcriptomics": "st", "xenium": "xenium"}


# --------------------------------------------------------------------------------------------------- read_hest


def read_hest(
    h5ad: str | os.PathLike,
    image: str | os.PathLike,
    metadata: str | os.PathLike,
    *,
    section: str | None = None,
    patient: str | None = None,
) -> SpatialData:
    """Read one HEST-1k sample into genedml's data model.

    HEST-1k ships each sample as three files: ``st/<id>.h5ad`` (raw counts; ``obsm["spatial"]`` = spot centres
    ``(x, y)`` in full-resolution pixels of the WSI; ``obs["array_row"]``, ``obs["array_col"]`` and, when present,
    ``obs["in_tissue"]``), ``wsis/<id>.tif`` (pyramidal TIFF) and ``metadata/<id>.json``.

    Parameters
    ----------
    h5ad
        The sample's ``.h5ad``.
    image
        The sample's (pyramidal) TIFF. Every pyramid level becomes a scale of a multiscale image element; levels
        are read lazily, tile by tile, so the slide is never decoded as a whole.
    metadata
        The sample's metadata ``.json``. Used fields: ``pixel_size_um_estimated`` (µm/px; falls back to
        ``pixel_size_um_embedded``), ``spot_diameter`` and ``inter_spot_dist`` (µm), ``patient``, ``id`` and
        ``st_technology``.
    section
        Section name; default: metadata ``id``, else the ``.h5ad`` file stem.
    patient
        Patient label; default: metadata ``patient``, else the section name (logged).

    Returns
    -------
    One section: image ``f"{section}_hne"`` (multiscale), spots ``f"{section}_spots"`` and the table, with
    ``uns["genedml"]["sections"][section]["pixel_size_source"]`` naming the metadata field used. Only
    ``in_tissue == 1`` spots are kept when that column exists.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.io.read_hest("st/TENX95.h5ad", "wsis/TENX95.tif", "metadata/TENX95.json")  # doctest: +SKIP
    """
    files = {"h5ad": Path(h5ad), "image": Path(image), "metadata": Path(metadata)}
    for arg, p in files.items():
        if not p.is_file():
            raise FileNotFoundError(f"`{arg}`: file {str(p)!r} does not exist.")
    meta = _read_metadata(files["metadata"])
    mpp, source = _hest_pixel_size(meta, files["metadata"])
    name = section or _meta_str(meta, "id") or files["h5ad"].stem
    donor = patient or _meta_str(meta, "patient")
    if donor is None:
        logger.info(f"read_hest: no patient in {str(files['metadata'])!r}; using the section name {name!r}.")
        donor = name
    adata = _read_hest_adata(files["h5ad"])
    levels = tiff_levels(files["image"], where="`image`")
    tree = tiff_pyramid(files["image"], levels, section_transforms(name, mpp))
    _check_inside(adata.obsm["spatial"], levels[0].height, levels[0].width, files)
    sec = SectionData(
        name=name,
        patient=donor,
        image=tree,
        pixel_size=mpp,
        counts=adata.X,
        **anndata_fields(adata),
        spot_diameter_um=_meta_um(meta, "spot_diameter", files["metadata"]),
        pitch_um=_meta_um(meta, "inter_spot_dist", files["metadata"]),
        technology=_technology(meta),
    )
    sdata = build_sdata([sec])
    entry = get_table(sdata).uns[Keys.uns]["sections"][name]
    entry["pixel_size_source"] = source
    entry["reader"] = "read_hest"
    validate(sdata)
    return sdata


def _read_metadata(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"`metadata`: {str(path)!r} is not valid JSON ({e}).") from None
    if not isinstance(meta, dict):
        raise ValueError(f"`metadata`: {str(path)!r} must hold a JSON object, got {type(meta).__name__}.")
    return meta


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) and v > 0


def _hest_pixel_size(meta: dict, path: Path) -> tuple[float, str]:
    for key in ("pixel_size_um_estimated", "pixel_size_um_embedded"):
        if _is_number(meta.get(key)):
            return float(meta[key]), f"hest:{key}"
    raise ValueError(
        f"`metadata`: {str(path)!r} has no positive 'pixel_size_um_estimated' or 'pixel_size_um_embedded' "
        "(micrometres per pixel)."
    )


def _meta_um(meta: dict, key: str, path: Path) -> float:
    if not _is_number(meta.get(key)):
        raise ValueError(f"`metadata`: {str(path)!r} needs a positive number {key!r} (µm), got {meta.get(key)!r}.")
    return float(meta[key])


def _meta_str(meta: dict, key: str) -> str | None:
    v = meta.get(key)
    if v is None or (isinstance(v, float) and not np.isfinite(v)) or str(v).strip() in ("", "nan", "None"):
        return None
    return str(v)


def _technology(meta: dict) -> str:
    tech = str(meta.get("st_technology") or "unknown").strip().lower()
    return _TECHNOLOGY.get(tech, tech.replace(" ", "_"))


def _read_hest_adata(path: Path) -> ad.AnnData:
    import anndata as ad

    try:
        adata = ad.read_h5ad(path)
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"`h5ad`: cannot read {str(path)!r} as AnnData ({type(e).__name__}: {e}).") from None
    missing = [k for k in ("array_row", "array_col") if k not in adata.obs]
    if "spatial" not in adata.obsm or missing:
        raise ValueError(
            f"`h5ad`: {str(path)!r} needs obsm['spatial'] (full-resolution pixel centres) and obs columns "
            f"['array_row', 'array_col']; missing: {missing + ([] if 'spatial' in adata.obsm else ['spatial'])}."
        )
    if "in_tissue" in adata.obs:
        keep = adata.obs["in_tissue"].astype(int).to_numpy() == 1
        logger.info(f"read_hest: keeping {int(keep.sum())} of {adata.n_obs} spots with in_tissue == 1.")
        adata = adata[keep].copy()
    if adata.n_obs == 0:
        raise ValueError(f"`h5ad`: {str(path)!r} has no (in-tissue) spots.")
    xy = np.asarray(adata.obsm["spatial"], dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or not np.isfinite(xy).all():
        raise ValueError(f"`h5ad`: obsm['spatial'] of {str(path)!r} must be finite (n, 2), got shape {xy.shape}.")
    adata.X = integer_counts(adata.X, name="h5ad", where=str(path))
    return adata


def _check_inside(xy: np.ndarray, h: int, w: int, files: dict[str, Path]) -> None:
    xy = np.asarray(xy, dtype=np.float64)
    bad = (xy[:, 0] < 0) | (xy[:, 1] < 0) | (xy[:, 0] >= w) | (xy[:, 1] >= h)
    if bad.any():
        raise ValueError(
            f"`h5ad`: {int(bad.sum())} spot centre(s) of {str(files['h5ad'])!r} lie outside the {w}×{h} px image "
            f"{str(files['image'])!r} (first: {xy[bad][0].tolist()}); obsm['spatial'] must be full-resolution "
            "pixels (x, y)."
        )
