"""Write and read genedml's SpatialData as a ``.zarr`` store: :func:`write_zarr`, :func:`read_zarr`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from genedml._utils import atomic_path

from .._keys import Keys
from ._model import validate

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["read_zarr", "write_zarr"]

_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zattrs")


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in _ZARR_MARKERS)


def write_zarr(sdata: SpatialData, path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write ``sdata`` to a ``.zarr`` store, atomically.

    The store is written to a temporary sibling folder and renamed onto ``path`` only once complete, so a failed
    or interrupted write never leaves a half-written store (nor destroys the old one). Lazy images are computed
    chunk by chunk while writing. ``sdata.path`` is set to ``path`` afterwards.

    Parameters
    ----------
    sdata
        SpatialData to write (usually in genedml's data model).
    path
        Target store, e.g. ``"her2st.zarr"``.
    overwrite
        Replace an existing store at ``path``. Only a zarr store is ever replaced: any other existing file or
        folder raises, whatever ``overwrite`` says.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.toy()  # doctest: +SKIP
    >>> gd.io.write_zarr(sdata, "toy.zarr", overwrite=True)  # doctest: +SKIP
    """
    from spatialdata import SpatialData

    if not isinstance(sdata, SpatialData):
        raise TypeError(f"`sdata` must be a SpatialData, got {type(sdata).__name__}.")
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise FileExistsError(f"`path`={str(path)!r} already exists; pass overwrite=True to replace it.")
        if not _is_zarr_store(path):
            raise FileExistsError(
                f"`path`={str(path)!r} exists and is not a zarr store; refusing to replace it even with overwrite=True."
            )
    import anndata as ad

    # anndata warns that zarr v3 sharding of tables will become its default; keep today's unsharded layout
    # explicitly (tables are small) and only for this call.
    with atomic_path(path) as tmp, ad.settings.override(auto_shard_zarr_v3=False):
        sdata.write(tmp, update_sdata_path=False)
    sdata.path = path


def read_zarr(path: str | os.PathLike) -> SpatialData:
    """Read a ``.zarr`` store written by :func:`write_zarr` and check it with :func:`genedml.io.validate`.

    A store whose table has no ``layers["counts"]`` (H&E-only spots from :func:`genedml.pp.spot_grid`, with or
    without predictions) is checked without requiring counts.

    Images stay lazy (dask arrays backed by the store). genedml's provenance records in ``uns["genedml"]`` come back
    as written (lists and Python scalars rather than the arrays zarr stores them as), so they compare equal to the
    records of the object that was written.

    Parameters
    ----------
    path
        The store.

    Returns
    -------
    The SpatialData, in genedml's data model (else :class:`genedml.io.ValidationError`).

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.io.read_zarr("toy.zarr")  # doctest: +SKIP
    """
    import spatialdata

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"`path`={str(path)!r} does not exist.")
    if not _is_zarr_store(path):
        raise ValueError(f"`path`={str(path)!r} is not a zarr store (no zarr.json / .zgroup).")
    sdata = spatialdata.read_zarr(path)
    # a table without `layers["counts"]` holds H&E-only spots (a spot grid, predictions): nothing measured to check
    tables = list(sdata.tables.values())
    validate(sdata, require_counts=not tables or any(Keys.counts in t.layers for t in tables))
    for table in sdata.tables.values():
        _plain_provenance(table.uns)
    return sdata


def _plain_provenance(uns) -> None:
    """Give genedml's ``uns`` records back the lists and Python scalars they were written with.

    zarr stores lists as arrays; the generating arrays of synthetic data stay arrays.
    """
    from genedml._keys import Keys
    from genedml._records import plain, plain_uns

    root = uns.get(Keys.uns)
    if not isinstance(root, dict):
        return
    for key, value in root.items():
        if key != "synthetic":
            root[key] = plain_uns(value) if isinstance(value, dict) else plain(value)
