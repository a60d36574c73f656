"""Baselines in the Gene-DML harness: closed forms, grouped CV, retrieval, end to end on tiny synthetic data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genedml as gd
from genedml.encoders import dihedral
from genedml.models import (
    ABLATIONS,
    BASELINES,
    METHODS,
    BLEEPBaseline,
    GeneDML,
    MeanBaseline,
    RidgeBaseline,
    STNetBaseline,
    load_method,
    make_method,
    triplex_config,
)
from genedml.models.baselines._ridge import RidgePath, cv_folds, spatial_band_folds
from genedml.models.nn._baselines import BLEEPLoss, BLEEPNet, retrieve_mean

SHARED = {"encoder": "test_resnet", "pretrained": False, "target_px": 32, "dihedral": True}
TRAIN, TEST = ["S1", "S2"], ["S3"]
N_GENES = 20


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("baseline-cache")


@pytest.fixture(autouse=True)
def _shared_feature_cache(_isolated_settings, feature_cache):
    """One feature cache for the module: predictions reuse the features embedded at setup."""
    gd.settings.cachedir = feature_cache


@pytest.fixture(scope="module")
def fitted(feature_cache):
    """Three one-section patients; every baseline set up on S1–S2 (S2 = inner validation) and trained once."""
    sdata = gd.datasets.synthetic(preset="tiny", n_sections=3, n_patients=3, seed=0)
    tc = {"max_epochs": 3, "batch_size": 32, "patience": None}
    models = {
        "mean": make_method("mean", **SHARED),
        "ridge": make_method("ridge", alpha="hest", **SHARED),
        "ridge_cv": make_method("ridge", **SHARED),  # default: penalty by grouped inner CV
        "bleep": make_method("bleep", train_config=tc, top_k=10, **SHARED),
        "stnet": make_method("stnet", train_config={**tc, "max_epochs": 2}, backbone="test_resnet", **SHARED),
    }
    for m in models.values():
        m.setup(sdata, n_top_genes=N_GENES, sections=TRAIN, progress=False).train(progress=False)
    return sdata, models


def _held_out(sdata, model):
    table = sdata["table"]
    rows = table.obs["section"].astype(str).to_numpy() == TEST[0]
    y = gd.pp.normalize(sdata, genes=model.genes_, inplace=False)[rows]  # the model's recipe (paper, smoothed)
    pred = model.predict(sdata, sections=TEST, progress=False)
    return y, pred, gd.metrics.evaluate_sections(y, pred, [TEST[0]] * len(y), genes=model.genes_).per_section


# ------------------------------------------------------------------------------------------------- ridge maths
RIDGE_CASES = [(False, False, None), (True, False, None), (True, True, None), (True, True, 5)]


@pytest.mark.parametrize(("fit_intercept", "standardize", "pca"), RIDGE_CASES)
def test_ridge_closed_form_matches_sklearn(fit_intercept, standardize, pca):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 12)) * rng.uniform(0.5, 5, size=12) + 2.0
    Y = X[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(60, 4)) + 1.0
    Xq = rng.normal(size=(7, 12)) * 3
    path = RidgePath.fit(X, Y, fit_intercept=fit_intercept, standardize=standardize, n_components=pca)
    for alpha in (0.1, 3.0, 100.0):
        steps = [StandardScaler()] if standardize else []
        steps += [PCA(pca, svd_solver="full")] if pca else []
        ref = make_pipeline(*steps, Ridge(alpha=alpha, fit_intercept=fit_intercept)).fit(X, Y)
        coef, intercept = path.coef(alpha)
        np.testing.assert_allclose(Xq @ coef + intercept, ref.predict(Xq), rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(path.predict(path.project(Xq), alpha), ref.predict(Xq), rtol=1e-8, atol=1e-8)
    if not standardize:
        np.testing.assert_allclose(path.coef(3.0)[0].T, Ridge(alpha=3.0, fit_intercept=fit_intercept).fit(X, Y).coef_)


def test_grouped_folds_never_share_a_group():
    groups = np.random.default_rng(1).choice(list("ABCDEFG"), size=200)
    for max_folds in (3, 10):
        folds = cv_folds(groups, max_folds=max_folds, seed=0)
        assert len(folds) == min(max_folds, 7)
        tested = np.concatenate([test for _, test, _ in folds])
        assert sorted(tested) == list(range(200))  # every spot held out exactly once
        for train, test, _ in folds:
            assert not set(groups[train]) & set(groups[test])
            assert len(train) + len(test) == 200
    with pytest.raises(ValueError, match="at least 2 groups"):
        cv_folds(np.array(["A"] * 5))


def test_spatial_bands_keep_a_buffer_from_the_held_out_rows():
    rows = np.repeat(np.arange(12), 4)
    for train, test, _ in spatial_band_folds(rows, n_folds=4, buffer=1):
        gap = np.abs(rows[train][:, None] - rows[test][None, :]).min()
        assert gap >= 2  # no training spot inside the 3×3 smoothing radius of a held-out spot
    with pytest.raises(ValueError, match="at least 2 distinct grid rows"):
        spatial_band_folds(np.zeros(5, int))


# ------------------------------------------------------------------------------------------------- BLEEP pieces
def test_retrieval_averages_the_top_k_training_rows():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    values = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])
    query = torch.tensor([[5.0, 0.1], [1.0, 1.2], [0.1, -3.0]])  # cosine: norm does not matter
    pred, idx = retrieve_mean(query, keys, values, k=2)
    assert idx.tolist() == [[0, 1], [1, 0], [3, 0]]
    np.testing.assert_allclose(pred.numpy(), [[1.5, 15.0], [1.5, 15.0], [2.5, 25.0]])
    one, _ = retrieve_mean(query[:1], keys, values, k=1)
    np.testing.assert_allclose(one.numpy(), values[:1].numpy())
    capped, idx = retrieve_mean(query[:1], keys, values, k=50)  # k larger than the bank: all rows
    assert idx.shape == (1, 4) and np.allclose(capped.numpy(), values.mean(0).numpy())


def test_bleep_net_predicts_bank_averages_and_loss_trains():
    torch.manual_seed(0)
    net = BLEEPNet(8, 3, dim=16, top_k=4)
    with pytest.raises(RuntimeError, match="bank is empty"):
        net(feats=torch.randn(2, 8))
    bank = torch.randn(10, 3)
    net.set_bank(bank)
    net.eval()
    out = net(feats=torch.randn(5, 8))
    _, idx = retrieve_mean(out.image, net.bank_embeddings(), bank, k=4)
    np.testing.assert_allclose(out.pred.detach().numpy(), bank[idx].mean(1).numpy(), rtol=1e-6)
    net.train()
    train_out = net(feats=torch.randn(6, 8), y=torch.randn(6, 3))
    lo = BLEEPLoss(1.0)(train_out)
    lo.loss.backward()
    assert train_out.pred is None and torch.isfinite(lo.loss) and "clip" in lo.terms
    assert all(p.grad is not None for p in net.parameters())


def test_dihedral_gives_eight_distinct_views():
    x = torch.arange(2 * 4 * 4 * 3, dtype=torch.uint8).reshape(2, 4, 4, 3)
    views = [dihedral(x, k, channels_last=True) for k in range(8)]
    assert torch.equal(views[0], x)
    assert len({v.numpy().tobytes() for v in views}) == 8
    # channels-last and channels-first give the same images: one convention for windows and encoder inputs
    first = [dihedral(x.permute(0, 3, 1, 2), k).permute(0, 2, 3, 1) for k in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(views, first, strict=True))
    with pytest.raises(ValueError, match="`k`"):
        dihedral(x, 8)


# ------------------------------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("name", ["mean", "ridge", "ridge_cv", "bleep", "stnet"])
def test_baselines_predict_finite_rows_of_the_sections(fitted, name):
    sdata, models = fitted
    model = models[name]
    assert model.is_trained_ and len(model.genes_) == N_GENES
    # two training patients of one section each: each gives a spatial block of its section to the inner validation
    # (the small-cohort rule, docs/protocols.md), so both patients train
    fi = model.fit_info_
    assert fi["val_level"] == "block" and fi["train_sections"] == fi["val_sections"] == ["S1", "S2"]
    n_test = int((sdata["table"].obs["section"] == TEST[0]).sum())
    pred = model.predict(sdata, sections=TEST, progress=False)
    assert pred.shape == (n_test, N_GENES) and pred.dtype == np.float32 and np.isfinite(pred).all()
    full = model.predict(sdata, progress=False)  # table order over all sections
    rows = sdata["table"].obs["section"].astype(str).to_numpy() == TEST[0]
    np.testing.assert_allclose(full[rows], pred, rtol=1e-5, atol=1e-6)
    assert isinstance(model.model_hash, str) and len(model.model_hash) == 16


def test_mean_is_the_training_mean_and_paper_protocol_leaves_validation_out(fitted):
    sdata, models = fitted
    table = sdata["table"]
    sec = table.obs["section"].astype(str).to_numpy()
    y = gd.pp.normalize(sdata, genes=models["mean"].genes_, inplace=False)
    assert "genedml_target" not in table.obsm, "fitting writes nothing into the user's table"
    np.testing.assert_allclose(models["mean"].mean_, y[np.isin(sec, TRAIN)].mean(0), rtol=1e-5)  # train + inner val
    paper = MeanBaseline({"protocol": "paper"}, **SHARED)
    paper.setup(sdata, genes=models["mean"].genes_, sections=["S1"], val_sections=["S3"], progress=False).train()
    assert paper.fit_info_["fit_on"] == "train"
    np.testing.assert_allclose(paper.mean_, y[sec == "S1"].mean(0), rtol=1e-5)


def test_ridge_beats_the_mean_on_a_held_out_patient(fitted):
    sdata, models = fitted
    _, _, mean_scores = _held_out(sdata, models["mean"])
    assert np.isnan(mean_scores["pcc_a"].iloc[0])  # constant per section: no correlation
    for name in ("ridge", "ridge_cv"):
        _, _, scores = _held_out(sdata, models[name])
        assert scores["pcc_a"].iloc[0] > 0.15, (name, scores)
        assert scores["mse"].iloc[0] < mean_scores["mse"].iloc[0]


def test_ridge_cv_is_grouped_by_patient_and_picks_the_best_alpha(fitted):
    model = fitted[1]["ridge_cv"]
    cv = model.cv_results_
    assert cv["level"] == "patient" and sorted(cv["folds"]) == ["P1", "P2"]
    scores = np.asarray(cv["scores"])
    assert model.alpha_ == cv["alphas"][int(np.nanargmax(scores))]
    assert set(model.fit_info_["hpg"]) <= set(model.genes_) and model.fit_info_["cv_level"] == "patient"
    hest = fitted[1]["ridge"]
    assert hest.alpha_ == pytest.approx(100.0 / (hest.in_dim_ * N_GENES))


def test_ridge_cv_by_mse_scores_minus_the_held_out_error(fitted):
    sdata, models = fitted
    model = RidgeBaseline(alpha="cv", cv_score="mse", **SHARED)
    model.setup(sdata, genes=models["ridge_cv"].genes_, sections=TRAIN, progress=False).train()
    scores = np.asarray(model.cv_results_["scores"])
    assert (scores < 0).all() and model.alpha_ == model.cv_results_["alphas"][int(np.argmax(scores))]


def test_ridge_neighbour_features_average_valid_tiles():
    from genedml.dataloaders import SpotData

    nb = np.stack([np.full((3, 2), 1.0), np.full((3, 2), 5.0)]).astype(np.float32)  # 2 spots × 3 tiles × D=2
    mask = np.array([[True, False, True], [False, False, False]])
    nb[0, 1] = 100.0  # masked tile must not count
    data = SpotData.dense(
        target=np.zeros((2, 0, 2), np.float16),
        neighbor=nb,
        neighbor_mask=mask,
        global_feats=np.ones((2, 2), np.float32),
        pos=np.zeros((2, 2), np.int64),
        section=np.zeros(2, int),
        section_names=["S"],
    )
    X = RidgeBaseline(use_neighbors=True, **SHARED).features(data)
    np.testing.assert_allclose(X, [[1, 1, 1, 1], [1, 1, 0, 0]])


def test_bleep_bank_and_stnet_record_their_fit(fitted):
    models = fitted[1]
    n_train_val = models["mean"].fit_info_["n_fit"]
    assert models["bleep"].fit_info_["bank_size"] == n_train_val  # validation spots join the bank after training
    assert models["bleep"].train_config.lr == 1e-3  # BLEEP's own optimiser settings
    for name in ("bleep", "stnet"):
        assert models[name].history_ and {"epoch", "train_loss", "val_pcc"} <= set(models[name].history_[0])
    assert models["stnet"].encoder_info_["fine_tuned"] and models["stnet"].scales == ()


@pytest.mark.parametrize("name", ["mean", "ridge_cv", "bleep", "stnet"])
def test_save_load_roundtrip(fitted, tmp_path, name):
    sdata, models = fitted
    model = models[name]
    path = model.save(tmp_path / f"{name}.pt")
    with pytest.raises(FileExistsError):
        model.save(path)
    loaded = load_method(path, sdata=sdata)
    assert type(loaded) is type(model) and loaded.model_hash == model.model_hash and loaded.genes_ == model.genes_
    np.testing.assert_array_equal(loaded.predict(sdata, sections=TEST), model.predict(sdata, sections=TEST))
    other = RidgeBaseline if name != "ridge_cv" else MeanBaseline
    with pytest.raises(ValueError, match="holds a"):
        other.load(path)


# ------------------------------------------------------------------------------------------------- registry
def test_make_method_builds_every_name():
    for name in METHODS:
        model = make_method(name, train_config={"max_epochs": 1}, config="cpu", **SHARED)  # one shared set
        assert model.train_config.max_epochs == 1
        assert model.encoder.name == ("resnet18" if name == "stnet" else "test_resnet")  # ST-Net's own backbone
        if name in BASELINES:
            assert type(model) is BASELINES[name]
            continue
        assert type(model) is GeneDML and model.config.dim == 128  # the "cpu" base
        c = model.config
        if name == "triplex":
            assert not (c.instance_level or c.instance_group or c.bimodal_contrastive)
        elif name == "gene_dml":
            assert c.instance_level and c.instance_group and c.feature_grouping and c.global_scale
        else:
            for key, value in ABLATIONS[name].items():
                assert getattr(c, key) == value
    assert make_method("gene_dml", **SHARED).config.K == 18  # paper defaults without `config`
    cfg = triplex_config()
    assert (cfg.instance_level, cfg.instance_group, cfg.dim) == (False, False, 128)
    assert triplex_config("her2st").global_depth == 5


def test_bad_input_gives_clear_errors(fitted):
    sdata = fitted[0]
    with pytest.raises(ValueError, match="`name` must be one of"):
        make_method("unet")
    with pytest.raises(TypeError, match="unknown keyword argument\\(s\\) 'alpha'"):
        make_method("gene_dml", alpha="cv")
    for kwargs, match in [
        ({"alpha": -1.0}, "`alpha`"),
        ({"alpha": "auto"}, "`alpha`"),
        ({"alpha": "cv", "alphas": [1.0, -2.0]}, "`alphas`"),
        ({"alpha": "hest", "alphas": [1.0, 2.0]}, "`alphas` is the grid"),
        ({"pca": 0}, "`pca`"),
        ({"pca": 8, "fit_intercept": False}, "fit_intercept"),
        ({"cv_folds": 1}, "`cv_folds`"),
        ({"cv_score": "r2"}, "`cv_score`"),
        ({"use_neighbors": "yes"}, "`use_neighbors`"),
    ]:
        with pytest.raises(ValueError, match=match):
            RidgeBaseline(**kwargs)
    with pytest.raises(ValueError, match="`top_k`"):
        BLEEPBaseline(top_k=0)
    with pytest.raises(ValueError, match="`image_px`"):
        STNetBaseline(image_px=0)
    with pytest.raises(ValueError, match="`backbone`"):
        STNetBaseline(backbone="")
    with pytest.raises(RuntimeError, match="setup"):
        RidgeBaseline(**SHARED).train()
    with pytest.raises(RuntimeError, match="not trained"):
        BLEEPBaseline(**SHARED).predict(sdata)
    with pytest.raises(RuntimeError, match="not trained"):
        MeanBaseline(**SHARED).save("never.pt")
