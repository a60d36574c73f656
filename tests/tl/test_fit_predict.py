import numpy as np
import pytest
from _tl_helpers import FIT_KW

import genedml as gd
from genedml._keys import Keys


def test_fit_records_setup_and_history(trained):
    sdata, model = trained
    table = sdata["table"]
    assert model.is_trained_ and len(model.genes_) == 20
    # fitting writes nothing into the user's table: genes, targets and features are the model's own
    assert not {"genes", "normalize", "features", "fit"} & set(table.uns["genedml"]), "only the data's own metadata"
    assert not any(k.startswith("genedml") for k in table.obsm)
    assert "genedml_selected" not in table.var
    assert model.normalize_["genes"] == model.genes_ and model.normalize_["recipe"] == "paper"
    assert model.features_["params"]["target_px"] == model.encoder.target_px
    assert model.history_ and {"epoch", "train_loss", "val_pcc"} <= set(model.history_[0])
    assert all(np.isfinite(r["train_loss"]) for r in model.history_)
    # two patients of one section each: every patient gives a spatial block of its section to validation (issue 12),
    # so both train on both patients
    fi = model.fit_info_
    assert fi["val_level"] == "block"
    assert fi["train_sections"] == fi["val_sections"] == ["S1", "S2"]
    assert 0.15 * table.n_obs <= fi["n_val"] <= 0.25 * table.n_obs and fi["n_train"] + fi["n_val"] < table.n_obs


def test_predict_output_contract(trained):
    sdata, model = trained
    gd.tl.predict(sdata, model)
    table = sdata["table"]
    layer = table.layers["predicted"]
    assert layer.dtype == np.float32 and layer.shape == table.shape
    flag = table.var["genedml_predicted"].to_numpy()
    assert flag.sum() == 20 and set(table.var_names[flag]) == set(model.genes_)
    assert np.isfinite(layer[:, flag]).all() and np.isnan(layer[:, ~flag]).all()
    prov = table.uns["genedml"]["predicted"]
    assert prov["model_hash"] == model.model_hash and prov["protocol"] == "clean" and not prov["optimistic"]
    X_before = table.X.copy()
    assert (table.X != X_before).nnz == 0  # X never written
    ad = gd.tl.get_predicted(sdata)
    assert ad.shape == (table.n_obs, 20) and list(ad.var_names) == [g for g in table.var_names if g in model.genes_]
    assert "spatial" in ad.obsm and np.isfinite(ad.X).all()


def test_predict_subset_sections_and_copy(trained):
    sdata, model = trained
    first = gd.io.sections(sdata)[0]
    out = gd.tl.predict(sdata, model, sections=[first], copy=True)
    assert "predicted" not in sdata["table"].layers  # input untouched
    t = out["table"]
    other = t.obs["section"].astype(str).to_numpy() != first
    assert np.isnan(t.layers["predicted"][other]).all()
    with pytest.raises(KeyError, match="unknown section"):
        gd.tl.predict(sdata, model, sections=["nope"])


def test_save_load_roundtrip_identical_predictions(trained, tmp_path):
    sdata, model = trained
    p = model.predict(sdata)
    path = model.save(tmp_path / "m.pt")
    with pytest.raises(FileExistsError):
        model.save(path)
    loaded = gd.models.GeneDML.load(path, sdata=sdata)
    np.testing.assert_array_equal(loaded.predict(sdata), p)
    assert loaded.genes_ == model.genes_ and loaded.model_hash == model.model_hash


def test_load_refuses_mismatch(trained, tmp_path):
    sdata, model = trained
    path = model.save(tmp_path / "m.pt")
    table = sdata["table"]
    gd.tl.embed(sdata, encoder="test_resnet", pretrained=False, target_px=model.encoder.target_px, progress=False)
    feats = table.uns["genedml"]["features"]["test_resnet"]
    good_hash = feats["encoder"]["weights_hash"]
    feats["encoder"]["weights_hash"] = "some-other-weights"
    with pytest.raises(ValueError, match="training encoder"):
        gd.models.GeneDML.load(path, sdata=sdata)
    feats["encoder"]["weights_hash"] = good_hash
    gd.models.GeneDML.load(path, sdata=sdata)  # compatible again
    small = table[:, [g for g in table.var_names if g != model.genes_[0]]].copy()
    sdata.tables["table"] = small
    with pytest.raises(ValueError, match="lacks 1 of the model"):
        gd.models.GeneDML.load(path, sdata=sdata)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable genedml checkpoint"):
        gd.models.GeneDML.load(bad)


def test_same_seed_same_result(tmp_path):
    sdata = gd.datasets.synthetic(preset="tiny", seed=1)
    kw = {**FIT_KW, "max_epochs": 1}
    a = gd.tl.fit(sdata, **kw).predict(sdata)
    b = gd.tl.fit(sdata, **kw).predict(sdata)
    np.testing.assert_array_equal(a, b)


def test_fit_bad_input():
    sdata = gd.datasets.synthetic(preset="tiny", seed=0)
    with pytest.raises(KeyError, match="unknown section"):
        gd.tl.fit(sdata, **{**FIT_KW, "sections": ["nope"]})
    with pytest.raises(ValueError, match="exceed the batch size"):
        gd.tl.fit(sdata, **{**FIT_KW, "config": {"preset": "cpu", "K": 64}, "batch_size": 16})
    with pytest.raises(ValueError, match=r"unknown keyword argument\(s\) 'max_epoch' \(did you mean 'max_epochs'\?\)"):
        gd.tl.fit(sdata, **{**FIT_KW, "max_epoch": 3})
    with pytest.raises(ValueError, match="protocol='paper'"):
        gd.tl.fit(sdata, **{**FIT_KW, "protocol": "paper"})
    table = sdata["table"]
    table.layers[Keys.counts] = table.layers[Keys.counts].astype(np.float32)
    table.layers[Keys.counts].data[:3] = np.nan
    with pytest.raises(ValueError, match=r"(?i)nan|finite"):
        gd.tl.fit(sdata, **FIT_KW)


def test_he_only_section_spot_grid_predict(trained):
    sdata, model = trained
    sec = gd.io.sections(sdata)[0]
    hne = gd.io.he_only(sdata, section=sec)
    gd.pp.spot_grid(hne, image_key=Keys.image(sec), pitch_um=200, diameter_um=100)
    t = hne["table"]
    assert t.n_vars == 0 and t.n_obs > 0
    gd.tl.predict(hne, model)
    t = hne["table"]
    assert list(t.var_names) == model.genes_
    assert np.isfinite(t.layers["predicted"]).all()
    assert t.X.nnz == 0
