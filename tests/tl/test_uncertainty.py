"""Calibrated uncertainty: ensemble spread, group-held-out conformal intervals, coverage, persistence, errors."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest

import genedml as gd

RECIPE = {"recipe": "paper", "smooth": False, "grid": "auto"}


class FakeMember:
    """A model whose errors are known: ``y + s·(z + d_m)`` with a shared error ``z``, member noise ``d_m`` and a
    spot scale ``s`` (0.1 on even rows, 0.5 on odd rows) — the ensemble disagrees where the error is large."""

    def __init__(self, sdata, genes, member, *, seen=("X",)):
        self.genes_ = list(genes)
        table = sdata["table"]
        y = gd.pp.normalize(sdata, genes=self.genes_, recipe="paper", smooth=False, inplace=False)
        rng = np.random.default_rng(0)
        z = rng.standard_normal(y.shape)
        d = np.random.default_rng(100 + member).standard_normal(y.shape)
        s = np.where(np.arange(table.n_obs) % 2 == 0, 0.1, 0.5)[:, None]
        self._pred = (y + s * (z + d)).astype(np.float32)
        self._sec = table.obs["section"].astype(str).to_numpy()
        self.fit_info_ = {"train_sections": list(seen), "val_sections": [], "hpg": None}
        self.encoder = SimpleNamespace(name="fake")
        self.encoder_info_ = {"name": "fake"}
        self.normalize_ = dict(RECIPE)
        self.train_config = SimpleNamespace(protocol="clean", seed=0)
        self.model_hash = hashlib.sha256(f"fake{member}".encode()).hexdigest()[:16]

    # the rest of the `genedml.models.Predictor` protocol
    def is_ready(self):
        return True

    def predict(self, sdata, *, sections=None, table_key=None, progress=None):
        keep = np.ones(len(self._sec), bool) if sections is None else np.isin(self._sec, sections)
        return self._pred[keep]

    def set_weights(self, weights):
        raise ValueError("a fake member has no encoder weights")

    def save(self, path, *, overwrite=False):
        raise NotImplementedError("a fake member is not saved")

    @classmethod
    def load(cls, path, *, weights=None, sdata=None, table_key=None):
        raise NotImplementedError("a fake member is not saved")


@pytest.fixture(scope="module")
def four_sections():
    return gd.datasets.synthetic(preset="tiny", n_sections=4, n_patients=2, spots_per_side=14, n_genes=30, seed=3)


@pytest.fixture
def fake_ensemble(four_sections):
    from spatialdata import deepcopy

    sdata = deepcopy(four_sections)
    genes = list(sdata["table"].var_names[:30])
    return sdata, gd.models.EnsembleModel([FakeMember(sdata, genes, m) for m in range(4)])


@pytest.mark.parametrize("level", [0.8, 0.9])
def test_coverage_within_binomial_tolerance(fake_ensemble, level):
    """Calibrated on S1–S2, the intervals cover the known truth on S3–S4 at the nominal rate."""
    sdata, ens = fake_ensemble
    model = gd.tl.calibrate(sdata, ens, sections=["S1", "S2"])
    gd.tl.predict(sdata, model, sections=["S3", "S4"], interval=level)
    scores = gd.tl.evaluate(sdata, sections=["S3", "S4"])
    table = sdata["table"]
    test = np.isin(table.obs["section"].astype(str), ["S3", "S4"])
    n_test = int(test.sum()) * 30
    n_cal = int((~test).sum())
    cov = np.average(scores["coverage"], weights=scores["n_spots"])
    tol = 3 * np.sqrt(level * (1 - level) * (1 / n_test + 1 / (n_cal * 30))) + 1 / (n_cal + 1)
    assert abs(cov - level) <= tol, (cov, level, tol)
    assert model.calibration_["groups"] == ["S1", "S2"]
    prov = table.uns["genedml"]["predicted"]["uncertainty"]
    assert prov["level"] == level and prov["groupby"] == "section" and "crepes" in prov["library"]
    # the calibration curve agrees with the intervals at their own level, and gd.pl.calibration draws it
    curve = table.uns["genedml"]["evaluation"]["predicted"]["coverage_curve"]
    at = curve[np.isclose(curve["level"], level)].set_index("section")["coverage"]
    np.testing.assert_allclose(at.loc[scores.index], scores["coverage"])
    assert {"S3", "S4"} <= {ln.get_label() for ln in gd.pl.calibration(sdata).axes[0].get_lines()}
    assert np.isfinite(table.var["genedml_coverage_predicted"].to_numpy()[:30]).all()


def test_wider_where_members_disagree(fake_ensemble):
    sdata, ens = fake_ensemble
    gd.tl.predict(sdata, gd.tl.calibrate(sdata, ens, sections=["S1", "S2"]), sections=["S3"], interval=0.9)
    t = sdata["table"]
    rows = np.flatnonzero(t.obs["section"].astype(str) == "S3")
    width = (t.layers["predicted_upper"] - t.layers["predicted_lower"])[rows, :30]
    std = t.layers["predicted_std"][rows, :30]
    odd = rows % 2 == 1  # the spots with 5× the error and 5× the member spread
    assert width[odd].mean() > 2 * width[~odd].mean()
    for g in range(30):  # width = 2·q_g·(std + β_g): exactly linear in the spread, gene by gene
        assert np.corrcoef(std[:, g], width[:, g])[0, 1] > 0.9999
    assert np.isnan(t.layers["predicted_lower"][np.flatnonzero(t.obs["section"].astype(str) != "S3")]).all()


def test_calibration_refuses_seen_sections(fake_ensemble):
    sdata, _ = fake_ensemble
    genes = list(sdata["table"].var_names[:30])
    seen = gd.models.EnsembleModel([FakeMember(sdata, genes, m, seen=("S1", "S3")) for m in range(3)])
    with pytest.raises(ValueError, match=r"`sections`: \['S1'\]"):
        gd.tl.calibrate(sdata, seen, sections=["S1", "S2"])
    auto = gd.tl.calibrate(sdata, seen)  # sections=None: only the unseen ones
    assert auto.calibration_["sections"] == ["S2", "S4"]
    # grouped by patient, a seen section taints every section of its patient
    pat = sdata["table"].obs.drop_duplicates("section").set_index("section")["patient"].astype(str).to_dict()
    assert pat["S1"] == pat["S2"] != pat["S3"] == pat["S4"]
    with pytest.raises(ValueError, match="no section to calibrate on"):
        gd.tl.calibrate(sdata, seen, groupby="patient")
    one = gd.models.EnsembleModel([FakeMember(sdata, genes, m, seen=("S1",)) for m in range(3)])
    assert gd.tl.calibrate(sdata, one, groupby="patient").calibration_["sections"] == ["S3", "S4"]
    with pytest.raises(ValueError, match=r"`sections`: \['S2'\]"):
        gd.tl.calibrate(sdata, one, sections=["S2"], groupby="patient")


def test_out_of_bag_members(fake_ensemble):
    """A bagged ensemble calibrates on its own training sections, using only the members that left each out."""
    sdata, _ = fake_ensemble
    genes = list(sdata["table"].var_names[:30])
    members = [FakeMember(sdata, genes, m, seen=seen) for m, seen in enumerate([("S1",), ("S1",), ("S2",), ("S2",)])]
    model = gd.tl.calibrate(sdata, gd.models.EnsembleModel(members), sections=["S1", "S2"])
    cal = model.calibration_
    assert cal["min_members"] == 2
    y = gd.pp.normalize(sdata, genes=genes, recipe="paper", smooth=False, inplace=False)
    s1 = np.flatnonzero(sdata["table"].obs["section"].astype(str) == "S1")
    oob = np.stack([members[2]._pred[s1], members[3]._pred[s1]]).astype(np.float64)  # the two that left S1 out
    expect = np.abs(y[s1] - oob.mean(0)) / (oob.std(0, ddof=1) + cal["beta"])
    np.testing.assert_allclose(cal["scores"][: len(s1)], expect, rtol=1e-4)
    with pytest.raises(ValueError, match=r"`sections`: \['S1'\]"):
        gd.tl.calibrate(sdata, gd.models.EnsembleModel(members[:1] + members[2:3]), sections=["S1"])


@pytest.mark.parametrize("bad", [90, 0, 1.0, -0.1, True, "0.9"])
def test_bad_levels(fake_ensemble, bad):
    sdata, ens = fake_ensemble
    model = gd.tl.calibrate(sdata, ens, sections=["S1"])
    with pytest.raises(ValueError, match="`interval` must be a coverage level strictly between 0 and 1"):
        gd.tl.predict(sdata, model, interval=bad)
    assert "predicted" not in sdata["table"].layers  # refused before any write


def test_level_needs_enough_calibration_spots_and_a_calibration(fake_ensemble):
    sdata, ens = fake_ensemble
    with pytest.raises(ValueError, match="needs a calibrated model"):
        gd.tl.predict(sdata, ens, interval=0.9)
    model = gd.tl.calibrate(sdata, ens, sections=["S1"])
    with pytest.raises(ValueError, match="too few for this level"):
        gd.tl.predict(sdata, model, interval=0.999)


def test_no_stale_intervals(fake_ensemble):
    sdata, ens = fake_ensemble
    model = gd.tl.calibrate(sdata, ens, sections=["S1"])
    gd.tl.predict(sdata, model, interval=0.9)
    gd.tl.predict(sdata, model)
    assert "predicted_lower" not in sdata["table"].layers
    assert "uncertainty" not in sdata["table"].uns["genedml"]["predicted"]


def test_real_models_save_load_and_he_only(tmp_path):
    """Ridge members on synthetic data: the calibration survives save/load and an H&E-only slide gets intervals."""
    from genedml.models import make_method

    gd.settings.cachedir = tmp_path / "cache"
    sdata = gd.datasets.synthetic(preset="tiny", n_sections=3, n_patients=3, seed=1)
    kw = dict(encoder="test_resnet", pretrained=False, target_px=32)
    members = []
    for seen in (["S1"], ["S2"]):  # both leave S3 out; each has its own section
        m = make_method("ridge", train_config={"seed": 0}, **kw)
        members.append(m.setup(sdata, n_top_genes=10, sections=seen, progress=False).train(progress=False))
    model = gd.tl.calibrate(sdata, gd.models.EnsembleModel(members), sections=["S3"], groupby="patient")
    path = model.save(tmp_path / "ens")
    with pytest.raises(FileExistsError):
        model.save(path)
    loaded = gd.models.EnsembleModel.load(path)
    for k in ("groups", "sections", "groupby", "genes", "method"):
        assert loaded.calibration_[k] == model.calibration_[k]
    np.testing.assert_array_equal(loaded.calibration_["scores"], model.calibration_["scores"])
    a = gd.tl.predict(sdata, model, interval=0.8, copy=True)["table"]
    b = gd.tl.predict(sdata, loaded, interval=0.8, copy=True)["table"]
    np.testing.assert_allclose(a.layers["predicted_lower"], b.layers["predicted_lower"], equal_nan=True)
    # an H&E-only slide (image and a spot grid, no counts) from another dataset
    bare = gd.io.he_only(gd.datasets.synthetic(preset="tiny", n_sections=1, n_patients=1, seed=5), section="S1")
    gd.pp.spot_grid(bare, image_key="S1_hne", pitch_um=200, diameter_um=100)
    gd.tl.predict(bare, loaded, interval=0.8)
    t = bare["table"]
    lo, hi, mid = (np.asarray(t.layers[k]) for k in ("predicted_lower", "predicted_upper", "predicted"))
    assert np.isfinite(lo).all() and (lo <= mid).all() and (mid <= hi).all() and (hi > lo).all()
    assert t.uns["genedml"]["predicted"]["uncertainty"]["calibration_groups"] == model.calibration_["groups"]


def test_cross_validate_scores_cross_conformal_intervals(tmp_path, monkeypatch):
    """Fold f's half-width is the conformal quantile of the other folds' held-out residuals; resume keeps them."""
    gd.settings.cachedir = tmp_path / "cache"
    sdata = gd.datasets.synthetic(preset="tiny", n_sections=4, n_patients=2, seed=2)
    genes = list(sdata["table"].var_names[:10])  # the same genes in every fold
    kw = dict(methods=("ridge",), groupby="section", genes=genes, encoder="test_resnet", pretrained=False, target_px=32)
    with pytest.raises(ValueError, match="`interval` must be a coverage level"):
        gd.tl.cross_validate(sdata, interval=80, **kw)
    res = gd.tl.cross_validate(sdata, interval=0.8, resume_dir=tmp_path / "resume", **kw)
    sc = res.scores
    assert {"coverage", "interval_width"} <= set(sc.columns) and sc["coverage"].notna().all()
    # recompute fold 0's half-width from the other folds' models on their own test sections
    sec = sdata["table"].obs["section"].astype(str).to_numpy()
    errs = []
    for f in (1, 2, 3):
        m = res.models[("ridge", f)]
        test = sorted(sc.loc[sc["fold"] == f, "section"])
        y = gd.pp.normalize(sdata, genes=m.genes_, inplace=False)[np.isin(sec, test)]
        errs.append(np.abs(y - m.predict(sdata, sections=test)))
    e = np.concatenate(errs)
    k = int(np.ceil(0.8 * (len(e) + 1))) - 1  # the conformal order statistic
    expect = 2 * np.sort(e, axis=0)[k].mean()
    assert sc.loc[sc["fold"] == 0, "interval_width"].iloc[0] == pytest.approx(expect, rel=1e-5)
    assert 0.5 < sc["coverage"].mean() < 1.0
    cv_uns = sdata["table"].uns["genedml"]["cv"]
    assert cv_uns["params"]["interval"] == 0.8 and len(cv_uns["interval"]["coverage_per_gene"]) == 4
    again = gd.tl.cross_validate(sdata, interval=0.8, resume_dir=tmp_path / "resume", **kw)
    np.testing.assert_allclose(again.scores["coverage"], sc["coverage"])
