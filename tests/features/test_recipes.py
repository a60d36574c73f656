"""Recipes as objects (FeatureSpec, TargetSpec, the shorthand router) and the store options they carry."""

from __future__ import annotations

import numpy as np
import pytest

import genedml as gd
from genedml.features import FeatureSpec
from genedml.pp import TargetSpec

PX = 32


# ----------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"encoder": ""}, "`encoder` must be a non-empty encoder name"),
        ({"neighbor_grid": "hex"}, "`neighbor_grid`"),
        ({"dtype": "float64"}, "`dtype`"),
        ({"target_px": 0}, "`target_px`"),
        ({"target_um": 100.0, "target_mpp": 0.5, "target_px": 224}, "pass `target_px=200`"),
        ({"dihedral": 1}, "`dihedral` must be a bool"),
        ({"weights": 3}, "`weights` must be a path"),
    ],
)
def test_feature_spec_is_validated_where_it_is_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeatureSpec(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"genes": "ERBB2"}, TypeError, "`genes` must be a list"),
        ({"genes": []}, ValueError, "`genes` is empty"),
        ({"genes": ["A", "B", "A"]}, ValueError, r"lists \['A'\] more than once"),
        ({"n_top_genes": 0}, ValueError, "`n_top_genes`"),
        ({"normalize": "tpm"}, ValueError, "`normalize` must be one of"),
        ({"smooth": "yes"}, ValueError, "`smooth` must be a bool"),
    ],
)
def test_target_spec_is_validated_where_it_is_built(kwargs, err, match):
    with pytest.raises(err, match=match):
        TargetSpec(**kwargs)


def test_specs_round_trip_and_are_immutable():
    spec = FeatureSpec("uni", target_um=112.0, target_px=224, neighbor_grid="lattice", dtype="float16")
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    assert "batch_size" not in spec.identity_dict() and spec.identity_dict()["neighbor_grid"] == "lattice"
    with pytest.raises(AttributeError):
        spec.encoder = "resnet18"
    with pytest.raises(ValueError, match=r"unknown FeatureSpec field\(s\) \['bogus'\]"):
        FeatureSpec.from_dict({**spec.to_dict(), "bogus": 1})
    assert TargetSpec(genes=["B", "A"]).setup_kwargs()["genes"] == ["B", "A"]


def test_shorthands_go_to_the_recipe_they_belong_to():
    from genedml.tl._recipes import route_shorthands

    rec = route_shorthands(
        {
            "encoder": "morphology",
            "n_top_genes": 7,
            "batch_size": 16,
            "embed_batch_size": 8,
            "max_epochs": 3,
            "config": 1,
        },
        features=FeatureSpec("resnet18", target_px=56),
        targets=None,
        extra={"config": None},
        where="test",
    )
    assert rec.features == FeatureSpec("morphology", target_px=56, batch_size=8)  # spec + shorthand override
    assert rec.targets == TargetSpec(n_top_genes=7)
    assert rec.train == {"batch_size": 16, "max_epochs": 3}  # `batch_size` is the training one
    assert rec.extra == {"config": 1}
    with pytest.raises(TypeError, match=r"'target_pxx' \(did you mean 'target_px'\?\)"):
        route_shorthands({"target_pxx": 3}, features=None, targets=None, where="test")
    with pytest.raises(ValueError, match="`targets` must be a TargetSpec"):
        route_shorthands({}, features=None, targets={"n_top_genes": 3}, where="test")


def test_the_old_name_n_genes_is_an_error_that_names_n_top_genes():
    """`n_genes` was renamed `n_top_genes` (scanpy's and `select_genes`' name): no alias, an error naming the new one.

    difflib alone would suggest `genes`; the explicit rename hint must win everywhere the old keyword can be passed.
    """
    import genedml as gd
    from genedml._validators import UnknownKeywordError
    from genedml.tl._recipes import route_shorthands

    msg = r"'n_genes' \(did you mean 'n_top_genes'\? `n_genes` was renamed to `n_top_genes`"
    sdata = gd.datasets.synthetic(preset="tiny")
    keys = lambda: [(sorted(t.uns), sorted(t.obsm), sorted(t.layers), list(t.obs)) for t in sdata.tables.values()]  # noqa: E731
    before = keys()
    calls = {
        "TargetSpec": lambda: TargetSpec(n_genes=5),
        "TargetSpec.replace": lambda: TargetSpec().replace(n_genes=5),
        "route_shorthands": lambda: route_shorthands({"n_genes": 5}, features=None, targets=None, where="test"),
        "fit": lambda: gd.tl.fit(sdata, n_genes=5, encoder="test_resnet", pretrained=False, config="cpu"),
        "cross_validate": lambda: gd.tl.cross_validate(sdata, methods=["mean"], n_genes=5, encoder="test_resnet"),
        "setup": lambda: gd.models.GeneDML("cpu", encoder="test_resnet", pretrained=False).setup(sdata, n_genes=5),
        "baseline setup": lambda: gd.models.MeanBaseline().setup(sdata, n_genes=5),
    }
    for name, call in calls.items():
        with pytest.raises(UnknownKeywordError, match=msg) as err:
            call()
        assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError), name
    assert keys() == before  # refused before any write
    # the new name works where the old one is refused, and a misspelling still gets difflib's hint
    assert TargetSpec(n_top_genes=5).n_top_genes == 5
    with pytest.raises(UnknownKeywordError, match=r"'n_top_gene' \(did you mean 'n_top_genes'\?\)"):
        route_shorthands({"n_top_gene": 5}, features=None, targets=None, where="test")


def test_target_spec_reads_records_written_before_the_rename():
    """Saved records (a cross-validation's params, `setup_kwargs`) of earlier versions spell the field `n_genes`."""
    old = {"genes": None, "n_genes": 50, "panel": None, "normalize": "log1p_cp10k", "smooth": False, "k": None}
    spec = TargetSpec.from_record(old)
    assert spec == TargetSpec(n_top_genes=50, normalize="log1p_cp10k", smooth=False)
    assert TargetSpec.from_record(spec.setup_kwargs()) == spec  # today's records round-trip
    assert TargetSpec.from_record({"n_genes": 7, "n_top_genes": 9}).n_top_genes == 9  # the new key wins
    with pytest.raises(ValueError, match="`n_top_genes` must be a positive integer, got 0"):
        TargetSpec.from_record({"n_genes": 0})  # a legacy record is validated like a new one
    with pytest.raises(ValueError, match="`record` must be a dict"):
        TargetSpec.from_record([("n_genes", 5)])


# ----------------------------------------------------------------------------------------------- store options
def test_lattice_grid_shares_tiles_and_matches_the_encoder(tmp_path):
    from genedml.encoders import create_encoder

    gd.settings.cachedir = tmp_path
    sdata = gd.datasets.synthetic(preset="tiny")
    enc = create_encoder("test_resnet", pretrained=False, device="cpu")
    kw = dict(encoder=enc, target_px=PX, scales=("neighbor", "global"), progress=False)
    spot = gd.features.compute_features(sdata, **kw)
    lattice = gd.features.compute_features(sdata, **kw, neighbor_grid="lattice")
    n = len(spot.entries["S1"]["global"]["pooled"])
    tiles_spot = len(spot.entries["S1"]["neighbor"]["tiles"])
    tiles_lattice = len(lattice.entries["S1"]["neighbor"]["tiles"])
    # 32-px windows at a pitch of ~3 windows: about 9 distinct lattice tiles per spot instead of ~23
    assert tiles_lattice < 0.6 * tiles_spot, (tiles_lattice, tiles_spot, n)
    # the shared tiles are exactly the encoder's features of the snapped windows
    gd.tl.embed(sdata, **kw, neighbor_grid="lattice")
    dense = gd.features.load_features(sdata, encoder="test_resnet", scale="neighbor")
    win = gd.features.spot_windows(sdata, section="S1", scale="neighbor", target_px=PX, neighbor_grid="lattice")
    import torch

    with torch.inference_mode():
        imgs = torch.from_numpy(win.images.reshape(-1, PX, PX, 3).transpose(0, 3, 1, 2).copy())
        _, pooled = enc(enc.prepare(imgs, size=enc.input_px(PX)))
    want = pooled.numpy().reshape(n, 25, -1) * win.mask[..., None]
    rows = gd.io.section_obs(sdata, "S1")
    np.testing.assert_allclose(dense[rows], want, rtol=1e-4, atol=1e-5)


def test_float16_store_halves_the_bytes_and_stays_close(tmp_path):
    gd.settings.cachedir = tmp_path
    sdata = gd.datasets.synthetic(preset="tiny")
    kw = dict(encoder="test_resnet", pretrained=False, target_px=PX, scales=("neighbor", "global"), progress=False)
    f32 = gd.features.compute_features(sdata, **kw)
    f16 = gd.features.compute_features(sdata, **kw, dtype="float16")
    assert f16.entries["S1"]["global"]["pooled"].dtype == np.float16
    assert f16.nbytes("global") * 2 == f32.nbytes("global")
    np.testing.assert_allclose(
        np.asarray(f16.entries["S1"]["global"]["pooled"], np.float32),
        f32.entries["S1"]["global"]["pooled"],
        rtol=2e-3,
        atol=2e-3,
    )


def test_a_table_from_an_older_genedml_is_refused_clearly():
    sdata = gd.datasets.synthetic(preset="tiny")
    sdata.tables["table"].uns["genedml"]["features"] = {"test_resnet": {"params": {"scales": ["global"]}, "D": 96}}
    with pytest.raises(ValueError, match=r"older genedml \(arrays in `obsm`\).*run gd.tl.embed again"):
        gd.features.open_features(sdata, encoder="test_resnet")


def test_a_model_keeps_its_recipes_through_a_checkpoint(tmp_path):
    gd.settings.cachedir = tmp_path / "cache"
    sdata = gd.datasets.synthetic(preset="tiny")
    spec = FeatureSpec("test_resnet", pretrained=False, target_px=PX, neighbor_grid="lattice", dtype="float16")
    model = gd.tl.fit(
        sdata,
        features=spec,
        targets=TargetSpec(n_top_genes=10, smooth=False),
        config="cpu",
        max_epochs=1,
        progress=False,
    )
    assert model.feature_spec == spec and model.normalize_["smooth"] is False
    assert not any(k.startswith("genedml") for k in sdata.tables["table"].obsm)
    path = model.save(tmp_path / "m.pt")
    loaded = gd.models.GeneDML.load(path)
    assert loaded.feature_spec == spec
    assert loaded.features_["sections"]["S1"]["neighbor_grid"] == "lattice"
    np.testing.assert_allclose(loaded.predict(sdata), model.predict(sdata), rtol=1e-6, atol=1e-6)


def test_lattice_runs_through_the_spots_windows_when_the_pitch_is_a_whole_number_of_windows():
    """Pitch = 2 windows: every lattice tile that is some spot's window is that window (shared with the target pass)."""
    from genedml.features import _windows as w

    crop = 16
    yy, xx = np.meshgrid(np.arange(5), np.arange(5), indexing="ij")
    origins = np.stack([7 + 2 * crop * yy.ravel(), 3 + 2 * crop * xx.ravel()], axis=1).astype(np.int64)

    class _Level:
        shape = (400, 400)

    geo = w.SectionGeometry("s", _Level(), crop, crop, 1.0, origins[:, ::-1].astype(float), origins, "lattice")
    np.testing.assert_array_equal(geo.lattice_anchor(), [7, 3])
    tiles = geo.neighbor_origins()
    np.testing.assert_array_equal(tiles[:, 12], origins)  # the centre tile is the spot's own window
    keys = {tuple(t) for t in tiles.reshape(-1, 2)}
    assert {tuple(o) for o in origins} <= keys
    assert all(((np.array(k) - [7, 3]) % crop == 0).all() for k in keys)
