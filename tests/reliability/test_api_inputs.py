"""Reliability catalogue of the API surface: fit / predict / evaluate / cross_validate / pl with bad arguments.

Each case asserts the exact outcome — the error type and that the message names the user's argument — and the
integrity of the input: after a failed call the SpatialData is unchanged (a deep snapshot of the table's X, obs,
var, obsm, layers and uns keys, and of the element names).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _rel_data import snapshot

import genedml as gd

FIT = dict(
    n_top_genes=12,
    encoder="test_resnet",
    pretrained=False,
    config="cpu",
    max_epochs=1,
    batch_size=32,
    patience=None,
    progress=False,
    target_px=32,
)


@pytest.fixture(scope="module")
def _base(tmp_path_factory):
    gd.settings.cachedir = tmp_path_factory.mktemp("rel-features")
    return gd.datasets.synthetic(preset="tiny", seed=0)


@pytest.fixture
def sdata(_base):
    from spatialdata import deepcopy

    return deepcopy(_base)


@pytest.fixture(scope="module")
def _trained(_base, tmp_path_factory):
    from spatialdata import deepcopy

    gd.settings.cachedir = tmp_path_factory.mktemp("rel-fit")
    s = deepcopy(_base)
    model = gd.tl.fit(s, **FIT)
    gd.tl.predict(s, model)
    gd.tl.evaluate(s)
    return s, model


@pytest.fixture
def trained(_trained):
    from spatialdata import deepcopy

    s, model = _trained
    return deepcopy(s), model


def _refused(fn, sdata, err, match):
    before = snapshot(sdata)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(err, match=match):
            fn()
    assert snapshot(sdata) == before


# ------------------------------------------------------------------------------------------------------ fit

FIT_ERRORS = {
    "n_top_genes_zero": ({"n_top_genes": 0}, ValueError, r"`n_top_genes` must be a positive integer, got 0"),
    "n_top_genes_negative": ({"n_top_genes": -3}, ValueError, r"`n_top_genes` must be a positive integer"),
    "n_top_genes_str": ({"n_top_genes": "12"}, ValueError, r"`n_top_genes` must be a positive integer, got '12'"),
    "n_top_genes_float": ({"n_top_genes": 2.5}, ValueError, r"`n_top_genes` must be a positive integer"),
    "n_top_genes_bool": ({"n_top_genes": True}, ValueError, r"`n_top_genes` must be a positive integer"),
    "genes_unknown": ({"genes": ["NOPE"]}, ValueError, r"none of the 1 genes of `genes` is in the table"),
    "genes_empty": ({"genes": []}, ValueError, r"`genes` is empty"),
    "genes_one_string": ({"genes": "ERBB2"}, TypeError, r"`genes` must be a list of gene names"),
    "panel_unknown": ({"panel": "bogus"}, ValueError, r"`panel` must be one of \['her2st', 'stnet', 'skinst'\]"),
    "normalize_unknown": ({"normalize": "zscore"}, ValueError, r"`normalize` must be one of \['paper'"),
    "smooth_str": ({"smooth": "yes"}, ValueError, r"`smooth` must be a bool, got 'yes'"),
    "config_unknown_preset": ({"config": "bogus"}, ValueError, r"`config` must be a GeneDMLConfig, a dict or one of"),
    "config_wrong_type": ({"config": 3}, TypeError, r"`config` must be a GeneDMLConfig, a preset name or a dict"),
    "config_unknown_key": ({"config": {"nonsense": 1}}, ValueError, r"`config` has unknown GeneDMLConfig key\(s\)"),
    "config_unknown_preset_in_dict": ({"config": {"preset": "x"}}, ValueError, r"`config\['preset'\]` must be"),
    "config_K_zero": ({"config": {"preset": "cpu", "K": 0}}, ValueError, r"`K` must be a positive integer, got 0"),
    "K_above_batch": (
        {"config": {"preset": "cpu", "K": 64}, "batch_size": 16},
        ValueError,
        r"`K`=64 feature groups exceed the batch size 16",
    ),
    "max_epochs_zero": ({"max_epochs": 0}, ValueError, r"`max_epochs` must be a positive int, got 0"),
    "lr_negative": ({"lr": -1.0}, ValueError, r"`lr` must be a finite number > 0, got -1.0"),
    "batch_size_zero": ({"batch_size": 0}, ValueError, r"`batch_size` must be a positive int"),
    "unknown_train_field": ({"bogus_field": 1}, ValueError, r"unknown keyword argument\(s\) 'bogus_field'"),
    "seed_str": ({"seed": "x"}, ValueError, r"`seed` must be an int >= 0, got 'x'"),
    "seed_negative": ({"seed": -1}, ValueError, r"`seed` must be an int >= 0"),
    "val_fraction_above_1": ({"val_fraction": 1.5}, ValueError, r"`val_fraction` must lie in \(0, 1\)"),
    "protocol_unknown": ({"protocol": "fast"}, ValueError, r"`protocol` must be one of \('clean', 'paper'\)"),
    "paper_without_val": ({"protocol": "paper"}, ValueError, r"protocol='paper' .* pass `val_sections`"),
    "sections_unknown": ({"sections": ["S9"]}, KeyError, r"`sections`/`val_sections`: unknown section\(s\) \['S9'\]"),
    "sections_one_string": ({"sections": "S9"}, KeyError, r"unknown section\(s\) \['S9'\]"),
    "sections_empty": ({"sections": []}, ValueError, r"`sections`: no training section left"),
    "val_sections_unknown": ({"val_sections": ["S9"]}, KeyError, r"unknown section\(s\) \['S9'\]"),
    "train_and_val_overlap": (
        {"sections": ["S1"], "val_sections": ["S1"]},
        ValueError,
        r"\['S1'\] are both training and validation sections",
    ),
    "table_key_unknown": ({"table_key": "nope"}, KeyError, r"`table_key`='nope' is not in `sdata.tables`"),
    "target_px_zero": ({"target_px": 0}, ValueError, r"`target_px` must be a positive integer"),
    "target_um_negative": ({"target_um": -5.0}, ValueError, r"`target_um` must be a positive number"),
    "target_um_vs_mpp": (
        {"target_um": 100.0, "target_mpp": 0.5},
        ValueError,
        r"`target_um`=100.0 at `target_mpp`=0.5 is 200 px but `target_px`=32",
    ),
    "encoder_unknown": ({"encoder": "no_such_encoder"}, ValueError, r"`encoder`='no_such_encoder' is not a registered"),
    "weights_missing": ({"weights": "/nonexistent/w.pth"}, FileNotFoundError, r"`weights`='/nonexistent/w.pth'"),
    "dihedral_str": ({"dihedral": "no"}, ValueError, r"`dihedral` must be a bool"),
    "pretrained_str": ({"pretrained": "no"}, ValueError, r"`pretrained` must be a bool"),
}


@pytest.mark.parametrize("case", list(FIT_ERRORS))
def test_fit_refuses_and_leaves_the_input_untouched(sdata, case):
    kw, err, match = FIT_ERRORS[case]
    _refused(lambda: gd.tl.fit(sdata, **{**FIT, **kw}), sdata, err, match)


def test_fit_failing_after_the_first_write_restores_the_table(sdata, monkeypatch):
    """A failure deep inside setup (after targets and features were written) leaves the table as it was."""
    from genedml.models import GeneDML

    def boom(self):
        raise RuntimeError("network build failed")

    monkeypatch.setattr(GeneDML, "_after_setup", boom)
    _refused(lambda: gd.tl.fit(sdata, **FIT), sdata, RuntimeError, r"network build failed")


# ------------------------------------------------------------------------------------------------------ predict


def _untrained():
    from genedml.models import GeneDML

    return GeneDML("cpu", encoder="test_resnet", pretrained=False)


PREDICT_ERRORS = {
    "model_none": (lambda m: {"model": None}, ValueError, r"`model` is not trained or loaded"),
    "model_untrained": (lambda m: {"model": _untrained()}, ValueError, r"`model` is not trained or loaded"),
    "model_a_path": (lambda m: {"model": "model.pt"}, ValueError, r"`model` is not trained or loaded"),
    "key_added_empty": (lambda m: {"key_added": ""}, ValueError, r"`key_added` must be a non-empty string"),
    "key_added_int": (lambda m: {"key_added": 5}, ValueError, r"`key_added` must be a non-empty string, got 5"),
    "sections_unknown": (lambda m: {"sections": ["S9"]}, KeyError, r"`sections`: unknown section\(s\) \['S9'\]"),
    "sections_one_string": (lambda m: {"sections": "S9"}, KeyError, r"`sections`: unknown section\(s\) \['S9'\]"),
    "table_key_unknown": (lambda m: {"table_key": "nope"}, KeyError, r"`table_key`='nope' is not in `sdata.tables`"),
}


@pytest.mark.parametrize("case", list(PREDICT_ERRORS))
def test_predict_refuses(trained, case):
    sdata, model = trained
    make, err, match = PREDICT_ERRORS[case]
    kw = {"model": model, **make(model)}
    _refused(lambda: gd.tl.predict(sdata, **kw), sdata, err, match)


def test_predict_at_another_pixel_size_is_refused_naming_both(_trained, tmp_path):
    """Native windows (target_px pixels) at 0.5 µm/px would cover a quarter of the width learned at 2 µm/px."""
    _, model = _trained
    other = gd.datasets.synthetic(preset="tiny", seed=1, pixel_size=0.5)
    match = r"section 'S1' has a pixel size of 0.5 µm/px but the model was trained at 2 µm/px .* 16 µm instead of .* 64"
    _refused(lambda: gd.tl.predict(other, model), other, ValueError, match)
    path = tmp_path / "m.pt"
    model.save(path)
    from genedml.models import GeneDML

    with pytest.raises(ValueError, match=r"pixel size of 0.5 µm/px but the model was trained at 2 µm/px"):
        GeneDML.load(path, sdata=other)
    with pytest.raises(ValueError, match=r"pixel size of 0.5 µm/px"):
        model.check_compatible(other)


def test_predict_within_tolerance_is_allowed(_trained):
    _, model = _trained
    other = gd.datasets.synthetic(preset="tiny", seed=1, pixel_size=2.2)  # 10% off: allowed
    gd.tl.predict(other, model)
    assert np.isfinite(other["table"].layers["predicted"][:, other["table"].var["genedml_predicted"]]).all()


def test_physical_windows_cover_the_training_micrometres_at_any_pixel_size(_base, tmp_path_factory):
    """With ``target_um`` the windows are cut in µm: a model trained at 2 µm/px predicts at 1 µm/px, and the
    prediction windows cover the same µm as the training windows."""
    from spatialdata import deepcopy

    gd.settings.cachedir = tmp_path_factory.mktemp("rel-um")
    train = deepcopy(_base)
    model = gd.tl.fit(train, **{**FIT, "target_um": 64.0})
    other = gd.datasets.synthetic(preset="tiny", seed=1, pixel_size=1.0)
    gd.tl.predict(other, model)
    geo_train = model.features_["sections"]
    geo_pred = other["table"].uns["genedml"]["predicted"]["features"]["sections"]
    for g in [*geo_train.values(), *geo_pred.values()]:
        assert g["window_um"] == pytest.approx(64.0, rel=0.02)
    assert geo_train["S1"]["crop_px"] == 32 and geo_pred["S1"]["crop_px"] == 64  # twice the pixels at 1 µm/px
    assert model.geometry_["window_um"] == {"S1": 64.0, "S2": 64.0}


def test_model_records_its_geometry(_trained):
    _, model = _trained
    geo = model.geometry_
    assert geo["pixel_size_um"] == {"S1": 2.0, "S2": 2.0}
    assert geo["window_um"] == {"S1": 64.0, "S2": 64.0}
    assert geo["pitch_um"] == 200.0 and geo["spot_diameter_um"] == 100.0


def test_spot_grid_uses_the_models_geometry(_trained):
    _, model = _trained
    model_geo = dict(model.encoder_info_["geometry"])
    model.encoder_info_["geometry"] = {**model_geo, "pitch_um": 300.0, "spot_diameter_um": 150.0}
    try:
        hne = gd.io.he_only(gd.datasets.synthetic(preset="tiny", seed=2), section="S1")
        gd.pp.spot_grid(hne, image_key="S1_hne", model=model)
    finally:
        model.encoder_info_["geometry"] = model_geo
    t = hne["table"]
    assert t.uns["genedml"]["sections"]["S1"]["pitch_um"] == 300.0
    assert hne.shapes["S1_spots"]["radius"].iloc[0] == pytest.approx(75.0 / 2.0)  # 150 µm / 2 at 2 µm/px


def test_spot_grid_refuses_a_non_model(sdata):
    hne = gd.io.he_only(sdata, section="S1")
    _refused(lambda: gd.pp.spot_grid(hne, image_key="S1_hne", model="m.pt"), hne, TypeError, r"`model` must be")


# ------------------------------------------------------------------------------------------------------ evaluate

EVAL_ERRORS = {
    "layer_missing": ({"layer": "nope"}, KeyError, r"`layer`='nope': no predictions in the table"),
    "aggregate_unknown": ({"aggregate": "genes"}, ValueError, r"`aggregate` must be 'section' or 'spots'"),
    "n_hpg_zero": ({"n_hpg": 0}, ValueError, r"`n_hpg` must be a positive integer, got 0"),
    "n_hpg_str": ({"n_hpg": "5"}, ValueError, r"`n_hpg` must be a positive integer"),
    "hpg_unknown": ({"hpg": ["NOPE"]}, ValueError, r"`hpg`: genes not predicted: \['NOPE'\]"),
    "sections_unknown": ({"sections": ["S9"]}, KeyError, r"`sections`: unknown section\(s\) \['S9'\]"),
    "table_key_unknown": ({"table_key": "nope"}, KeyError, r"`table_key`='nope'"),
}


@pytest.mark.parametrize("case", list(EVAL_ERRORS))
def test_evaluate_refuses(trained, case):
    sdata, _ = trained
    kw, err, match = EVAL_ERRORS[case]
    _refused(lambda: gd.tl.evaluate(sdata, **kw), sdata, err, match)


# ------------------------------------------------------------------------------------------------------ cross_validate

CV = dict(
    methods=["mean"],
    n_top_genes=8,
    encoder="test_resnet",
    pretrained=False,
    target_px=32,
    progress=False,
    keep_models=False,
)

CV_ERRORS = {
    "methods_unknown": ({"methods": ["magic"]}, ValueError, r"`methods` must name some of .* unknown: \['magic'\]"),
    "methods_empty": ({"methods": []}, ValueError, r"`methods` must name some of"),
    "protocol_unknown": ({"protocol": "fast"}, ValueError, r"`protocol` must be 'clean' or 'paper'"),
    "groupby_missing": ({"groupby": "donor"}, KeyError, r"`groupby`='donor' is not an obs column"),
    "groupby_one_group": ({"groupby": "one"}, ValueError, r"`groupby`='one' has 1 group"),
    "n_hpg_zero": ({"n_hpg": 0}, ValueError, r"`n_hpg` must be a positive integer, got 0"),
    "table_key_unknown": ({"table_key": "nope"}, KeyError, r"`table_key`='nope'"),
    "n_top_genes_zero": ({"n_top_genes": 0}, ValueError, r"`n_top_genes` must be a positive integer"),
}


@pytest.mark.parametrize("case", list(CV_ERRORS))
def test_cross_validate_refuses(sdata, case):
    kw, err, match = CV_ERRORS[case]
    if case == "groupby_one_group":
        sdata["table"].obs["one"] = "all"
    _refused(lambda: gd.tl.cross_validate(sdata, **{**CV, **kw}), sdata, err, match)


def test_cross_validate_writes_only_documented_keys(sdata):
    before = snapshot(sdata)
    res = gd.tl.cross_validate(sdata, **CV)
    after = snapshot(sdata)
    t = after["table:table"]
    assert set(t["obsm"]) == set(before["table:table"]["obsm"]), "no features or targets in obsm"
    assert set(t["uns"]["genedml"]) - set(before["table:table"]["uns"]["genedml"]) == {"cv"}
    for part in ("X", "layers", "obs", "var", "var_columns", "obs_columns"):
        assert t[part] == before["table:table"][part]
    assert not res.scores.empty


# ------------------------------------------------------------------------------------------------------ pl


def _a_predicted_gene(sdata) -> str:
    table = sdata["table"]
    return str(table.var_names[table.var["genedml_predicted"].to_numpy(dtype=bool)][0])


PL_ERRORS = {
    "spatial_gene_unknown": (
        lambda s: gd.pl.spatial(s, genes="NOPE"),
        KeyError,
        r"`genes`",
    ),
    "spatial_section_unknown": (
        lambda s: gd.pl.spatial(s, genes=_a_predicted_gene(s), sections="S9"),
        KeyError,
        r"`sections`",
    ),
    "spatial_layer_missing": (lambda s: gd.pl.spatial(s, genes="ERBB2", layer="nope"), KeyError, r"`layer`"),
    "pvo_gene_unknown": (lambda s: gd.pl.predicted_vs_observed(s, gene="NOPE"), KeyError, r"`gene`"),
    "pvo_kind_unknown": (
        lambda s: gd.pl.predicted_vs_observed(s, gene="ERBB2", kind="pie"),
        ValueError,
        r"`kind`",
    ),
    "gene_scores_layer_missing": (lambda s: gd.pl.gene_scores(s, layer="nope"), KeyError, r"`layer`"),
    "spots_color_unknown": (lambda s: gd.pl.spots(s, color="NOPE"), KeyError, r"`color`"),
    "spots_section_unknown": (lambda s: gd.pl.spots(s, sections=["S9"]), KeyError, r"`sections`"),
}


@pytest.mark.parametrize("case", list(PL_ERRORS))
def test_pl_refuses(trained, case):
    sdata, _ = trained
    fn, err, match = PL_ERRORS[case]
    _refused(lambda: fn(sdata), sdata, err, match)


# ------------------------------------------------------------------------------------------------------ windows


def test_windows_mostly_outside_the_image_warn_with_the_padded_fraction(sdata):
    """A target window larger than the image would train on zero padding: warned, with the fraction."""
    h, w = gd.io.image_shape(sdata, "S1")
    side = 2 * max(h, w)
    with pytest.warns(UserWarning, match=r"section 'S1': (7\d|8\d)% of the target windows' pixels are zero padding"):
        win = gd.features.spot_windows(sdata, section="S1", spots=[0, 40], target_px=side)
    assert (win.images == 0).mean() > 0.7


def test_windows_inside_the_image_do_not_warn(sdata):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gd.features.spot_windows(sdata, section="S1", spots=[40], target_px=32)
