from __future__ import annotations

import numpy as np
import pytest
from _io_data import VISIUM_FULL, VISIUM_SCALEF, sha256_files

import genedml as gd
from genedml.io import read_visium


def _table(sdata):
    return gd.io.get_table(sdata)


def test_read_visium_hires(visium_dir):
    before = sha256_files([visium_dir])
    sdata = read_visium(visium_dir, section="V1", patient="P7")
    assert sha256_files([visium_dir]) == before
    gd.io.validate(sdata)
    t = _table(sdata)
    # 20 barcodes in the h5, the first two off tissue; the positions-only barcode never appears
    assert t.n_obs == 18
    assert list(t.obs["barcode"])[:2] == ["AAAC0002-1", "AAAC0003-1"]
    assert t.X.dtype == np.int32 and t.X.min() >= 0
    assert list(t.var_names) == ["GA", "GB", "GC", "GD", "GE"]
    assert list(t.var["gene_ids"])[:2] == ["ENSG00000", "ENSG00001"]
    assert set(t.obs["patient"]) == {"P7"}
    # pixel size from the spot: 55 µm / 20 px
    assert gd.io.pixel_size(sdata, "V1") == pytest.approx(55 / VISIUM_SCALEF["spot_diameter_fullres"])
    # the hires image (×0.5) is scaled up to the full-resolution frame
    assert sdata.images["V1_hne"].shape == (3, VISIUM_FULL[0] // 2, VISIUM_FULL[1] // 2)
    assert gd.io.image_shape(sdata, "V1") == VISIUM_FULL
    # spot centres in full-res px, array positions from the tissue positions file
    xy = gd.io.spot_centers(sdata, "V1")
    rows, cols = t.obs["array_row"].to_numpy(), t.obs["array_col"].to_numpy()
    np.testing.assert_allclose(xy[:, 1], 60 + 32 * rows)
    np.testing.assert_allclose(xy[:, 0], 40 + 18 * cols)
    meta = t.uns["genedml"]["sections"]["V1"]
    assert meta["technology"] == "visium"
    assert meta["pixel_size_source"] == "scalefactors"
    assert meta["image"] == "hires"
    assert meta["pitch_um"] == 100.0 and meta["spot_diameter_um"] == 55.0
    # circles are one spot diameter across in full-res px
    assert sdata.shapes["V1_spots"]["radius"].iloc[0] == pytest.approx(VISIUM_SCALEF["spot_diameter_fullres"] / 2)


def test_read_visium_hires_pixels_match_fullres_frame(visium_dir):
    """A hires pixel at (r, c) shows the full-res pixel (2r, 2c): check through the image transformation."""
    from spatialdata.transformations import get_transformation

    sdata = read_visium(visium_dir, section="V1")
    img = sdata.images["V1_hne"]
    m = get_transformation(img, "V1").to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    np.testing.assert_allclose(np.diag(m)[:2], [2.0, 2.0])


def test_read_visium_lowres_only(visium_dir):
    (visium_dir / "spatial" / "tissue_hires_image.png").unlink()
    sdata = read_visium(visium_dir, section="V1")
    assert _table(sdata).uns["genedml"]["sections"]["V1"]["image"] == "lowres"
    assert sdata.images["V1_hne"].shape == (3, 30, 40)
    assert gd.io.image_shape(sdata, "V1") == VISIUM_FULL


@pytest.mark.parametrize("name", ["fullres.tif", "fullres.png"])
def test_read_visium_fullres(visium_dir, name):
    import tifffile
    from spatialdata.transformations import get_transformation

    sdata = read_visium(visium_dir, section="V1", fullres_image_file=name)
    gd.io.validate(sdata)
    assert _table(sdata).uns["genedml"]["sections"]["V1"]["image"] == "fullres"
    assert gd.io.image_shape(sdata, "V1") == VISIUM_FULL
    assert gd.io.pixel_size(sdata, "V1") == pytest.approx(2.75)
    img = sdata.images["V1_hne"]
    scale0 = img["scale0"]["image"] if hasattr(img, "children") else img
    np.testing.assert_array_equal(
        scale0.data[:, 100:110, 200:210].compute(),
        tifffile.imread(visium_dir / "fullres.tif")[100:110, 200:210].transpose(2, 0, 1),
    )
    tfs = get_transformation(scale0, get_all=True)
    assert set(tfs) == {"V1", "V1_um"}


def test_read_visium_default_names(visium_dir):
    sdata = read_visium(visium_dir)
    assert gd.io.sections(sdata) == ["outs"]
    assert set(_table(sdata).obs["patient"]) == {"outs"}


def test_read_visium_errors(visium_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`path`.*does not exist"):
        read_visium(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"`fullres_image_file`"):
        read_visium(visium_dir, fullres_image_file="missing.tif")
    (visium_dir / "spatial" / "scalefactors_json.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"scalefactors_json.json"):
        read_visium(visium_dir)


def test_read_visium_space_ranger_1_positions(visium_dir):
    """Space Ranger < 2 writes tissue_positions_list.csv without a header."""
    import pandas as pd

    pos = pd.read_csv(visium_dir / "spatial" / "tissue_positions.csv")
    pos.to_csv(visium_dir / "spatial" / "tissue_positions_list.csv", header=False, index=False)
    (visium_dir / "spatial" / "tissue_positions.csv").unlink()
    sdata = read_visium(visium_dir, section="V1")
    t = _table(sdata)
    assert t.n_obs == 18
    np.testing.assert_allclose(gd.io.spot_centers(sdata, "V1")[:, 1], 60 + 32 * t.obs["array_row"].to_numpy())
