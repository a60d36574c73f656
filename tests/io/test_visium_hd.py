"""`gd.io.read_visium_hd` on a tiny Visium HD folder the tests write (see `_hd_data.py`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _hd_data import HD_FULL, HD_MPP, HD_ORIGIN, hd_full_image, make_visium_hd_dir
from _io_data import sha256_files

import genedml as gd
from genedml.io import read_visium_hd


@pytest.fixture
def hd_dir(tmp_path):
    return make_visium_hd_dir(tmp_path)


def test_read_visium_hd_bins_are_spots(hd_dir):
    before = sha256_files([hd_dir])
    sdata = read_visium_hd(hd_dir, bin_size=8, patient="P3")
    assert sha256_files([hd_dir]) == before  # input untouched
    gd.io.validate(sdata)
    assert gd.io.sections(sdata) == ["HD1"]  # from HD1_feature_slice.h5
    t = gd.io.get_table(sdata)
    # 8 × 10 bins, the first off tissue (absent from the filtered matrix, in_tissue == 0)
    assert t.n_obs == 79 and list(t.var_names) == ["GA", "GB", "GC", "GD"]
    assert "s_008um_00000_00000-1" not in set(t.obs["barcode"])
    assert set(t.obs["patient"]) == {"P3"} and set(t.obs["region"]) == {"HD1_spots"}
    assert t.X.dtype == np.int32 and (t.X != t.layers["counts"]).nnz == 0
    # counts match the h5 row of each barcode
    import scanpy as sc

    raw = sc.read_10x_h5(hd_dir / "binned_outputs" / "square_008um" / "filtered_feature_bc_matrix.h5")
    np.testing.assert_array_equal(t.X.toarray(), raw[t.obs["barcode"].to_numpy()].X.toarray())
    # bin lattice: array_row/col from the parquet file, centres in full-res px, pixel size from the scale factors
    rows, cols = t.obs["array_row"].to_numpy(), t.obs["array_col"].to_numpy()
    pos = pd.read_parquet(hd_dir / "binned_outputs" / "square_008um" / "spatial" / "tissue_positions.parquet")
    pos = pos.set_index("barcode").loc[t.obs["barcode"]]
    np.testing.assert_array_equal(rows, pos["array_row"].to_numpy())
    np.testing.assert_array_equal(cols, pos["array_col"].to_numpy())
    xy = gd.io.spot_centers(sdata, "HD1")
    np.testing.assert_allclose(xy, np.column_stack([HD_ORIGIN[0] + 16 * cols, HD_ORIGIN[1] + 16 * rows]))
    assert gd.io.pixel_size(sdata, "HD1") == pytest.approx(HD_MPP)
    # a bin is the circle inscribed in its 8 µm square: radius 4 µm = 8 px
    assert np.allclose(sdata.shapes["HD1_spots"]["radius"], 8.0)
    meta = t.uns["genedml"]["sections"]["HD1"]
    assert meta["technology"] == "visium_hd" and meta["spot_shape"] == "square"
    assert meta["bin_size_um"] == meta["pitch_um"] == meta["spot_diameter_um"] == 8.0
    assert meta["image"] == "fullres" and meta["reader"] == "read_visium_hd"


def test_read_visium_hd_fullres_tiff_is_lazy_and_exact(hd_dir):
    from spatialdata.transformations import get_transformation

    sdata = read_visium_hd(hd_dir, bin_size=16)
    img = sdata.images["HD1_hne"]
    arr = gd.io.image_shape(sdata, "HD1")
    assert arr == HD_FULL
    data = next(iter(img["scale0"].values())).data
    assert data.__class__.__module__.startswith("dask")  # not decoded at read time
    np.testing.assert_array_equal(data.compute(), hd_full_image(hd_dir).transpose(2, 0, 1))
    um = get_transformation(img, "HD1_um").to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    np.testing.assert_allclose(np.diag(um)[:2], [HD_MPP, HD_MPP])
    assert gd.io.get_table(sdata).n_obs == 19  # 4 × 5 bins of 16 µm, one off tissue


def test_read_visium_hd_hires_without_fullres(hd_dir):
    import shutil

    from spatialdata.transformations import get_transformation

    full = hd_full_image(hd_dir)
    shutil.rmtree(hd_dir / "microscope_image")
    sdata = read_visium_hd(hd_dir, bin_size=8, section="A")
    t = gd.io.get_table(sdata)
    assert t.uns["genedml"]["sections"]["A"]["image"] == "hires"
    assert sdata.images["A_hne"].shape == (3, HD_FULL[0] // 2, HD_FULL[1] // 2)
    assert gd.io.image_shape(sdata, "A") == HD_FULL
    m = get_transformation(sdata.images["A_hne"], "A").to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    np.testing.assert_allclose(np.diag(m)[:2], [2.0, 2.0])
    # the section's pixels, read through the transformation, are those of the full-resolution frame
    hires = np.asarray(sdata.images["A_hne"].data)
    np.testing.assert_array_equal(hires, full[::2, ::2].transpose(2, 0, 1))


def test_read_visium_hd_unprefixed_files(tmp_path):
    root = make_visium_hd_dir(tmp_path, prefix="")
    sdata = read_visium_hd(root, bin_size=16)
    assert gd.io.sections(sdata) == ["outs"]  # the folder's name
    gd.io.validate(sdata)


def test_read_visium_hd_bin_size_not_available(hd_dir):
    with pytest.raises(ValueError, match=r"`bin_size`=2 .*available bin sizes \(µm\): \[8, 16\]"):
        read_visium_hd(hd_dir, bin_size=2)
    for bad in (8.0, True, 0, "8"):
        with pytest.raises(ValueError, match="`bin_size` must be a positive whole number"):
            read_visium_hd(hd_dir, bin_size=bad)


@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [
        (lambda d: d / "nope", FileNotFoundError, "does not exist"),
        (lambda d: _rm(d / "binned_outputs"), FileNotFoundError, "no 'binned_outputs/square_<bin>um'"),
        (lambda d: _rm(d / "binned_outputs/square_008um/spatial/tissue_positions.parquet"), FileNotFoundError,
         "'spatial/tissue_positions.parquet' is missing"),
        (lambda d: _rm(d / "binned_outputs/square_008um/filtered_feature_bc_matrix.h5"), FileNotFoundError,
         "'filtered_feature_bc_matrix.h5' is missing"),
        (lambda d: _rm(d / "HD1_feature_slice.h5"), FileNotFoundError, "no '\\(<id>_\\)feature_slice.h5'"),
        (lambda d: _scalef(d, microns_per_pixel=0.3), ValueError, "scale factors .* disagree"),
        (lambda d: _scalef(d, microns_per_pixel=None), ValueError, "needs a positive 'microns_per_pixel'"),
        (lambda d: _scalef(d, bin_size_um=16.0), ValueError, "bin_size_um=16 in a folder of 8 µm bins"),
        (lambda d: _touch(d / "microscope_image" / "other.tif"), ValueError, "several candidate full-resolution"),
        (lambda d: _positions(d, lambda p: p.rename(columns={"pxl_row_in_fullres": "y"})), ValueError,
         "must have the columns"),
    ],
)  # fmt: skip
def test_read_visium_hd_clear_errors(hd_dir, damage, error, match):
    path = damage(hd_dir) or hd_dir
    with pytest.raises(error, match=match):
        read_visium_hd(path, bin_size=8)


def test_read_visium_hd_missing_dataset_id_and_image(hd_dir):
    with pytest.raises(FileNotFoundError, match="`dataset_id`='XX'"):
        read_visium_hd(hd_dir, dataset_id="XX")
    with pytest.raises(FileNotFoundError, match="`fullres_image_file`"):
        read_visium_hd(hd_dir, fullres_image_file="missing.tif")


def test_read_visium_hd_fullres_png_through_spatialdata_io(hd_dir):
    from PIL import Image

    full = hd_full_image(hd_dir)
    Image.fromarray(full).save(hd_dir / "full.png")
    sdata = read_visium_hd(hd_dir, bin_size=16, fullres_image_file="full.png")
    assert gd.io.get_table(sdata).uns["genedml"]["sections"]["HD1"]["image"] == "fullres"
    assert gd.io.image_shape(sdata, "HD1") == HD_FULL
    arr = next(iter(sdata.images["HD1_hne"]["scale0"].values())).data
    np.testing.assert_array_equal(np.asarray(arr), full.transpose(2, 0, 1))
    gd.io.validate(sdata)


def _positions(root, edit):
    p = root / "binned_outputs/square_008um/spatial/tissue_positions.parquet"
    edit(pd.read_parquet(p)).to_parquet(p, index=False)


def _rm(p):
    import shutil

    shutil.rmtree(p) if p.is_dir() else p.unlink()


def _touch(p):
    p.write_bytes(b"")


def _scalef(root, **kw):
    p = root / "binned_outputs/square_008um/spatial/scalefactors_json.json"
    sf = json.loads(p.read_text())
    for k, v in kw.items():
        if v is None:
            sf.pop(k)
        else:
            sf[k] = v
    p.write_text(json.dumps(sf))
