"""The feature cache of gd.tl.embed: hits, misses per key part, atomic writes, resume after interruption."""

from __future__ import annotations

import numpy as np
import pytest

import genedml as gd
from genedml.features import _cache, _embed_run
from genedml.io import SectionData, build_sdata

PX = 32
G = "genedml_test_resnet_global"
NB = "genedml_test_resnet_neighbor"


def _sdata(seed=0, *, shift=None, h=110, w=100):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    xs, ys = np.meshgrid(np.arange(20, w - 4, 26), np.arange(20, h - 4, 26))
    xy = np.stack([xs.ravel(), ys.ravel()], 1).astype(float)
    if shift is not None:
        xy[0] += shift
    n = len(xy)
    sec = SectionData(
        name="s1", patient="p", image=img, pixel_size=0.5, xy=xy, array_row=np.arange(n), array_col=np.zeros(n, int),
        counts=np.ones((n, 2), int), genes=["a", "b"], barcodes=[str(i) for i in range(n)], spot_diameter_um=10.0,
        pitch_um=13.0,
    )  # fmt: skip
    return build_sdata([sec])


@pytest.fixture(scope="module")
def resnet():
    from genedml.encoders import create_encoder

    return create_encoder("test_resnet", pretrained=False, device="cpu")


@pytest.fixture
def encoded(monkeypatch):
    sizes: list[int] = []
    orig = _embed_run._encode_batch

    def counting(ctx, arr, release, **kw):
        sizes.append(len(arr))
        return orig(ctx, arr, release, **kw)

    monkeypatch.setattr(_embed_run, "_encode_batch", counting)
    return sizes


def _files(root):
    """Complete store entries (folders with a meta.json)."""
    return sorted(p.parent for p in root.rglob("meta.json"))


def _feats(sdata, enc="test_resnet"):
    """Every embedded scale of ``enc`` as dense arrays, read back from the store."""
    rec = sdata.tables["table"].uns["genedml"]["features"][enc]
    return {s: gd.features.load_features(sdata, encoder=enc, scale=s) for s in rec["params"]["scales"]}


def test_repeated_call_is_a_hit_without_any_forward(resnet, encoded):
    sdata = _sdata()
    gd.tl.embed(sdata, encoder=resnet, target_px=PX)
    first = _feats(sdata)
    n_first = sum(encoded)
    assert n_first > 0 and len(_files(gd.settings.cachedir)) == 3  # global, neighbor, target/0
    encoded.clear()
    again = _sdata()  # a new object with the same content
    gd.tl.embed(again, encoder=resnet, target_px=PX)
    assert encoded == []
    for k, v in _feats(again).items():
        np.testing.assert_array_equal(v, first[k])
    assert not any(k.startswith("genedml_") for k in again.tables["table"].obsm), "features stay out of obsm"


@pytest.mark.parametrize(
    ("part", "change"),
    [
        ("window px", {"kwargs": {"target_px": 48}}),
        ("µm/px", {"kwargs": {"target_um": 16.0, "target_px": 16}}),
        ("image identity", {"seed": 1}),
        ("spot centres", {"shift": (3.0, 0.0)}),
        ("scale", {"kwargs": {"scales": ("neighbor", "global")}}),
    ],
)
def test_every_key_part_invalidates(resnet, encoded, part, change):
    base = {"encoder": resnet, "target_px": PX, "scales": "global"}
    gd.tl.embed(_sdata(), **base)
    encoded.clear()
    sdata = _sdata(change.get("seed", 0), shift=change.get("shift"))
    gd.tl.embed(sdata, **{**base, **change.get("kwargs", {})})
    n = sdata.tables["table"].n_obs
    if part == "scale":  # global is a hit and feeds the centre tiles; only the other neighbour tiles run
        assert 0 < sum(encoded) and "neighbor" in _feats(sdata)
    else:
        assert sum(encoded) == n, part


def test_changed_weights_and_encoder_miss(resnet, encoded, tmp_path):
    import torch

    from genedml.encoders import create_encoder

    gd.tl.embed(_sdata(), encoder=resnet, target_px=PX, scales="global")
    n = sum(encoded)
    encoded.clear()
    sd = {k: v + 0.01 if v.is_floating_point() else v for k, v in resnet.model.state_dict().items()}
    torch.save(sd, tmp_path / "w.pth")
    other = create_encoder("test_resnet", weights=tmp_path / "w.pth", device="cpu")
    gd.tl.embed(_sdata(), encoder=other, target_px=PX, scales="global")
    assert sum(encoded) == n
    encoded.clear()
    gd.tl.embed(_sdata(), encoder="test_vit", pretrained=False, target_px=PX, scales="global")
    assert sum(encoded) == n


def test_variants_have_their_own_entries(resnet, encoded):
    gd.tl.embed(_sdata(), encoder=resnet, target_px=PX, scales="target")
    n = sum(encoded)
    encoded.clear()
    gd.tl.embed(_sdata(), encoder=resnet, target_px=PX, scales="target", dihedral=True)
    assert sum(encoded) == 7 * n  # variant 0 is a hit, 1..7 are new
    assert len(_files(gd.settings.cachedir)) == 8


def test_store_holds_each_distinct_tile_once(resnet):
    sdata = _sdata()
    gd.tl.embed(sdata, encoder=resnet, target_px=PX, scales=("neighbor", "global"))
    fs = gd.features.open_features(sdata, encoder="test_resnet")
    ent = fs.entries["s1"]["neighbor"]
    index, tiles = np.asarray(ent["index"]), np.asarray(ent["tiles"])
    n = sdata.tables["table"].n_obs
    # every stored tile is used, and no two stored tiles are the same window
    used = np.unique(index[index >= n]) - n
    assert len(used) == len(tiles)
    # the dense view agrees with a from-scratch encoding of each spot's 25 tiles
    dense = gd.features.load_features(sdata, encoder="test_resnet", scale="neighbor")
    win = gd.features.spot_windows(sdata, section="s1", scale="neighbor", target_px=PX)
    import torch

    with torch.inference_mode():
        imgs = torch.from_numpy(win.images.reshape(-1, PX, PX, 3).transpose(0, 3, 1, 2).copy())
        _, pooled = resnet(resnet.prepare(imgs, size=resnet.input_px(PX)))
    want = pooled.numpy().reshape(n, 25, -1) * win.mask[..., None]
    np.testing.assert_allclose(dense, want, rtol=1e-4, atol=1e-5)
    assert not any(k.startswith("genedml_") for k in sdata.tables["table"].obsm)


def test_cache_false_neither_reads_nor_writes(resnet, encoded):
    gd.tl.embed(_sdata(), encoder=resnet, target_px=PX, scales="global", cache=False)
    gd.tl.embed(_sdata(), encoder=resnet, target_px=PX, scales="global", cache=False)
    assert sum(encoded) == 2 * _sdata().tables["table"].n_obs
    assert _files(gd.settings.cachedir) == []


def test_corrupt_entry_is_a_miss_and_is_rewritten(resnet, encoded):
    sdata = _sdata()
    gd.tl.embed(sdata, encoder=resnet, target_px=PX, scales="global")
    ref = _feats(sdata)["global"]
    (entry,) = _files(gd.settings.cachedir)
    arr = entry / "pooled.npy"
    arr.write_bytes(arr.read_bytes()[:50])  # truncated
    encoded.clear()
    again = _sdata()
    gd.tl.embed(again, encoder=resnet, target_px=PX, scales="global")
    assert sum(encoded) == again.tables["table"].n_obs
    np.testing.assert_allclose(_feats(again)["global"], ref, rtol=1e-5, atol=1e-6)
    assert _cache.FeatureCache(gd.settings.cachedir).load(entry.name) is not None


class _Boom(RuntimeError):
    pass


def test_interrupted_embedding_resumes_without_corrupt_entries(resnet, monkeypatch, tmp_path):
    orig = _embed_run._encode_batch
    sizes: list[int] = []

    def counting(ctx, arr, release, **kw):
        sizes.append(len(arr))
        return orig(ctx, arr, release, **kw)

    # reference: an uninterrupted run in another cache
    gd.settings.cachedir = tmp_path / "ref"
    monkeypatch.setattr(_embed_run, "_encode_batch", counting)
    ref = _sdata()
    gd.tl.embed(ref, encoder=resnet, target_px=PX, scales=("neighbor", "global"), batch_size=4)
    n_spots, n_total = ref.tables["table"].n_obs, sum(sizes)

    gd.settings.cachedir = tmp_path / "run"
    monkeypatch.setattr(_embed_run, "CHUNK_WINDOWS", 8)
    calls = {"n": 0}

    def failing(ctx, arr, release, **kw):
        calls["n"] += 1
        if calls["n"] == 6:  # inside the neighbour pass: global entry done, 2 neighbour parts done
            raise _Boom("killed")
        return orig(ctx, arr, release, **kw)

    monkeypatch.setattr(_embed_run, "_encode_batch", failing)
    sdata = _sdata()
    with pytest.raises(_Boom):  # with a background loader thread, which must shut down cleanly
        gd.tl.embed(sdata, encoder=resnet, target_px=PX, scales=("neighbor", "global"), batch_size=4, num_workers=1)
    root = gd.settings.cachedir
    parts = sorted(root.rglob("parts/*.npz"))
    assert len(_files(root)) == 1 and len(parts) == 1  # the finished global entry + one finished neighbour part
    assert not list(root.rglob("*.tmp")), "no temporary leftovers after a clean exception"
    assert _cache.FeatureCache(root).load(_files(root)[0].name) is not None  # everything on disk loads
    with np.load(parts[0]) as z:
        assert z.files
    assert "features" not in sdata.tables["table"].uns.get("genedml", {}), "a failed call records nothing"

    # resume: the global entry and the finished part are reused; only the rest of the neighbour pass runs
    sizes.clear()
    monkeypatch.setattr(_embed_run, "_encode_batch", counting)
    gd.tl.embed(sdata, encoder=resnet, target_px=PX, scales=("neighbor", "global"), batch_size=4)
    assert sum(sizes) == n_total - n_spots - 8
    got, want = _feats(sdata), _feats(ref)
    for key in ("global", "neighbor"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-6)
    assert not list(root.rglob("parts/*.npz")), "parts are dropped once the entry is complete"


def test_a_write_killed_midway_leaves_no_entry(resnet, monkeypatch):
    real_save = np.save

    def half_then_die(fh, arr, **kw):
        fh.write(b"\x93NUMPY partial")
        raise _Boom("disk full")

    monkeypatch.setattr(_cache.np, "save", half_then_die)
    with pytest.raises(_Boom):
        gd.tl.embed(_sdata(), encoder=resnet, target_px=PX, scales="global")
    assert _files(gd.settings.cachedir) == []
    assert not [p for p in gd.settings.cachedir.rglob("*") if p.name.startswith(".")], "no temporary folder left"
    monkeypatch.setattr(_cache.np, "save", real_save)
    sdata = _sdata()
    gd.tl.embed(sdata, encoder=resnet, target_px=PX, scales="global")
    assert np.isfinite(_feats(sdata)["global"]).all() and len(_files(gd.settings.cachedir)) == 1


def test_feature_cache_unit(tmp_path):
    store = _cache.FeatureCache(tmp_path)
    k1 = _cache.hash_key({"a": 1, "b": [1, 2]})
    assert k1 == _cache.hash_key({"b": [1, 2], "a": 1}) and k1 != _cache.hash_key({"a": 2, "b": [1, 2]})
    store.save(k1, {"x": np.arange(6).reshape(3, 2)})
    np.testing.assert_array_equal(store.load(k1)["x"], np.arange(6).reshape(3, 2))
    k2 = _cache.hash_key({"other": True})
    store.save_part(k2, 0, 4, {"x": np.zeros((3, 2))})  # wrong number of rows
    assert store.load_part(k2, 0, 4) is None and not store.part_path(k2, 0, 4).exists()
    # an entry copied to another key's name is refused (its stored key does not match)
    import shutil

    shutil.copytree(store.path(k1), store.path(k2))
    assert store.load(k2) is None
    assert _cache.FeatureCache(tmp_path, enabled=False).load(k1) is None


def test_cache_hit_runs_no_forward_pass_at_all(resnet, monkeypatch):
    gd.tl.embed(_sdata(), encoder=resnet, target_px=PX)

    def no_forward(*args, **kwargs):
        raise AssertionError("the encoder ran on a cache hit")

    monkeypatch.setattr(resnet.model, "forward_features", no_forward)
    monkeypatch.setattr(resnet, "_n_tokens", {})  # even the token count must come from the cache
    sdata = _sdata()
    gd.tl.embed(sdata, encoder=resnet, target_px=PX)
    assert sdata.tables["table"].uns["genedml"]["features"]["test_resnet"]["T"] == 1
