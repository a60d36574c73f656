"""``gd.tl.get_predicted``: an AnnData of predicted genes only, for scanpy, that can go back into the SpatialData."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import numpy as np

from .._keys import Keys

if TYPE_CHECKING:
    import anndata as ad
    from spatialdata import SpatialData

__all__ = ["get_predicted"]

_ATTRS = "spatialdata_attrs"


def get_predicted(
    sdata_or_adata: SpatialData | ad.AnnData, *, table_key: str | None = None, layer: str = Keys.predicted
) -> ad.AnnData:
    """Predicted genes only, with ``X`` = predictions, for ``sc.pp.neighbors`` / ``sc.tl.leiden``.

    Spots without predictions (e.g. sections not predicted) are dropped. The result carries ``obs`` (all columns),
    ``var`` (all columns) of the predicted genes, ``obsm["spatial"]`` and a copy of ``uns["genedml"]``; no other
    ``obsm`` entry (no encoder features, no embeddings of the measured data). It stays a valid SpatialData table:
    ``uns["spatialdata_attrs"]`` is kept, its ``region`` narrowed to the regions of the rows kept, so it can be
    stored with ``sdata.tables["predicted"] = ...`` and joined to the spot shapes it annotates.

    Parameters
    ----------
    sdata_or_adata
        SpatialData (its ``table_key`` table) or the table itself, after `gd.tl.predict`.
    table_key
        Spot table of a SpatialData.
    layer
        The prediction layer (the ``key_added`` of `gd.tl.predict`).

    Returns
    -------
    A new AnnData, n_predicted_spots × n_model_genes (model genes missing from the table are absent, and listed in
    ``uns["genedml"][layer]["missing_genes"]``); ``X`` float32.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> targets = gd.pp.TargetSpec(n_top_genes=20)
    >>> model = gd.tl.fit(sdata, targets=targets, encoder="test_resnet", pretrained=False, config="cpu", max_epochs=1)
    >>> gd.tl.predict(sdata, model)
    >>> predicted = gd.tl.get_predicted(sdata)
    >>> predicted.shape
    (..., 20)
    >>> sdata.tables["predicted"] = predicted  # a valid table of the same SpatialData
    """
    import anndata as ad

    table = sdata_or_adata
    if not isinstance(table, ad.AnnData):
        from .._data_model import get_table

        table = get_table(sdata_or_adata, table_key=table_key)
    elif table_key is not None:
        raise ValueError("`table_key` only applies to a SpatialData input; got an AnnData.")
    if not isinstance(layer, str):
        raise TypeError(f"`layer` must be a layer name (str), got {type(layer).__name__}.")
    flag = Keys.var_flag(layer)
    if layer not in table.layers or flag not in table.var:
        raise KeyError(
            f"`layer`={layer!r}: no predictions in this table (run gd.tl.predict(..., key_added={layer!r})); "
            f"its layers: {sorted(table.layers.keys())}."
        )
    cols = np.flatnonzero(table.var[flag].to_numpy(dtype=bool))
    X = np.asarray(table.layers[layer])[:, cols]
    rows = np.flatnonzero(np.isfinite(X).all(axis=1))
    if rows.size == 0:
        raise ValueError(f"`layer`={layer!r}: no spot has a prediction for every predicted gene.")
    obsm = {Keys.spatial: np.asarray(table.obsm[Keys.spatial])[rows]} if Keys.spatial in table.obsm else {}
    out = ad.AnnData(
        X=X[rows].astype(np.float32),
        obs=table.obs.iloc[rows].copy(),
        var=table.var.iloc[cols].copy(),
        obsm=obsm,
        uns={Keys.uns: copy.deepcopy(dict(table.uns.get(Keys.uns, {})))},
    )
    attrs = table.uns.get(_ATTRS)
    return _annotate(out, attrs) if attrs else out


def _annotate(out: ad.AnnData, attrs: dict) -> ad.AnnData:
    """Keep the table a valid SpatialData table: the same keys, ``region`` = the regions of the rows kept."""
    from spatialdata.models import TableModel

    region_key, instance_key = attrs.get("region_key"), attrs.get("instance_key")
    if region_key not in out.obs or instance_key not in out.obs:
        return out  # the input was not a consistent SpatialData table: nothing to keep consistent
    regions = attrs.get("region")
    regions = [regions] if isinstance(regions, str) else [str(r) for r in regions]
    col = out.obs[region_key].astype(str)
    kept = [r for r in regions if r in set(col)]
    out.obs[region_key] = col.astype("category").cat.set_categories(kept)
    region = kept[0] if len(kept) == 1 else kept
    return TableModel.parse(
        out, region=region, region_key=region_key, instance_key=instance_key, overwrite_metadata=True
    )
