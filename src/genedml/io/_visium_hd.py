"""Reader for 10x Visium HD (Space Ranger output) through :func:`spatialdata_io.visium_hd`: :func:`read_visium_hd`."""

from __future__ import annotations

import contextlib
import io as _io
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genedml._keys import Keys
from genedml._logging import logger

from .._data_model import get_table, section_transforms
from ._model import SectionData, anndata_fields, build_sdata, integer_counts, validate
from ._tiff import is_tiff, tiff_levels, tiff_pyramid
from ._visium import _pick_image, read_scalefactors
from ._visium import _scalefactor as _positive  # a positive number from the scale factors

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["read_visium_hd"]

TECHNOLOGY = "visium_hd"
_BINNED = "binned_outputs"
_BIN_DIR = re.compile(r"^square_(\d{3})um$")
_COUNTS = "filtered_feature_bc_matrix.h5"
_POSITIONS = "tissue_positions.parquet"
_SCALEFACTORS = "scalefactors_json.json"
_FEATURE_SLICE = "feature_slice.h5"
_POSITION_COLUMNS = ("barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres")
# spatialdata-io warns about images it does not find; genedml reports which image it used instead
_QUIET = (
    r"No full resolution image found",
    r"File .* does not exist, skipping it",
    r"No image path found containing the (hires|lowres) image",
)


def read_visium_hd(
    path: str | os.PathLike,
    *,
    bin_size: int = 8,
    section: str | None = None,
    patient: str | None = None,
    dataset_id: str | None = None,
    fullres_image_file: str | os.PathLike | None = None,
) -> SpatialData:
    """Read one 10x Visium HD section (Space Ranger ``outs`` folder) at one bin size into genedml's data model.

    The folder is read by :func:`spatialdata_io.visium_hd`; it needs ``(<id>_)feature_slice.h5`` and, for the bin
    size asked for, ``binned_outputs/square_<bin>um/`` with ``filtered_feature_bc_matrix.h5`` and
    ``spatial/tissue_positions.parquet`` and ``spatial/scalefactors_json.json``. The bins become the section's
    spots: one row per in-tissue bin with raw integer counts; ``array_row``/``array_col`` = the bin lattice indices
    of the tissue positions; centres in full-resolution pixels; the pixel size is ``microns_per_pixel`` of the
    scale factors (checked against ``bin_size_um / spot_diameter_fullres``). A bin is stored as the circle
    inscribed in its square (diameter = pitch = the bin size), and the section records
    ``technology="visium_hd"``, ``bin_size_um`` and ``spot_shape="square"``: on such a square bin lattice the
    neighbour tiles of :func:`genedml.tl.embed` follow the lattice (see the data-model page).

    Parameters
    ----------
    path
        Space Ranger ``outs`` folder of a Visium HD run.
    bin_size
        Bin side in µm: one of the ``binned_outputs/square_<bin>um`` folders present (Space Ranger writes 2, 8 and
        16; an absent size is an error listing those present).
    section
        Section name; default: ``dataset_id``, else the prefix of ``<id>_feature_slice.h5``, else the folder name.
    patient
        Patient label; default: the section name (logged).
    dataset_id
        Prefix of the files (``<id>_feature_slice.h5``); inferred when there is exactly one such file.
    fullres_image_file
        Full-resolution H&E (absolute or relative to ``path``). Default: the only file in ``microscope_image/``,
        else ``<id>_tissue_image.*``, as spatialdata-io finds it. A (pyramidal, Big-) TIFF is read lazily chunk by
        chunk with its own levels; other formats through spatialdata-io (decoded whole on first access). Without
        one, the hires image (else the lowres one) is used, scaled by ``1 / tissue_hires_scalef`` up to the
        full-resolution frame.

    Returns
    -------
    One section: image ``f"{section}_hne"``, spots ``f"{section}_spots"`` and ``tables["table"]``;
    ``uns["genedml"]["sections"][section]`` records ``bin_size_um``, ``spot_shape``, ``pixel_size_source``
    (``"scalefactors"``), the image used and the reader.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.io.read_visium_hd("outs", bin_size=16, section="HD1", patient="P1")  # doctest: +SKIP
    """
    root = Path(path)
    bin_dir = _check_layout(root, bin_size)
    prefix = _dataset_prefix(root, dataset_id)
    name = section or dataset_id or prefix or root.name
    scalef = read_scalefactors(bin_dir / "spatial" / _SCALEFACTORS)
    mpp = _pixel_size(scalef, bin_size, bin_dir)
    fullres = _fullres_path(root, fullres_image_file, prefix)
    tiff = fullres is not None and is_tiff(fullres)
    sd = _read_sdio(root, bin_size, dataset_id=prefix or None, fullres=fullres, tiff=tiff)
    did = prefix or ""
    table = sd.tables[f"square_{bin_size:03d}um"]
    keep = pd.to_numeric(table.obs["in_tissue"], errors="coerce").fillna(0).to_numpy() == 1
    logger.info(f"read_visium_hd: keeping {int(keep.sum())} of {table.n_obs} {bin_size} µm bins with in_tissue == 1.")
    if not keep.any():
        raise ValueError(f"`path`: no in-tissue bin in {str(bin_dir)!r} (tissue positions: in_tissue == 1).")
    table = table[keep]
    image, used, scale = _section_image(sd, did, name, mpp, fullres, tiff, scalef, root)
    if patient is None:
        logger.info(f"read_visium_hd: no `patient` given; using the section name {name!r}.")
    sec = SectionData(
        name=name,
        patient=name if patient is None else patient,
        image=image,
        pixel_size=mpp,
        counts=integer_counts(table.X, name="path", where=str(bin_dir)),
        **anndata_fields(table),
        spot_diameter_um=float(bin_size),
        pitch_um=float(bin_size),
        technology=TECHNOLOGY,
        image_scale=scale,
    )
    sdata = build_sdata([sec])
    out = get_table(sdata)
    if "gene_ids" in table.var:
        out.var["gene_ids"] = table.var["gene_ids"].reindex(out.var_names).to_numpy()
    out.uns[Keys.uns]["sections"][name].update(
        bin_size_um=float(bin_size),
        spot_shape="square",
        pixel_size_source="scalefactors",
        image=used,
        reader="read_visium_hd",
    )
    validate(sdata)
    return sdata


# ------------------------------------------------------------------------------------------------ the folder


def available_bin_sizes(bins_dir: Path) -> list[int]:
    """Bin sizes (µm) of the ``square_<bin>um`` folders under ``binned_outputs``."""
    if not bins_dir.is_dir():
        return []
    found = (_BIN_DIR.match(p.name) for p in bins_dir.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def _check_layout(root: Path, bin_size: Any) -> Path:
    """Clear errors for a missing folder, bin size or file before spatialdata-io fails; the bin size's folder."""
    if isinstance(bin_size, bool) or not isinstance(bin_size, int | np.integer) or bin_size <= 0:
        raise ValueError(f"`bin_size` must be a positive whole number of micrometres (2, 8, 16), got {bin_size!r}.")
    bin_size = int(bin_size)
    if not root.is_dir():
        raise FileNotFoundError(f"`path`: Visium HD output folder {str(root)!r} does not exist.")
    bins_dir = root / _BINNED
    sizes = available_bin_sizes(bins_dir)
    if not sizes:
        raise FileNotFoundError(
            f"`path`: no '{_BINNED}/square_<bin>um' folder in {str(root)!r}: is this a Visium HD 'outs' folder?"
        )
    if bin_size not in sizes:
        raise ValueError(f"`bin_size`={bin_size} is not in {str(bins_dir)!r}: available bin sizes (µm): {sizes}.")
    bin_dir = bins_dir / f"square_{bin_size:03d}um"
    for rel in (_COUNTS, f"spatial/{_POSITIONS}", f"spatial/{_SCALEFACTORS}"):
        if not (bin_dir / rel).is_file():
            raise FileNotFoundError(f"`path`: {rel!r} is missing from {str(bin_dir)!r}.")
    _check_positions(bin_dir / "spatial" / _POSITIONS)
    return bin_dir


def _check_positions(path: Path) -> None:
    """The tissue positions' columns, from the parquet schema (spatialdata-io asserts them without a message)."""
    import pyarrow.parquet as pq

    try:
        names = tuple(pq.read_schema(path).names)
    except Exception as e:  # any pyarrow failure means the file cannot be used
        raise ValueError(f"`path`: cannot read {str(path)!r} as parquet ({type(e).__name__}: {e}).") from None
    names = tuple(n for n in names if not n.startswith("__index_level_"))
    if names != _POSITION_COLUMNS:
        raise ValueError(f"`path`: {str(path)!r} must have the columns {list(_POSITION_COLUMNS)}, got {list(names)}.")


def _dataset_prefix(root: Path, dataset_id: str | None) -> str:
    """``""`` for ``feature_slice.h5``, else the ``<id>`` of ``<id>_feature_slice.h5`` (spatialdata-io's rule)."""
    if (root / _FEATURE_SLICE).is_file():
        return dataset_id or ""
    if dataset_id is not None:
        if not (root / f"{dataset_id}_{_FEATURE_SLICE}").is_file():
            raise FileNotFoundError(
                f"`dataset_id`={dataset_id!r}: neither {_FEATURE_SLICE!r} nor '{dataset_id}_{_FEATURE_SLICE}' is in "
                f"{str(root)!r}."
            )
        return dataset_id
    found = sorted(p.name[: -len(_FEATURE_SLICE) - 1] for p in root.glob(f"*_{_FEATURE_SLICE}"))
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({found})"
        raise FileNotFoundError(
            f"`path`: {what} '(<id>_){_FEATURE_SLICE}' file(s) in {str(root)!r}; Space Ranger writes one per run "
            "(pass `dataset_id` to choose)."
        )
    return found[0]


def _pixel_size(scalef: dict, bin_size: int, bin_dir: Path) -> float:
    """µm per full-resolution pixel: ``microns_per_pixel``, checked against the bin size and its width in pixels."""
    where = bin_dir / "spatial"
    mpp = _positive(scalef, "microns_per_pixel", where)
    um = _positive(scalef, "bin_size_um", where)
    diameter = _positive(scalef, "spot_diameter_fullres", where)
    if not np.isclose(um, bin_size):
        raise ValueError(f"`path`: {str(where)!r} says bin_size_um={um:g} in a folder of {bin_size} µm bins.")
    if not np.isclose(um / diameter, mpp, rtol=1e-3):
        raise ValueError(
            f"`path`: the scale factors in {str(where)!r} disagree: bin_size_um / spot_diameter_fullres = "
            f"{um / diameter:.6g} µm/px but microns_per_pixel = {mpp:.6g}."
        )
    return mpp


def _fullres_path(root: Path, given: str | os.PathLike | None, prefix: str) -> Path | None:
    """The full-resolution image: given, else ``microscope_image/``'s only file, else ``<id>_tissue_image.*``."""
    if given is not None:
        p = root / Path(given)
        if not p.is_file():
            raise FileNotFoundError(f"`fullres_image_file`: {str(p)!r} does not exist.")
        return p
    folder = root / "microscope_image"
    found = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    if not found:
        found = sorted(p for p in root.glob(f"{prefix}{'_' if prefix else ''}tissue_image.*") if p.is_file())
    if len(found) > 1:
        raise ValueError(
            f"`fullres_image_file`: several candidate full-resolution images in {str(root)!r} "
            f"({[p.name for p in found]}); pass the one to use."
        )
    return found[0] if found else None


def _read_sdio(root: Path, bin_size: int, *, dataset_id: str | None, fullres: Path | None, tiff: bool):
    """spatialdata-io's reader, for this one bin size; a TIFF full-resolution image is left to genedml."""
    import spatialdata_io

    # a path that does not exist makes spatialdata-io skip its (eager, for .btf) full-resolution read
    skip = root / ".genedml-fullres-read-lazily" if (fullres is None or tiff) else fullres
    with warnings.catch_warnings():
        for msg in _QUIET:
            warnings.filterwarnings("ignore", message=msg, category=UserWarning)
        with contextlib.redirect_stdout(_io.StringIO()) as said:  # it prints when it finds cell segmentations
            sd = spatialdata_io.visium_hd(
                root,
                dataset_id=dataset_id,
                filtered_counts_file=True,
                bin_size=[int(bin_size)],
                bins_as_squares=False,
                fullres_image_file=skip,
                load_all_images=False,
                **_bins_only(spatialdata_io.visium_hd),
            )
    if said.getvalue().strip():
        logger.info("read_visium_hd (spatialdata-io): %s", said.getvalue().strip())
    return sd


def _bins_only(reader) -> dict:
    """``load_segmentations_only=False`` where the reader has it (spatialdata-io ≥ 0.5 warns when it is not given)."""
    import inspect

    has = "load_segmentations_only" in inspect.signature(reader).parameters
    return {"load_segmentations_only": False} if has else {}


def _section_image(sd, did: str, name: str, mpp: float, fullres: Path | None, tiff: bool, scalef: dict, root: Path):
    """(image, which, full-res px per stored px) with the section's transformations."""
    if fullres is not None and tiff:
        levels = tiff_levels(fullres, where="`fullres_image_file`")
        return tiff_pyramid(fullres, levels, section_transforms(name, mpp)), "fullres", 1.0
    image, used, scale = _pick_image(sd, did, fullres, scalef, root)
    if used == "fullres":
        from spatialdata.transformations import set_transformation

        set_transformation(image, section_transforms(name, mpp), set_all=True)
    return image, used, scale
