"""Reader for one HEST-1k sample (``.h5ad`` + pyramidal ``.tif`` + metadata ``.json``), and lazy TIFF pyramids.

The TIFF helpers here are shared with :func:`genedml.io.read_st`: every level of a (pyramidal) TIFF becomes a dask
array whose chunks are read on demand through tifffile's zarr interface (``aszarr``), so a whole slide is never
decoded unless asked for.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genedml._keys import Keys
from genedml._logging import logger

from ._model import SectionData, _transforms, build_sdata, get_table, validate

if TYPE_CHECKING:
    import anndata as ad
    import dask.array as da
    from spatialdata import SpatialData
    from xarray import DataTree

__all__ = ["read_hest"]

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_TARGET_CHUNK = 4096  # pixels per side of a dask chunk (rounded to whole TIFF tiles)
_TECHNOLOGY = {"visium": "visium", "visium hd": "visium_hd", "spatial transcriptomics": "st", "xenium": "xenium"}


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
    tree = tiff_pyramid(files["image"], levels, _transforms(name, mpp))
    _check_inside(adata.obsm["spatial"], levels[0].height, levels[0].width, files)
    sec = SectionData(
        name=name,
        patient=donor,
        image=tree,
        pixel_size=mpp,
        xy=np.asarray(adata.obsm["spatial"], dtype=np.float64),
        array_row=adata.obs["array_row"].to_numpy(),
        array_col=adata.obs["array_col"].to_numpy(),
        counts=adata.X,
        genes=list(adata.var_names),
        barcodes=list(adata.obs_names),
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


def integer_counts(X: Any, *, name: str, where: str):
    """Raw counts as ``int32`` CSR; ``ValueError`` naming ``name`` when negative, non-integer, non-finite or > int32."""
    import scipy.sparse as sp

    X = sp.csr_matrix(X)
    data = X.data
    if data.size and not np.issubdtype(data.dtype, np.integer):
        if not np.isfinite(data).all():
            raise ValueError(f"`{name}`: counts in {where!r} hold NaN or infinite values; raw integer counts expected.")
        if not np.array_equal(data, np.round(data)):
            raise ValueError(f"`{name}`: counts in {where!r} are not integers; raw (unnormalised) counts expected.")
    if data.size and data.min() < 0:
        raise ValueError(f"`{name}`: counts in {where!r} hold negative values; raw counts must be ≥ 0.")
    top = np.iinfo(np.int32).max
    if data.size and data.max() > top:
        peak = data.max().item()
        shown = str(int(peak)) if float(peak).is_integer() else repr(peak)
        raise ValueError(
            f"`{name}`: counts in {where!r} reach {shown}, beyond the int32 range the table stores (≤ {top}); "
            "raw per-spot counts are expected."
        )
    return X.astype(np.int32)


def _check_inside(xy: np.ndarray, h: int, w: int, files: dict[str, Path]) -> None:
    xy = np.asarray(xy, dtype=np.float64)
    bad = (xy[:, 0] < 0) | (xy[:, 1] < 0) | (xy[:, 0] >= w) | (xy[:, 1] >= h)
    if bad.any():
        raise ValueError(
            f"`h5ad`: {int(bad.sum())} spot centre(s) of {str(files['h5ad'])!r} lie outside the {w}×{h} px image "
            f"{str(files['image'])!r} (first: {xy[bad][0].tolist()}); obsm['spatial'] must be full-resolution "
            "pixels (x, y)."
        )
