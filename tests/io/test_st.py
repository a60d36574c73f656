"""read_st on tiny layouts written in the test: behaviour, laziness and every bad-input error."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from _io_data import PITCH_PX, sha256_files

import genedml as gd
from genedml.io import read_st


def _read(layout, **kw):
    root, samples = layout
    return read_st(samples, base_dir=root, **kw)


def test_read_two_sections(st_layout):
    sdata = _read(st_layout)
    gd.io.validate(sdata)
    t = gd.io.get_table(sdata)
    assert gd.io.sections(sdata) == ["S1", "S2"]
    # 42 spots per section: one unselected and one without counts are dropped; the count row "30x30" too
    assert t.obs["section"].value_counts().to_dict() == {"S1": 40, "S2": 40}
    assert "2x2" not in set(t.obs["barcode"]) and "3x2" not in set(t.obs["barcode"])
    assert list(t.var_names) == [f"G{i}" for i in range(8)]  # inner join drops S2's extra gene
    assert t.X.dtype == np.int32
    assert set(t.obs["patient"]) == {"PS1", "PS2"}
    for s in ("S1", "S2"):
        assert gd.io.image_shape(sdata, s) == (300, 360)
        assert gd.io.pixel_size(sdata, s) == pytest.approx(200 / PITCH_PX, rel=0.01)
        assert t.uns["genedml"]["sections"][s]["pixel_size_source"] == "estimated"


def test_counts_and_positions_follow_the_files(st_layout):
    root, samples = st_layout
    sdata = _read(st_layout)
    t = gd.io.get_table(sdata)
    raw = pd.read_csv(root / samples.loc[0, "counts"], sep="\t", index_col=0)
    spots = pd.read_csv(root / samples.loc[0, "spots"], sep="\t")
    spots.index = spots["x"].astype(str) + "x" + spots["y"].astype(str)
    rows = t.obs["section"] == "S1"
    bc = t.obs.loc[rows, "barcode"]
    np.testing.assert_array_equal(t[rows.to_numpy()].X.toarray(), raw.loc[bc, list(t.var_names)].to_numpy())
    np.testing.assert_allclose(gd.io.spot_centers(sdata, "S1"), spots.loc[bc, ["pixel_x", "pixel_y"]].to_numpy())
    np.testing.assert_array_equal(t.obs.loc[rows, "array_col"], spots.loc[bc, "x"])
    np.testing.assert_array_equal(t.obs.loc[rows, "array_row"], spots.loc[bc, "y"])


def test_options(st_layout):
    sdata = _read(st_layout, join="outer", only_selected=False, pixel_size={"S1": 5.5})
    t = gd.io.get_table(sdata)
    assert t.obs["section"].value_counts().to_dict() == {"S1": 41, "S2": 41}
    assert len(t.var_names) == 9 and t[t.obs["section"] == "S1", "G8"].X.sum() == 0
    meta = t.uns["genedml"]["sections"]
    assert gd.io.pixel_size(sdata, "S1") == 5.5 and meta["S1"]["pixel_size_source"] == "given"
    assert meta["S2"]["pixel_size_source"] == "estimated"
    sdata = _read(st_layout, pixel_size=2.5, sections=["S2"], spot_diameter_um=55.0, pitch_um=100.0)
    assert gd.io.sections(sdata) == ["S2"] and gd.io.pixel_size(sdata, "S2") == 2.5
    assert sdata.shapes["S2_spots"]["radius"].iloc[0] == pytest.approx(11.0)
    assert gd.io.get_table(sdata).uns["genedml"]["sections"]["S2"]["pitch_um"] == 100.0


@pytest.mark.parametrize("kind", ["csv", "tsv", "records"])
def test_samples_as_table_file_or_records(st_layout, kind):
    root, samples = st_layout
    if kind == "records":
        src = samples.to_dict("records")
        sdata = read_st(src, base_dir=root)
    else:
        src = root / f"samples.{kind}"
        samples.to_csv(src, sep="," if kind == "csv" else "\t", index=False)
        sdata = read_st(src)  # relative paths resolve against the table's folder
    assert gd.io.get_table(sdata).n_obs == 80


def test_logs_dropped_spots(st_layout):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("genedml")
    logger.addHandler(handler)
    gd.settings.verbosity = 2
    try:
        _read(st_layout, sections=["S1"])
    finally:
        logger.removeHandler(handler)
    # the unselected "2x2" is dropped at INFO; "30x30" (no spot) and "3x2" (no counts) are WARNINGs with ids
    info = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert any("'S1': 40 spots; 1 unselected count row(s) dropped" in m for m in info)
    warn = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(warn) == 1 and "kept 40 spots; dropped 1 of 42 row(s)" in warn[0]
    assert "['30x30']" in warn[0] and "1 of 41 spot(s)" in warn[0] and "['3x2']" in warn[0]


def test_images_are_not_decoded_at_read(st_layout, monkeypatch):
    import tifffile
    from PIL import Image

    import genedml.io._st as st
    import genedml.io._tiff as tiff

    decoded, tiles = [], []
    orig_pil, orig_tif = st._decode_pillow, tiff._read_tiff_block
    monkeypatch.setattr(st, "_decode_pillow", lambda *a: decoded.append(a) or orig_pil(*a))

    def counting_tif(path, series, level, block_info=None):
        tiles.append(block_info[None]["array-location"])
        return orig_tif(path, series, level, block_info=block_info)

    monkeypatch.setattr(tiff, "_read_tiff_block", counting_tif)
    root, samples = st_layout
    sdata = _read(st_layout)
    assert decoded == [] and tiles == []
    jpg = sdata.images["S1_hne"].data.compute()
    assert len(decoded) == 1
    with Image.open(root / samples.loc[0, "image"]) as im:
        np.testing.assert_array_equal(jpg, np.asarray(im).transpose(2, 0, 1))
    tif = sdata.images["S2_hne"].data.compute()
    assert len(tiles) >= 1
    np.testing.assert_array_equal(tif, tifffile.imread(root / samples.loc[1, "image"]).transpose(2, 0, 1))


def test_pillow_pixel_limit_lifted_locally(st_layout, monkeypatch):
    """An image above Pillow's decompression-bomb limit opens without warning; the limit is restored."""
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # the 360×300 test image is > 2× this: an error normally
    sdata = _read(st_layout, sections=["S1"])
    assert Image.MAX_IMAGE_PIXELS == 1000
    sdata.images["S1_hne"].data.compute()
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_inputs_unchanged(st_layout, tmp_path):
    root, _samples = st_layout
    before = sha256_files([root])
    sdata = _read(st_layout)
    sdata.images["S1_hne"].data.compute()
    gd.io.write_zarr(sdata, tmp_path / "out.zarr")
    assert sha256_files([root]) == before


# --------------------------------------------------------------------------------------------------- bad input


def _edit(root, samples, col, i=0):
    return root / samples.loc[i, col]


@pytest.mark.parametrize("col", ["counts", "spots", "image"])
def test_missing_file(st_layout, col):
    root, samples = st_layout
    _edit(root, samples, col).unlink()
    with pytest.raises(FileNotFoundError, match=f"`samples`: the '{col}' file of section 'S1' does not exist"):
        _read(st_layout)


def test_samples_table_errors(st_layout, tmp_path):
    root, samples = st_layout
    with pytest.raises(ValueError, match=r"`samples` must have exactly the columns.*unknown: \['slide'\]"):
        read_st(samples.assign(slide="x"), base_dir=root)
    with pytest.raises(ValueError, match=r"missing: \['image'\]"):
        read_st(samples.drop(columns="image"), base_dir=root)
    with pytest.raises(ValueError, match=r"section names must be unique, duplicated: \['S1'\]"):
        read_st(samples.assign(section="S1"), base_dir=root)
    with pytest.raises(KeyError, match=r"`sections`.*'S9'"):
        read_st(samples, base_dir=root, sections=["S1", "S9"])
    with pytest.raises(FileNotFoundError, match=r"`samples`: table"):
        read_st(tmp_path / "nope.csv")
    with pytest.raises(TypeError, match=r"`samples` must be a DataFrame"):
        read_st(42)
    with pytest.raises(KeyError, match=r"`pixel_size`.*'S7'"):
        read_st(samples, base_dir=root, pixel_size={"S7": 1.0})
    with pytest.raises(ValueError, match=r"`pixel_size\['S1'\]` must lie in \(0"):
        read_st(samples, base_dir=root, pixel_size=-1.0)
    with pytest.raises(ValueError, match=r"`join` must be one of"):
        read_st(samples, base_dir=root, join="left")


def test_count_ids_do_not_join(st_layout):
    root, samples = st_layout
    p = _edit(root, samples, "counts")
    df = pd.read_csv(p, sep="\t", index_col=0)
    df.index = [f"{i + 100}x{i + 100}" for i in range(len(df))]
    df.to_csv(p, sep="\t")
    with pytest.raises(ValueError, match=r"section 'S1': no spot id of the count matrix .* matches"):
        _read(st_layout)


def test_count_ids_not_xy(st_layout):
    root, samples = st_layout
    p = _edit(root, samples, "counts")
    df = pd.read_csv(p, sep="\t", index_col=0)
    df.index = [f"spot{i}" for i in range(len(df))]
    df.to_csv(p, sep="\t")
    with pytest.raises(ValueError, match=r"row id\(s\) of the count matrix .* are not '\{x\}x\{y\}'"):
        _read(st_layout)


@pytest.mark.parametrize(("value", "match"), [(-1, "negative"), (1.5, "not integers"), ("abc", "non-numeric")])
def test_bad_counts(st_layout, value, match):
    root, samples = st_layout
    p = _edit(root, samples, "counts")
    df = pd.read_csv(p, sep="\t", index_col=0).astype(object)
    df.iloc[3, 2] = value
    df.to_csv(p, sep="\t")
    with pytest.raises(ValueError, match=f"`samples`.*{match}"):
        _read(st_layout)


def test_wrong_spot_file_columns(st_layout):
    root, samples = st_layout
    p = _edit(root, samples, "spots")
    df = pd.read_csv(p, sep="\t")
    df.rename(columns={"pixel_x": "px"}).to_csv(p, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"the spot file .* lacks column\(s\) \['pixel_x'\]"):
        _read(st_layout)
    df.drop(columns="selected").to_csv(p, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['selected'\].*only_selected=False"):
        _read(st_layout)
    assert gd.io.get_table(_read(st_layout, only_selected=False, sections=["S1"])).n_obs == 41


def test_corrupt_image(st_layout):
    root, samples = st_layout
    p = _edit(root, samples, "image")
    p.write_bytes(b"this is not a JPEG")
    with pytest.raises(ValueError, match=r"`samples`: the 'image' file of section 'S1' .* is not a readable image"):
        _read(st_layout)
    tif = _edit(root, samples, "image", 1)
    tif.write_bytes(tif.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"`samples`: the 'image' file of section 'S2': cannot read the TIFF"):
        _read(st_layout, sections=["S2"])


def test_truncated_jpeg_fails_at_decode(st_layout):
    root, samples = st_layout
    p = _edit(root, samples, "image")
    p.write_bytes(p.read_bytes()[:2000])
    sdata = _read(st_layout, sections=["S1"])  # the header is intact: reading is lazy
    with pytest.raises(ValueError, match=r"cannot decode image .*S1.jpg.*corrupt or truncated"):
        sdata.images["S1_hne"].data.compute()


def test_spots_outside_image(st_layout):
    root, samples = st_layout
    p = _edit(root, samples, "spots")
    df = pd.read_csv(p, sep="\t")
    df.loc[5, "pixel_x"] = 5000.0
    df.to_csv(p, sep="\t", index=False)
    with pytest.raises(ValueError, match=r"section 'S1': 1 spot centre\(s\) .* outside the 360×300 px image"):
        _read(st_layout, pixel_size=5.0)


def _jpeg(path, arr, mode="RGB", tail=b""):
    from PIL import Image

    Image.fromarray(arr).convert(mode).save(path, "JPEG", quality=90)
    if tail:
        path.write_bytes(path.read_bytes() + tail)


@pytest.mark.parametrize(
    ("mode", "tail", "fast"),
    [("RGB", b"", True), ("L", b"", False), ("CMYK", b"", False), ("RGB", b"\x00padding", False)],
    ids=["rgb", "grayscale", "cmyk", "bytes-after-end-marker"],
)
def test_jpeg_decode_equals_pillow_on_either_path(tmp_path, monkeypatch, mode, tail, fast):
    """Complete RGB JPEGs go through libjpeg-turbo (imagecodecs), the rest through Pillow: same pixels either way."""
    from PIL import Image

    import genedml.io._st as st

    rng = np.random.default_rng(0)
    arr = (rng.random((70, 90, 3)) * 255).astype(np.uint8)
    p = tmp_path / "im.jpg"
    _jpeg(p, arr, mode=mode, tail=tail)
    used = []
    orig = st._decode_jpeg
    monkeypatch.setattr(st, "_decode_jpeg", lambda *a: ((r := orig(*a)) is not None and used.append(1)) or r)
    got = st._decode_pillow(str(p), (70, 90))
    assert bool(used) is fast
    with Image.open(p) as im:
        want = np.asarray(im.convert("RGB"))
    assert got.shape == (70, 90, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, want)


def test_jpeg_fast_path_refuses_a_truncated_stream(tmp_path):
    """libjpeg decodes a truncated stream as grey without an error: the fast path must leave it to Pillow."""
    import genedml.io._st as st

    rng = np.random.default_rng(1)
    p = tmp_path / "im.jpg"
    _jpeg(p, (rng.random((64, 64, 3)) * 255).astype(np.uint8))
    p.write_bytes(p.read_bytes()[:-600])
    assert st._decode_jpeg(str(p), (64, 64)) is None
    with pytest.raises(ValueError, match=r"cannot decode image .*im.jpg.*corrupt or truncated"):
        st._decode_pillow(str(p), (64, 64))


def test_jpeg_fast_path_checks_the_size(tmp_path):
    import genedml.io._st as st

    p = tmp_path / "im.jpg"
    _jpeg(p, np.zeros((40, 50, 3), np.uint8))
    assert st._decode_jpeg(str(p), (50, 40)) is None  # read as another size: Pillow reports the change
    with pytest.raises(ValueError, match=r"changed on disk"):
        st._decode_pillow(str(p), (50, 40))
