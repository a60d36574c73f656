"""``gd.io.read_predictions``: a prediction store written by ``gd.tl.predict(..., out=...)``, opened lazily."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._keys import Keys

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["read_predictions"]


def read_predictions(path: str | os.PathLike, *, table_key: str | None = None) -> SpatialData:
    """Open a store written by ``gd.tl.predict(..., out=path)``: the spots in memory, every layer lazy (dask).

    The store holds no image (a whole slide stays in its file), so `read_zarr`, which validates genedml's full data
    model, does not read it; this reader does, and reads no prediction until a layer is computed.

    Parameters
    ----------
    path
        The ``.zarr`` store.
    table_key
        Its table (default ``"table"``).

    Returns
    -------
    A SpatialData whose table's layers are dask arrays read from the store chunk by chunk.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> model = gd.tl.fit(sdata, features=gd.features.FeatureSpec("test_resnet", pretrained=False), n_top_genes=10,
    ...                   config="cpu", max_epochs=1, batch_size=32, progress=False)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "pred.zarr"
    >>> _ = gd.tl.predict(sdata, model, out=path)
    >>> pred = gd.io.read_predictions(path)
    >>> pred["table"].layers["predicted"].shape
    (98, 10)
    """
    import anndata as ad
    import scipy.sparse as sp
    import spatialdata as sd
    import zarr
    from anndata.experimental import read_elem_lazy

    key = Keys.table if table_key is None else table_key
    path = Path(path)
    if not (path / "tables" / key).is_dir():
        raise FileNotFoundError(f"`path`={str(path)!r} holds no table {key!r} written by gd.tl.predict(..., out=).")
    shapes = sd.read_zarr(path, selection=("shapes",))
    group = zarr.open_group(str(path / "tables" / key), mode="r")
    elems = {k: ad.io.read_elem(group[k]) for k in ("obs", "var", "uns", "obsm") if k in group}
    layers = {name: read_elem_lazy(group["layers"][name]) for name in group["layers"].array_keys()}
    attrs = elems.get("uns", {}).get("spatialdata_attrs")
    if attrs is not None and not isinstance(attrs["region"], str):  # read back as an array
        attrs["region"] = [str(r) for r in attrs["region"]]

    table = ad.AnnData(
        X=sp.csr_matrix((len(elems["obs"]), len(elems["var"])), dtype=np.float32),
        obs=elems["obs"],
        var=elems["var"],
        uns=elems.get("uns", {}),
        obsm=elems.get("obsm", {}),
        layers=layers,
    )
    return sd.SpatialData(shapes=dict(shapes.shapes), tables={key: table})
