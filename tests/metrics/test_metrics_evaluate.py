"""Per-section evaluation and aggregation (TRIPLEX semantics: unweighted section mean, NaN genes omitted)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from genedml.metrics import aggregate_folds, aggregate_sections, evaluate_sections

GENES = ["A", "B", "C", "D"]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(30, 4))
    p = y + rng.normal(scale=0.8, size=(30, 4))
    sections = np.array(["s1"] * 10 + ["s2"] * 20)
    y[sections == "s1", 2] = 0.5  # gene C is constant within s1
    return y, p, sections


def test_per_section_scores_by_hand(data):
    y, p, sec = data
    res = evaluate_sections(y, p, sec, genes=GENES, hpg=["A", "C"])
    ps = res.per_section
    assert list(ps.index) == ["s1", "s2"]
    assert ps.loc["s1", "n_spots"] == 10 and ps.loc["s2", "n_spots"] == 20
    m = sec == "s1"
    r = [stats.pearsonr(y[m, g], p[m, g]).statistic for g in (0, 1, 3)]
    assert ps.loc["s1", "pcc_a"] == pytest.approx(np.mean(r))  # C omitted, not NaN-poisoned
    assert ps.loc["s1", "n_nan_genes"] == 1
    assert ps.loc["s1", "pcc_h"] == pytest.approx(r[0])  # A only: C is NaN there
    assert ps.loc["s1", "n_nan_hpg"] == 1
    assert ps.loc["s1", "mse"] == pytest.approx(np.mean((y[m] - p[m]) ** 2))
    assert ps.loc["s1", "mae"] == pytest.approx(np.mean(np.abs(y[m] - p[m])))
    m2 = ~m
    r2 = [stats.pearsonr(y[m2, g], p[m2, g]).statistic for g in range(4)]
    assert ps.loc["s2", "pcc_a"] == pytest.approx(np.mean(r2))
    assert ps.loc["s2", "pcc_h"] == pytest.approx(np.mean([r2[0], r2[2]]))
    assert res.per_gene.shape == (2, 4) and list(res.per_gene.columns) == GENES
    assert np.isnan(res.per_gene.loc["s1", "C"])
    assert res.per_gene.loc["s2", "B"] == pytest.approx(r2[1])


def test_without_hpg_pcc_h_is_nan(data):
    y, p, sec = data
    ps = evaluate_sections(y, p, sec, genes=GENES).per_section
    assert ps["pcc_h"].isna().all() and ps["pcc_a"].notna().all()


def test_bad_inputs_name_the_argument(data):
    y, p, sec = data
    with pytest.raises(ValueError, match="`hpg`"):
        evaluate_sections(y, p, sec, genes=GENES, hpg=["A", "Z"])
    with pytest.raises(ValueError, match="`genes`"):
        evaluate_sections(y, p, sec, genes=GENES[:3])
    with pytest.raises(ValueError, match="`sections`"):
        evaluate_sections(y, p, sec[:-1], genes=GENES)
    with pytest.raises(ValueError, match="`y_pred`"):
        evaluate_sections(y, p[:, :3], sec, genes=GENES)


def test_aggregate_unweighted_vs_spot_weighted():
    df = pd.DataFrame(
        {"n_spots": [10, 30, 20], "pcc_a": [0.2, 0.4, np.nan], "mse": [1.0, 2.0, 3.0], "fold": [0, 0, 1]},
        index=pd.Index(["s1", "s2", "s3"], name="section"),
    )
    section = aggregate_sections(df)
    assert section.loc["all", "pcc_a"] == pytest.approx(0.3)  # NaN section omitted
    assert section.loc["all", "mse"] == pytest.approx(2.0)
    assert section.loc["all", "n_sections"] == 3 and section.loc["all", "n_spots"] == 60
    spots = aggregate_sections(df, weight="spots")
    assert spots.loc["all", "pcc_a"] == pytest.approx((10 * 0.2 + 30 * 0.4) / 40)
    assert spots.loc["all", "mse"] == pytest.approx((10 + 60 + 60) / 60)
    by_fold = aggregate_sections(df, by="fold")
    assert by_fold.loc[0, "pcc_a"] == pytest.approx(0.3)
    assert np.isnan(by_fold.loc[1, "pcc_a"])
    with pytest.raises(ValueError, match="`weight`"):
        aggregate_sections(df, weight="genes")
    with pytest.raises(KeyError, match="`by`"):
        aggregate_sections(df, by="patient")


def test_aggregate_folds_mean_std():
    per_fold = pd.DataFrame({"pcc_a": [0.1, 0.3, np.nan], "mse": [1.0, 2.0, 3.0], "n_spots": [5, 5, 5]})
    out = aggregate_folds(per_fold)
    assert out.loc["pcc_a", "mean"] == pytest.approx(0.2)
    assert out.loc["pcc_a", "std"] == pytest.approx(0.1)  # ddof=0
    assert out.loc["pcc_a", "n_folds"] == 2
    assert out.loc["mse", "std"] == pytest.approx(np.std([1.0, 2.0, 3.0]))
    assert "n_spots" not in out.index
    assert aggregate_folds(per_fold, ddof=1).loc["mse", "std"] == pytest.approx(1.0)


def test_end_to_end_fold_table(data):
    y, p, sec = data
    per_section = evaluate_sections(y, p, sec, genes=GENES).per_section.assign(fold=[0, 1])
    folds = aggregate_sections(per_section, by="fold")
    summary = aggregate_folds(folds)
    assert summary.loc["pcc_a", "mean"] == pytest.approx(per_section["pcc_a"].mean())
