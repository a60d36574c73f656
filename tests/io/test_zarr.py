"""write_zarr / read_zarr: round trip, atomic writes, refusal to clobber."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _io_data import tiny_section

import genedml as gd
from genedml.io import ValidationError, build_sdata, read_zarr, write_zarr


@pytest.fixture
def sdata():
    return build_sdata([tiny_section("T1"), tiny_section("T2", seed=1, n=4)])


def _assert_same(a, b):
    ta, tb = gd.io.get_table(a), gd.io.get_table(b)
    assert (ta.X != tb.X).nnz == 0 and (ta.layers["counts"] != tb.layers["counts"]).nnz == 0
    assert list(ta.var_names) == list(tb.var_names)
    pd.testing.assert_frame_equal(ta.obs, tb.obs)
    assert ta.uns["genedml"]["sections"] == tb.uns["genedml"]["sections"]
    for s in gd.io.sections(a):
        assert gd.io.pixel_size(a, s) == gd.io.pixel_size(b, s)
        np.testing.assert_array_equal(gd.io.spot_centers(a, s), gd.io.spot_centers(b, s))
        np.testing.assert_array_equal(np.asarray(a.images[f"{s}_hne"].data), np.asarray(b.images[f"{s}_hne"].data))


def test_round_trip(sdata, tmp_path):
    path = tmp_path / "t.zarr"
    write_zarr(sdata, path)
    assert sdata.path == path
    back = read_zarr(path)
    _assert_same(sdata, back)
    assert hasattr(back.images["T1_hne"].data, "dask")


def test_round_trip_read_st(st_layout, tmp_path):
    root, samples = st_layout
    sdata = gd.io.read_st(samples, base_dir=root)
    write_zarr(sdata, tmp_path / "st.zarr")
    _assert_same(sdata, read_zarr(tmp_path / "st.zarr"))


def test_round_trip_multiscale(hest_files, tmp_path):
    sdata = gd.io.read_hest(**hest_files)
    write_zarr(sdata, tmp_path / "h.zarr")
    back = read_zarr(tmp_path / "h.zarr")
    assert list(back.images["TENX00_hne"].children) == ["scale0", "scale1", "scale2"]
    assert gd.io.image_shape(back, "TENX00") == gd.io.image_shape(sdata, "TENX00")
    np.testing.assert_array_equal(
        back.images["TENX00_hne"]["scale2"]["image"].values, sdata.images["TENX00_hne"]["scale2"]["image"].values
    )


def test_existing_path(sdata, tmp_path):
    path = tmp_path / "t.zarr"
    write_zarr(sdata, path)
    with pytest.raises(FileExistsError, match=r"`path`=.*already exists; pass overwrite=True"):
        write_zarr(sdata, path)
    one = build_sdata([tiny_section("X1")])
    write_zarr(one, path, overwrite=True)
    assert gd.io.sections(read_zarr(path)) == ["X1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.zarr"]  # no temporary sibling left behind


def test_refuses_to_replace_non_zarr(sdata, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match=r"is not a zarr store; refusing"):
        write_zarr(sdata, folder, overwrite=True)
    assert (folder / "keep.txt").read_text() == "precious"


def test_failed_write_leaves_nothing(sdata, tmp_path, monkeypatch):
    path = tmp_path / "t.zarr"
    write_zarr(sdata, path)
    before = sorted(p.relative_to(path) for p in path.rglob("*"))

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(sdata), "write", boom)
    with pytest.raises(RuntimeError, match=r"disk full"):
        write_zarr(build_sdata([tiny_section("X1")]), path, overwrite=True)
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before  # old store intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.zarr"]


def test_read_errors(sdata, tmp_path):
    from spatialdata.transformations import Identity, set_transformation

    with pytest.raises(FileNotFoundError, match=r"`path`=.*does not exist"):
        read_zarr(tmp_path / "nope.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match=r"is not a zarr store"):
        read_zarr(tmp_path / "plain")
    set_transformation(sdata.shapes["T1_spots"], {"T1": Identity()}, set_all=True)
    write_zarr(sdata, tmp_path / "bad.zarr")
    with pytest.raises(ValidationError, match=r"'T1_um'"):
        read_zarr(tmp_path / "bad.zarr")


def test_write_type_error(tmp_path):
    with pytest.raises(TypeError, match=r"`sdata` must be a SpatialData"):
        write_zarr({"a": 1}, tmp_path / "x.zarr")
