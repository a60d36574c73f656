"""``gd.tl.predict``: write a trained model's predictions into the user's table (the output contract)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from .._data_model import get_table
from .._data_model import sections as _all_sections
from .._keys import Keys
from .._utils import resolve_progress
from .._validators import assert_positive_int

if TYPE_CHECKING:
    from spatialdata import SpatialData

    from ..models import GeneDML

__all__ = ["predict", "smooth_predictions"]


def predict(
    sdata: SpatialData,
    model: GeneDML,
    *,
    key_added: str = Keys.predicted,
    sections: list[str] | None = None,
    weights: str | os.PathLike | None = None,
    interval: float | None = None,
    smooth: bool | str = False,
    table_key: str | None = None,
    out: str | os.PathLike | None = None,
    chunk_size: int | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    copy: bool = False,
) -> SpatialData | None:
    """Predict the model's genes for every spot and write them into the table.

    Writes (``key_added`` defaults to ``"predicted"``):

    * ``layers[key_added]``: float32, n_obs × n_vars; model genes predicted (in the model's normalised units, see
      ``uns["genedml"]["normalize"]``), every other gene and every spot outside ``sections`` NaN. ``X`` is never
      written.
    * ``var[f"genedml_{key_added}"]``: True for predicted genes.
    * ``uns["genedml"][key_added]``: provenance (model hash, version, encoder and weights hash, genes, protocol,
      sections, missing genes, and ``"smooth"``: the neighbourhood used per section, or ``None``).

    With an `EnsembleModel` of two or more members, also ``layers[f"{key_added}_std"]`` (spread: std over members);
    with ``interval`` (a calibrated ensemble, see `gd.tl.calibrate`), ``layers[f"{key_added}_lower"]`` and
    ``layers[f"{key_added}_upper"]`` (the conformal interval at that level) and ``uns["genedml"][key_added]
    ["uncertainty"]`` (level, method, library, calibration groups, ``beta`` and the score quantiles at the levels
    0.05 … 0.95 that `gd.tl.evaluate` turns into a calibration curve).

    A table without genes (an H&E-only section from `gd.pp.spot_grid`) is replaced by one whose ``var`` is the model
    genes, with an empty sparse ``X``.

    **Streaming (``out=``), for whole slides and Visium HD.** With ``out``, ``sdata`` is left untouched and the
    predictions go into a new SpatialData zarr store at ``out``: the spots (the shapes the table annotates; not the
    image) and a table of the predicted sections' spots whose ``var`` is the model genes, ``X`` an empty sparse
    matrix and ``layers[key_added]`` a zarr array written one chunk of ``chunk_size`` spots at a time (plus the
    spread layer of an ensemble), with the same ``var`` flag and ``uns`` provenance. Gene-DML then holds one chunk
    of predictions and one band of its global encoder in memory, however many spots the slide has (features are
    read from the feature store per batch); an ensemble still predicts its members at once. The store is written
    to a temporary sibling and renamed when complete, so an interrupted run leaves no partial store. It is
    returned opened lazily (`gd.io.read_predictions`: layers are dask arrays).

    Parameters
    ----------
    sdata
        Data in genedml's data model; counts are not needed.
    model
        A trained `genedml.models.GeneDML` (or one loaded with ``GeneDML.load``).
    key_added
        Layer name and provenance key; the readers (`gd.tl.evaluate`, `gd.tl.get_predicted`, `gd.pl`) take it as
        ``layer=``.
    sections
        Sections to predict (``None``: all).
    weights
        The encoder's local weights file, for a loaded model whose encoder was trained with one: a model file stores
        only its sha256 (checked here) and never opens a file by itself. The model keeps the file for later calls.
    interval
        Nominal coverage of the prediction intervals, strictly between 0 and 1 (e.g. ``0.9``); needs a model
        calibrated by `gd.tl.calibrate`. ``None``: no intervals.
    smooth
        Spatially coherent predictions: replace each spot's prediction by the mean over its grid neighbourhood,
        with the same kernel as the targets' smoothing (`genedml.pp.smooth_grid`): ``True`` uses the model's own
        target grid (``"auto"`` by default: hexagonal on a Visium grid, 3 × 3 on legacy ST); ``"auto"``,
        ``"square"`` or ``"hex"`` name one; ``False`` (default) writes the raw
        predictions. Only the predicted section's coordinates and predictions are used, never its expression, so
        it is valid under the clean protocol; evaluate smoothed predictions as their own result (e.g. under their
        own ``key_added``).
    table_key
        Spot table.
    out
        Path of a new ``.zarr`` store to stream the predictions into (see above); ``None``: write into ``sdata``.
    chunk_size
        Spots per chunk of the streamed prediction and of the ``out`` layer (default 65,536).
    overwrite
        Replace an existing ``out`` store.
    progress
        Progress bars.
    copy
        Return a modified copy instead of writing in place.

    Returns
    -------
    ``None``, the modified copy when ``copy=True``, or the ``out`` store opened lazily.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> features = gd.features.FeatureSpec("test_resnet", pretrained=False)
    >>> model = gd.tl.fit(sdata, features=features, n_top_genes=20, config="cpu", max_epochs=1, batch_size=32)
    >>> gd.tl.predict(sdata, model)
    >>> sdata["table"].layers["predicted"].shape[0] == sdata["table"].n_obs
    True
    >>> gd.tl.predict(sdata, model, smooth=True, key_added="predicted_smooth")
    >>> sdata["table"].uns["genedml"]["predicted_smooth"]["smooth"]["grid"]
    {'S1': 'square', 'S2': 'square'}

    Streamed into a new store:

    >>> import tempfile, pathlib
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> res = gd.tl.predict(sdata, model, out=tmp / "pred.zarr", chunk_size=64)
    >>> layer = res["table"].layers["predicted"]
    >>> type(layer).__name__, layer.shape == (sdata["table"].n_obs, 20)
    ('Array', True)
    """
    from ..models import EnsembleModel, Predictor
    from ._uncertainty import check_level

    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"`key_added` must be a non-empty string, got {key_added!r}.")
    if not isinstance(model, Predictor) or not model.is_ready():
        what = "" if isinstance(model, Predictor) else f" (a {type(model).__name__}, not a genedml.models.Predictor)"
        raise ValueError(f"`model` is not trained or loaded{what}: use gd.tl.fit(...) or GeneDML.load(path).")
    if interval is not None:
        interval = check_level(interval)
        if getattr(model, "calibration_", None) is None:
            raise ValueError("`interval` needs a calibrated model: model = gd.tl.calibrate(sdata, model, ...) first.")
    if copy:
        from spatialdata import deepcopy

        sdata = deepcopy(sdata)
    key = Keys.table if table_key is None else table_key
    table = get_table(sdata, table_key=key)
    secs = _all_sections(sdata, table_key=key) if sections is None else list(sections)
    if isinstance(sections, str):  # one name, not its characters
        secs = [sections]
    unknown = sorted(set(secs) - set(_all_sections(sdata, table_key=key)))
    if unknown:
        raise KeyError(f"`sections`: unknown section(s) {unknown}.")
    if weights is not None:
        model.set_weights(weights)  # an ensemble passes it to its members
    if chunk_size is not None:
        assert_positive_int(chunk_size, name="chunk_size")
    if out is not None:
        if smooth is not False or interval is not None or copy:
            raise ValueError(
                "`out` streams raw predictions: it cannot be combined with `smooth`, `interval` or `copy`."
            )
        from ._predict_out import predict_to_store

        return predict_to_store(
            sdata,
            model,
            out,
            key_added=key_added,
            sections=secs,
            table_key=key,
            chunk_size=chunk_size,
            overwrite=overwrite,
            progress=progress,
        )
    grid = _smooth_grid_arg(smooth)
    if smooth is True:  # the kernel of the model's own targets
        grid = str((getattr(model, "normalize_", None) or {}).get("grid", "auto"))
    if grid is not None and interval is not None:
        raise ValueError(
            "`interval` and `smooth` cannot be combined: the intervals are calibrated on raw "
            "predictions; predict twice, under two `key_added`s."
        )
    extra = {}
    if isinstance(model, EnsembleModel):  # its spread (and calibrated intervals)
        bar = resolve_progress(progress)
        pred, sd = model.predict(sdata, sections=secs, table_key=key, progress=bar, return_std=True)
        extra = _uncertainty_layers(model, pred, sd, key_added, interval)
    else:
        pred = model.predict(sdata, sections=secs, table_key=key, progress=resolve_progress(progress))
    table = get_table(sdata, table_key=key)
    smoothing = None
    if grid is not None:
        pred, smoothing = smooth_predictions(table, pred, sections=secs, grid=grid)
    if table.n_vars == 0:
        table = _table_with_genes(table, model.genes_)
        sdata.tables[key] = table
    _write_predictions(table, pred, model, key_added=key_added, sections=secs, extra=extra, smoothing=smoothing)
    return sdata if copy else None


def _uncertainty_layers(model, pred: np.ndarray, sd: np.ndarray, key_added: str, interval: float | None) -> dict:
    """``{layer name: values}`` for the spread and the interval bounds, plus ``"_uns"``: their provenance."""
    from ._uncertainty import CURVE_LEVELS, intervals, score_quantiles

    out: dict = {}
    if len(model.models) > 1:
        out[Keys.std(key_added)] = sd
    cal = model.calibration_
    if interval is None or cal is None:
        return out
    lo, hi = intervals(cal, pred, sd, interval)
    out[Keys.lower(key_added)], out[Keys.upper(key_added)] = lo, hi
    out["_uns"] = {
        "level": interval,
        "method": cal["method"],
        "library": cal["library"],
        "groupby": cal["groupby"],
        "calibration_groups": list(cal["groups"]),
        "calibration_sections": list(cal["sections"]),
        "n_calibration_spots": int(cal["n_spots"]),
        "std_layer": Keys.std(key_added) if len(model.models) > 1 else None,
        "beta": np.asarray(cal["beta"], dtype=np.float64),
        "curve_levels": np.asarray(CURVE_LEVELS, dtype=np.float64),
        "curve_quantiles": score_quantiles(cal, CURVE_LEVELS),
    }
    return out


def _smooth_grid_arg(smooth: bool | str) -> str | None:
    if smooth is False:
        return None
    if smooth is True:
        return "auto"
    if smooth in ("auto", "square", "hex"):
        return smooth
    raise ValueError(f"`smooth` must be False, True, 'auto', 'square' or 'hex', got {smooth!r}.")


def smooth_predictions(table, pred: np.ndarray, *, sections: list[str], grid: str = "auto") -> tuple[np.ndarray, dict]:
    """Smooth predictions of the spots of ``sections`` (table order) over their grid neighbourhood.

    Reads only ``obs`` (section, array row and column) of ``table``: never its expression. Returns the smoothed
    predictions and the provenance record (grid per section, neighbourhood rule).
    """
    from ..pp import detect_grid as _detect_grid
    from ..pp import smooth_grid

    obs = table.obs
    sec = obs[Keys.section].astype(str).to_numpy()
    rows = np.flatnonzero(np.isin(sec, sections))
    if len(rows) != len(pred):
        raise ValueError(f"`pred` has {len(pred)} rows but the sections hold {len(rows)} spots.")
    r = obs[Keys.array_row].to_numpy()[rows]
    c = obs[Keys.array_col].to_numpy()[rows]
    out = smooth_grid(np.asarray(pred, dtype=np.float32), row=r, col=c, section=sec[rows], grid=grid)
    if grid == "auto":
        resolved = _detect_grid(r, c, section=sec[rows])
    else:
        resolved = {s: grid for s in dict.fromkeys(sec[rows])}
    record = {
        "grid": {str(k): str(v) for k, v in resolved.items()},
        "neighbourhood": {"square": "|drow|<=1, |dcol|<=1", "hex": "|drow|<=1, |dcol|<=2"},
        "inputs": "predictions and array coordinates of the predicted sections only",
    }
    return out, record


def _write_predictions(
    table,
    pred: np.ndarray,
    model,
    *,
    key_added: str,
    sections: list[str],
    extra: dict | None = None,
    smoothing: dict | None = None,
) -> None:
    extra = dict(extra or {})
    unc = extra.pop("_uns", None)
    sec = table.obs[Keys.section].astype(str).to_numpy()
    rows = np.flatnonzero(np.isin(sec, sections))
    present = [g for g in model.genes_ if g in table.var_names]
    missing = [g for g in model.genes_ if g not in table.var_names]
    src = np.array([model.genes_.index(g) for g in present], dtype=np.int64)
    dst = table.var_names.get_indexer(present)
    old_unc = (table.uns.get(Keys.uns, {}).get(key_added) or {}).get("uncertainty")
    if unc is None or (old_unc is not None and float(old_unc["level"]) != unc["level"]):
        for name in (Keys.lower(key_added), Keys.upper(key_added)):  # never keep intervals of another level
            if name in table.layers:
                del table.layers[name]
    for name, values in {key_added: pred, **extra}.items():
        layer = np.full(table.shape, np.nan, dtype=np.float32)
        if name in table.layers:  # keep predictions of other sections made earlier under the same key
            old = np.asarray(table.layers[name], dtype=np.float32)
            if old.shape == layer.shape:
                layer = old.copy()
        layer[np.ix_(rows, dst)] = values[:, src]
        table.layers[name] = layer
    flag = Keys.var_flag(key_added)
    table.var[flag] = table.var_names.isin(present)
    uns = table.uns.setdefault(Keys.uns, {})
    uns[key_added] = _provenance(model, key_added=key_added, sections=sections, missing=missing, smoothing=smoothing)
    if unc is not None:
        uns[key_added]["uncertainty"] = unc


def _provenance(model, *, key_added: str, sections: list[str], missing: list[str], smoothing: dict | None = None):
    """``uns["genedml"][key_added]``: what made the predictions."""
    from .._version import __version__

    return {
        "params": {"sections": list(sections), "key_added": key_added},
        "genes": list(model.genes_),
        "missing_genes": list(missing),
        "model_hash": model.model_hash,
        "genedml_version": __version__,
        "encoder": dict(model.encoder_info_ or {}),
        "features": _predict_features(model),
        "encoder_settings": {k: v for k, v in vars(model.encoder).items() if v is not None},
        "normalize": dict(model.normalize_ or {}),
        "protocol": model.train_config.protocol,
        "optimistic": model.train_config.protocol == "paper",
        "seed": model.train_config.seed,
        "hpg": list(model.fit_info_.get("hpg") or []),
        "fit": {k: v for k, v in model.fit_info_.items() if v is not None and k != "hpg"},
        "smooth": smoothing,
    }


def _table_with_genes(table, genes: list[str]):
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp
    from spatialdata.models import TableModel

    uns = {k: v for k, v in table.uns.items() if k != "spatialdata_attrs"}
    new = ad.AnnData(
        X=sp.csr_matrix((table.n_obs, len(genes)), dtype=np.float32),
        obs=table.obs.copy(),
        var=pd.DataFrame(index=pd.Index(genes)),
        obsm=dict(table.obsm),
        uns=uns,
    )
    attrs = table.uns.get("spatialdata_attrs")
    if not attrs:
        return new
    return TableModel.parse(
        new, region=attrs["region"], region_key=attrs["region_key"], instance_key=attrs["instance_key"]
    )


def _predict_features(model) -> dict:
    """Parameters and per-section window geometry of the features the prediction used (no arrays)."""
    member = model.models[0] if hasattr(model, "models") else model
    return dict(getattr(member, "predict_features_", None) or {})
