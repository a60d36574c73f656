"""Predictions streamed into a new zarr store, chunk by chunk (``gd.tl.predict(..., out=...)``).

The store is a SpatialData zarr holding the spots (the shapes the table annotates) and a table whose ``var`` is
the model genes and whose ``layers[key_added]`` is a chunked zarr array, written one chunk of spots at a time: the
process never holds more than one chunk of predictions (plus the model's own working set, see
`genedml.models.SpotModel.predict_chunks`). The image is not copied (a whole slide stays in its file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._data_model import get_table
from .._keys import Keys
from .._utils import atomic_path, resolve_progress

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["predict_to_store"]

_ENCODING = {"encoding-type": "array", "encoding-version": "0.2.0"}


def predict_to_store(
    sdata: SpatialData,
    model,
    out: str | os.PathLike,
    *,
    key_added: str = Keys.predicted,
    sections: list[str] | None = None,
    table_key: str | None = None,
    chunk_size: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> SpatialData:
    """Write ``model``'s predictions for the spots of ``sections`` into a new SpatialData zarr store at ``out``.

    See `gd.tl.predict` (``out=``) for the contract. Returns the written store opened lazily
    (`genedml.io.read_predictions`).
    """
    import anndata as ad

    from ..models import EnsembleModel
    from ._predict import _provenance, _uncertainty_layers

    out = _check_out(out, overwrite=overwrite)
    key = Keys.table if table_key is None else table_key
    table = get_table(sdata, table_key=key)
    sec = table.obs[Keys.section].astype(str).to_numpy()
    sections = list(dict.fromkeys(sec)) if sections is None else list(sections)
    rows = np.flatnonzero(np.isin(sec, sections))
    genes = list(model.genes_)
    skeleton = _skeleton(sdata, table, rows, genes, key=key, key_added=key_added)
    chunk = int(chunk_size or 65536)
    with atomic_path(out) as tmp, ad.settings.override(auto_shard_zarr_v3=False):
        skeleton.write(tmp, update_sdata_path=False)
        group = _table_group(tmp, key)
        layers = group.require_group("layers")
        names = [key_added]
        extra: dict = {}
        if isinstance(model, EnsembleModel):  # members' spread and intervals: predicted at once
            pred, sd = model.predict(sdata, sections=sections, table_key=key, progress=resolve_progress(progress))
            extra = _uncertainty_layers(model, pred, sd, key_added, None)
            extra.pop("_uns", None)
            names += list(extra)
            chunks = (
                (np.arange(s, min(len(pred), s + chunk)), pred[s : s + chunk]) for s in range(0, len(pred), chunk)
            )
        else:
            chunks = model.predict_chunks(
                sdata, sections=sections, table_key=key, chunk_size=chunk, progress=resolve_progress(progress)
            )
        arrays = {name: _new_layer(layers, name, (len(rows), len(genes)), chunk) for name in names}
        for r, p in chunks:
            arrays[key_added][int(r[0]) : int(r[-1]) + 1] = p
            for name, values in extra.items():
                arrays[name][int(r[0]) : int(r[-1]) + 1] = values[r]
        uns = {Keys.uns: {key_added: _provenance(model, key_added=key_added, sections=sections, missing=[])}}
        uns[Keys.uns][key_added]["out"] = {"chunk_size": chunk, "layers": names}
        _write_uns(group, skeleton.tables[key].uns, uns)
    from ..io import read_predictions

    return read_predictions(out, table_key=key)


def _check_out(out, *, overwrite: bool) -> Path:
    if not isinstance(out, str | os.PathLike) or not str(out):
        raise ValueError(f"`out` must be a path for the new .zarr store, got {out!r}.")
    path = Path(out)
    if path.exists() and not overwrite:
        raise FileExistsError(f"`out`={str(path)!r} exists; pass overwrite=True to replace it.")
    if path.exists() and not path.is_dir():
        raise ValueError(f"`out`={str(path)!r} is a file, not a .zarr store; remove it or choose another path.")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"`out`: the folder {str(path.parent)!r} does not exist.")
    return path


def _skeleton(sdata, table, rows: np.ndarray, genes: list[str], *, key: str, key_added: str):
    """The store without predictions: the annotated shapes and a table of the rows with the model genes."""
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp
    from spatialdata import SpatialData
    from spatialdata.models import TableModel

    attrs = table.uns.get("spatialdata_attrs") or {}
    obs = table.obs.iloc[rows].copy()
    var = pd.DataFrame(index=pd.Index(genes, name=None))
    var[Keys.var_flag(key_added)] = True
    obsm = {k: np.asarray(v)[rows] for k, v in table.obsm.items() if k == Keys.spatial}
    new = ad.AnnData(X=sp.csr_matrix((len(rows), len(genes)), dtype=np.float32), obs=obs, var=var, obsm=obsm)
    shapes = {}
    if attrs:
        region_key = attrs["region_key"]
        regions = [str(r) for r in pd.unique(obs[region_key].astype(str))]
        shapes = {r: sdata.shapes[r] for r in regions if r in sdata.shapes}
        new = TableModel.parse(new, region=regions, region_key=region_key, instance_key=attrs["instance_key"])
    return SpatialData(shapes=shapes, tables={key: new})


def _table_group(store: Path, key: str):
    import zarr

    return zarr.open_group(str(store / "tables" / key), mode="r+")


def _new_layer(layers, name: str, shape: tuple[int, int], chunk: int):
    chunks = (max(1, min(chunk, shape[0])), max(1, shape[1]))
    v3 = layers.metadata.zarr_format == 3
    kwargs = {"shards": None} if v3 else {}  # one file per chunk of spots (no sharding)
    arr = layers.create_array(name, shape=shape, chunks=chunks, dtype="float32", fill_value=np.nan, **kwargs)
    arr.attrs.update(_ENCODING)
    return arr


def _write_uns(group, old: dict, new: dict) -> None:
    from anndata.io import write_elem

    write_elem(group, "uns", {**{k: v for k, v in old.items()}, **new})
