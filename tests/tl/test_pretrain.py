"""gd.tl.pretrain_encoder: tissue tiles, training, the weights file through the normal encoder path, resume, errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("lightly")

# tiny and fast: timm's test ResNet on 32-px tiles, a few dozen tiles, one thread (set by the test command)
KW = dict(
    encoder="test_resnet",
    pretrained=False,
    target_px=32,
    tiles_per_epoch=32,
    batch_size=16,
    lr=3e-3,
    progress=False,
)


@pytest.fixture(scope="module")
def sdata():
    import genedml as gd

    return gd.datasets.synthetic(preset="tiny", seed=0)


@pytest.fixture(scope="module")
def adapted(sdata, tmp_path_factory):
    """One 3-epoch SimCLR run, shared by the tests that only read its outputs."""
    import genedml as gd

    out = tmp_path_factory.mktemp("ssl") / "adapted.safetensors"
    return gd.tl.pretrain_encoder(sdata, out=out, method="simclr", epochs=3, seed=0, **KW)


def test_tiles_are_tissue_seeded_and_at_the_embed_geometry(sdata):
    import genedml as gd
    from genedml.dataloaders import TissueTiles, tissue_fraction
    from genedml.features._windows import WindowSpec

    secs = gd.io.sections(sdata)
    spec = WindowSpec.resolve(target_px=32, target_um=None, target_mpp=None)
    tiles = TissueTiles.from_sdata(sdata, sections=secs, spec=spec, min_tissue=0.6)
    a, b, c = tiles.sample(40, seed=1), tiles.sample(40, seed=1), tiles.sample(40, seed=2)
    assert a.shape == (40, 3, 32, 32) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (tissue_fraction(a) >= 0.6).mean() > 0.9  # the rest fall back to windows centred on spots
    # the tiles look like the spot windows of gd.features.spot_windows (same level, same resampling): similar colour
    w = gd.features.spot_windows(sdata, section=secs[0], target_px=32).images
    assert abs(float(a.mean()) - float(w.mean())) < 25
    # every section contributes
    assert set(tiles.info) == set(secs)


def test_tissue_fraction_rejects_white_and_black():
    from genedml.dataloaders import tissue_fraction

    white = np.full((1, 3, 8, 8), 250, np.uint8)
    black = np.zeros((1, 3, 8, 8), np.uint8)
    pink = np.empty((1, 3, 8, 8), np.uint8)
    pink[:, 0], pink[:, 1], pink[:, 2] = 230, 150, 200
    np.testing.assert_allclose(tissue_fraction(np.concatenate([white, black, pink])), [0.0, 0.0, 1.0])


def test_weights_load_through_the_encoder_path_and_change_features(sdata, adapted):
    import torch
    from safetensors.torch import load_file

    import genedml as gd
    from genedml.encoders import create_encoder

    assert adapted.path.suffix == ".safetensors" and adapted.path.is_file()
    umask = os.umask(0)
    os.umask(umask)
    assert adapted.path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, as any the user writes
    random = create_encoder("test_resnet", pretrained=False, device="cpu")
    loaded = create_encoder("test_resnet", weights=adapted.path, device="cpu")  # strict: no missing/unexpected
    assert set(load_file(str(adapted.path))) == set(random.model.state_dict())
    assert loaded.weights_hash != random.weights_hash
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(loaded.forward_pooled(x), random.forward_pooled(x), atol=1e-4)
    a, b = sdata, gd.datasets.synthetic(preset="tiny", seed=0)
    gd.tl.embed(a, encoder="test_resnet", weights=adapted.path, target_px=32, scales=["global"])
    gd.tl.embed(b, encoder="test_resnet", pretrained=False, target_px=32, scales=["global"])
    fa = gd.features.load_features(a, encoder="test_resnet", scale="global")
    fb = gd.features.load_features(b, encoder="test_resnet", scale="global")
    assert fa.shape == fb.shape and np.isfinite(fa).all()
    assert not np.allclose(fa, fb, atol=1e-4)


def test_history_and_params(adapted):
    h = adapted.history
    assert list(h["epoch"]) == [0, 1, 2]
    assert (h["tiles"] == 32).all() and (h["tiles_per_s"] > 0).all() and np.isfinite(h["loss"]).all()
    assert adapted.params["method"] == "simclr" and adapted.params["window"]["target_px"] == 32
    from safetensors import safe_open

    with safe_open(str(adapted.path), framework="pt") as fh:
        assert '"method": "simclr"' in fh.metadata()["genedml_pretrain"]


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_loss_decreases_over_training(sdata, tmp_path, method):
    import genedml as gd

    kw = {**KW, "tiles_per_epoch": 48, "batch_size": 16}
    res = gd.tl.pretrain_encoder(sdata, out=tmp_path / "w.safetensors", method=method, epochs=4, seed=0, **kw)
    loss = res.history["loss"].to_numpy()
    assert loss[-1] < loss[0], loss


def test_dino_trains(sdata, tmp_path):
    import genedml as gd

    res = gd.tl.pretrain_encoder(sdata, out=tmp_path / "d.safetensors", method="dino", epochs=1, **KW)
    assert np.isfinite(res.history["loss"]).all() and res.path.is_file()


def test_resume_continues_from_the_checkpoint(sdata, tmp_path):
    import genedml as gd
    from genedml.encoders import create_encoder

    out = tmp_path / "w.safetensors"
    first = gd.tl.pretrain_encoder(sdata, out=out, method="byol", epochs=1, **KW)
    w1 = create_encoder("test_resnet", weights=out, device="cpu").weights_hash
    assert (tmp_path / "w.ckpt" / "last.ckpt").is_file()
    with pytest.raises(FileExistsError, match="resume=True"):  # a fresh start would silently drop the checkpoint
        gd.tl.pretrain_encoder(sdata, out=tmp_path / "other.safetensors", checkpoint_dir=tmp_path / "w.ckpt", **KW)
    more = gd.tl.pretrain_encoder(sdata, out=out, method="byol", epochs=2, resume=True, overwrite=True, **KW)
    assert list(more.history["epoch"]) == [0, 1]  # epoch 0 restored from the checkpoint, only epoch 1 ran
    assert more.history["loss"].iloc[0] == pytest.approx(first.history["loss"].iloc[0])
    assert create_encoder("test_resnet", weights=out, device="cpu").weights_hash != w1
    with pytest.raises(ValueError, match="other settings"):
        gd.tl.pretrain_encoder(sdata, out=out, method="simclr", epochs=3, resume=True, overwrite=True, **KW)


@pytest.mark.parametrize(
    ("kwargs", "err", "match"),
    [
        ({"out": "w.pth"}, ValueError, "must end in '.safetensors'"),
        ({"method": "mae"}, ValueError, "`method` must be one of"),
        ({"batch_size": 1}, ValueError, "at least 2"),
        ({"tiles_per_epoch": 8}, ValueError, "at most `tiles_per_epoch`"),
        ({"epochs": 0}, ValueError, "`epochs` must be a positive integer"),
        ({"lr": 0}, ValueError, "`lr` must be positive"),
        ({"min_tissue": 1.5}, ValueError, "`min_tissue` must lie in"),
        ({"max_minutes": -1}, ValueError, "`max_minutes`"),
        ({"resume": True}, FileNotFoundError, "no checkpoint"),
        ({"resume": "nope.ckpt"}, FileNotFoundError, "is not a checkpoint file"),
        ({"sections": ["nope"]}, KeyError, "sections"),
        ({"target_px": 0}, ValueError, "`target_px`"),
        ({"encoder": "not-a-model"}, ValueError, "`encoder`="),
    ],
)
def test_bad_arguments(sdata, tmp_path, kwargs, err, match):
    import genedml as gd

    kw = {**KW, "out": tmp_path / "w.safetensors", **kwargs}
    if isinstance(kw["out"], str):
        kw["out"] = tmp_path / kw["out"]
    with pytest.raises(err, match=match):
        gd.tl.pretrain_encoder(sdata, **kw)
    assert not (tmp_path / "w.safetensors").exists()


def test_existing_output_is_not_clobbered(sdata, tmp_path):
    import genedml as gd

    out = tmp_path / "w.safetensors"
    out.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        gd.tl.pretrain_encoder(sdata, out=out, **KW)
    assert out.read_bytes() == b"keep"


def test_starts_from_a_weights_file(sdata, adapted, tmp_path):
    """A pathology or earlier adapted checkpoint as the starting point (``weights=``)."""
    import genedml as gd
    from genedml.encoders._weights import file_sha256

    kw = {**KW, "pretrained": True}
    res = gd.tl.pretrain_encoder(sdata, out=tmp_path / "w2.safetensors", weights=adapted.path, epochs=1, **kw)
    assert res.params["start_weights"] == file_sha256(adapted.path)


def test_offline_imagenet_start_says_how_to_get_weights(sdata, tmp_path):
    import genedml as gd
    from genedml.encoders import WeightsUnavailableError
    from genedml.encoders._weights import hub_has_cached_weights

    if hub_has_cached_weights("timm/resnet18.a1_in1k"):
        pytest.skip("ImageNet ResNet18 weights are cached here")

    with pytest.raises(WeightsUnavailableError, match="pretrained=False"):
        gd.tl.pretrain_encoder(
            sdata, out=tmp_path / "w.safetensors", **{**KW, "encoder": "resnet18", "pretrained": True}
        )


def test_wall_budget_ends_the_schedule_early(sdata, tmp_path):
    """With ``max_minutes`` spent after the first steps, training stops and the learning rate has decayed."""
    import genedml as gd

    kw = {**KW, "tiles_per_epoch": 64}
    res = gd.tl.pretrain_encoder(sdata, out=tmp_path / "w.safetensors", epochs=50, max_minutes=0.02, **kw)
    h = res.history
    assert 1 <= len(h) < 50 and res.path.is_file()
    assert h["lr"].iloc[-1] == pytest.approx(KW["lr"] * 0.01, rel=0.05)
    assert (tmp_path / "w.ckpt" / "last.ckpt").is_file()


def test_a_checkpoint_is_written_after_every_epoch(tmp_path):
    """An interrupted run can resume from its last finished epoch, not only from the end of training."""
    import lightning as L
    import numpy as np
    import timm

    from genedml.models.nn._histo_augment import HistoAugmentConfig
    from genedml.models.nn._ssl import SSLConfig, SSLNet
    from genedml.models.train._ssl import SSLHistory, SSLPlan, TileDataModule, build_ssl_trainer

    seen = []

    class Probe(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            seen.append(sorted(p.name for p in tmp_path.glob("*.ckpt")))

    bb = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    net = SSLNet(bb, bb.num_features, SSLConfig(hidden_dim=32, proj_dim=16))
    plan = SSLPlan(
        net, mean=(0.5,) * 3, std=(0.25,) * 3, lr=1e-3, weight_decay=0.0, max_epochs=3,
        augment=HistoAugmentConfig(), hparams={"seed": 0},
    )  # fmt: skip
    rng = np.random.default_rng(0)
    dm = TileDataModule(
        lambda n, seed: rng.integers(0, 255, (n, 3, 32, 32), dtype=np.uint8), tiles_per_epoch=8, batch_size=4, seed=0
    )
    trainer = build_ssl_trainer(
        max_epochs=3, ckpt_dir=tmp_path, accelerator="cpu", precision="32-true", progress=False, history=SSLHistory()
    )
    trainer.callbacks.insert(0, Probe())
    trainer.fit(plan, datamodule=dm)
    assert seen == [[], ["last.ckpt"], ["last.ckpt"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
