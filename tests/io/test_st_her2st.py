"""read_st on the real HER2ST sections (B4, C2–C5; see shared/data/her2st/SOURCE.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _io_data import sha256_files

import genedml as gd
from genedml.io import read_st

SPOTS = {"B4": 283, "C2": 187, "C3": 180, "C4": 184, "C5": 181}
IMAGE_WH = {"B4": (9272, 9923), "C2": (9274, 9911), "C3": (9270, 9936), "C4": (9278, 9916), "C5": (9272, 9901)}


@pytest.fixture(scope="module")
def her2st(her2st_dir, her2st_samples):
    before = sha256_files([her2st_dir / "data"])
    sdata = read_st(her2st_samples, base_dir=her2st_dir)
    return sdata, before


def test_sections_patients_spots(her2st):
    sdata, _ = her2st
    t = gd.io.get_table(sdata)
    assert gd.io.sections(sdata) == list(SPOTS)
    assert t.obs["section"].value_counts().to_dict() == SPOTS
    assert t.n_obs == 1015
    assert set(t.obs["patient"]) == {"B", "C"}
    assert t.obs.groupby("patient", observed=True)["section"].nunique().to_dict() == {"B": 1, "C": 4}


def test_counts_are_raw_integers_matching_the_files(her2st, her2st_dir):
    sdata, _ = her2st
    t = gd.io.get_table(sdata)
    assert t.X.dtype == np.int32 and t.X.min() >= 0
    assert (t.X != t.layers["counts"]).nnz == 0
    raw = pd.read_csv(her2st_dir / "data/ST-cnts/C3.tsv.gz", sep="\t", index_col=0)
    rows = t.obs_names[t.obs["section"] == "C3"]
    some = ["ERBB2", "GAPDH", "KRT19"]
    got = t[rows, some].X.toarray()
    want = raw.loc[t.obs.loc[rows, "barcode"], some].to_numpy()
    np.testing.assert_array_equal(got, want)


def test_barcodes_and_array_positions(her2st):
    sdata, _ = her2st
    obs = gd.io.get_table(sdata).obs
    xy = obs["barcode"].str.extract(r"^(\d+)x(\d+)$").astype(int)
    np.testing.assert_array_equal(obs["array_col"].to_numpy(), xy[0].to_numpy())  # array_col = x
    np.testing.assert_array_equal(obs["array_row"].to_numpy(), xy[1].to_numpy())  # array_row = y


def test_spots_inside_images_and_images_lazy(her2st):
    sdata, _ = her2st
    for s, (w, h) in IMAGE_WH.items():
        assert gd.io.image_shape(sdata, s) == (h, w)
        img = sdata.images[f"{s}_hne"]
        assert hasattr(img.data, "dask") and img.dtype == np.uint8
        xy = gd.io.spot_centers(sdata, s)
        assert (xy >= 0).all() and (xy[:, 0] < w).all() and (xy[:, 1] < h).all()


def test_pixel_position_follows_array_position(her2st):
    sdata, _ = her2st
    obs = gd.io.get_table(sdata).obs
    for s in SPOTS:
        xy = gd.io.spot_centers(sdata, s)
        rows = obs["section"] == s
        col, row = obs.loc[rows, "array_col"].to_numpy(), obs.loc[rows, "array_row"].to_numpy()
        sx, bx = np.polyfit(col, xy[:, 0], 1)
        sy, _by = np.polyfit(row, xy[:, 1], 1)
        assert 288 < sx < 293 and 288 < sy < 293, (s, sx, sy)  # ~290 px per 200 µm
        assert np.abs(xy[:, 0] - (sx * col + bx)).max() < 0.25 * sx  # within a quarter pitch of the grid


def test_estimated_pixel_size(her2st):
    sdata, _ = her2st
    meta = gd.io.get_table(sdata).uns["genedml"]["sections"]
    for s in SPOTS:
        assert 0.686 <= gd.io.pixel_size(sdata, s) <= 0.690
        assert meta[s]["pixel_size_source"] == "estimated"
        assert meta[s]["technology"] == "st"
        # a 100 µm spot is ~145 px across
        assert sdata.shapes[f"{s}_spots"]["radius"].iloc[0] == pytest.approx(72.7, abs=0.5)


def test_inputs_unchanged_and_pillow_limit_restored(her2st, her2st_dir):
    from PIL import Image

    _sdata, before = her2st
    assert Image.MAX_IMAGE_PIXELS == (1024 * 1024 * 1024 // 4 // 3)
    assert sha256_files([her2st_dir / "data"]) == before


@pytest.mark.slow  # ~10–20 s on 2 cores: decoding and compressing a 92 Mpx image is the point of the test
def test_zarr_round_trip_one_section(her2st_dir, her2st_samples, tmp_path):
    """B4 through write_zarr / read_zarr: counts, obs, pixel size, spot centres and the decoded image survive."""
    from PIL import Image

    sdata = read_st(her2st_samples, base_dir=her2st_dir, sections=["B4"])
    path = tmp_path / "b4.zarr"
    gd.io.write_zarr(sdata, path)
    back = gd.io.read_zarr(path)
    t0, t1 = gd.io.get_table(sdata), gd.io.get_table(back)
    assert (t0.X != t1.X).nnz == 0 and list(t0.var_names) == list(t1.var_names)
    pd.testing.assert_frame_equal(t0.obs, t1.obs)
    assert gd.io.pixel_size(back, "B4") == gd.io.pixel_size(sdata, "B4")
    np.testing.assert_array_equal(gd.io.spot_centers(back, "B4"), gd.io.spot_centers(sdata, "B4"))
    assert t1.uns["genedml"]["sections"]["B4"]["pixel_size_source"] == "estimated"
    crop = back.images["B4_hne"].data[:, 5000:5100, 4000:4100].compute()
    Image.MAX_IMAGE_PIXELS = (
        None  # the reference decode; monkeypatch-free because the autouse fixture resets nothing here
    )
    try:
        with Image.open(her2st_dir / "data/ST-imgs/B/B4/BT10737_D2_HE.jpg") as im:
            ref = np.asarray(im.crop((4000, 5000, 4100, 5100)))
    finally:
        Image.MAX_IMAGE_PIXELS = 1024 * 1024 * 1024 // 4 // 3
    np.testing.assert_array_equal(crop, ref.transpose(2, 0, 1))
