"""`gd.io.read_slide` on small slide files written here with tifffile (generic pyramidal TIFF, OME-TIFF, SVS-like)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile

import genedml as gd
from genedml._keys import Keys
from genedml.io import _slide

TILE = (256, 256)
SVS_DESC = (
    "Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] (256x256) JPEG/RGB Q=70|AppMag = 20|"
    "StripeWidth = 2040|ScanScope ID = SS1234|MPP = {mpp}"
)


def _tissue(h: int = 1024, w: int = 1024, seed: int = 0) -> np.ndarray:
    """Pale background with a purple, textured blob (tissue) in the middle."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 242, np.uint8)
    yy, xx = np.mgrid[:h, :w]
    blob = ((yy - h / 2) / (0.35 * h)) ** 2 + ((xx - w / 2) / (0.3 * w)) ** 2 < 1
    img[blob] = np.clip(np.array([170, 70, 160]) + rng.normal(0, 12, (int(blob.sum()), 3)), 0, 255).astype(np.uint8)
    return img


def write_generic(path, img, *, mpp=0.5, unit="CENTIMETER", levels=2):
    """Pyramidal TIFF (SubIFDs) with XResolution/YResolution in pixels per ``unit``."""
    per_unit = {"CENTIMETER": 1e4, "INCH": 25400.0, "MILLIMETER": 1e3}[unit]
    with tifffile.TiffWriter(path) as tw:
        kw = dict(tile=TILE, photometric="rgb", compression="zlib")
        tw.write(img, subifds=levels - 1, resolution=(per_unit / mpp, per_unit / mpp), resolutionunit=unit, **kw)
        for i in range(1, levels):
            tw.write(img[:: 2**i, :: 2**i], subfiletype=1, **kw)
    return path


def write_ome(path, img, *, physical_size=0.25, unit="µm"):
    """Pyramidal OME-TIFF with ``PhysicalSizeX``/``Y`` and no resolution tags."""
    meta = {"axes": "YXS", "PhysicalSizeX": physical_size, "PhysicalSizeY": physical_size}
    meta |= {"PhysicalSizeXUnit": unit, "PhysicalSizeYUnit": unit}
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(img, subifds=1, tile=TILE, photometric="rgb", compression="zlib", metadata=meta)
        tw.write(img[::2, ::2], subfiletype=1, tile=TILE, photometric="rgb", compression="zlib")
    return path


def write_svs(path, img, *, mpp=0.499):
    """SVS-like TIFF: tiled baseline with an Aperio description, a stripped thumbnail, a tiled level, a label."""
    h, w = img.shape[:2]
    with tifffile.TiffWriter(path) as tw:
        kw = dict(photometric="rgb", compression="jpeg", metadata=None)  # no tifffile "shaped" description
        tw.write(img, tile=TILE, description=SVS_DESC.format(w=w, h=h, mpp=mpp), **kw)
        tw.write(img[::8, ::8], description="Aperio Image Library v12.0.15 \r\nthumbnail", **kw)
        tw.write(img[::2, ::2], tile=TILE, description="Aperio Image Library v12.0.15 \r\nlevel 1", **kw)
        tw.write(img[:64, :64], subfiletype=1, description="Aperio Image Library v12.0.15\r\nlabel", **kw)
    return path


def _levels(sdata, section):
    from genedml._data_model import image_levels

    return image_levels(sdata.images[Keys.image(section)])


# --------------------------------------------------------------------------------------------------- formats


def test_generic_pyramidal_tiff_resolution_tags(tmp_path):
    img = _tissue()
    sdata = gd.io.read_slide(write_generic(tmp_path / "slide-1.tif", img, mpp=0.5))
    levels = _levels(sdata, "slide-1")
    assert [lv.shape for lv in levels] == [(3, 1024, 1024), (3, 512, 512)]
    assert all(lv.dtype == np.uint8 for lv in levels)
    np.testing.assert_array_equal(levels[0].data[:, 300:340, 500:530].compute(), img[300:340, 500:530].T.swapaxes(1, 2))
    np.testing.assert_array_equal(levels[1].data.compute().transpose(1, 2, 0), img[::2, ::2])
    meta = sdata.attrs["genedml"]["slides"]["slide-1"]
    assert meta["pixel_size"] == pytest.approx(0.5) and "XResolution" in meta["pixel_size_source"]
    assert (
        meta["backend"] == "tiffslide" and meta["patient"] == "slide-1" and meta["levels"] == [[1024, 1024], [512, 512]]
    )
    from genedml._data_model import scale_of

    el = sdata.images["slide-1_hne"]
    assert scale_of(el, "slide-1_um", name="x") / scale_of(el, "slide-1", name="x") == pytest.approx(0.5)


def test_resolution_in_inches_is_converted(tmp_path):
    sdata = gd.io.read_slide(write_generic(tmp_path / "inch.tif", _tissue(256, 256), mpp=0.25, unit="INCH", levels=1))
    assert sdata.attrs["genedml"]["slides"]["inch"]["pixel_size"] == pytest.approx(0.25)


@pytest.mark.parametrize(("size", "unit", "mpp"), [(0.25, "µm", 0.25), (500.0, "nm", 0.5)])
def test_ome_tiff_physical_size(tmp_path, size, unit, mpp):
    img = _tissue(512, 768)
    sdata = gd.io.read_slide(write_ome(tmp_path / "s.ome.tif", img, physical_size=size, unit=unit), section="ome")
    meta = sdata.attrs["genedml"]["slides"]["ome"]
    assert meta["pixel_size"] == pytest.approx(mpp) and meta["pixel_size_source"].startswith("OME")
    levels = _levels(sdata, "ome")
    assert [lv.shape for lv in levels] == [(3, 512, 768), (3, 256, 384)]
    np.testing.assert_array_equal(levels[0].data.compute().transpose(1, 2, 0), img)


def test_svs_like_aperio_description(tmp_path):
    img = _tissue()
    sdata = gd.io.read_slide(write_svs(tmp_path / "TCGA-XX.01.svs", img), patient="P7")
    assert list(sdata.images) == ["TCGA-XX_hne"]  # dots and extensions leave the default section name
    meta = sdata.attrs["genedml"]["slides"]["TCGA-XX"]
    assert meta["vendor"] == "aperio" and meta["pixel_size"] == pytest.approx(0.499)
    assert meta["objective_power"] == 20 and meta["patient"] == "P7"
    # baseline and the tiled level only: the thumbnail and the label are not pyramid levels
    assert [lv.shape[1:] for lv in _levels(sdata, "TCGA-XX")] == [(1024, 1024), (512, 512)]
    got = _levels(sdata, "TCGA-XX")[0].data[:, 256:512, 256:512].compute().transpose(1, 2, 0)
    assert np.abs(got.astype(int) - img[256:512, 256:512]).mean() < 8  # JPEG


# --------------------------------------------------------------------------------------------------- errors


def test_no_pixel_size_in_file_needs_the_argument(tmp_path):
    path = tmp_path / "bare.tif"
    tifffile.imwrite(path, _tissue(256, 256), tile=TILE, photometric="rgb")
    with pytest.raises(ValueError, match=r"records no pixel size\. Pass `pixel_size`"):
        gd.io.read_slide(path)
    sdata = gd.io.read_slide(path, pixel_size=0.5)
    assert sdata.attrs["genedml"]["slides"]["bare"]["pixel_size_source"] == "pixel_size argument"


def test_placeholder_dpi_is_no_pixel_size(tmp_path):
    path = write_generic(tmp_path / "dpi.tif", _tissue(256, 256), mpp=25400 / 72, unit="INCH", levels=1)
    with pytest.raises(ValueError, match=r"352\.778 µm/px .* no microscope pixel size.*`pixel_size`"):
        gd.io.read_slide(path)


def test_pixel_size_disagreeing_with_the_file_warns_and_wins(tmp_path):
    path = write_generic(tmp_path / "s.tif", _tissue(256, 256), mpp=0.5, levels=1)
    with pytest.warns(UserWarning, match=r"`pixel_size`=0\.6 µm/px differs by 20% from the file's 0\.5"):
        sdata = gd.io.read_slide(path, pixel_size=0.6)
    assert gd.io.section_thumbnail is not None and sdata.attrs["genedml"]["slides"]["s"]["pixel_size"] == 0.6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        close = gd.io.read_slide(path, pixel_size=0.51)  # within 5 %: no warning
    assert close.attrs["genedml"]["slides"]["s"]["pixel_size"] == 0.51


def test_bad_arguments_are_named(tmp_path):
    missing = tmp_path / "nope.svs"
    with pytest.raises(FileNotFoundError, match=r"`path`: slide file .*nope\.svs.* does not exist"):
        gd.io.read_slide(missing)
    not_tiff = tmp_path / "x.svs"
    not_tiff.write_bytes(b"not a slide at all")
    with pytest.raises(ValueError, match=r"`path`: tiffslide cannot read .*backend='openslide'"):
        gd.io.read_slide(not_tiff)
    path = write_generic(tmp_path / "s.tif", _tissue(256, 256), levels=1)
    with pytest.raises(ValueError, match=r"`pixel_size` must lie in \(0, inf\)"):
        gd.io.read_slide(path, pixel_size=-1)
    with pytest.raises(ValueError, match=r"`backend` must be one of"):
        gd.io.read_slide(path, backend="bioformats")
    with pytest.raises(ValueError, match=r"`section`='a b'"):
        gd.io.read_slide(path, section="a b")


def test_grey_image_is_refused(tmp_path):
    path = tmp_path / "grey.tif"
    tifffile.imwrite(
        path, np.zeros((256, 256), np.uint8), tile=TILE, resolution=(2e4, 2e4), resolutionunit="CENTIMETER"
    )
    with pytest.raises(ValueError, match=r"RGB \(or RGBA\) uint8"):
        gd.io.read_slide(path)


def test_openslide_backend_missing_names_the_install(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_openslide(name, *a, **k):
        if name == "openslide":
            raise ImportError("No module named 'openslide'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_openslide)
    path = write_generic(tmp_path / "s.tif", _tissue(256, 256), levels=1)
    with pytest.raises(ImportError, match=r"pip install openslide-python openslide-bin"):
        gd.io.read_slide(path, backend="openslide")


# --------------------------------------------------------------------------------------------------- laziness


@pytest.fixture
def block_reads(monkeypatch):
    """Every block `read_slide`'s image reads, as ``(level, y0, x0)``."""
    reads: list[tuple[int, int, int]] = []
    real = _slide._read_block

    def counting(src, backend, level, where, block_info=None):
        (_, _), (y0, _), (x0, _) = block_info[None]["array-location"]
        reads.append((level, y0, x0))
        return real(src, backend, level, where, block_info=block_info)

    monkeypatch.setattr(_slide, "_read_block", counting)
    return reads


def test_reading_decodes_nothing_and_a_window_reads_one_chunk(tmp_path, block_reads):
    img = _tissue()
    sdata = gd.io.read_slide(write_generic(tmp_path / "s.tif", img), chunk_size=256)
    assert block_reads == []
    full = _levels(sdata, "s")[0].data
    assert full.numblocks == (1, 4, 4)  # whole 256-px tiles
    win = full[:, 300:400, 520:600].compute()
    assert block_reads == [(0, 256, 512)]
    np.testing.assert_array_equal(win.transpose(1, 2, 0), img[300:400, 520:600])


def test_spot_grid_finds_tissue_on_a_low_resolution_level(tmp_path, block_reads):
    img = _tissue(1600, 3072)  # level 1 (800 × 1536) is large enough for spot_grid's tissue thumbnail
    sdata = gd.io.read_slide(write_generic(tmp_path / "wide.tif", img, mpp=1.0), chunk_size=512, patient="P1")
    gd.pp.spot_grid(sdata, image_key="wide_hne", pitch_um=100, diameter_um=55)
    assert block_reads and {lvl for lvl, *_ in block_reads} == {1}  # the full-resolution level is never read
    t = sdata["table"]
    assert set(t.obs["patient"]) == {"P1"}  # read_slide's patient label
    xy = gd.io.spot_centers(sdata, "wide")
    # spots lie on the tissue blob (an ellipse around the centre), none on the pale background
    inside = ((xy[:, 1] - 800) / (0.35 * 1600)) ** 2 + ((xy[:, 0] - 1536) / (0.3 * 3072)) ** 2 < 1.05
    assert len(xy) > 50 and inside.all()


# --------------------------------------------------------------------------------------------------- end to end


def test_slide_to_spot_grid_to_predict(tmp_path):
    """A model trained at 2 µm/px predicts on a 1 µm/px slide file: windows in µm, spots on the tissue only."""
    train = gd.datasets.synthetic(preset="tiny")
    model = gd.tl.fit(
        train,
        n_top_genes=8,
        encoder="test_resnet",
        pretrained=False,
        config="cpu",
        max_epochs=1,
        batch_size=32,
        patience=None,
        progress=False,
        target_um=64.0,
        target_px=32,  # small windows keep the test fast
    )
    img = _tissue(1200, 1200, seed=3)
    sdata = gd.io.read_slide(write_svs(tmp_path / "case.svs", img, mpp=1.0))
    gd.pp.spot_grid(sdata, image_key="case_hne", model=model)
    gd.io.validate(sdata, require_counts=False)  # the slide with its grid follows the data model
    gd.tl.predict(sdata, model)
    t = sdata["table"]
    assert t.n_obs > 5 and list(t.var_names) == model.genes_
    assert np.isfinite(t.layers["predicted"]).all()
    assert gd.io.pixel_size(sdata, "case") == pytest.approx(1.0)


def test_openslide_backend_reads_the_same_pixels(tmp_path):
    pytest.importorskip("openslide")
    img = _tissue()
    svs = write_svs(tmp_path / "o.svs", img)
    a, b = gd.io.read_slide(svs), gd.io.read_slide(svs, backend="openslide", chunk_size=256)
    assert b.attrs["genedml"]["slides"]["o"]["vendor"] == "aperio"
    assert b.attrs["genedml"]["slides"]["o"]["pixel_size"] == pytest.approx(0.499)
    for la, lb in zip(_levels(a, "o"), _levels(b, "o"), strict=True):
        np.testing.assert_array_equal(la.data.compute(), lb.data.compute())
    ome = gd.io.read_slide(write_ome(tmp_path / "o.ome.tif", img, physical_size=0.25), backend="openslide")
    assert ome.attrs["genedml"]["slides"]["o"]["pixel_size"] == pytest.approx(0.25)


def test_top_level_pyramid_pages(tmp_path):
    """A generic TIFF whose pyramid is stored as reduced-resolution top-level pages (not SubIFDs)."""
    img = _tissue()
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        kw = dict(tile=TILE, photometric="rgb", metadata=None)
        tw.write(img, resolution=(2e4, 2e4), resolutionunit="CENTIMETER", **kw)
        tw.write(img[::2, ::2], subfiletype=1, **kw)
    sdata = gd.io.read_slide(path, chunk_size=256)
    levels = _levels(sdata, "pages")
    assert [lv.shape for lv in levels] == [(3, 1024, 1024), (3, 512, 512)]
    assert sdata.attrs["genedml"]["slides"]["pages"]["pixel_size"] == pytest.approx(0.5)
    np.testing.assert_array_equal(levels[1].data.compute().transpose(1, 2, 0), img[::2, ::2])


def test_fsspec_url(tmp_path):
    """tiffslide opens fsspec URLs (here the in-memory filesystem); every chunk reopens the URL."""
    import fsspec

    img = _tissue()
    url = f"memory://{tmp_path.name}/remote.svs"
    with fsspec.open(url, "wb") as f:
        f.write(write_svs(tmp_path / "local.svs", img).read_bytes())
    try:
        sdata = gd.io.read_slide(url, chunk_size=256)
        meta = sdata.attrs["genedml"]["slides"]["remote"]
        assert meta["path"] == url and meta["pixel_size"] == pytest.approx(0.499)
        local = gd.io.read_slide(tmp_path / "local.svs")
        for a, b in zip(_levels(sdata, "remote"), _levels(local, "local"), strict=True):
            np.testing.assert_array_equal(a.data.compute(), b.data.compute())
    finally:
        fsspec.filesystem("memory").rm(f"/{tmp_path.name}", recursive=True)
    with pytest.raises(ValueError, match=r"URLs are read by backend='tiffslide' only"):
        gd.io.read_slide(url, backend="openslide")


def test_the_lazy_image_pickles_without_an_open_file(tmp_path):
    """Chunks hold a path, not a file handle: the image can go to dask workers or forked data loaders."""
    import pickle

    import dask

    img = _tissue(512, 512)
    sdata = gd.io.read_slide(write_ome(tmp_path / "p.ome.tif", img), chunk_size=256)
    arr = pickle.loads(pickle.dumps(_levels(sdata, "p")[0].data))
    with dask.config.set(scheduler="synchronous"):
        np.testing.assert_array_equal(arr.compute().transpose(1, 2, 0), img)


def test_an_he_only_store_round_trips_through_zarr(tmp_path):
    """spot_grid → write_zarr → read_zarr: an H&E-only table has no counts to require."""
    sdata = gd.io.he_only(gd.datasets.synthetic(preset="tiny"), section="S1")
    gd.pp.spot_grid(sdata, image_key="S1_hne", pitch_um=100.0, diameter_um=55.0)
    gd.io.write_zarr(sdata, tmp_path / "hne.zarr")
    back = gd.io.read_zarr(tmp_path / "hne.zarr")
    assert back["table"].n_obs == sdata["table"].n_obs > 0
