"""Window geometry of the target / neighbour scales against hand-computed crops on painted synthetic images."""

from __future__ import annotations

import numpy as np
import pytest

import genedml as gd
from genedml.io import SectionData, build_sdata

BG = 100  # background grey: distinguishable from zero padding
N = 16  # window side used throughout


def _sdata(img, xy, *, pixel_size=1.0, name="s1"):
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    n = len(xy)
    sec = SectionData(
        name=name,
        patient="p",
        image=img,
        pixel_size=pixel_size,
        xy=xy,
        array_row=np.arange(n),
        array_col=np.zeros(n, int),
        counts=np.ones((n, 2), int),
        genes=["g0", "g1"],
        barcodes=[f"b{i}" for i in range(n)],
        spot_diameter_um=10.0,
        pitch_um=20.0,
    )
    return build_sdata([sec])


def _blank(h, w):
    return np.full((h, w, 3), BG, dtype=np.uint8)


def test_target_window_is_centred_on_its_spot():
    img = _blank(120, 140)
    xy = [(30, 40), (70, 40), (100, 90), (51, 77)]
    for i, (x, y) in enumerate(xy):
        img[y, x] = (i + 1, 200, 7)
    w = gd.features.spot_windows(_sdata(img, xy), section="s1", scale="target", target_px=N)
    assert w.images.shape == (4, N, N, 3) and w.images.dtype == np.uint8
    for i, (x, y) in enumerate(xy):
        win = w.images[i]
        # origin = centre - N/2: the spot's pixel sits at index N/2, and the crop equals the hand-cut one
        assert tuple(win[N // 2, N // 2]) == (i + 1, 200, 7)
        np.testing.assert_array_equal(win, img[y - N // 2 : y + N // 2, x - N // 2 : x + N // 2])
    assert w.info["crop_px"] == N and w.info["window_um"] == pytest.approx(N * 1.0)


def test_neighbor_tile_rc_contains_its_marker_row_major():
    img = _blank(200, 200)
    cx, cy = 100, 96
    for r in range(5):
        for c in range(5):
            img[cy + (r - 2) * N, cx + (c - 2) * N] = (10 * r + c + 1, 0, 255)
    w = gd.features.spot_windows(_sdata(img, [(cx, cy)]), section="s1", scale="neighbor", target_px=N)
    assert w.images.shape == (1, 25, N, N, 3)
    assert w.mask.all()
    for r in range(5):
        for c in range(5):
            tile = w.images[0, r * 5 + c]
            assert tuple(tile[N // 2, N // 2]) == (10 * r + c + 1, 0, 255), (r, c)
            y0, x0 = cy - N // 2 + (r - 2) * N, cx - N // 2 + (c - 2) * N
            np.testing.assert_array_equal(tile, img[y0 : y0 + N, x0 : x0 + N])
    # the centre tile is the target window
    tgt = gd.features.spot_windows(_sdata(img, [(cx, cy)]), section="s1", target_px=N).images[0]
    np.testing.assert_array_equal(w.images[0, 12], tgt)


@pytest.mark.parametrize(
    ("xy", "masked_rows", "masked_cols"),
    [
        ((20, 100), [], [0, 1]),  # left: tile columns start at -20 and -4
        ((180, 100), [], [3, 4]),  # right: columns 3 and 4 end at 204 and 220 > 200
        ((100, 30), [0], []),  # top: row 0 starts at -10, row 1 at 6
        ((100, 175), [4], []),  # bottom: row 4 spans 199..215, row 3 ends at 199 ≤ 200
        ((10, 190), [3, 4], [0, 1]),  # bottom-left corner
    ],
)
def test_neighbor_mask_at_each_border(xy, masked_rows, masked_cols):
    img = _blank(200, 200)
    w = gd.features.spot_windows(_sdata(img, [xy]), section="s1", scale="neighbor", target_px=N)
    x, y = xy
    # hand computation: tile (r, c) spans [y - 8 + (r-2)*16, +16) × [x - 8 + (c-2)*16, +16)
    expect = np.ones((5, 5), bool)
    for r in range(5):
        for c in range(5):
            y0, x0 = y - 8 + (r - 2) * N, x - 8 + (c - 2) * N
            expect[r, c] = y0 >= 0 and x0 >= 0 and y0 + N <= 200 and x0 + N <= 200
    np.testing.assert_array_equal(w.mask.reshape(5, 5), expect)
    for r in masked_rows:
        assert not w.mask.reshape(5, 5)[r].any()
    for c in masked_cols:
        assert not w.mask.reshape(5, 5)[:, c].any()
    tiles = w.images[0].reshape(5, 5, N, N, 3)
    assert (tiles[~expect] == 0).all(), "masked tiles must be zero"
    assert (tiles[expect] == BG).all(), "valid tiles hold image pixels"


def test_partly_outside_target_window_is_zero_padded_not_shifted():
    img = np.random.default_rng(0).integers(1, 255, (60, 50, 3), dtype=np.uint8)
    xy = [(3, 30), (45, 57)]  # near the left edge; near the bottom-right corner
    with pytest.warns(UserWarning, match=r"section 's1': \d+% of the target windows' pixels are zero padding"):
        w = gd.features.spot_windows(_sdata(img, xy), section="s1", target_px=N).images
    left = w[0]
    assert (left[:, :5] == 0).all()  # x from -5 to -1 is outside
    np.testing.assert_array_equal(left[:, 5:], img[22:38, 0:11])
    corner = w[1]  # y 49..64 (rows 11+ outside), x 37..52 (cols 13+ outside)
    np.testing.assert_array_equal(corner[:11, :13], img[49:60, 37:50])
    assert (corner[11:] == 0).all() and (corner[:, 13:] == 0).all()


def _two_level(img, pixel_size, name="s1"):
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Identity, Scale

    tfs = {name: Identity(), f"{name}_um": Scale([pixel_size, pixel_size], axes=("y", "x"))}
    return Image2DModel.parse(
        img.transpose(2, 0, 1), dims=("c", "y", "x"), scale_factors=[2], transformations=tfs, chunks=(3, 64, 64)
    )


def _blocks(h, w, block=16, seed=1):
    """Image made of flat 16×16 blocks: downsampling by 2 or 4 keeps each block's interior colour."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // block, w // block, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, block, axis=0), block, axis=1)


def test_physical_windows_cover_the_same_um_at_different_pyramid_levels():
    img = _blocks(256, 256)
    xy = [(128, 128), (96, 160)]
    multi = _sdata(_two_level(img, 0.5), xy, pixel_size=0.5)
    single = _sdata(img, xy, pixel_size=0.5)
    # 32 µm at 2 µm/px = 16 px: 4 full-res px per output px → level 1 (2×) cut 32 px and resampled
    wm = gd.features.spot_windows(multi, section="s1", target_px=N, target_um=32.0)
    ws = gd.features.spot_windows(single, section="s1", target_px=N, target_um=32.0)
    assert wm.info["level"] == 1 and wm.info["crop_px"] == 32
    assert ws.info["level"] == 0 and ws.info["crop_px"] == 64
    assert wm.info["window_um"] == pytest.approx(32.0) == ws.info["window_um"]
    # both show the same 64 × 64 full-res pixels [96, 160)²: 4 × 4 blocks, each 4 × 4 output px
    expect = img[96:160:16, 96:160:16].astype(float)
    for got in (wm.images[0], ws.images[0]):
        inner = got.reshape(4, 4, 4, 4, 3)[:, 1:3, :, 1:3].mean(axis=(1, 3))  # block interiors
        np.testing.assert_allclose(inner, expect, atol=1)
    # at 1 µm/px the wanted resolution is 2 full px per output px → level 1 without resampling
    w1 = gd.features.spot_windows(multi, section="s1", target_px=N, target_mpp=1.0)
    assert w1.info["level"] == 1 and w1.info["crop_px"] == N and w1.info["window_um"] == pytest.approx(16.0)
    np.testing.assert_array_equal(w1.images[0], img[112:144:2, 112:144:2])
    # finer than the finest level → level 0, upsampled
    w0 = gd.features.spot_windows(multi, section="s1", target_px=N, target_mpp=0.25)
    assert w0.info["level"] == 0 and w0.info["crop_px"] == 8


def test_image_stored_at_lower_resolution_uses_its_scale_transform():
    """A Visium-hires-like image (stored at 1/2 resolution with a scale-up transform) gives native-size windows."""
    from spatialdata.transformations import Scale

    full = _blocks(128, 128)
    low = full[::2, ::2].copy()
    xy = [(64, 64)]
    sd_full = _sdata(full, xy, pixel_size=1.0)
    sec = SectionData(
        name="s1", patient="p", image=low, pixel_size=1.0, xy=np.array(xy, float), array_row=[0], array_col=[0],
        counts=np.ones((1, 2), int), genes=["g0", "g1"], barcodes=["b0"], spot_diameter_um=10, pitch_um=20,
        image_scale=2.0,
    )  # fmt: skip
    sd_low = build_sdata([sec])
    from spatialdata.transformations import get_transformation

    assert isinstance(get_transformation(sd_low.images["s1_hne"], "s1"), Scale)
    wl = gd.features.spot_windows(sd_low, section="s1", target_px=32)
    wf = gd.features.spot_windows(sd_full, section="s1", target_px=32)
    assert wl.info["crop_px"] == 16 and wl.info["window_um"] == pytest.approx(32.0)
    assert wf.info["crop_px"] == 32
    # window [48, 80)² of full-res pixels: blocks of 16 → 2 × 2 blocks; upsampled ×2 from the stored image
    inner = wl.images[0].reshape(2, 16, 2, 16, 3)[:, 4:12, :, 4:12].mean(axis=(1, 3))
    np.testing.assert_allclose(inner, full[48:80:16, 48:80:16].astype(float), atol=1)
    np.testing.assert_array_equal(wf.images[0], full[48:80, 48:80])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_px": 0}, "target_px"),
        ({"target_um": -1.0}, "target_um"),
        ({"target_um": 150.0, "target_mpp": 0.5}, "target_px=300"),
        ({"scale": "global"}, "scale"),
        ({"spots": [5]}, "spots"),
    ],
)
def test_spot_windows_bad_arguments(kwargs, match):
    sdata = _sdata(_blank(64, 64), [(32, 32)])
    with pytest.raises(ValueError, match=match):
        gd.features.spot_windows(sdata, section="s1", **kwargs)


def test_spot_outside_image_is_an_error():
    sdata = _sdata(_blank(64, 64), [(32, 32), (70, 10)])
    with pytest.raises(ValueError, match="outside the 64×64 px image"):
        gd.features.spot_windows(sdata, section="s1", target_px=N)


def test_lazy_chunked_reading_cuts_the_same_pixels_as_in_memory():
    import dask.array as da

    from genedml.features._images import Level, _InMemory, _Lazy

    rng = np.random.default_rng(4)
    arr = rng.integers(0, 256, (3, 90, 70), dtype=np.uint8)
    level = Level(0, da.from_array(arr, chunks=(3, 17, 23)), 1.0, (0.0, 0.0))
    origins = np.array([[0, 0], [10, 30], [-5, 60], [80, -7], [40, 40], [-40, 0], [200, 10], [89, 69]])
    a = np.full((len(origins), 3, 21, 21), 7, np.uint8)
    b = np.full_like(a, 9)
    _InMemory(level).cut(origins, 21, a)
    lazy = _Lazy(level, cache_bytes=3 * 17 * 23 * 4)  # room for a few chunks only: eviction is exercised
    lazy.cut(origins, 21, b)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(b[1], arr[:, 10:31, 30:51])
    assert (b[5] == 0).all() and (b[6] == 0).all()  # entirely outside
    roomy = _Lazy(level)
    roomy.cut(origins, 21, b)
    n_first = roomy.chunks_read
    assert 0 < n_first <= 4 * 4  # only chunks under windows (the image has 6 × 4 chunks)
    roomy.cut(origins, 21, b)
    assert roomy.chunks_read == n_first, "cached chunks are not computed again"
