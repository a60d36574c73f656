"""Reader for 10x Visium (Space Ranger output) through :func:`spatialdata_io.visium`: :func:`read_visium`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genedml._keys import Keys
from genedml._logging import logger

from .._data_model import get_table, section_transforms
from ._model import SectionData, anndata_fields, build_sdata, integer_counts, validate
from ._tiff import is_tiff, tiff_levels, tiff_pyramid

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["read_visium"]

VISIUM_SPOT_UM = 55.0
VISIUM_PITCH_UM = 100.0
_COUNTS = "filtered_feature_bc_matrix.h5"
_POSITIONS = ("tissue_positions.csv", "tissue_positions_list.csv")
_SCALEFACTORS = "scalefactors_json.json"
_LOWER_RES = (("hires", "tissue_hires_scalef"), ("lowres", "tissue_lowres_scalef"))


def read_visium(
    path: str | os.PathLike,
    *,
    section: str | None = None,
    patient: str | None = None,
    dataset_id: str | None = None,
    fullres_image_file: str | os.PathLike | None = None,
) -> SpatialData:
    """Read one 10x Visium section (Space Ranger output folder) into genedml's data model.

    The folder is read by :func:`spatialdata_io.visium`; it needs ``(<id>_)filtered_feature_bc_matrix.h5``,
    ``spatial/tissue_positions.csv`` (Space Ranger ≥ 2) or ``spatial/tissue_positions_list.csv``,
    ``spatial/scalefactors_json.json`` and ``spatial/tissue_hires_image.png`` and/or
    ``spatial/tissue_lowres_image.png``. The result is then normalised: only in-tissue spots; raw integer counts;
    ``array_row``/``array_col`` from the tissue positions; spot centres in full-resolution pixels; pixel size
    ``55 µm / spot_diameter_fullres`` (a Visium spot is 55 µm across, 100 µm apart); technology ``"visium"``.

    Parameters
    ----------
    path
        Space Ranger ``outs`` folder.
    section
        Section name; default: ``dataset_id``, else the library id of the counts file, else the folder name.
    patient
        Patient label; default: the section name (logged).
    dataset_id
        Passed to :func:`spatialdata_io.visium` (needed when the counts file has no ``<id>_`` prefix; defaults to
        the section name then).
    fullres_image_file
        Full-resolution H&E given to Space Ranger (absolute or relative to ``path``). When given, it is the
        section image: a (pyramidal) TIFF is read lazily chunk by chunk with its own levels (as in
        :func:`~genedml.io.read_hest`); other formats through spatialdata-io (decoded whole on first access, with
        its coarsened pyramid). Otherwise the hires image (else the lowres one) is used, with a scale of
        ``1 / tissue_hires_scalef`` up to the full-resolution pixel frame.

    Returns
    -------
    One section: image ``f"{section}_hne"``, spots ``f"{section}_spots"`` and ``tables["table"]``;
    ``uns["genedml"]["sections"][section]`` records ``pixel_size_source="scalefactors"`` and which image was used.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.io.read_visium("outs", section="V1", patient="P1")  # doctest: +SKIP
    """
    import spatialdata_io

    root = Path(path)
    library = _check_layout(root)
    name = section or dataset_id or library or root.name
    fullres = _fullres_path(root, fullres_image_file)
    scalef = read_scalefactors(root / "spatial" / _SCALEFACTORS)
    diameter = _scalefactor(scalef, "spot_diameter_fullres", root)
    via_sdio = fullres if fullres is not None and not is_tiff(fullres) else None  # TIFFs: chunked reader below
    sd = spatialdata_io.visium(root, dataset_id=dataset_id or (None if library else name), fullres_image_file=via_sdio)
    did = dataset_id or library or name
    table = sd.tables["table"]
    keep = pd.to_numeric(table.obs["in_tissue"], errors="coerce").fillna(0).to_numpy() == 1
    logger.info(f"read_visium: keeping {int(keep.sum())} of {table.n_obs} spots with in_tissue == 1.")
    if not keep.any():
        raise ValueError(f"`path`: no in-tissue spot in {str(root)!r} (tissue positions: in_tissue == 1).")
    table = table[keep]
    mpp = VISIUM_SPOT_UM / diameter
    if fullres is not None and via_sdio is None:
        levels = tiff_levels(fullres, where="`fullres_image_file`")
        image, used, scale = tiff_pyramid(fullres, levels, section_transforms(name, mpp)), "fullres", 1.0
    else:
        image, used, scale = _pick_image(sd, did, fullres, scalef, root)
    if used == "fullres" and via_sdio is not None:
        from spatialdata.transformations import set_transformation

        set_transformation(image, section_transforms(name, mpp), set_all=True)
    donor = patient
    if donor is None:
        logger.info(f"read_visium: no `patient` given; using the section name {name!r}.")
        donor = name
    sec = SectionData(
        name=name,
        patient=donor,
        image=image,
        pixel_size=mpp,
        counts=integer_counts(table.X, name="path", where=str(root)),
        **anndata_fields(table),
        spot_diameter_um=VISIUM_SPOT_UM,
        pitch_um=VISIUM_PITCH_UM,
        technology="visium",
        image_scale=scale,
    )
    sdata = build_sdata([sec])
    out = get_table(sdata)
    if "gene_ids" in table.var:
        out.var["gene_ids"] = table.var["gene_ids"].reindex(out.var_names).to_numpy()
    out.uns[Keys.uns]["sections"][name].update(pixel_size_source="scalefactors", image=used, reader="read_visium")
    validate(sdata)
    return sdata


def _check_layout(root: Path) -> str | None:
    """Clear errors for a missing folder or file before spatialdata-io fails; return the library id prefix."""
    if not root.is_dir():
        raise FileNotFoundError(f"`path`: Space Ranger output folder {str(root)!r} does not exist.")
    h5 = sorted(p.name for p in root.iterdir() if p.name.endswith(_COUNTS))
    if not h5:
        raise FileNotFoundError(f"`path`: no '(<id>_){_COUNTS}' in {str(root)!r}.")
    spatial = root / "spatial"
    if not any((spatial / f).is_file() for f in _POSITIONS):
        raise FileNotFoundError(f"`path`: neither of {list(_POSITIONS)} is in {str(spatial)!r}.")
    if not (spatial / _SCALEFACTORS).is_file():
        raise FileNotFoundError(f"`path`: {_SCALEFACTORS!r} is missing from {str(spatial)!r}.")
    if not any((spatial / f"tissue_{r}_image.png").is_file() for r, _ in _LOWER_RES):
        logger.info(f"read_visium: no hires/lowres image in {str(spatial)!r}.")
    lib = h5[0][: -len(_COUNTS)].rstrip("_")
    return lib or None


def _fullres_path(root: Path, fullres: str | os.PathLike | None) -> Path | None:
    if fullres is None:
        return None
    p = root / Path(fullres)
    if not p.is_file():
        raise FileNotFoundError(f"`fullres_image_file`: {str(p)!r} does not exist.")
    return p


def _scalefactor(scalef: dict, key: str, root: Path) -> float:
    v = scalef.get(key)
    if not isinstance(v, int | float) or isinstance(v, bool) or not np.isfinite(v) or v <= 0:
        raise ValueError(f"`path`: {_SCALEFACTORS!r} in {str(root)!r} needs a positive {key!r}, got {v!r}.")
    return float(v)


def _pick_image(sd: SpatialData, did: str, fullres: Path | None, scalef: dict, root: Path) -> tuple[Any, str, float]:
    """(image, which, full-res px per stored px): the full-res element, else the hires or lowres array."""
    if fullres is not None:
        return sd.images[f"{did}_full_image"], "fullres", 1.0
    for res, key in _LOWER_RES:
        el = sd.images.get(f"{did}_{res}_image")
        if el is None:
            continue
        data = el.data
        if data.shape[0] == 4:
            data = data[:3]  # RGBA → RGB
        return data, res, 1.0 / _scalefactor(scalef, key, root)
    raise FileNotFoundError(
        f"`path`: {str(root)!r} has no image: need spatial/tissue_hires_image.png, spatial/tissue_lowres_image.png "
        "or `fullres_image_file`."
    )


def read_scalefactors(path: Path) -> dict:
    """A Space Ranger ``scalefactors_json.json``: a JSON object, else a clear error naming the file."""
    try:
        scalef = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"`path`: {str(path)!r} is not valid JSON ({e}).") from None
    if not isinstance(scalef, dict):
        raise ValueError(f"`path`: {str(path)!r} must hold a JSON object of scale factors.")
    return scalef
