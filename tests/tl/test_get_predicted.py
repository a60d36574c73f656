"""gd.tl.get_predicted: predicted genes for scanpy, a valid SpatialData table again, no feature arrays; one key
vocabulary (writers `key_added`, readers `layer`) across predict → evaluate → get_predicted."""

from __future__ import annotations

import numpy as np
import pytest

import genedml as gd
from genedml._keys import Keys


@pytest.fixture(scope="module")
def _predicted(_trained):
    """Predictions of every section under the default key and of S2 alone under "s2" (predicting is slow)."""
    from spatialdata import deepcopy

    sdata, model = _trained
    sdata = deepcopy(sdata)
    gd.tl.predict(sdata, model)
    gd.tl.predict(sdata, model, sections=["S2"], key_added="s2")
    return sdata


@pytest.fixture
def predicted(_predicted):
    from spatialdata import deepcopy

    return deepcopy(_predicted)


def _with_extra_obsm(table):
    """Feature-like and embedding arrays of the kind the result must not carry."""
    table.obsm[Keys.features("test_resnet", "global")] = np.ones((table.n_obs, 8), dtype=np.float32)
    table.obsm["X_pca"] = np.zeros((table.n_obs, 2))


def test_result_carries_predictions_not_features(predicted):
    sdata = predicted
    table = sdata["table"]
    _with_extra_obsm(table)
    table.var["gene_note"] = [f"note {g}" for g in table.var_names]
    out = gd.tl.get_predicted(sdata)
    flag = table.var[Keys.var_flag("predicted")].to_numpy()
    np.testing.assert_array_equal(out.X, table.layers["predicted"][:, flag])
    assert out.X.dtype == np.float32 and list(out.obs_names) == list(table.obs_names)
    assert list(out.obsm.keys()) == ["spatial"]  # no genedml_* feature key, no other obsm entry
    np.testing.assert_array_equal(out.obsm["spatial"], table.obsm["spatial"])
    assert list(out.var["gene_note"]) == [f"note {g}" for g in out.var_names]  # gene metadata kept
    out.uns["genedml"]["predicted"]["genes"].append("EXTRA")  # a copy: the user's table is not touched
    assert "EXTRA" not in table.uns["genedml"]["predicted"]["genes"]


def test_result_is_a_valid_table_of_the_spatialdata(predicted, tmp_path):
    from spatialdata import join_spatialelement_table
    from spatialdata.models import TableModel

    sdata = predicted
    out = gd.tl.get_predicted(sdata)
    TableModel().validate(out)
    assert out.uns["spatialdata_attrs"] == {"region": ["S1_spots", "S2_spots"], "region_key": "region",
                                            "instance_key": "spot_id"}  # fmt: skip
    sdata.tables["predicted"] = out
    _, joined = join_spatialelement_table(
        sdata=sdata, spatial_element_names=["S1_spots", "S2_spots"], table_name="predicted", how="left"
    )
    assert joined.n_obs == len(sdata["S1_spots"]) + len(sdata["S2_spots"])
    assert np.isfinite(joined.X).all()  # every spot of both shapes found its row
    gd.io.write_zarr(sdata, tmp_path / "s.zarr")
    back = gd.io.read_zarr(tmp_path / "s.zarr")
    np.testing.assert_array_equal(back.tables["predicted"].X, out.X)


def test_one_section_narrows_the_region(predicted):
    from spatialdata import join_spatialelement_table
    from spatialdata.models import TableModel

    sdata = predicted
    out = gd.tl.get_predicted(sdata, layer="s2")
    assert set(out.obs["section"]) == {"S2"} and out.n_obs == len(sdata["S2_spots"])
    assert out.uns["spatialdata_attrs"]["region"] == "S2_spots"
    assert list(out.obs["region"].cat.categories) == ["S2_spots"]
    TableModel().validate(out)
    sdata.tables["pred_s2"] = out
    elements, joined = join_spatialelement_table(
        sdata=sdata, spatial_element_names=["S2_spots"], table_name="pred_s2", how="inner"
    )
    assert joined.n_obs == out.n_obs and len(elements["S2_spots"]) == out.n_obs


def test_anndata_input_and_bad_arguments(predicted):
    sdata = predicted
    table = sdata["table"]
    assert gd.tl.get_predicted(table).shape == (table.n_obs, 20)
    plain = table.copy()
    del plain.uns["spatialdata_attrs"]
    assert "spatialdata_attrs" not in gd.tl.get_predicted(plain, layer="s2").uns
    with pytest.raises(KeyError, match=r"`layer`='mine'.*key_added='mine'"):
        gd.tl.get_predicted(sdata, layer="mine")
    with pytest.raises(ValueError, match="`table_key`"):
        gd.tl.get_predicted(table, table_key="table")
    with pytest.raises(TypeError, match="`layer`"):
        gd.tl.get_predicted(sdata, layer=["s2"])


def test_one_key_vocabulary_round_trips(predicted):
    """The writer's `key_added` is the readers' `layer`: predict → evaluate → get_predicted find the same result."""
    sdata = predicted
    table = sdata["table"]
    assert "s2" in table.layers and Keys.var_flag("s2") in table.var and "s2" in table.uns["genedml"]
    scores = gd.tl.evaluate(sdata, layer="s2")
    assert list(scores.index) == ["S2"]  # only what was predicted under this key
    assert Keys.observed("s2") in table.layers and Keys.pcc("s2") in table.var
    assert "s2" in table.uns["genedml"]["evaluation"] and "predicted" not in table.uns["genedml"].get("evaluation")
    out = gd.tl.get_predicted(sdata, layer="s2")
    assert set(out.obs["section"]) == {"S2"}
    np.testing.assert_array_equal(out.var[Keys.pcc("s2")], table.var.loc[out.var_names, Keys.pcc("s2")])
    with pytest.raises(KeyError, match="`layer`='nope'"):
        gd.tl.evaluate(sdata, layer="nope")


def test_readers_take_the_same_table_key(predicted):
    sdata = predicted
    sdata.tables["spots_table"] = sdata.tables.pop("table")
    scores = gd.tl.evaluate(sdata, layer="s2", table_key="spots_table")
    assert list(scores.index) == ["S2"]
    assert Keys.observed("s2") in sdata.tables["spots_table"].layers
    assert gd.tl.get_predicted(sdata, layer="s2", table_key="spots_table").n_obs == len(sdata["S2_spots"])
