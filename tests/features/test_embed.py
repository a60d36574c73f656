"""gd.tl.embed: what it writes, that it matches the encoder on the windows, dedup, variants, bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import genedml as gd
from genedml._keys import Keys
from genedml.io import SectionData, build_sdata

PX = 32


def _section(name, h, w, pitch, seed, *, margin=20):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    xs, ys = np.meshgrid(np.arange(margin, w - 4, pitch), np.arange(margin, h - 4, pitch))
    xy = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    n = len(xy)
    return SectionData(
        name=name, patient="p" + name, image=img, pixel_size=0.5, xy=xy, array_row=ys.ravel() // pitch,
        array_col=xs.ravel() // pitch, counts=rng.poisson(2, (n, 3)), genes=["a", "b", "c"],
        barcodes=[f"{name}_{i}" for i in range(n)], spot_diameter_um=10.0, pitch_um=pitch * 0.5,
    )  # fmt: skip


def _sdata():
    return build_sdata([_section("s1", 120, 100, 30, 0), _section("s2", 90, 110, 25, 1)])


@pytest.fixture(scope="module")
def resnet():
    from genedml.encoders import create_encoder

    return create_encoder("test_resnet", pretrained=False, device="cpu")


@pytest.fixture(scope="module")
def vit():
    from genedml.encoders import create_encoder

    return create_encoder("test_vit", pretrained=False, device="cpu")


@pytest.fixture
def encoded(monkeypatch):
    """Sizes of the batches that reach the encoder."""
    from genedml.features import _embed_run

    sizes: list[int] = []
    orig = _embed_run._encode_batch

    def counting(ctx, arr, release, **kw):
        sizes.append(len(arr))
        return orig(ctx, arr, release, **kw)

    monkeypatch.setattr(_embed_run, "_encode_batch", counting)
    return sizes


def _F(sdata, enc="test_resnet"):
    """The features of ``enc`` under their former ``obsm`` names, read back from the store (dense, table order)."""
    from genedml.features._embed_write import table_rows

    t = sdata.tables["table"]
    rec = t.uns["genedml"]["features"][enc]
    out = {
        Keys.features(enc, s): gd.features.load_features(sdata, encoder=enc, scale=s) for s in rec["params"]["scales"]
    }
    if "neighbor" in rec["params"]["scales"]:
        fs = gd.features.open_features(sdata, encoder=enc)
        mask = np.zeros((t.n_obs, 25), bool)
        for sec in fs.sections:
            mask[table_rows(t, sec)] = np.asarray(fs.entries[sec]["neighbor"]["index"]) >= 0
        out[Keys.features(enc, "neighbor") + "_mask"] = mask
    return out


def _pooled(enc, windows):
    import torch

    x = torch.from_numpy(np.ascontiguousarray(windows.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        tokens, pooled = enc(enc.prepare(x))
    return tokens.numpy(), pooled.numpy()


def test_embed_writes_documented_slots(resnet):
    sdata = _sdata()
    gd.tl.embed(sdata, encoder=resnet, target_px=PX, batch_size=64)
    t = sdata.tables["table"]
    n, D = t.n_obs, 96
    g, nb, tg = (Keys.features("test_resnet", s) for s in ("global", "neighbor", "target"))
    assert _F(sdata)[g].shape == (n, D) and _F(sdata)[g].dtype == np.float32
    assert _F(sdata)[nb].shape == (n, 25, D) and _F(sdata)[nb].dtype == np.float32
    assert _F(sdata)[nb + "_mask"].shape == (n, 25) and _F(sdata)[nb + "_mask"].dtype == bool
    assert _F(sdata)[tg].shape == (n, 1, D) and _F(sdata)[tg].dtype == np.float16  # 32 px → 1×1 map
    assert np.isfinite(_F(sdata)[g]).all() and np.isfinite(_F(sdata)[tg]).all()
    rec = t.uns["genedml"]["features"]["test_resnet"]
    assert rec["D"] == D and rec["T"] == 1 and rec["params"]["target_px"] == PX and rec["params"]["mode"] == "native"
    assert rec["encoder"]["weights_hash"] == resnet.weights_hash
    s1 = rec["sections"]["s1"]
    assert s1["window_um"] == pytest.approx(PX * 0.5) and s1["neighbor_um"] == pytest.approx(5 * PX * 0.5)
    assert {k for k, _ in s1["entries"]} == {"global", "neighbor", "target/0"}  # pairs: zarr-safe
    assert rec["store"] == str(gd.settings.cachedir) and s1["n_spots"] == gd.io.section_obs(sdata, "s1").size
    assert not any(k.startswith("genedml_") for k in t.obsm), "features never enter obsm"


def test_features_equal_the_encoder_on_the_windows(resnet):
    sdata = _sdata()
    gd.tl.embed(sdata, encoder=resnet, target_px=PX, batch_size=64)
    rows = gd.io.section_obs(sdata, "s2")
    tgt = gd.features.spot_windows(sdata, section="s2", target_px=PX)
    tok, pooled = _pooled(resnet, tgt.images)
    np.testing.assert_allclose(_F(sdata)["genedml_test_resnet_global"][rows], pooled, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_F(sdata)["genedml_test_resnet_target"][rows], tok, rtol=2e-3, atol=2e-3)
    nbw = gd.features.spot_windows(sdata, section="s2", scale="neighbor", target_px=PX, spots=[0, 3])
    feats = _F(sdata)["genedml_test_resnet_neighbor"][rows[[0, 3]]]
    mask = _F(sdata)["genedml_test_resnet_neighbor_mask"][rows[[0, 3]]]
    np.testing.assert_array_equal(mask, nbw.mask)
    assert (~mask).any() and mask.any()
    _, tile_pooled = _pooled(resnet, nbw.images.reshape(-1, PX, PX, 3))
    tile_pooled = tile_pooled.reshape(2, 25, -1)
    np.testing.assert_allclose(feats[mask], tile_pooled[mask], rtol=1e-4, atol=1e-5)
    assert (feats[~mask] == 0).all()


def test_each_target_window_is_encoded_once_for_tokens_and_pooled(resnet, encoded):
    sdata = _sdata()
    gd.tl.embed(sdata, encoder=resnet, scales=("target", "global"), target_px=PX, batch_size=4)
    assert sum(encoded) == sdata.tables["table"].n_obs


def test_neighbor_tiles_are_deduplicated_on_an_aligned_grid(resnet, encoded):
    """Pitch = window size: neighbour tiles are other spots' windows or shared between spots."""
    sec = _section("g", 200, 200, PX, 3, margin=36)
    sdata = build_sdata([sec])
    gd.tl.embed(sdata, encoder=resnet, scales=("neighbor", "global"), target_px=PX, batch_size=16)
    n = len(sec.xy)
    mask = _F(sdata)["genedml_test_resnet_neighbor_mask"]
    origins = (sec.xy[:, None, ::-1] - PX // 2 + (np.mgrid[-2:3, -2:3].reshape(2, 25).T * PX)[None]).astype(int)
    distinct = {tuple(o) for o in origins[mask]} | {tuple(o) for o in origins[:, 12]}
    assert sum(encoded) == len(distinct) < n + int(mask.sum())
    nbw = gd.features.spot_windows(sdata, section="g", scale="neighbor", target_px=PX, spots=[n // 2])
    _, ref = _pooled(resnet, nbw.images.reshape(-1, PX, PX, 3))
    got = _F(sdata)["genedml_test_resnet_neighbor"][n // 2]
    np.testing.assert_allclose(got[nbw.mask[0]], ref[nbw.mask[0]], rtol=1e-4, atol=1e-5)


def test_dihedral_variants_are_cached_and_loadable(vit):
    import torch

    sdata = _sdata()
    gd.tl.embed(sdata, encoder=vit, scales="target", target_px=PX, dihedral=True, batch_size=64)
    t = sdata.tables["table"]
    v0 = gd.features.load_features(sdata, encoder="test_vit", scale="target")
    np.testing.assert_array_equal(v0, _F(sdata, "test_vit")["genedml_test_vit_target"])
    assert v0.shape == (t.n_obs, 5, 64)
    rows = gd.io.section_obs(sdata, "s1")
    win = torch.from_numpy(
        gd.features.spot_windows(sdata, section="s1", target_px=PX).images.transpose(0, 3, 1, 2).copy()
    )
    variants = [gd.features.load_features(sdata, encoder=vit, scale="target", variant=v) for v in range(8)]
    for v, x in ((1, torch.rot90(win, 1, dims=(2, 3))), (6, torch.flip(torch.rot90(win, 2, dims=(2, 3)), dims=(3,)))):
        with torch.no_grad():
            ref = vit.forward_tokens(vit.prepare(x)).numpy()
        np.testing.assert_allclose(variants[v][rows].astype(np.float32), ref, rtol=5e-3, atol=5e-3)
    for a in range(8):
        for b in range(a + 1, 8):
            assert not np.allclose(variants[a], variants[b])
    with pytest.raises(ValueError, match="variant"):
        gd.features.load_features(sdata, encoder="test_vit", scale="target", variant=8)


def test_sections_subset_then_the_rest_merges(resnet, encoded):
    sdata = _sdata()
    t = sdata.tables["table"]
    r1, r2 = gd.io.section_obs(sdata, "s1"), gd.io.section_obs(sdata, "s2")
    gd.tl.embed(sdata, encoder=resnet, scales="global", target_px=PX, sections=["s2"])
    g = _F(sdata)["genedml_test_resnet_global"]
    assert np.isnan(g[r1]).all() and np.isfinite(g[r2]).all()
    assert sum(encoded) == len(r2)
    gd.tl.embed(sdata, encoder=resnet, scales="global", target_px=PX, sections="s1")
    g2 = _F(sdata)["genedml_test_resnet_global"]
    assert np.isfinite(g2).all()
    np.testing.assert_array_equal(g2[r2], g[r2])
    assert set(t.uns["genedml"]["features"]["test_resnet"]["sections"]) == {"s1", "s2"}


def test_lazy_reading_and_thread_counts_give_identical_features(resnet, monkeypatch):
    from genedml.features import _images

    ref = _sdata()
    gd.tl.embed(ref, encoder=resnet, scales=("neighbor", "global"), target_px=PX, cache=False, num_workers=0)
    monkeypatch.setattr(_images, "INMEMORY_MAX_BYTES", 0)  # force chunk-wise reading
    lazy = _sdata()
    gd.tl.embed(lazy, encoder=resnet, scales=("neighbor", "global"), target_px=PX, cache=False, num_workers=2)
    for key in ("genedml_test_resnet_global", "genedml_test_resnet_neighbor", "genedml_test_resnet_neighbor_mask"):
        np.testing.assert_allclose(_F(lazy)[key], _F(ref)[key], rtol=1e-5, atol=1e-6)


def test_physical_size_is_recorded(resnet):
    sdata = _sdata()  # 0.5 µm/px
    gd.tl.embed(sdata, encoder=resnet, scales="global", target_px=16, target_mpp=1.0)
    rec = sdata.tables["table"].uns["genedml"]["features"]["test_resnet"]
    assert rec["params"]["mode"] == "physical" and rec["params"]["target_um"] == pytest.approx(16.0)
    assert rec["sections"]["s1"]["crop_px"] == 32 and rec["sections"]["s1"]["window_um"] == pytest.approx(16.0)


def test_amp_on_cpu_warns(resnet):
    with pytest.warns(UserWarning, match="amp"):
        gd.tl.embed(_sdata(), encoder=resnet, scales="global", target_px=PX, amp=True, cache=False)


def _replace_image(sdata, arr):
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import get_transformation

    tfs = get_transformation(sdata.images["s1_hne"], get_all=True)
    sdata.images["s1_hne"] = Image2DModel.parse(arr, dims=("c", "y", "x"), transformations=tfs)


def test_bad_input_gives_clear_errors(resnet):
    from spatialdata.transformations import Identity, set_transformation

    kw = {"encoder": resnet, "target_px": PX, "scales": "global"}
    with pytest.raises(ValueError, match="not a registered encoder"):
        gd.tl.embed(_sdata(), encoder="no_such_encoder_abc", target_px=PX)
    with pytest.raises(ValueError, match="scales"):
        gd.tl.embed(_sdata(), encoder=resnet, scales=("target", "cls"))
    with pytest.raises(ValueError, match="dihedral"):
        gd.tl.embed(_sdata(), encoder=resnet, scales="global", dihedral=True)
    with pytest.raises(ValueError, match="batch_size"):
        gd.tl.embed(_sdata(), encoder=resnet, batch_size=0)
    with pytest.raises(KeyError, match="sections"):
        gd.tl.embed(_sdata(), sections=["nope"], **kw)
    sec = _section("s1", 120, 100, 30, 0)
    sec.xy[2] = (150.0, 10.0)  # right of the 100 px wide image
    with pytest.raises(ValueError, match="outside the 100×120 px image"):
        gd.tl.embed(build_sdata([sec]), **kw)
    sdata = _sdata()
    set_transformation(sdata.shapes["s1_spots"], {"s1": Identity()}, set_all=True)
    with pytest.raises(ValueError, match="pixel size"):
        gd.tl.embed(sdata, **kw)
    sdata = _sdata()
    _replace_image(sdata, np.zeros((4, 120, 100), np.uint8))
    with pytest.raises(ValueError, match="3 channels"):
        gd.tl.embed(sdata, **kw)
    sdata = _sdata()
    _replace_image(sdata, np.zeros((3, 120, 100), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        gd.tl.embed(sdata, **kw)


def test_load_features_errors(resnet):
    sdata = _sdata()
    with pytest.raises(KeyError, match=r"run gd\.tl\.embed"):
        gd.features.load_features(sdata, encoder="test_resnet", scale="global")
    gd.tl.embed(sdata, encoder=resnet, scales="global", target_px=PX)
    with pytest.raises(KeyError, match="was not embedded"):
        gd.features.load_features(sdata, encoder="test_resnet", scale="neighbor")
    with pytest.raises(ValueError, match="dihedral"):
        gd.features.load_features(sdata, encoder="test_resnet", scale="global", variant=2)


def test_pp_imports_without_torch():
    code = "import sys, genedml.pp; print('torch' in sys.modules or 'timm' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_provenance_survives_writing_the_table(resnet, tmp_path):
    import anndata as ad

    sdata = _sdata()
    gd.tl.embed(sdata, encoder=resnet, scales=("neighbor", "global"), target_px=PX)
    path = tmp_path / "table.h5ad"
    sdata.tables["table"].write_h5ad(path)
    back = ad.read_h5ad(path)
    rec = back.uns["genedml"]["features"]["test_resnet"]
    assert rec["params"]["scales"].tolist() == ["neighbor", "global"] and rec["D"] == 96
    want = sdata.tables["table"].uns["genedml"]["features"]["test_resnet"]["sections"]["s1"]["entries"]
    assert [list(map(str, e)) for e in rec["sections"]["s1"]["entries"]] == [list(map(str, e)) for e in want]


@pytest.mark.parametrize(
    ("threads", "cores", "device", "num_workers", "want"),
    [(1, 2, "cpu", None, True), (2, 2, "cpu", None, False), (1, 1, "cpu", None, False), (2, 2, "cpu", 1, True),
     (1, 2, "cpu", 0, False), (8, 2, "cuda", None, True)],
)  # fmt: skip
def test_the_next_section_is_decoded_in_the_background_only_beside_a_free_core(
    monkeypatch, threads, cores, device, num_workers, want
):
    import torch

    from genedml.features import _embed

    monkeypatch.setattr(_embed, "_cpu_count", lambda: cores)
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    assert _embed._prefetch(num_workers, torch.device(device)) is want
