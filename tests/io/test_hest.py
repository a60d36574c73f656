from __future__ import annotations

import json

import numpy as np
import pytest
from _io_data import HEST_SHAPE, sha256_files

import genedml as gd
from genedml.io import read_hest


def test_read_hest(hest_files, hest_image):
    before = sha256_files(hest_files.values())
    sdata = read_hest(**hest_files)
    assert sha256_files(hest_files.values()) == before
    gd.io.validate(sdata)
    t = gd.io.get_table(sdata)
    assert gd.io.sections(sdata) == ["TENX00"]
    assert t.n_obs == 22  # two spots off tissue
    assert set(t.obs["patient"]) == {"Patient 1"}
    assert t.X.dtype == np.int32
    assert gd.io.pixel_size(sdata, "TENX00") == pytest.approx(0.55)
    meta = t.uns["genedml"]["sections"]["TENX00"]
    assert meta["pixel_size_source"] == "hest:pixel_size_um_estimated"
    assert meta["technology"] == "visium"
    assert meta["spot_diameter_um"] == 55.0 and meta["pitch_um"] == 100.0
    # a lazy 3-level pyramid with scales to the full-resolution frame
    img = sdata.images["TENX00_hne"]
    assert list(img.children) == ["scale0", "scale1", "scale2"]
    shapes = [img[f"scale{i}"]["image"].shape for i in range(3)]
    assert shapes == [(3, 1000, 1200), (3, 500, 600), (3, 250, 300)]
    assert gd.io.image_shape(sdata, "TENX00") == HEST_SHAPE
    scale1 = img["scale1"]["image"]
    assert scale1.data.npartitions >= 1 and hasattr(scale1.data, "dask")
    np.testing.assert_array_equal(
        scale1.data[:, 10:20, 30:40].compute(), hest_image[::2, ::2][10:20, 30:40].transpose(2, 0, 1)
    )
    from spatialdata.transformations import get_transformation

    m = get_transformation(scale1, "TENX00").to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y"))
    np.testing.assert_allclose([m[0, 0], m[1, 1]], [2.0, 2.0])


def test_read_hest_is_lazy_and_chunked(hest_files, monkeypatch):
    """Reading decodes no tile; a small crop reads only the chunk(s) it covers."""
    import genedml.io._tiff as tiff

    calls = []
    orig = tiff._read_tiff_block

    def counting(path, series, level, block_info=None):
        calls.append(block_info[None]["array-location"])
        return orig(path, series, level, block_info=block_info)

    monkeypatch.setattr(tiff, "_read_tiff_block", counting)
    monkeypatch.setattr(tiff, "_TARGET_CHUNK", 512)
    sdata = read_hest(**hest_files)
    assert calls == []
    img = sdata.images["TENX00_hne"]["scale0"]["image"]
    assert img.data.numblocks[1:] == (2, 3)
    img.data[:, :100, :100].compute()
    assert len(calls) == 1


def test_read_hest_overrides_and_fallbacks(hest_files):
    meta = json.loads(hest_files["metadata"].read_text())
    meta.update(pixel_size_um_estimated=None, pixel_size_um_embedded=0.5, patient=None)
    hest_files["metadata"].write_text(json.dumps(meta))
    sdata = read_hest(**hest_files, section="s1")
    t = gd.io.get_table(sdata)
    assert gd.io.sections(sdata) == ["s1"]
    assert set(t.obs["patient"]) == {"s1"}
    assert gd.io.pixel_size(sdata, "s1") == pytest.approx(0.5)
    assert t.uns["genedml"]["sections"]["s1"]["pixel_size_source"] == "hest:pixel_size_um_embedded"
    sdata = read_hest(**hest_files, patient="P9")
    assert set(gd.io.get_table(sdata).obs["patient"]) == {"P9"}


def test_read_hest_errors(hest_files, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`image`"):
        read_hest(hest_files["h5ad"], tmp_path / "x.tif", hest_files["metadata"])
    bad = tmp_path / "meta.json"
    bad.write_text(json.dumps({"spot_diameter": 55.0, "inter_spot_dist": 100.0}))
    with pytest.raises(ValueError, match=r"`metadata`.*pixel_size_um_estimated"):
        read_hest(hest_files["h5ad"], hest_files["image"], bad)
    bad.write_text(json.dumps({"pixel_size_um_estimated": 0.5, "inter_spot_dist": 100.0}))
    with pytest.raises(ValueError, match=r"`metadata`.*'spot_diameter'"):
        read_hest(hest_files["h5ad"], hest_files["image"], bad)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + b"\x00" * 50)
    with pytest.raises(ValueError, match=r"`image`: cannot read the TIFF"):
        read_hest(hest_files["h5ad"], junk, hest_files["metadata"])


def test_read_hest_spots_outside_image(hest_files):
    import anndata as ad

    adata = ad.read_h5ad(hest_files["h5ad"])
    adata.obsm["spatial"] = adata.obsm["spatial"] * 10
    adata.write_h5ad(hest_files["h5ad"])
    with pytest.raises(ValueError, match=r"`h5ad`.*outside the 1200×1000 px image"):
        read_hest(**hest_files)


def test_read_hest_corrupt_tile_fails_at_read_time_of_that_tile(hest_files):
    import tifffile

    with tifffile.TiffFile(hest_files["image"]) as tf:
        offset, size = tf.pages[0].dataoffsets[0], tf.pages[0].databytecounts[0]
    raw = bytearray(hest_files["image"].read_bytes())
    raw[offset : offset + size] = b"\xff" * size
    hest_files["image"].write_bytes(bytes(raw))
    sdata = read_hest(**hest_files)  # the header is intact: reading is lazy
    img = sdata.images["TENX00_hne"]["scale0"]["image"].data
    with pytest.raises(ValueError, match=r"cannot read TIFF .*TENX00.tif.* \(level 0, region"):
        img[:, :10, :10].compute()
