"""The feature store changes structure, not results (issue 11).

The models gather their inputs per batch from the store (each distinct tile once, spots × 25 indices). Here the same
inputs are rebuilt as the dense arrays of the pre-store design (``(n, 25, D)`` neighbours with their mask, ``(n, D)``
global, ``(n, T, D)`` tokens, read with ``gd.features.load_features``, the mask from the window geometry), and
both must give the same batches and, with a fixed seed, the same trained model and predictions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genedml as gd
from genedml.dataloaders import SpotData
from genedml.models import GeneDML

EMBED = {"encoder": "test_resnet", "pretrained": False, "target_px": 32}


@pytest.fixture(scope="module")
def sdata():
    return gd.datasets.synthetic(preset="tiny")


def _dense_like(sdata, data: SpotData, rows: np.ndarray) -> SpotData:
    """The dense (pre-store) form of ``data``, whose spots are the table rows ``rows``: features from
    ``load_features`` and neighbour masks from the window geometry, never from the store's index."""
    gd.tl.embed(sdata, **EMBED)  # a store hit: writes the reference load_features reads
    table = sdata.tables["table"]
    mask = np.zeros((table.n_obs, 25), bool)
    sec_col = table.obs["section"].astype(str).to_numpy()
    for sec in gd.io.sections(sdata):
        win = gd.features.spot_windows(sdata, section=sec, scale="neighbor", target_px=EMBED["target_px"])
        mask[sec_col == sec] = win.mask
    load = lambda scale: gd.features.load_features(sdata, encoder=EMBED["encoder"], scale=scale)[rows]  # noqa: E731
    return SpotData.dense(
        target=load("target"),
        neighbor=load("neighbor"),
        neighbor_mask=mask[rows],
        global_feats=load("global"),
        pos=data.pos,
        section=data.section,
        section_names=data.section_names,
        y=data.y,
    )


def _assert_same_batch(a, b) -> None:
    for name in ("target", "neighbor", "neighbor_mask", "section_of", "spot_of", "y", "rows"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and torch.equal(x, y), name
    assert len(a.section_feats) == len(b.section_feats)
    for x, y in zip(a.section_feats + a.section_pos, b.section_feats + b.section_pos, strict=True):
        assert torch.equal(x, y)


def test_store_batches_equal_dense_batches(sdata):
    model = GeneDML("cpu", {"max_epochs": 1, "accelerator": "cpu"}, **EMBED)
    table = sdata.tables["table"]
    secs = gd.io.sections(sdata)
    y = np.random.default_rng(0).normal(size=(table.n_obs, 3)).astype(np.float32)
    store = model._spot_data(sdata, sections=secs, table_key=None, progress=False, y=y)
    assert not isinstance(store.tiles, np.ndarray)  # memory-mapped store entries, gathered per batch
    # each distinct tile once: fewer tile rows than the dense design's spots × (1 + 25)
    assert store.tiles.shape[0] < table.n_obs * 26
    dense = _dense_like(sdata, store, np.arange(table.n_obs))
    assert store.neighbor_mask.sum() == dense.neighbor_mask.sum() > 0
    rng = np.random.default_rng(1)
    batches = [np.arange(len(store)), rng.permutation(len(store))[:17], store.section_rows(1)[::-1].copy()]
    for rows in batches:
        _assert_same_batch(store.batch(rows), dense.batch(rows))
    sub = rng.permutation(len(store))[:30]
    _assert_same_batch(store.subset(sub).batch(np.arange(30)), dense.subset(sub).batch(np.arange(30)))
    np.testing.assert_array_equal(store.neighbor_mean(chunk=7), dense.neighbor_mean())


def test_model_from_store_equals_model_from_dense_arrays(sdata, monkeypatch):
    kw = {"n_top_genes": 8, "normalize": "log1p_cp10k", "config": "cpu", "max_epochs": 2, "patience": None,
          "batch_size": 32, "accelerator": "cpu", "seed": 5, **EMBED}  # fmt: skip

    def fit_predict():
        model = gd.tl.fit(sdata, **kw)
        return model, model.predict(sdata)

    store_model, store_pred = fit_predict()
    original = GeneDML._spot_data

    def dense_spot_data(self, sd, *, sections, table_key, progress, y=None):
        data = original(self, sd, sections=sections, table_key=table_key, progress=progress, y=y)
        sec_col = sd.tables["table"].obs["section"].astype(str).to_numpy()
        return _dense_like(sd, data, np.flatnonzero(np.isin(sec_col, sections)))

    monkeypatch.setattr(GeneDML, "_spot_data", dense_spot_data)
    dense_model, dense_pred = fit_predict()
    assert store_model.history_ and len(store_model.history_) == len(dense_model.history_)
    assert np.isfinite(store_pred).all() and store_pred.std() > 0
    np.testing.assert_array_equal(store_pred, dense_pred)
