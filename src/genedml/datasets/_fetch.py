"""Downloaders for public datasets, driven by ``registry.yaml`` (pooch; cached under ``gd.settings.datasetdir``)."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._logging import logger
from .._settings import settings
from .._utils import resolve_progress

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["DownloadError", "her2st", "hest", "hest_cohort", "registry", "visium_10x"]

HER2ST_SECTIONS = ("B4", "C2", "C3", "C4", "C5")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class DownloadError(OSError):
    """A dataset file could not be obtained or failed its checksum."""


@functools.lru_cache(maxsize=1)
def registry() -> dict[str, Any]:
    """The parsed dataset registry (``registry.yaml`` shipped with the package)."""
    import yaml

    return yaml.safe_load(resources.files(__package__).joinpath("registry.yaml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------------- fetching


def _downloader(headers: dict[str, str] | None):
    """The pooch downloader used for every file (a seam for tests)."""
    import pooch

    return pooch.HTTPDownloader(headers=headers or None, progressbar=resolve_progress(None))


def fetch_file(dataset: str, entry: dict[str, Any], base_url: str, *, headers: dict[str, str] | None = None) -> Path:
    """The cached copy of one registry file, downloaded (and checked) when missing or corrupt.

    A cached file whose sha256 matches is used as is, without any network access. One whose sha256 does not match
    is downloaded again; a failed download, or a downloaded file with the wrong sha256, raises
    :class:`DownloadError` naming the file, the URL and both checksums.
    """
    import pooch

    rel, sha = entry["path"], entry.get("sha256")
    root = Path(settings.datasetdir) / dataset
    path = root / rel
    stale = None
    if path.is_file():
        if sha is None:
            return path
        stale = pooch.file_hash(str(path))
        if stale == sha:
            return path
        logger.warning(f"{dataset}: cached {str(path)!r} has sha256 {stale}, expected {sha}: downloading it again.")
    url = base_url + rel
    logger.info(f"{dataset}: downloading {url} ({entry.get('doc', '')}).")
    try:
        pooch.retrieve(
            url,
            known_hash=None if sha is None else f"sha256:{sha}",
            fname=rel,
            path=root,
            downloader=_downloader(headers),
        )
    except Exception as e:
        cached = f" The cached copy has sha256 {stale}, expected {sha}." if stale else ""
        raise DownloadError(
            f"{dataset}: could not obtain {rel!r} from {url} into {str(path)!r}.{cached} Cause: {e} "
            f"Check the network (and credentials for gated data), or place the file there yourself"
            + (f" (sha256 {sha})." if sha else ".")
        ) from e
    return path


def _check_id(value: Any, *, name: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError(f"`{name}` must be a sample identifier (letters, digits, '_', '.', '-'), got {value!r}.")
    return value


def _fill(entry: dict[str, Any], **fields: str) -> dict[str, Any]:
    return {**entry, "path": entry["path"].format(**fields)}


# --------------------------------------------------------------------------------------------------- her2st


def her2st(*, sections: Sequence[str] | str | None = None, patients: Sequence[str] | str | None = None) -> SpatialData:
    """HER2-positive breast cancer sections (Andersson et al. 2021), legacy Spatial Transcriptomics.

    All 36 sections of the 8 patients A–H (the Gene-DML paper's HER2ST cohort) are registered: patients A–D have
    six serial sections each (``A1`` … ``D6``), E–H three (``E1`` … ``H3``). Files come from the public
    ``almaan/her2st`` GitHub repository at a fixed commit and are cached under ``gd.settings.datasetdir /
    "her2st"`` (a cached, valid copy is used without network access). Count and spot files are verified against
    their sha256; the H&E images of B4 and C2–C6 too, while the other 30 images have no known checksum and are
    fetched unverified (the registry says so per file). Sections are read with :func:`genedml.io.read_st` (pixel
    size estimated from the spot grid, ~0.69 µm/px); the patient is the section's letter.

    Parameters
    ----------
    sections
        Sections to load, or ``"all"`` for the 36; ``None``: the five sections B4, C2–C5 (unless ``patients``).
    patients
        Load every section of these patients (letters ``"A"`` … ``"H"``), instead of ``sections``.

    Returns
    -------
    SpatialData in genedml's data model (see :func:`genedml.io.read_st`).

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.her2st(sections=["B4"])  # doctest: +SKIP
    >>> cohort = gd.datasets.her2st(sections="all")  # the paper's 36 sections  # doctest: +SKIP
    >>> ab = gd.datasets.her2st(patients=["A", "B"])  # 12 sections  # doctest: +SKIP
    """
    import pandas as pd

    from ..io import read_st

    reg = registry()["her2st"]
    names = _her2st_sections(_her2st_choice(sections, patients, reg), reg)
    rows = []
    for s in names:
        files = reg["sections"][s]["files"]
        paths = {k: fetch_file("her2st", files[k], reg["base_url"]) for k in ("counts", "spots", "image")}
        rows.append({"section": s, "patient": reg["sections"][s]["patient"], **{k: str(p) for k, p in paths.items()}})
    return read_st(pd.DataFrame(rows))


def _her2st_choice(sections: Any, patients: Any, reg: dict) -> Any:
    if patients is None:
        if sections is None:
            return list(HER2ST_SECTIONS)
        return list(reg["sections"]) if isinstance(sections, str) and sections == "all" else sections
    if sections is not None:
        raise ValueError("give `sections` or `patients`, not both.")
    wanted = [patients] if isinstance(patients, str) else list(patients)
    known = sorted({v["patient"] for v in reg["sections"].values()})
    unknown = [p for p in wanted if p not in known]
    if unknown or not wanted:
        raise ValueError(f"`patients`: unknown HER2ST patient(s) {unknown or 'none given'}; available: {known}.")
    return [s for s, v in reg["sections"].items() if v["patient"] in wanted]


def _her2st_sections(sections: Any, reg: dict) -> list[str]:
    available = list(reg["sections"])
    names = [sections] if isinstance(sections, str) else list(sections)
    if not names:
        raise ValueError(f"`sections` is empty; available HER2ST sections: {available}.")
    unknown = [s for s in names if s not in reg["sections"]]
    if unknown:
        raise ValueError(f"`sections`: unknown HER2ST section(s) {unknown}; available: {available}.")
    if len(set(names)) != len(names):
        raise ValueError(f"`sections` lists a section twice: {names}.")
    return names


# --------------------------------------------------------------------------------------------------- hest


def hest(sample_id: str, *, token: str | None = None) -> SpatialData:
    """One HEST-1k sample (Jaume et al. 2024) from the gated Hugging Face dataset ``MahmoodLab/hest``.

    Downloads ``st/<id>.h5ad``, ``wsis/<id>.tif`` and ``metadata/<id>.json`` (no published checksums: not
    verified) into ``gd.settings.datasetdir / "hest"`` and reads them with :func:`genedml.io.read_hest`. Cached
    files are reused without network access or token. HEST-1k is CC BY-NC-SA 4.0: non-commercial use only.

    Parameters
    ----------
    sample_id
        HEST sample id, e.g. ``"TENX95"`` or ``"NCBI463"`` (see ``HEST_v1_1_0.csv`` in the dataset).
    token
        Hugging Face access token of an account that accepted the dataset's terms; default: the ``HF_TOKEN``
        environment variable. Only needed for a download.

    Returns
    -------
    SpatialData with one section named ``sample_id`` (see :func:`genedml.io.read_hest`).

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.hest("NCBI463")  # doctest: +SKIP
    """
    from ..io import read_hest

    _check_id(sample_id, name="sample_id")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError("`token` must be a non-empty string (a Hugging Face access token) or None.")
    reg = registry()["hest"]
    entries = {k: _fill(e, id=sample_id) for k, e in reg["files"].items()}
    root = Path(settings.datasetdir) / "hest"
    headers = None
    if not all((root / e["path"]).is_file() for e in entries.values()):
        token = token or os.environ.get("HF_TOKEN") or None
        if token is None:
            raise DownloadError(
                f"HEST-1k is gated: to download {sample_id!r}, accept the terms at "
                "https://huggingface.co/datasets/MahmoodLab/hest and pass `token=` or set the HF_TOKEN environment "
                f"variable (or place the files under {str(root)!r})."
            )
        headers = {"Authorization": f"Bearer {token}"}
    paths = {k: fetch_file("hest", e, reg["base_url"], headers=headers) for k, e in entries.items()}
    return read_hest(paths["h5ad"], paths["image"], paths["metadata"], section=sample_id)


def hest_cohort(name: str) -> list[str]:
    """The HEST-1k sample ids of one of the paper's cohorts: ``"her2st"``, ``"stnet"`` or ``"skinst"``.

    Each id is fetched with `gd.datasets.hest` (gated: a Hugging Face token); the paper's folds group them by the
    patient recorded in each sample's HEST metadata (``obs["patient"]``).

    Parameters
    ----------
    name
        Cohort name.

    Returns
    -------
    The sample ids in HEST order.

    Examples
    --------
    >>> import genedml as gd
    >>> ids = gd.datasets.hest_cohort("skinst")
    >>> len(ids), ids[0], ids[-1]
    (12, 'NCBI759', 'NCBI770')
    """
    cohorts = registry()["hest"]["cohorts"]
    if not isinstance(name, str) or name not in cohorts:
        raise ValueError(f"`name` must be one of the registered cohorts {sorted(cohorts)}, got {name!r}.")
    c = cohorts[name]
    prefix = re.match(r"^[A-Z]+", c["first"]).group(0)
    first, last = int(c["first"][len(prefix) :]), int(c["last"][len(prefix) :])
    ids = [f"{prefix}{i}" for i in range(first, last + 1)]
    if len(ids) != c["n"]:  # the registry's own consistency
        raise RuntimeError(f"registry: cohort {name!r} spans {len(ids)} ids, expected {c['n']}.")
    return ids


# --------------------------------------------------------------------------------------------------- visium


def visium_10x(name: str = "V1_Breast_Cancer_Block_A_Section_1") -> SpatialData:
    """A public 10x Genomics Visium sample (Space Ranger output, full-resolution H&E).

    Downloads the filtered feature-barcode matrix, the ``spatial/`` folder (a tarball, unpacked next to it) and
    the full-resolution TIFF into ``gd.settings.datasetdir / "visium_10x" / name`` and reads them with
    :func:`genedml.io.read_visium`. 10x publishes no checksums: the files are not verified.

    Parameters
    ----------
    name
        Sample name; available: ``"V1_Breast_Cancer_Block_A_Section_1"``, ``"V1_Breast_Cancer_Block_A_Section_2"``.

    Returns
    -------
    SpatialData with one section named ``name`` (see :func:`genedml.io.read_visium`).

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.visium_10x("V1_Breast_Cancer_Block_A_Section_2")  # doctest: +SKIP
    """
    import pooch

    from ..io import read_visium

    reg = registry()["visium_10x"]
    if not isinstance(name, str) or name not in reg["samples"]:
        raise ValueError(f"`name` must be one of the registered Visium samples {sorted(reg['samples'])}, got {name!r}.")
    paths = {k: fetch_file("visium_10x", _fill(e, name=name), reg["base_url"]) for k, e in reg["files"].items()}
    pooch.Untar(extract_dir=".")(str(paths["spatial"]), "fetch", None)  # unpacks spatial/ only when missing
    return read_visium(paths["counts"].parent, section=name, fullres_image_file=paths["image"])
