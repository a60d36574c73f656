"""``gd.tl.get_predicted``: an AnnData of predicted genes only, ready for scanpy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .._keys import Keys

if TYPE_CHECKING:
    import anndata as ad
    from spatialdata import SpatialData

__all__ = ["get_predicted"]


def get_predicted(
    sdata_or_adata: SpatialData | ad.AnnData, *, table_key: str | None = None, key: str = Keys.predicted
) -> ad.AnnData:
    """Predicted genes only, with ``X`` = predictions, for ``sc.pp.neighbors`` / ``sc.tl.leiden``.

    ``obs``, ``obsm`` (including ``spatial``) and ``uns["genedml"]`` are copied; spots without predictions (other
    sections) are dropped.

    Parameters
    ----------
    sdata_or_adata
        SpatialData (its ``table_key`` table) or the table itself, after `gd.tl.predict`.
    table_key
        Spot table of a SpatialData.
    key
        The ``key_added`` used by `gd.tl.predict`.

    Returns
    -------
    A new AnnData, n_predicted_spots × n_model_genes (model genes missing from the table are absent, and listed in
    ``uns["genedml"][key]["missing_genes"]``).

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> model = gd.tl.fit(sdata, n_genes=20, encoder="test_resnet", pretrained=False, config="cpu",
    ...                   max_epochs=1, batch_size=32)
    >>> gd.tl.predict(sdata, model)
    >>> gd.tl.get_predicted(sdata).shape
    (..., 20)
    """
    import anndata as ad

    table = sdata_or_adata
    if not isinstance(table, ad.AnnData):
        from .._data_model import get_table

        table = get_table(sdata_or_adata, table_key=table_key)
    flag = Keys.var_flag(key)
    if key not in table.layers or flag not in table.var:
        raise KeyError(f"`key`={key!r}: no predictions in this table (run gd.tl.predict(..., key_added={key!r})).")
    cols = np.flatnonzero(table.var[flag].to_numpy())
    X = np.asarray(table.layers[key])[:, cols]
    rows = np.flatnonzero(np.isfinite(X).all(axis=1))
    out = ad.AnnData(
        X=X[rows].astype(np.float32),
        obs=table.obs.iloc[rows].copy(),
        var=table.var.iloc[cols][[]].copy(),
        obsm={k: np.asarray(v)[rows] for k, v in table.obsm.items() if getattr(v, "ndim", 0) >= 1},
        uns={Keys.uns: dict(table.uns.get(Keys.uns, {}))},
    )
    return out
