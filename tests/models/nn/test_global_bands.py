"""The global encoder band by band (bounded memory at any number of spots) equals the whole-section pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _nn_helpers import IN_DIM, grid_positions, tiny_config

from genedml.dataloaders import SpotData
from genedml.models import _stream
from genedml.models.nn import GeneDMLNet
from genedml.models.nn._global import GlobalEncoder

DIM = 8


def _encoder(depth: int, window: int) -> GlobalEncoder:
    torch.manual_seed(0)
    return GlobalEncoder(DIM, depth, 2, 16, 0.0, attention="windowed", window=window).eval()


@pytest.mark.parametrize(("depth", "window"), [(2, 4), (3, 5), (1, 6)])
def test_band_cores_equal_the_whole_section(depth, window):
    enc = _encoder(depth, window)
    pos = grid_positions(60, 17, drop=(3, 4, 5, 100, 101, 300), seed=depth) - 3  # section min at 0
    x = torch.randn(pos.shape[0], DIM, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = enc(x, pos)
        margin = enc.receptive_rows()
        assert margin == depth * window + 1
        rows = pos[:, 0].numpy()
        plan = _stream.band_plan(rows, margin=margin, max_spots=150)
        assert len(plan) >= 3  # really split
        got = torch.full_like(whole, float("nan"))
        for lo_ext, lo, hi, hi_ext in plan:
            sel = torch.from_numpy((rows >= lo_ext) & (rows < hi_ext))
            tok = enc(x[sel], pos[sel], band=(lo_ext, 60, 17))
            core = torch.from_numpy((rows[sel.numpy()] >= lo) & (rows[sel.numpy()] < hi))
            got[torch.nonzero(sel).squeeze(1)[core]] = tok[core]
    torch.testing.assert_close(got, whole, rtol=1e-5, atol=1e-5)


def test_a_band_without_its_margin_differs():
    """The margin is needed: cutting the band at the core changes the tokens near the cut (the test can fail)."""
    enc = _encoder(2, 4)
    pos = grid_positions(30, 10, seed=0) - 3
    x = torch.randn(pos.shape[0], DIM, generator=torch.Generator().manual_seed(2))
    rows = pos[:, 0].numpy()
    with torch.no_grad():
        whole = enc(x, pos)
        sel = torch.from_numpy(rows >= 12)
        tok = enc(x[sel], pos[sel], band=(12, 30, 10))
    near = torch.from_numpy(rows[sel.numpy()] < 14)
    assert not torch.allclose(tok[near], whole[sel][near], atol=1e-4)


def test_band_plan_covers_every_row_once_and_respects_the_budget():
    rows = np.repeat(np.arange(100), 7)
    plan = _stream.band_plan(rows, margin=5, max_spots=70)
    cores = [r for _, lo, hi, _ in plan for r in range(lo, hi)]
    assert cores == list(range(100))
    for lo_ext, lo, hi, hi_ext in plan:
        assert lo_ext == max(0, lo - 5) and hi_ext == min(100, hi + 5)
        assert (hi_ext - lo_ext) * 7 <= 70 or hi - lo == 5  # cores are at least the margin thick
    assert len(plan) == 20  # 70 spots = 10 rows: 5-row cores (the margin's floor), not 1-row slivers
    plan = _stream.band_plan(rows, margin=5, max_spots=350)  # 50 rows per band: 40-row cores, then the rest
    assert [(lo, hi) for _, lo, hi, _ in plan] == [(0, 45), (45, 85), (85, 100)]
    assert _stream.band_plan(np.array([], dtype=int), margin=5, max_spots=10) == []


def _spot_data(height: int, width: int, seed: int = 0) -> SpotData:
    rng = np.random.default_rng(seed)
    pos = grid_positions(height, width, seed=seed).numpy()
    n = len(pos)
    half = n // 2  # two sections
    section = (np.arange(n) >= half).astype(np.int64)
    return SpotData.dense(
        target=rng.normal(size=(n, 3, IN_DIM)).astype(np.float32),
        neighbor=rng.normal(size=(n, 25, IN_DIM)).astype(np.float32),
        neighbor_mask=rng.random((n, 25)) > 0.2,
        global_feats=rng.normal(size=(n, IN_DIM)).astype(np.float32),
        pos=pos,
        section=section,
        section_names=["a", "b"],
    )


def test_streamed_predictions_equal_the_whole_pass(monkeypatch):
    torch.manual_seed(0)
    net = GeneDMLNet(tiny_config(global_attention="windowed", global_window=4), in_dim=IN_DIM, n_genes=5).eval()
    data = _spot_data(36, 20)
    whole = np.concatenate([p for _, p in _stream.iter_predictions(net, data)])
    with torch.inference_mode():  # the reference: the network's own pass with every section's features
        b = data.batch(np.arange(len(data)))
        ref = net(**b.inputs()).pred.numpy()
    np.testing.assert_allclose(whole, ref, rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(_stream, "BAND_SPOTS", 60)  # sections of 360 spots now go band by band, through a file
    chunks = list(_stream.iter_predictions(net, data, chunk=100))
    assert [len(r) for r, _ in chunks] == [100] * 7 + [20]
    np.testing.assert_array_equal(np.concatenate([r for r, _ in chunks]), np.arange(len(data)))
    np.testing.assert_allclose(np.concatenate([p for _, p in chunks]), ref, rtol=1e-5, atol=1e-5)
