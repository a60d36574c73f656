"""``predict_to_store``: predictions of an H&E-only section into a new SpatialData zarr store (shapes + table).

Temporary in-memory implementation with the signature of the out-of-core writer (issue 13, item 2), which replaces
this file: it predicts with `gd.tl.predict` on a shallow copy, then writes the spot shapes and the table (never the
image) to ``out + ".tmp-<random>"`` and renames that onto ``out``.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .._keys import Keys

if TYPE_CHECKING:
    from spatialdata import SpatialData

    from ..models import Predictor

__all__ = ["predict_to_store"]


def predict_to_store(
    sdata: SpatialData,
    model: Predictor,
    out: str | os.PathLike,
    *,
    key_added: str = Keys.predicted,
    table_key: str | None = None,
    progress: bool | None = False,
) -> None:
    """Predict every spot of ``sdata``'s table and write the spot shapes and the predicted table to ``out``.

    ``sdata`` is left untouched; ``out`` must not exist. The store holds the shapes the table annotates, the table
    (``layers[key_added]`` and its provenance, as `gd.tl.predict` writes them) and ``sdata.attrs``; not the image.
    """
    import anndata as ad
    from spatialdata import SpatialData

    from ._predict import predict

    out = Path(out)
    if out.exists() or out.is_symlink():
        raise FileExistsError(f"`out`={str(out)!r} exists already.")
    key = Keys.table if table_key is None else table_key
    work = SpatialData(images=dict(sdata.images), shapes=dict(sdata.shapes), tables={key: sdata.tables[key].copy()})
    predict(work, model, key_added=key_added, table_key=key, progress=progress)
    table = work.tables[key]
    regions = table.uns.get("spatialdata_attrs", {}).get("region", [])
    regions = [regions] if isinstance(regions, str) else list(regions)
    result = SpatialData(
        shapes={r: sdata.shapes[r] for r in regions}, tables={key: table}, attrs=dict(getattr(sdata, "attrs", {}))
    )
    tmp = out.with_name(f"{out.name}.tmp-{secrets.token_hex(4)}")
    try:
        with ad.settings.override(auto_shard_zarr_v3=False):
            result.write(tmp)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
