"""Per-gene metrics against scipy / numpy on hand-made cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from genedml.metrics import ccc_per_gene, explained_variance, mae, mse, pearson_per_gene, spearman_per_gene


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 6))
    p = 0.6 * y + rng.normal(size=(40, 6))
    return y, p


def test_pearson_matches_scipy(pair):
    y, p = pair
    expected = [stats.pearsonr(y[:, g], p[:, g]).statistic for g in range(y.shape[1])]
    np.testing.assert_allclose(pearson_per_gene(y, p), expected, rtol=1e-12)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, size=(30, 5)).astype(float)  # many ties
    p = y + rng.integers(0, 3, size=(30, 5))
    expected = [stats.spearmanr(y[:, g], p[:, g]).statistic for g in range(5)]
    np.testing.assert_allclose(spearman_per_gene(y, p), expected, rtol=1e-12)


def test_perfect_and_inverse_prediction():
    y = np.array([[0.1, 3.0], [0.7, 1.0], [0.2, 2.0], [1.5, 0.0]])
    np.testing.assert_allclose(pearson_per_gene(y, y), [1.0, 1.0])
    np.testing.assert_allclose(pearson_per_gene(y, -2 * y + 5), [-1.0, -1.0])
    np.testing.assert_allclose(spearman_per_gene(y, np.exp(y)), [1.0, 1.0])
    np.testing.assert_allclose(ccc_per_gene(y, y), [1.0, 1.0])
    assert mse(y, y) == 0.0


def test_constant_columns_are_nan_without_warning():
    y = np.array([[1.0, 0.1, 2.0], [2.0, 0.1, 2.0], [3.0, 0.1, 2.0]])  # 0.1: not exactly representable
    p = np.array([[1.0, 5.0, 1.0], [2.0, 6.0, 2.0], [4.0, 7.0, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = pearson_per_gene(y, p)
        s = spearman_per_gene(y, p)
        r_pred_const = pearson_per_gene(p, np.full_like(p, 0.3))
    assert np.isfinite(r[0]) and np.isnan(r[1]) and np.isnan(r[2])
    assert np.isfinite(s[0]) and np.isnan(s[1:]).all()
    assert np.isnan(r_pred_const).all()


def test_single_spot_and_empty_are_nan_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(pearson_per_gene(np.ones((1, 3)), np.ones((1, 3)) * 2)).all()
        assert np.isnan(spearman_per_gene(np.ones((1, 2)), np.zeros((1, 2)))).all()
        assert np.isnan(pearson_per_gene(np.zeros((0, 2)), np.zeros((0, 2)))).all()
        assert np.isnan(mse(np.zeros((0, 2)), np.zeros((0, 2))))


def test_nan_predictions_use_pairwise_complete_spots(pair):
    y, p = pair
    p = p.copy()
    p[[3, 10, 11], 2] = np.nan
    p[:, 4] = np.nan  # a gene with no prediction at all
    y = y.copy()
    y[5, 0] = np.inf
    r = pearson_per_gene(y, p)
    keep = np.isfinite(p[:, 2])
    assert r[2] == pytest.approx(stats.pearsonr(y[keep, 2], p[keep, 2]).statistic, rel=1e-12)
    keep0 = np.isfinite(y[:, 0])
    assert r[0] == pytest.approx(stats.pearsonr(y[keep0, 0], p[keep0, 0]).statistic, rel=1e-12)
    assert np.isnan(r[4])
    assert np.isfinite(r[[1, 3, 5]]).all()
    ok = np.isfinite(y) & np.isfinite(p)
    assert mse(y, p) == pytest.approx(np.mean((y[ok] - p[ok]) ** 2))
    assert mae(y, p) == pytest.approx(np.mean(np.abs(y[ok] - p[ok])))
    s = spearman_per_gene(y, p)
    assert s[2] == pytest.approx(stats.spearmanr(y[keep, 2], p[keep, 2]).statistic, rel=1e-12)


def test_mse_mae_against_numpy(pair):
    y, p = pair
    assert mse(y, p) == pytest.approx(np.mean((y - p) ** 2))
    assert mae(y, p) == pytest.approx(np.mean(np.abs(y - p)))
    np.testing.assert_allclose(mse(y, p, per_gene=True), ((y - p) ** 2).mean(axis=0))
    np.testing.assert_allclose(mae(y, p, per_gene=True), np.abs(y - p).mean(axis=0))


def test_ccc_by_hand():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = y + 1.0  # perfectly correlated, shifted: Pearson 1, CCC < 1
    var = y.var()
    expected = 2 * var / (var + var + 1.0)
    assert ccc_per_gene(y, p)[0] == pytest.approx(expected)
    assert pearson_per_gene(y, p)[0] == pytest.approx(1.0)
    assert np.isnan(ccc_per_gene(np.ones(3), np.ones(3)))[0]


def test_explained_variance_matches_sklearn(pair):
    from sklearn.metrics import explained_variance_score

    y, p = pair
    np.testing.assert_allclose(
        explained_variance(y, p, per_gene=True), explained_variance_score(y, p, multioutput="raw_values")
    )
    assert explained_variance(y, p) == pytest.approx(explained_variance_score(y, p))
    y2 = y.copy()
    y2[:, 1] = 2.0
    ev = explained_variance(y2, p, per_gene=True)
    assert np.isnan(ev[1]) and np.isfinite(np.delete(ev, 1)).all()
    assert explained_variance(y2, p) == pytest.approx(np.delete(ev, 1).mean())


def test_bad_shapes_name_the_argument():
    with pytest.raises(ValueError, match="`y_pred`"):
        pearson_per_gene(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="`y_true`"):
        mse(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
