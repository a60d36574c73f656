"""genedml's data model: build it from arrays and check it (the read side is :mod:`genedml._data_model`).

One :class:`~spatialdata.SpatialData` holds one or more tissue sections. Section ``s`` has

* ``images[f"{s}_hne"]``: RGB H&E, ``uint8``, dims ``(c, y, x)``, possibly multiscale and dask-backed;
* ``shapes[f"{s}_spots"]``: circles (``radius`` column) at spot centres, in **full-resolution pixels** of the
  section; index = ``spot_id`` (0..n-1 within the section);
* rows in ``tables["table"]`` annotating the spot elements (``region`` / ``spot_id`` keys), with raw integer counts
  in ``X`` and ``layers["counts"]`` and ``obs`` columns ``section``, ``patient``, ``array_row``, ``array_col``.

Coordinate systems: ``s`` is the section's full-resolution pixel frame (spots: identity; an image stored at a
lower resolution carries a scale up to it) and ``f"{s}_um"`` is micrometres, so pixel size (µm/px) is the scale of
the spots' transformation to ``f"{s}_um"``. Section metadata that is not geometry (technology, spot pitch and
diameter in µm) lives in ``table.uns["genedml"]["sections"][s]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._data_model import (
    finest,
    get_table,
    image_shape,
    pixel_size,
    scale_of,
    section_transforms,
    sections,
    spot_centers,
)
from .._keys import Keys

if TYPE_CHECKING:
    import anndata as ad
    from spatialdata import SpatialData

__all__ = ["SectionData", "ValidationError", "build_sdata", "validate"]


class ValidationError(ValueError):
    """The SpatialData object breaks genedml's data model; the message lists every problem."""


@dataclass
class SectionData:
    """Everything needed to build one section of the data model.

    Parameters
    ----------
    name
        Section name (used in element names and ``obs["section"]``).
    patient
        Patient / donor label (``obs["patient"]``), used for grouped cross-validation.
    image
        RGB image, ``uint8``: a NumPy or dask array shaped ``(y, x, 3)`` or ``(3, y, x)``, or an already parsed
        spatialdata image element (``DataArray``/``DataTree``) whose transformations are kept.
    pixel_size
        Micrometres per full-resolution pixel.
    xy
        Spot centres ``(n, 2)`` as ``(x, y)`` in full-resolution pixels.
    array_row, array_col
        Integer grid position of each spot.
    counts
        ``(n, n_genes)`` raw integer counts (dense or scipy sparse), or ``None`` for an H&E-only section.
    genes
        Gene names of the columns of ``counts``.
    barcodes
        Spot identifiers (unique within the section).
    spot_diameter_um, pitch_um
        Spot diameter and centre-to-centre distance in micrometres.
    technology
        ``"st"`` (legacy ST), ``"visium"`` or ``"synthetic"`` etc.
    image_scale
        Full-resolution pixels per stored image pixel (``1`` when the image is at full resolution).
    """

    name: str
    patient: str
    image: Any
    pixel_size: float
    xy: np.ndarray
    array_row: np.ndarray
    array_col: np.ndarray
    counts: Any
    genes: Sequence[str]
    barcodes: Sequence[str]
    spot_diameter_um: float
    pitch_um: float
    technology: str = "st"
    image_scale: float = 1.0
    extra_obs: dict[str, np.ndarray] = field(default_factory=dict)


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


def anndata_fields(adata: ad.AnnData) -> dict[str, Any]:
    """The :class:`SectionData` fields a reader takes from an AnnData.

    ``xy`` (``obsm["spatial"]``, full-resolution pixels), ``array_row``/``array_col`` (``obs``), ``genes``
    (``var_names``) and ``barcodes`` (``obs_names``).
    """
    return {
        "xy": np.asarray(adata.obsm[Keys.spatial], dtype=np.float64),
        "array_row": adata.obs[Keys.array_row].to_numpy(),
        "array_col": adata.obs[Keys.array_col].to_numpy(),
        "genes": list(adata.var_names),
        "barcodes": list(adata.obs_names),
    }


def _image_element(sec: SectionData, *, chunks: int = 4096):
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import get_transformation, set_transformation

    img = sec.image
    if hasattr(img, "dims") or hasattr(img, "children"):  # already a spatialdata element
        tfs = get_transformation(img, get_all=True)
        if sec.name not in tfs or Keys.um(sec.name) not in tfs:
            set_transformation(img, section_transforms(sec.name, sec.pixel_size, sec.image_scale), set_all=True)
        return img
    if img.ndim != 3 or 3 not in (img.shape[0], img.shape[-1]):
        raise ValueError(f"section {sec.name!r}: `image` must be RGB (y, x, 3) or (3, y, x), got shape {img.shape}.")
    if np.dtype(img.dtype) != np.uint8:
        raise ValueError(f"section {sec.name!r}: `image` must be uint8, got {img.dtype}.")
    if img.shape[-1] == 3 and img.shape[0] != 3:
        img = img.transpose(2, 0, 1)
    return Image2DModel.parse(
        img,
        dims=("c", "y", "x"),
        c_coords=["r", "g", "b"],
        transformations=section_transforms(sec.name, sec.pixel_size, sec.image_scale),
        chunks=(3, chunks, chunks),
    )


def _shapes_element(sec: SectionData):
    from spatialdata.models import ShapesModel

    n = len(sec.xy)
    radius_px = 0.5 * sec.spot_diameter_um / sec.pixel_size
    return ShapesModel.parse(
        np.asarray(sec.xy, dtype=np.float64).reshape(n, 2),
        geometry=0,
        radius=np.full(n, radius_px, dtype=np.float64),
        index=pd.RangeIndex(n, name=Keys.instance),
        transformations=section_transforms(sec.name, sec.pixel_size),
    )


def _section_adata(sec: SectionData, genes: list[str]) -> ad.AnnData:
    import anndata as ad
    import scipy.sparse as sp

    n = len(sec.xy)
    if sec.counts is None:
        X = sp.csr_matrix((n, len(genes)), dtype=np.int32)
    else:
        X = sp.csr_matrix(sec.counts)
        if list(sec.genes) != genes:
            col = pd.Index(list(sec.genes)).get_indexer(genes)
            if (col < 0).any():
                raise ValueError(f"section {sec.name!r} lacks genes of the joined gene set.")
            X = X[:, col]
    obs = pd.DataFrame(
        {
            Keys.section: sec.name,
            Keys.patient: str(sec.patient),
            Keys.array_row: np.asarray(sec.array_row, dtype=np.int64),
            Keys.array_col: np.asarray(sec.array_col, dtype=np.int64),
            Keys.barcode: np.asarray(sec.barcodes, dtype=str),
            Keys.region: Keys.spots(sec.name),
            Keys.instance: np.arange(n, dtype=np.int64),
            **sec.extra_obs,
        },
        index=[f"{sec.name}_{b}" for b in sec.barcodes],
    )
    adata = ad.AnnData(X=X, obs=obs)
    adata.obsm[Keys.spatial] = np.asarray(sec.xy, dtype=np.float64)
    return adata


def _join_genes(secs: Sequence[SectionData], join: str) -> list[str]:
    with_counts = [s for s in secs if s.counts is not None]
    if not with_counts:
        return []
    first = list(dict.fromkeys(with_counts[0].genes))
    if join == "inner":
        common = set(first).intersection(*[set(s.genes) for s in with_counts[1:]])
        return [g for g in first if g in common]
    if join == "outer":
        seen = dict.fromkeys(first)
        for s in with_counts[1:]:
            seen.update(dict.fromkeys(s.genes))
        return list(seen)
    raise ValueError(f"`join` must be 'inner' or 'outer', got {join!r}.")


def build_sdata(secs: Sequence[SectionData], *, join: str = "inner", image_chunks: int = 4096) -> SpatialData:
    """Assemble sections into one SpatialData in genedml's data model.

    ``join="inner"`` keeps genes measured in every section (as TRIPLEX does); ``"outer"`` keeps all and fills the
    counts of a gene absent from a section's matrix with 0 (recorded in ``uns["genedml"]["gene_join"]``).
    """
    import anndata as ad
    from spatialdata import SpatialData
    from spatialdata.models import TableModel

    if not secs:
        raise ValueError("`sections` is empty: at least one section is needed.")
    names = [s.name for s in secs]
    if len(set(names)) != len(names):
        raise ValueError(f"section names must be unique, got {names}.")
    genes = _join_genes(secs, join)
    if join == "outer":
        secs = [_pad_genes(s, genes) for s in secs]
    images = {Keys.image(s.name): _image_element(s, chunks=image_chunks) for s in secs}
    shapes = {Keys.spots(s.name): _shapes_element(s) for s in secs}
    adata = ad.concat([_section_adata(s, genes) for s in secs], join="outer", merge="same")
    adata.var_names = pd.Index(genes)
    adata.X = adata.X.astype(np.int32) if adata.X.dtype != np.int32 else adata.X
    adata.layers[Keys.counts] = adata.X.copy()
    for key in (Keys.section, Keys.patient, Keys.region):
        adata.obs[key] = pd.Categorical(adata.obs[key], categories=list(dict.fromkeys(adata.obs[key])))
    adata.uns[Keys.uns] = {
        "sections": {
            s.name: {
                "patient": str(s.patient),
                "technology": s.technology,
                "spot_diameter_um": float(s.spot_diameter_um),
                "pitch_um": float(s.pitch_um),
            }
            for s in secs
        },
        "gene_join": join,
    }
    table = TableModel.parse(
        adata, region=[Keys.spots(s.name) for s in secs], region_key=Keys.region, instance_key=Keys.instance
    )
    return SpatialData(images=images, shapes=shapes, tables={Keys.table: table})


def _pad_genes(sec: SectionData, genes: list[str]) -> SectionData:
    import dataclasses

    import scipy.sparse as sp

    if sec.counts is None or list(sec.genes) == genes:
        return sec
    X = sp.csr_matrix(sec.counts)
    src = pd.Index(list(sec.genes))
    pos = src.get_indexer(genes)
    coo = X.tocoo()
    remap = np.full(len(src), -1)
    remap[pos[pos >= 0]] = np.flatnonzero(pos >= 0)
    new = sp.csr_matrix((coo.data, (coo.row, remap[coo.col])), shape=(X.shape[0], len(genes)))
    return dataclasses.replace(sec, counts=new, genes=genes)


# --------------------------------------------------------------------------------------------------- validate


def validate(sdata: SpatialData, *, table_key: str | None = None, require_counts: bool = True) -> None:
    """Check that ``sdata`` follows genedml's data model; raise :class:`ValidationError` listing every problem.

    Checks: the table and its obs columns; one image and one circles element per section, each with a
    transformation to the section's pixel and µm coordinate systems, the image's pixel size equal to the spots';
    radius > 0; unique spot ids (``obs["spot_id"]`` within a section, the shapes index) that join the shapes index;
    every spot centre inside its image; integer, non-negative counts in ``X`` and ``layers["counts"]`` (unless
    ``require_counts=False``, for H&E-only sections).

    The pixel size is also checked against the spot grid where the technology fixes the spacing (``technology``
    ``"st"``: a square lattice with ``pitch_um`` between array units; ``"visium"``: a hexagonal one, possibly turned
    by 90°; the ``pitch_um`` of ``uns["genedml"]["sections"][s]``): a pixel size more than 2× off the grid's, or
    legacy-ST centres that follow the array the other way round (swapped x/y), are problems; one more than 15% off
    gives a ``UserWarning``. Other technologies, and grids whose array positions do not explain the centres
    (R² < 0.95), are not judged.

    Parameters
    ----------
    sdata
        The object to check.
    table_key
        Spot table; defaults to ``"table"``.
    require_counts
        Demand raw integer counts.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> gd.io.validate(sdata)
    """
    problems: list[str] = []
    try:
        table = get_table(sdata, table_key=table_key)
    except KeyError as e:
        raise ValidationError(str(e.args[0])) from None
    missing = [
        k
        for k in (Keys.section, Keys.patient, Keys.array_row, Keys.array_col, Keys.region, Keys.instance)
        if k not in table.obs
    ]
    if missing:
        raise ValidationError(f"table.obs lacks required column(s) {missing}.")
    if not table.obs_names.is_unique:
        rep = table.obs_names[table.obs_names.duplicated()].unique()[:5].tolist()
        problems.append(f"table.obs_names repeat {rep}: every spot needs its own row name (duplicated barcodes?).")
    for sec in sections(sdata, table_key=table_key):
        problems += _check_section(sdata, sec, table, table_key=table_key)
    if require_counts:
        problems += _check_counts(table)
    if problems:
        raise ValidationError("SpatialData does not follow genedml's data model:\n- " + "\n- ".join(problems))


def _check_section(sdata: SpatialData, sec: str, table, *, table_key: str | None = None) -> list[str]:
    out: list[str] = []
    img_key, spots_key = Keys.image(sec), Keys.spots(sec)
    if img_key not in sdata.images:
        out.append(f"section {sec!r}: no image element {img_key!r}.")
    if spots_key not in sdata.shapes:
        return [*out, f"section {sec!r}: no shapes element {spots_key!r}."]
    shapes = sdata.shapes[spots_key]
    if "radius" not in shapes or not (shapes["radius"] > 0).all():
        out.append(f"section {sec!r}: {spots_key!r} must be circles with a positive 'radius' column.")
    try:
        pixel_size(sdata, sec)
    except ValueError as e:
        out.append(str(e))
    rows = np.flatnonzero((table.obs[Keys.section].astype(str) == sec).to_numpy())
    regions = set(table.obs[Keys.region].astype(str).iloc[rows])
    if regions != {spots_key}:
        out.append(f"section {sec!r}: table rows annotate {sorted(regions)} instead of {spots_key!r}.")
    ids = table.obs[Keys.instance].to_numpy()[rows]
    dup = pd.Index(ids)[pd.Index(ids).duplicated()].unique().tolist()
    if dup:
        out.append(f"section {sec!r}: obs[{Keys.instance!r}] repeats spot id(s) {dup[:5]}: each spot needs one row.")
    if shapes.index.duplicated().any():
        rep = shapes.index[shapes.index.duplicated()][:5].tolist()
        out.append(f"section {sec!r}: the index of {spots_key!r} repeats spot id(s) {rep}.")
    if not np.isin(ids, shapes.index.to_numpy()).all():
        out.append(f"section {sec!r}: obs[{Keys.instance!r}] holds ids missing from {spots_key!r}'s index.")
        return out
    if dup or shapes.index.duplicated().any():
        return out
    out += _check_geometry(sdata, sec, table, rows, table_key=table_key)
    if img_key in sdata.images:
        try:
            h, w = image_shape(sdata, sec)
            xy = spot_centers(sdata, sec, table_key=table_key)
            bad = (xy[:, 0] < 0) | (xy[:, 1] < 0) | (xy[:, 0] >= w) | (xy[:, 1] >= h)
            if bad.any():
                out.append(f"section {sec!r}: {int(bad.sum())} spot centre(s) lie outside the {w}×{h} px image.")
        except ValueError as e:
            out.append(str(e))
        arr = finest(sdata.images[img_key])
        if arr.sizes.get("c") != 3 or arr.dtype != np.uint8:
            out.append(f"section {sec!r}: image must be RGB uint8 (c=3), got c={arr.sizes.get('c')}, {arr.dtype}.")
    return out


def _check_geometry(sdata: SpatialData, sec: str, table, rows: np.ndarray, *, table_key: str | None) -> list[str]:
    """The image's µm scale against the spots'; the spots' pixel size against their grid (see `validate`)."""
    import warnings

    from ._geometry import lattice_of, pixel_size_problems

    out: list[str] = []
    try:
        mpp = pixel_size(sdata, sec)
    except ValueError:
        return out  # reported above
    img_key = Keys.image(sec)
    if img_key in sdata.images:
        el = sdata.images[img_key]
        try:
            img_mpp = scale_of(el, Keys.um(sec), name=f"image {img_key!r}") / scale_of(
                el, sec, name=f"image {img_key!r}"
            )
        except ValueError as e:
            out.append(str(e))
        else:
            if not np.isclose(img_mpp, mpp, rtol=1e-3):
                out.append(
                    f"section {sec!r}: the image {img_key!r} is {img_mpp:.6g} µm/px but the spots "
                    f"{Keys.spots(sec)!r} are {mpp:.6g} µm/px (their transformations to {Keys.um(sec)!r}); they must "
                    "agree."
                )
    meta = table.uns.get(Keys.uns, {}).get("sections", {}).get(sec, {})
    pitch = meta.get("pitch_um")
    if pitch is None or not np.isfinite(pitch) or pitch <= 0:
        return out
    lattice = lattice_of(meta.get("technology"))
    if lattice is None:
        return out
    obs = table.obs.iloc[rows]
    error, warning = pixel_size_problems(
        mpp,
        spot_centers(sdata, sec, table_key=table_key),
        obs[Keys.array_row].to_numpy(),
        obs[Keys.array_col].to_numpy(),
        pitch_um=float(pitch),
        lattice=lattice,
        where=f"section {sec!r}",
        name="pixel size",
        allow_turned=lattice == "hex",  # a Visium image may be turned; legacy-ST pixel columns are named x/y
    )
    if error:
        out.append(error)
    if warning:
        warnings.warn(warning, UserWarning, stacklevel=3)
    return out


def _check_counts(table) -> list[str]:
    import scipy.sparse as sp

    out = []
    for name, X in (("X", table.X), (f"layers[{Keys.counts!r}]", table.layers.get(Keys.counts))):
        if X is None:
            out.append(f"table.{name} is missing: raw counts are required.")
            continue
        data = X.data if sp.issparse(X) else np.asarray(X)
        if data.size and not np.issubdtype(data.dtype, np.integer):
            if not np.all(np.isfinite(data)) or not np.all(data == np.round(data)):
                out.append(f"table.{name} holds non-integer or non-finite values: raw integer counts expected.")
                continue
        if data.size and data.min() < 0:
            out.append(f"table.{name} holds negative values: raw counts must be ≥ 0.")
    return out
