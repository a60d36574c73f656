"""``gd.tl.predict(..., out=)``: predictions streamed chunk by chunk into a new zarr store."""

from __future__ import annotations

import numpy as np
import pytest
import spatialdata as sd

import genedml as gd
from genedml._keys import Keys


def test_streamed_store_equals_in_memory_predictions(trained, tmp_path):
    sdata, model = trained
    gd.tl.predict(sdata, model)
    table = sdata["table"]
    ref = np.asarray(table.layers["predicted"])[:, table.var_names.get_indexer(model.genes_)]
    res = gd.tl.predict(sdata, model, out=tmp_path / "pred.zarr", chunk_size=37)
    out = res["table"]
    assert list(out.var_names) == list(model.genes_) and out.var["genedml_predicted"].all()
    layer = out.layers["predicted"]
    assert type(layer).__module__.startswith("dask")  # lazy: read chunk by chunk
    assert layer.chunks[0][:2] == (37, 37)
    np.testing.assert_array_equal(np.asarray(layer), ref)
    assert list(out.obs[Keys.section]) == list(table.obs[Keys.section])
    assert out.uns["genedml"]["predicted"]["model_hash"] == model.model_hash
    assert set(res.shapes) == {"S1_spots", "S2_spots"}  # the spots, not the image
    assert not res.images
    back = sd.read_zarr(tmp_path / "pred.zarr")  # a plain SpatialData store
    np.testing.assert_array_equal(np.asarray(back["table"].layers["predicted"]), ref)
    assert gd.tl.get_predicted(res).shape == (table.n_obs, len(model.genes_))
    assert "predicted" in table.layers and table.n_vars == 50  # the input is not modified by `out=`


def test_streamed_sections_and_he_only(trained, tmp_path):
    sdata, model = trained
    res = gd.tl.predict(sdata, model, out=tmp_path / "s2.zarr", sections=["S2"])
    assert set(res["table"].obs[Keys.section]) == {"S2"} and set(res.shapes) == {"S2_spots"}
    hne = gd.io.he_only(sdata, section="S1")
    gd.pp.spot_grid(hne, image_key=Keys.image("S1"), pitch_um=200, diameter_um=100)
    res = gd.tl.predict(hne, model, out=tmp_path / "hne.zarr")
    pred = np.asarray(res["table"].layers["predicted"])
    assert pred.shape == (hne["table"].n_obs, len(model.genes_)) and np.isfinite(pred).all()
    assert hne["table"].n_vars == 0  # still H&E-only


def test_out_refuses_to_clobber_and_leaves_nothing_on_failure(trained, tmp_path, monkeypatch):
    sdata, model = trained
    path = tmp_path / "pred.zarr"
    gd.tl.predict(sdata, model, out=path)
    before = sorted(p.name for p in path.rglob("*"))
    with pytest.raises(FileExistsError, match="`out`"):
        gd.tl.predict(sdata, model, out=path)

    def boom(*args, **kwargs):
        yield np.arange(3), np.zeros((3, len(model.genes_)), np.float32)
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(model), "predict_chunks", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        gd.tl.predict(sdata, model, out=path, overwrite=True)
    assert sorted(p.name for p in path.rglob("*")) == before  # the old store is intact
    assert [p.name for p in tmp_path.iterdir()] == ["pred.zarr"]  # no temporary left behind
    with pytest.raises(RuntimeError, match="disk full"):
        gd.tl.predict(sdata, model, out=tmp_path / "new.zarr")
    assert not (tmp_path / "new.zarr").exists()


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"chunk_size": 0}, ValueError, "`chunk_size` must be a positive integer"),
        ({"smooth": True}, ValueError, "`out` streams raw predictions"),
        ({"copy": True}, ValueError, "`out` streams raw predictions"),
    ],
)
def test_out_bad_arguments(trained, tmp_path, kwargs, err, match):
    sdata, model = trained
    with pytest.raises(err, match=match):
        gd.tl.predict(sdata, model, out=tmp_path / "x.zarr", **kwargs)
    assert not (tmp_path / "x.zarr").exists()


def test_out_path_checks(trained, tmp_path):
    sdata, model = trained
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(FileExistsError, match="exists"):
        gd.tl.predict(sdata, model, out=tmp_path / "file.zarr")
    with pytest.raises(ValueError, match="is a file"):
        gd.tl.predict(sdata, model, out=tmp_path / "file.zarr", overwrite=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gd.tl.predict(sdata, model, out=tmp_path / "no" / "x.zarr")
    with pytest.raises(FileNotFoundError, match="no table"):
        gd.io.read_predictions(tmp_path)
