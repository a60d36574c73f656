"""`gd.tl.cross_validate`: grouped folds without leakage, Gene-DML against the mean predictor, resume, ensemble."""

import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import genedml as gd
from genedml._keys import Keys

# 100 px windows at the tiny preset's 2 µm/px cover one 200 µm spot pitch: neighbour tiles are other spots' windows,
# encoded once (fast on CPUs), as in test_recovers_signal.
CV_KW = dict(encoder="test_resnet", pretrained=False, config="cpu", target_px=100, progress=False)
# lr 1e-3 (the planted-signal test's small-data rate) instead of the paper's 1e-4: with ~50 training spots, 3 epochs
# are 6 optimiser steps, too few at 1e-4 to move the network off its training-mean start (PCC(A) stays ~0).
TRAIN = dict(max_epochs=3, batch_size=32, patience=None, lr=1e-3)
N_GENES, N_HPG = 20, 5
# the module's CV run (the fixture below); test_resume_* repeat it
RUN_KW = dict(methods=("gene_dml", "mean"), n_top_genes=N_GENES, n_hpg=N_HPG, train_config=TRAIN, **CV_KW)


@pytest.fixture(scope="module")
def _cv(tmp_path_factory):
    """Leave-one-patient-out CV of Gene-DML and the mean on 2 patients × 2 sections, run once (with resume files)."""
    cache = tmp_path_factory.mktemp("cv-features")
    saved = gd.settings.cachedir
    gd.settings.cachedir = cache
    try:
        sdata = gd.datasets.synthetic(preset="tiny", seed=0, n_sections=4, n_patients=2)
        resume = tmp_path_factory.mktemp("cv-resume")
        res = gd.tl.cross_validate(sdata, resume_dir=resume, **RUN_KW)
    finally:
        gd.settings.cachedir = saved
    return sdata, res, resume, cache


@pytest.fixture
def cv(_cv):
    """``(sdata, CVResult, resume_dir)``; the feature cache of the module run is active for the test."""
    sdata, res, resume, cache = _cv
    gd.settings.cachedir = cache  # restored by the autouse settings fixture
    return sdata, res, resume


@pytest.fixture
def data(cv):
    """A fresh copy of the CV data (features already cached on disk)."""
    from spatialdata import deepcopy

    return deepcopy(cv[0])


def _sections(sdata) -> np.ndarray:
    return sdata["table"].obs[Keys.section].astype(str).to_numpy()


def _group_of(sdata, groupby: str = Keys.patient) -> dict[str, str]:
    obs = sdata["table"].obs
    return dict(zip(obs[Keys.section].astype(str), obs[groupby].astype(str), strict=True))


def _truth_and_pred(sdata, model, sections: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised measured values and the model's predictions on ``sections`` (rows in table order)."""
    sec = _sections(sdata)
    rows = np.flatnonzero(np.isin(sec, sections))
    truth = gd.pp.normalize(sdata, genes=model.genes_, inplace=False)[rows].astype(np.float64)
    return truth, model.predict(sdata, sections=sections).astype(np.float64), sec[rows]


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.full(a.shape[1], np.nan)
    for j in range(a.shape[1]):
        if np.ptp(a[:, j]) > 0 and np.ptp(b[:, j]) > 0:
            out[j] = stats.pearsonr(a[:, j], b[:, j]).statistic
    return out


def test_folds_hold_out_whole_patients(cv):
    sdata, res, _ = cv
    patient = _group_of(sdata)
    scores = res.scores
    assert set(res.models) == {(m, f) for m in ("gene_dml", "mean") for f in (0, 1)}
    for (name, f), model in res.models.items():
        tested = scores.loc[(scores["method"] == name) & (scores["fold"] == f), "section"].tolist()
        seen = model.fit_info_["train_sections"] + model.fit_info_["val_sections"]
        assert tested and seen
        test_patients = {patient[s] for s in tested}
        assert test_patients == set(scores.loc[scores["fold"] == f, "test_group"]) and len(test_patients) == 1
        assert not test_patients & {patient[s] for s in seen}  # no patient on both sides
        assert not set(tested) & set(seen)
        # clean protocol: early stopping on an inner split of the training patient (by section, one patient left)
        assert model.fit_info_["val_level"] == "section" and not model.fit_info_["optimistic"]
    for _, df in scores.groupby("method"):
        assert sorted(df["section"]) == ["S1", "S2", "S3", "S4"]  # every section tested exactly once per method


def test_gene_selection_sees_only_training_spots(data):
    table = data["table"]
    counts = table.layers[Keys.counts]
    g = table.var_names[np.argmin(np.asarray(counts.mean(axis=0)).ravel())]  # the least expressed gene …
    p2 = (table.obs[Keys.patient].astype(str) == "P2").to_numpy()
    lil = counts.tolil()
    lil[:, table.var_names.get_loc(g)] = np.where(p2, 5000, 0)[:, None]  # … made the top gene, in patient P2 only
    table.layers[Keys.counts] = lil.tocsr()
    table.X = lil.tocsr()
    res = gd.tl.cross_validate(data, methods=("mean",), n_top_genes=10, **CV_KW)
    held_out = res.scores.groupby("fold")["test_group"].first()
    genes = {held_out[f]: m.genes_ for (_, f), m in res.models.items()}
    assert g in genes["P1"]  # trained on P2, where it is the most expressed gene: selection is data-driven …
    assert g not in genes["P2"]  # … and never sees the held-out patient


def test_targets_and_mean_come_from_the_training_fold_only(cv):
    sdata, res, _ = cv
    sec = _sections(sdata)
    for f in (0, 1):
        model = res.models[("mean", f)]
        fit_secs = model.fit_info_["train_sections"] + model.fit_info_["val_sections"]  # fit_on = train + val
        assert model.fit_info_["fit_on"] == "train+val"
        # targets: the fold's genes, normalised per section (the recipe never looks at other sections)
        y = gd.pp.normalize(sdata, genes=model.genes_, inplace=False).astype(np.float64)
        train = np.isin(sec, fit_secs)
        np.testing.assert_allclose(model.mean_, y[train].mean(axis=0), rtol=1e-5)
        assert not np.allclose(model.mean_, y.mean(axis=0), rtol=1e-3)  # the test patient would shift it
        df = res.scores[(res.scores["method"] == "mean") & (res.scores["fold"] == f)].set_index("section")
        for s in df.index:
            np.testing.assert_allclose(df.loc[s, "mse"], np.mean((y[sec == s] - model.mean_) ** 2), rtol=1e-5)


def test_gene_dml_beats_the_mean_predictor(cv):
    _, res, _ = cv
    summary = res.summary
    assert summary.loc[("gene_dml", "mse"), "mean"] < summary.loc[("mean", "mse"), "mean"]
    per_fold = res.scores.groupby(["method", "fold"])["mse"].mean().unstack(0)
    assert (per_fold["gene_dml"] < per_fold["mean"]).all()
    # the MSE gain comes with real correlations (the planted morphology signal), not only a better offset
    assert summary.loc[("gene_dml", "pcc_a"), "mean"] > 0.2
    mean = res.scores[res.scores["method"] == "mean"]
    # constant predictions have no Pearson r: NaN (not 0), every gene counted, and no fold enters the summary
    assert mean["pcc_a"].isna().all() and mean["pcc_h"].isna().all() and (mean["n_nan_genes"] == N_GENES).all()
    assert summary.loc[("mean", "pcc_a"), "n_folds"] == 0 and np.isnan(summary.loc[("mean", "pcc_a"), "mean"])
    assert res.table().loc["mean", "pcc_a"] == "n/a"  # a constant predictor has no correlation


def test_summary_is_mean_and_std_over_fold_means(cv):
    sdata, res, _ = cv
    summary = res.summary
    assert summary.index.names == ["method", "metric"] and list(summary.columns) == ["mean", "std", "n_folds"]
    assert {"mse", "mae", "pcc_a", "pcc_h"} <= set(summary.loc["gene_dml"].index)
    fold_means = res.scores.groupby(["method", "fold"])[["mse", "mae", "pcc_a", "pcc_h"]].mean()
    for metric in ("mse", "mae", "pcc_a", "pcc_h"):
        v = fold_means.loc["gene_dml", metric].to_numpy()
        np.testing.assert_allclose(summary.loc[("gene_dml", metric), "mean"], v.mean(), rtol=1e-9)
        np.testing.assert_allclose(summary.loc[("gene_dml", metric), "std"], v.std(ddof=0), rtol=1e-9)
        assert summary.loc[("gene_dml", metric), "n_folds"] == 2
    table = res.table()
    assert table.index.name == "method"  # clean protocol: no optimistic label
    assert list(table.index) == ["gene_dml", "mean"] and list(table.columns) == ["mse", "mae", "pcc_a", "pcc_h"]
    m, s = summary.loc[("gene_dml", "mse"), ["mean", "std"]]
    assert table.loc["gene_dml", "mse"] == f"{m:.3f} ± {s:.3f}"
    stored = sdata["table"].uns["genedml"]["cv"]
    pd.testing.assert_frame_equal(stored["scores"], res.scores)
    p = stored["params"]
    assert p["protocol"] == "clean" and p["optimistic"] is False and p["n_hpg"] == N_HPG and p["normalize"] == "paper"
    assert [d["test_group"] for d in p["folds"]] == ["P1", "P2"]


def test_pcc_h_uses_the_genes_of_each_models_validation_split(cv):
    sdata, res, _ = cv
    for f in (0, 1):
        model = res.models[("gene_dml", f)]
        hpg = model.fit_info_["hpg"][:N_HPG]  # chosen on the inner validation section, best first
        df = res.scores[(res.scores["method"] == "gene_dml") & (res.scores["fold"] == f)].set_index("section")
        truth, pred, sec = _truth_and_pred(sdata, model, list(df.index))
        h = [model.genes_.index(g) for g in hpg]
        for s in df.index:
            r = _pearson(truth[sec == s], pred[sec == s])
            np.testing.assert_allclose(df.loc[s, "pcc_a"], np.nanmean(r), rtol=1e-5)
            np.testing.assert_allclose(df.loc[s, "pcc_h"], np.nanmean(r[h]), rtol=1e-5)
    assert not np.allclose(res.scores["pcc_h"].dropna(), res.scores["pcc_a"].dropna())  # 5 of 20 genes


def test_resume_recomputes_nothing(cv, monkeypatch):
    sdata, res, resume = cv
    assert sorted(p.name for p in resume.iterdir()) == sorted(
        f"{m}.fold{f}.{ext}" for m in ("gene_dml", "mean") for f in (0, 1) for ext in ("json", "pt")
    )

    def refuse(*args, **kwargs):
        raise AssertionError("a finished fold was recomputed")

    from genedml.models import GeneDML, MeanBaseline
    from genedml.models._base import SpotModel

    monkeypatch.setattr(SpotModel, "setup", refuse)
    monkeypatch.setattr(GeneDML, "train", refuse)
    monkeypatch.setattr(MeanBaseline, "train", refuse)
    bars = []

    class Bar:
        def __init__(self, total, **kw):
            self.total, self.n, self.kw = total, 0, kw
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def close(self):
            self.closed = True

    monkeypatch.setattr("genedml._utils.tqdm_class", lambda: Bar)
    again = gd.tl.cross_validate(sdata, resume_dir=resume, **{**RUN_KW, "progress": True})
    pd.testing.assert_frame_equal(again.scores, res.scores)
    pd.testing.assert_frame_equal(again.summary, res.summary)
    # the fold models come back from the resume folder, so the ensemble still has every fold
    assert set(again.models) == set(res.models)
    for key, model in res.models.items():
        assert again.models[key].model_hash == model.model_hash and again.models[key].genes_ == model.genes_
    # one progress bar over folds × methods, advanced once per finished (method, fold)
    (bar,) = bars
    assert bar.total == bar.n == 4 and not bar.kw["disable"] and bar.closed


def test_resume_refuses_results_of_a_different_run(cv, tmp_path):
    sdata, _, resume = cv
    copy = tmp_path / "resume"
    shutil.copytree(resume, copy)
    kw = dict(methods=("mean",), n_top_genes=N_GENES, n_hpg=N_HPG, train_config=TRAIN, resume_dir=copy, **CV_KW)
    with pytest.raises(ValueError, match=r"`resume_dir`.*different run.*differs in: n_top_genes"):
        gd.tl.cross_validate(sdata, **{**kw, "n_top_genes": N_GENES - 1})
    with pytest.raises(ValueError, match=r"differs in: normalize"):
        gd.tl.cross_validate(sdata, **{**kw, "normalize": "log1p_cp10k"})
    # the same settings resume; scores without a saved model are recomputed when the models are to be kept
    (copy / "mean.fold0.pt").unlink()
    again = gd.tl.cross_validate(sdata, **kw)
    assert (copy / "mean.fold0.pt").is_file() and set(again.models) == {("mean", 0), ("mean", 1)}


def test_resume_reads_folders_written_before_the_n_top_genes_rename(cv, tmp_path, monkeypatch):
    """A resume record whose fingerprint spells the gene count `n_genes` (earlier versions) is the same run."""
    import json

    from genedml.models import MeanBaseline

    sdata, res, resume = cv
    assert res.params["n_top_genes"] == N_GENES and "n_genes" not in res.params
    assert sdata["table"].uns["genedml"]["cv"]["params"]["n_top_genes"] == N_GENES
    copy = tmp_path / "resume"
    shutil.copytree(resume, copy)
    for f in (0, 1):
        path = copy / f"mean.fold{f}.json"
        done = json.loads(path.read_text())
        done["fingerprint"]["n_genes"] = done["fingerprint"].pop("n_top_genes")
        path.write_text(json.dumps(done))

    def refuse(*args, **kwargs):
        raise AssertionError("a finished fold was recomputed")

    monkeypatch.setattr(MeanBaseline, "setup", refuse)
    kw = dict(methods=("mean",), n_top_genes=N_GENES, n_hpg=N_HPG, train_config=TRAIN, resume_dir=copy, **CV_KW)
    again = gd.tl.cross_validate(sdata, **kw)
    pd.testing.assert_frame_equal(again.scores, res.scores[res.scores["method"] == "mean"].reset_index(drop=True))
    with pytest.raises(ValueError, match=r"differs in: n_top_genes"):  # the old key is read as the new one
        gd.tl.cross_validate(sdata, **{**kw, "n_top_genes": N_GENES - 1})


def test_ensemble_predicts_the_mean_of_the_fold_models(cv, data):
    _, res, _ = cv
    ens = res.ensemble("gene_dml")
    members = [res.models[("gene_dml", f)] for f in (0, 1)]
    assert ens.genes_ and all(g in m.genes_ for m in members for g in ens.genes_)
    assert set(ens.genes_) == set(members[0].genes_) & set(members[1].genes_)
    gd.tl.predict(data, ens)
    table = data["table"]
    layer = table.layers["predicted"]
    cols = table.var_names.get_indexer(ens.genes_)
    assert np.isfinite(layer[:, cols]).all() and np.isnan(np.delete(layer, cols, axis=1)).all()
    each = [m.predict(data)[:, [m.genes_.index(g) for g in ens.genes_]] for m in members]
    np.testing.assert_allclose(layer[:, cols], np.mean(each, axis=0), rtol=1e-5, atol=1e-6)
    assert table.uns["genedml"]["predicted"]["model_hash"] == ens.model_hash
    with pytest.raises(KeyError, match=r"`method`='ridge'"):
        res.ensemble("ridge")


def test_group_kfold_over_sections(data):
    res = gd.tl.cross_validate(data, methods=("mean",), groupby=Keys.section, k=2, n_top_genes=10, seed=0, **CV_KW)
    scores = res.scores
    assert sorted(scores["fold"].unique()) == [0, 1] and sorted(scores["section"]) == ["S1", "S2", "S3", "S4"]
    for (_, f), model in res.models.items():
        tested = set(scores.loc[scores["fold"] == f, "section"])
        seen = set(model.fit_info_["train_sections"] + model.fit_info_["val_sections"])
        assert len(tested) == 2 and seen == {"S1", "S2", "S3", "S4"} - tested  # groups = sections, disjoint
        assert scores.loc[scores["fold"] == f, "test_group"].iloc[0] == "+".join(sorted(tested))
    assert res.params["k"] == 2 and res.params["groupby"] == "section" and len(res.params["folds"]) == 2


def test_paper_protocol_is_optimistic_and_ranks_hpg_over_test_folds(data):
    res = gd.tl.cross_validate(data, methods=("ridge", "mean"), protocol="paper", n_top_genes=10, n_hpg=3, **CV_KW)
    assert res.params["protocol"] == "paper" and res.params["optimistic"] is True
    assert data["table"].uns["genedml"]["cv"]["params"]["optimistic"] is True
    assert "optimistic" in res.table().index.name  # a printed table carries the label
    per_fold, per_section = {}, {}
    for f in (0, 1):
        model = res.models[("ridge", f)]
        tested = sorted(res.scores.loc[res.scores["fold"] == f, "section"].unique())
        assert model.fit_info_["val_sections"] == tested and model.fit_info_["optimistic"]  # selected on the test
        truth, pred, sec = _truth_and_pred(data, model, tested)
        r = pd.DataFrame([_pearson(truth[sec == s], pred[sec == s]) for s in tested], tested, model.genes_)
        per_section[f] = r
        per_fold[f] = r.mean(axis=0)
    # the paper's HPG: rank genes per test fold (1 = lowest r), average the ranks, keep the n_hpg highest
    common = sorted(set(per_fold[0].index) & set(per_fold[1].index))  # genes are chosen per fold
    by_fold = pd.DataFrame({f: per_fold[f][common] for f in per_fold}).T
    mean_rank = stats.rankdata(by_fold.fillna(-np.inf).to_numpy(), axis=1).mean(axis=0)
    hpg = list(by_fold.columns[np.argsort(-mean_rank, kind="stable")[:3]])
    ridge = res.scores[res.scores["method"] == "ridge"]
    for _, row in ridge.iterrows():
        expected = per_section[row["fold"]].loc[row["section"], hpg].mean()
        np.testing.assert_allclose(row["pcc_h"], expected, rtol=1e-5)
        assert row["n_nan_hpg"] == int(per_section[row["fold"]].loc[row["section"], hpg].isna().sum())
    mean = res.scores[res.scores["method"] == "mean"]
    assert mean["pcc_h"].isna().all() and (mean["n_nan_hpg"] == 3).all()  # no r to rank: NaN, no warning


def test_target_um_reaches_the_models(data):
    res = gd.tl.cross_validate(data, methods=("mean",), n_top_genes=10, **{**CV_KW, "target_px": 64}, target_um=160.0)
    assert res.params["encoder"]["target_um"] == 160.0
    for model in res.models.values():
        assert model.encoder.target_um == 160.0 and model.encoder.target_px == 64
    # the features the models used: 160 µm windows (80 native px at 2 µm/px) resampled to 64 px
    assert "features" not in data["table"].uns.get("genedml", {}), "cross_validate leaves the table untouched"
    secs = set()
    for model in res.models.values():
        info = model.features_
        assert info["params"]["target_um"] == 160.0 and info["params"]["target_mpp"] == pytest.approx(2.5)
        secs |= set(info["sections"])
        for geo in info["sections"].values():
            assert geo["window_um"] == pytest.approx(160.0) and geo["crop_px"] == 80 and geo["out_px"] == 64
    assert sorted(secs) == ["S1", "S2", "S3", "S4"]


def test_method_kwargs_train_config_applies_to_that_method_only(data):
    res = gd.tl.cross_validate(
        data,
        methods=("gene_dml", "bleep"),
        n_top_genes=10,
        train_config={**TRAIN, "max_epochs": 2},
        method_kwargs={"bleep": {"train_config": {"max_epochs": 1, "protocol": "paper"}}},
        **CV_KW,
    )
    for (name, _), model in res.models.items():
        assert model.train_config.max_epochs == (1 if name == "bleep" else 2)
        assert model.train_config.protocol == "clean"  # the call's protocol cannot be overridden per method
        assert model.train_config.lr == TRAIN["lr"]  # the shared settings stay


def test_bad_input_fails_before_any_training(data, monkeypatch):
    from genedml.models._base import SpotModel

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the arguments were checked")

    monkeypatch.setattr(SpotModel, "setup", refuse)
    with pytest.raises(KeyError, match=r"`groupby`='donor'"):
        gd.tl.cross_validate(data, groupby="donor", **CV_KW)
    with pytest.raises(ValueError, match=r"`methods` .*unknown: \['genedml'\]"):
        gd.tl.cross_validate(data, methods=("mean", "genedml"), **CV_KW)
    with pytest.raises(ValueError, match=r"`protocol` must be 'clean' or 'paper', got 'strict'"):
        gd.tl.cross_validate(data, protocol="strict", **CV_KW)
    with pytest.raises(ValueError, match=r"`k` must lie in \[2, 2\]"):
        gd.tl.cross_validate(data, k=3, **CV_KW)
    table = data["table"]
    table.obs["site"] = "one"
    with pytest.raises(ValueError, match=r"`groupby`='site' has 1 group"):
        gd.tl.cross_validate(data, groupby="site", **CV_KW)
    table.obs["site"] = np.where(np.arange(table.n_obs) % 2, "a", "b")
    with pytest.raises(ValueError, match=r"`groupby`='site' splits section"):
        gd.tl.cross_validate(data, groupby="site", **CV_KW)


@pytest.mark.parametrize("protocol", ["clean", "paper"])
def test_pcc_h_is_na_when_no_more_genes_than_n_hpg(data, protocol):
    # PCC(H) over all genes would repeat PCC(A): reported n/a, as gd.tl.evaluate does (issue 15)
    res = gd.tl.cross_validate(data, methods=("ridge", "mean"), protocol=protocol, n_top_genes=5, n_hpg=5, **CV_KW)
    assert res.scores["pcc_h"].isna().all() and res.scores.loc[res.scores["method"] == "ridge", "pcc_a"].notna().all()
    table = res.table()
    assert (table["pcc_h"] == "n/a").all() and table.loc["mean", "pcc_a"] == "n/a"
    assert table.loc["ridge", "pcc_a"] != "n/a"
