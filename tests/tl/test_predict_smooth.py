"""`gd.tl.predict(smooth=...)`: spatially coherent predictions from coordinates and predictions only."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import genedml as gd


@pytest.fixture(scope="module")
def fitted():
    sdata = gd.datasets.synthetic(preset="tiny")
    model = gd.tl.fit(sdata, n_top_genes=10, encoder="test_resnet", pretrained=False, config="cpu", max_epochs=1,
                      batch_size=32, target_px=32, progress=False)  # fmt: skip
    return sdata, model


def test_smoothing_is_the_targets_kernel_and_recorded(fitted):
    sdata, model = fitted
    gd.tl.predict(sdata, model, progress=False)
    gd.tl.predict(sdata, model, smooth=True, key_added="smoothed", progress=False)
    t = sdata.tables["table"]
    cols = np.flatnonzero(t.var["genedml_predicted"].to_numpy())
    raw, sm = t.layers["predicted"][:, cols], t.layers["smoothed"][:, cols]
    expect = gd.pp.smooth_grid(raw, row=t.obs["array_row"], col=t.obs["array_col"], section=t.obs["section"])
    np.testing.assert_allclose(sm, expect, rtol=1e-5)
    assert not np.allclose(sm, raw)
    rec = t.uns["genedml"]["smoothed"]["smooth"]
    assert rec["grid"] == {"S1": "square", "S2": "square"}
    assert t.uns["genedml"]["predicted"]["smooth"] is None  # raw predictions say so


def test_smoothing_never_reads_expression(fitted):
    sdata, model = fitted
    gd.tl.predict(sdata, model, smooth=True, key_added="a", progress=False)
    t = sdata.tables["table"]
    before = t.layers["a"].copy()
    X = t.X.copy()
    rng = np.random.default_rng(0)
    t.X = sp.csr_matrix(np.asarray(X.todense() if sp.issparse(X) else X)[rng.permutation(t.n_obs)])
    gd.tl.predict(sdata, model, smooth=True, key_added="b", progress=False)
    t.X = sp.csr_matrix(t.shape, dtype=np.float32)
    gd.tl.predict(sdata, model, smooth=True, key_added="c", progress=False)
    t.X = X
    np.testing.assert_array_equal(t.layers["b"], before)
    np.testing.assert_array_equal(t.layers["c"], before)


def test_smoothing_stays_within_each_predicted_section(fitted):
    sdata, model = fitted
    gd.tl.predict(sdata, model, sections=["S1"], smooth="square", key_added="s1", progress=False)
    gd.tl.predict(sdata, model, smooth="square", key_added="both", progress=False)
    t = sdata.tables["table"]
    on = (t.obs["section"] == "S1").to_numpy()
    cols = np.flatnonzero(t.var["genedml_s1"].to_numpy())
    np.testing.assert_allclose(t.layers["s1"][on][:, cols], t.layers["both"][on][:, cols], rtol=1e-6)
    assert np.isnan(t.layers["s1"][~on][:, cols]).all()


def test_smooth_argument_is_checked(fitted):
    sdata, model = fitted
    with pytest.raises(ValueError, match="`smooth`"):
        gd.tl.predict(sdata, model, smooth="gaussian", progress=False)
