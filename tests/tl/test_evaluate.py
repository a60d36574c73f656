"""`gd.tl.evaluate`: the paper's metrics per section, checked against numpy/scipy computed by hand."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import genedml as gd
from genedml._keys import Keys

LAYER = Keys.predicted


@pytest.fixture(scope="module")
def _predicted(_trained):
    """The tiny dataset (S1 of patient P1, S2 of P2) with the session model's predictions, built once."""
    from spatialdata import deepcopy

    sdata, model = _trained
    sdata = deepcopy(sdata)
    gd.tl.predict(sdata, model)  # embeds the sections again (fresh feature cache): once per module only
    return sdata, model


@pytest.fixture
def predicted(_predicted):
    """A copy of the predicted dataset and the model (``layers["predicted"]`` holds the model genes)."""
    from spatialdata import deepcopy

    sdata, model = _predicted
    return deepcopy(sdata), model


def _genes(table) -> np.ndarray:
    """Column positions of the predicted genes."""
    return np.flatnonzero(table.var[Keys.var_flag(LAYER)].to_numpy())


def _section_rows(table) -> dict[str, np.ndarray]:
    sec = table.obs[Keys.section].astype(str).to_numpy()
    return {s: np.flatnonzero(sec == s) for s in sorted(set(sec))}


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """scipy's Pearson r per column over finite pairs; NaN where either side is constant (no scipy warning)."""
    out = np.full(a.shape[1], np.nan)
    for j in range(a.shape[1]):
        ok = np.isfinite(a[:, j]) & np.isfinite(b[:, j])
        x, y = a[ok, j], b[ok, j]
        if ok.sum() >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0:
            out[j] = stats.pearsonr(x, y).statistic
    return out


def _paper_recipe_by_hand(table, cols: np.ndarray) -> np.ndarray:
    """The paper's targets from raw counts: per section c / L · median(L), log10(1 + x), then the 3×3 grid mean."""
    counts = table.layers[Keys.counts][:, cols].toarray().astype(np.float64)
    out = np.full(counts.shape, np.nan)
    pos = table.obs[[Keys.array_row, Keys.array_col]].to_numpy()
    for rows in _section_rows(table).values():
        c = counts[rows]
        lib = c.sum(axis=1)
        y = np.log10(1 + c / np.where(lib == 0, 1, lib)[:, None] * np.median(lib))
        p = pos[rows]
        near = (np.abs(p[:, None, 0] - p[None, :, 0]) <= 1) & (np.abs(p[:, None, 1] - p[None, :, 1]) <= 1)
        out[rows] = near @ y / near.sum(axis=1, keepdims=True)
    return out


def test_scores_match_hand_computation(predicted):
    sdata, _ = predicted
    table = sdata["table"]
    scores = gd.tl.evaluate(sdata)
    cols = _genes(table)
    obs_layer = np.asarray(table.layers[Keys.observed(LAYER)], dtype=np.float64)
    # the observed layer holds the measured counts through the recipe recorded with the predictions, NaN elsewhere
    np.testing.assert_allclose(obs_layer[:, cols], _paper_recipe_by_hand(table, cols), rtol=1e-5, atol=1e-6)
    assert np.isnan(np.delete(obs_layer, cols, axis=1)).all()
    obs, pred = obs_layer[:, cols], np.asarray(table.layers[LAYER], dtype=np.float64)[:, cols]
    rows_of = _section_rows(table)
    assert list(scores.index) == list(rows_of) == ["S1", "S2"]
    for s, rows in rows_of.items():
        o, p = obs[rows], pred[rows]
        row = scores.loc[s]
        assert row["n_spots"] == len(rows)
        np.testing.assert_allclose(row["mse"], np.mean((o - p) ** 2), rtol=1e-6)
        np.testing.assert_allclose(row["mae"], np.mean(np.abs(o - p)), rtol=1e-6)
        np.testing.assert_allclose(row["pcc_a"], np.nanmean(_pearson(o, p)), rtol=1e-6)
        rho = [stats.spearmanr(o[:, j], p[:, j]).statistic for j in range(o.shape[1])]
        np.testing.assert_allclose(row["spearman"], np.mean(rho), rtol=1e-6)
        assert row["n_nan_genes"] == 0
    # the summary is the unweighted mean over sections (the paper's convention)
    summary = table.uns["genedml"]["evaluation"][LAYER]["summary"]
    for k in ("mse", "mae", "pcc_a", "pcc_h"):
        np.testing.assert_allclose(summary[k], scores[k].mean(), rtol=1e-9)
    assert summary["n_sections"] == 2 and summary["n_spots"] == table.n_obs


def test_per_gene_pcc_in_var_is_the_mean_over_sections(predicted):
    sdata, _ = predicted
    gd.tl.evaluate(sdata)
    table = sdata["table"]
    cols = _genes(table)
    obs = np.asarray(table.layers[Keys.observed(LAYER)], dtype=np.float64)[:, cols]
    pred = np.asarray(table.layers[LAYER], dtype=np.float64)[:, cols]
    per_section = np.vstack([_pearson(obs[r], pred[r]) for r in _section_rows(table).values()])
    var_pcc = table.var[Keys.pcc(LAYER)].to_numpy()
    np.testing.assert_allclose(var_pcc[cols], per_section.mean(axis=0), rtol=1e-6)
    assert np.isnan(np.delete(var_pcc, cols)).all()  # genes that were not predicted have no PCC


def test_pcc_h_uses_the_recorded_validation_hpg_and_records_provenance(predicted):
    sdata, model = predicted
    table = sdata["table"]
    scores = gd.tl.evaluate(sdata, n_hpg=5)
    ev = table.uns["genedml"]["evaluation"][LAYER]
    # the model ranks all its genes on its validation split (best first), so any n_hpg can be served
    assert sorted(model.fit_info_["hpg"]) == sorted(model.genes_)
    hpg = model.fit_info_["hpg"][:5]
    assert ev["hpg"] == hpg and ev["hpg_source"] == "validation split (clean)"
    assert ev["protocol"] == "clean" and ev["optimistic"] is False
    assert ev["normalize"]["recipe"] == "paper" and ev["normalize"]["smooth"] is True
    assert ev["aggregate"] == "section"
    assert ev["genes"] == table.uns["genedml"][LAYER]["genes"] == model.genes_
    pd.testing.assert_frame_equal(ev["per_section"].set_index("section"), scores, check_frame_type=False)
    obs = np.asarray(table.layers[Keys.observed(LAYER)], dtype=np.float64)
    pred = np.asarray(table.layers[LAYER], dtype=np.float64)
    h = table.var_names.get_indexer(hpg)
    for s, rows in _section_rows(table).items():
        np.testing.assert_allclose(scores.loc[s, "pcc_h"], np.nanmean(_pearson(obs[rows][:, h], pred[rows][:, h])))
    assert not np.allclose(scores["pcc_h"], scores["pcc_a"])  # 5 of 20 genes: a different number


def test_hpg_given_or_chosen_on_the_evaluated_data_is_labelled(predicted):
    sdata, model = predicted
    table = sdata["table"]
    given = model.genes_[-3:]
    gd.tl.evaluate(sdata, hpg=given)
    ev = table.uns["genedml"]["evaluation"][LAYER]
    assert ev["hpg"] == given and ev["hpg_source"] == "given" and not ev["optimistic"]
    # no HPG recorded with the predictions: chosen on the scored data itself, which the result must admit
    table.uns["genedml"][LAYER]["hpg"] = []
    scores = gd.tl.evaluate(sdata, n_hpg=4)
    ev = table.uns["genedml"]["evaluation"][LAYER]
    assert ev["hpg_source"] == "evaluated (optimistic)" and ev["optimistic"] is True
    # the paper's rule with sections as folds: rank genes by r in each section, average the ranks, keep the top 4
    obs = np.asarray(table.layers[Keys.observed(LAYER)], dtype=np.float64)
    pred = np.asarray(table.layers[LAYER], dtype=np.float64)
    cols = table.var_names.get_indexer(model.genes_)
    r = np.vstack([_pearson(obs[rows][:, cols], pred[rows][:, cols]) for rows in _section_rows(table).values()])
    mean_rank = stats.rankdata(r, axis=1).mean(axis=0)
    top = [model.genes_[i] for i in np.lexsort((np.arange(len(mean_rank)), -mean_rank))[:4]]
    assert ev["hpg"] == top
    h = [model.genes_.index(g) for g in top]
    np.testing.assert_allclose(scores["pcc_h"].to_numpy(), r[:, h].mean(axis=1), rtol=1e-6)


def test_sections_subset_and_partial_predictions(predicted):
    sdata, _ = predicted
    table = sdata["table"]
    full = gd.tl.evaluate(sdata)
    only = gd.tl.evaluate(sdata, sections=["S2"])
    assert list(only.index) == ["S2"]
    pd.testing.assert_series_equal(only.loc["S2"], full.loc["S2"])
    rows = _section_rows(table)
    assert np.isnan(table.layers[Keys.observed(LAYER)][rows["S1"]]).all()  # S1 not scored this time
    summary = table.uns["genedml"]["evaluation"][LAYER]["summary"]
    assert summary["n_sections"] == 1 and summary["mse"] == pytest.approx(full.loc["S2", "mse"])
    # predictions for S1 only (what predict(sections=["S1"]) leaves: NaN rows elsewhere): S1 is scored by default;
    # asking for S2 too is an error, not a score over S1 alone
    layer = np.asarray(table.layers[LAYER]).copy()
    layer[rows["S2"]] = np.nan
    table.layers[LAYER] = layer
    assert list(gd.tl.evaluate(sdata).index) == ["S1"]
    with pytest.raises(ValueError, match=r"`sections`: no predictions .*\['S2'\]"):
        gd.tl.evaluate(sdata, sections=["S1", "S2"])


def test_aggregate_spots_weights_by_spot_count(predicted):
    sdata, _ = predicted
    table = sdata["table"]
    # drop half of S1's predictions so the sections differ in size
    rows = _section_rows(table)["S1"]
    layer = np.asarray(table.layers[LAYER]).copy()
    layer[rows[::2]] = np.nan
    table.layers[LAYER] = layer
    scores = gd.tl.evaluate(sdata, aggregate="spots")
    assert scores.loc["S1", "n_spots"] == len(rows) - len(rows[::2])
    summary = table.uns["genedml"]["evaluation"][LAYER]["summary"]
    w = scores["n_spots"].to_numpy(dtype=float)
    np.testing.assert_allclose(summary["mse"], np.average(scores["mse"], weights=w), rtol=1e-9)
    assert summary["mse"] != pytest.approx(scores["mse"].mean())


def test_constant_gene_is_omitted_and_counted(predicted):
    sdata, model = predicted
    table = sdata["table"]
    rows = _section_rows(table)
    g_obs, g_pred = model.genes_[0], model.genes_[1]
    # g_obs: no counts in S1 (normalised targets constant there); g_pred: the same prediction at every spot
    counts = table.layers[Keys.counts].tolil()
    counts[rows["S1"], table.var_names.get_loc(g_obs)] = 0
    table.layers[Keys.counts] = counts.tocsr()
    layer = np.asarray(table.layers[LAYER]).copy()
    layer[:, table.var_names.get_loc(g_pred)] = 0.5
    table.layers[LAYER] = layer
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Mean of empty slice" or ConstantInputWarning on the way
        scores = gd.tl.evaluate(sdata)
    assert scores.loc["S1", "n_nan_genes"] == 2 and scores.loc["S2", "n_nan_genes"] == 1
    obs = np.asarray(table.layers[Keys.observed(LAYER)], dtype=np.float64)
    cols = _genes(table)
    for s, r in rows.items():
        per_gene = _pearson(obs[r][:, cols], layer[r][:, cols].astype(np.float64))
        assert np.isfinite(scores.loc[s, "pcc_a"])  # a constant gene must not turn the section's score into NaN
        np.testing.assert_allclose(scores.loc[s, "pcc_a"], np.nanmean(per_gene), rtol=1e-6)
    var_pcc = table.var[Keys.pcc(LAYER)]
    assert np.isnan(var_pcc[g_pred])  # NaN in every section: NaN, not 0
    s2 = rows["S2"]
    j = table.var_names.get_loc(g_obs)
    np.testing.assert_allclose(var_pcc[g_obs], stats.pearsonr(obs[s2, j], layer[s2, j]).statistic, rtol=1e-5)


def test_nan_predictions_are_left_out_pairwise(predicted):
    sdata, model = predicted
    table = sdata["table"]
    rows = _section_rows(table)
    base = gd.tl.evaluate(sdata)
    layer = np.asarray(table.layers[LAYER]).copy()
    dead = table.var_names.get_loc(model.genes_[2])
    layer[:, dead] = np.nan  # a gene the model failed on
    layer[rows["S2"][0], table.var_names.get_loc(model.genes_[3])] = np.inf  # one non-finite value
    table.layers[LAYER] = layer
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = gd.tl.evaluate(sdata, n_hpg=5)  # 5 of 20 genes: PCC(H) is defined
    assert (scores["n_spots"] == base["n_spots"]).all()  # no spot dropped for one bad gene
    assert (scores["n_nan_genes"] == 1).all()
    assert np.isnan(table.var[Keys.pcc(LAYER)].iloc[dead])
    obs = np.asarray(table.layers[Keys.observed(LAYER)], dtype=np.float64)
    cols = _genes(table)
    for s, r in rows.items():
        o, p = obs[r][:, cols], layer[r][:, cols].astype(np.float64)
        ok = np.isfinite(p)
        np.testing.assert_allclose(scores.loc[s, "mse"], np.mean((o - p)[ok] ** 2), rtol=1e-6)
        np.testing.assert_allclose(scores.loc[s, "pcc_a"], np.nanmean(_pearson(o, p)), rtol=1e-6)
    assert np.isfinite(scores[["mse", "mae", "pcc_a", "pcc_h", "spearman"]].to_numpy()).all()


def test_bad_input_gives_clear_errors(trained, predicted):
    with pytest.raises(KeyError, match=r"`layer`='predicted': no predictions"):
        gd.tl.evaluate(trained[0])  # nothing predicted yet
    sdata, model = predicted
    with pytest.raises(KeyError, match=r"`layer`='nope'"):
        gd.tl.evaluate(sdata, layer="nope")
    with pytest.raises(KeyError, match=r"`sections`: unknown section\(s\) \['S9'\]"):
        gd.tl.evaluate(sdata, sections=["S1", "S9"])  # not silently scored on S1 alone
    with pytest.raises(ValueError, match=r"`hpg`: genes not predicted: \['NOT_A_GENE'\]"):
        gd.tl.evaluate(sdata, hpg=[model.genes_[0], "NOT_A_GENE"])
    with pytest.raises(ValueError, match="`aggregate`"):
        gd.tl.evaluate(sdata, aggregate="genes")
    assert "evaluation" not in sdata["table"].uns["genedml"]  # a refused call writes nothing


def test_pcc_h_is_na_when_every_gene_would_be_highly_predictive(predicted):
    """20 genes ≤ n_hpg=50: PCC(H) would repeat PCC(A), so it is NaN (printed n/a) and the record says why."""
    sdata, _ = predicted
    scores = gd.tl.evaluate(sdata)
    ev = sdata["table"].uns["genedml"]["evaluation"][LAYER]
    assert scores["pcc_h"].isna().all() and np.isfinite(scores["pcc_a"]).all()
    assert ev["hpg"] == [] and ev["hpg_source"].startswith("n/a: 20 genes evaluated ≤ n_hpg=50")
    assert "PCC(H) n/a: 20 genes" in repr(scores)


def test_scores_say_each_sections_role_and_print_compactly(predicted):
    sdata, model = predicted
    scores = gd.tl.evaluate(sdata, n_hpg=5)
    tr, va = set(model.fit_info_["train_sections"]), set(model.fit_info_["val_sections"])
    want = {s: "train+validation" if s in tr and s in va else "train" if s in tr else "validation" for s in tr | va}
    assert scores["role"].to_dict() == {s: want.get(s, "test") for s in scores.index}
    text = repr(scores)
    header = text.splitlines()[0].split()
    assert header == ["role", "n_spots", "mse", "mae", "pcc_a", "pcc_h", "spearman"]  # the metrics, never "..."
    assert "..." not in text.splitlines()[2] and "mean over sections: mse" in text
    assert "PCC(H) over 5 genes (validation split (clean))" in text and "more columns: ccc" in text
    assert type(scores[["mse"]]) is pd.DataFrame  # operations give plain frames
    assert "role" in sdata["table"].uns["genedml"]["evaluation"][LAYER]["per_section"]
