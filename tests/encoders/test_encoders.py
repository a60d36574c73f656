"""The encoder registry and wrapper: shapes, data config, weights files, Ciga conversion, offline errors."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import torch

from genedml.encoders import (
    Encoder,
    EncoderSpec,
    WeightsUnavailableError,
    create_encoder,
    list_encoders,
    register_encoder,
)


@pytest.fixture(scope="module")
def vit() -> Encoder:
    return create_encoder("test_vit", pretrained=False, device="cpu")


@pytest.fixture(scope="module")
def resnet() -> Encoder:
    return create_encoder("test_resnet", pretrained=False, device="cpu")


def _x(size, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, size, size, generator=g)


@pytest.mark.parametrize(("size", "T"), [(32, 1 + 4), (48, 1 + 9)])
def test_vit_tokens_include_prefix_and_pooled_is_cls(vit, size, T):
    x = _x(size)
    tokens, pooled = vit(x)
    assert tokens.shape == (2, T, 64) and pooled.shape == (2, 64)
    assert vit.n_tokens(size) == T and vit.num_prefix_tokens == 1 and vit.num_features == 64
    with torch.no_grad():
        ref = vit.model.forward_features(x)  # after the final norm
    torch.testing.assert_close(tokens, ref)
    torch.testing.assert_close(vit.forward_tokens(x), ref)
    torch.testing.assert_close(pooled, ref[:, 0])  # test_vit pools the class token
    torch.testing.assert_close(vit.forward_pooled(x), pooled)


def test_cnn_tokens_are_the_feature_map_row_major(resnet):
    x = _x(64)
    tokens, pooled = resnet(x)
    with torch.no_grad():
        fmap = resnet.model.forward_features(x)
    assert fmap.shape[-2:] == (2, 2) and tokens.shape == (2, 4, 96) and resnet.n_tokens(64) == 4
    for r in range(2):
        for c in range(2):
            torch.testing.assert_close(tokens[:, r * 2 + c], fmap[:, :, r, c])
    torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3)))
    assert resnet.num_prefix_tokens == 0


def test_data_config_comes_from_timm(vit, resnet):
    import timm
    import timm.data

    for enc, name in ((vit, "test_vit"), (resnet, "test_resnet")):
        ref = timm.data.resolve_data_config({}, model=timm.create_model(name, num_classes=0))
        cfg = enc.data_config
        assert cfg["input_size"] == tuple(ref["input_size"])
        assert cfg["mean"] == pytest.approx(ref["mean"]) and cfg["std"] == pytest.approx(ref["std"])
        assert cfg["interpolation"] == ref["interpolation"]


def test_prepare_normalises_with_the_config_and_resizes_only_fixed_models(vit):
    img = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    mean = torch.tensor(vit.data_config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(vit.data_config["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(vit.prepare(img), (img.float() / 255 - mean) / std)
    assert vit.fixed_input_size is None and vit.input_px(32) == 32  # dynamic_img_size
    fixed = create_encoder(EncoderSpec(name="vit_fixed", timm_name="test_vit3"), pretrained=False, device="cpu")
    assert fixed.fixed_input_size == (160, 160) and fixed.input_px(32) == 160
    assert fixed.prepare(img).shape == (2, 3, 160, 160)


def test_encoder_is_frozen(resnet):
    assert not any(p.requires_grad for p in resnet.parameters())
    resnet.train()
    assert not resnet.training and not resnet.model.training


def test_random_init_is_seeded_and_logged():
    handler_records = []

    class _H(logging.Handler):
        def emit(self, record):
            handler_records.append(record.getMessage())

    from genedml.encoders import _encoder

    _encoder._WARNED_RANDOM.discard("test_resnet")  # earlier tests of this process may have warned already
    log = logging.getLogger("genedml")
    h = _H(level=logging.WARNING)
    log.addHandler(h)
    try:
        a = create_encoder("test_resnet", pretrained=False, device="cpu")
        b = create_encoder("test_resnet", pretrained=False, device="cpu")
    finally:
        log.removeHandler(h)
    assert sum("random weights" in m for m in handler_records) == 1  # warned once per process, not per call
    assert a.weights_hash == b.weights_hash and len(a.weights_hash) == 64
    torch.testing.assert_close(a.forward_pooled(_x(32)), b.forward_pooled(_x(32)))


def _random_resnet_state(name="test_resnet", seed=3):
    import timm

    torch.manual_seed(seed)
    return timm.create_model(name, num_classes=0).eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".ckpt"])
def test_local_weights_file_round_trip(tmp_path, suffix):
    from genedml.encoders._weights import file_sha256

    model = _random_resnet_state()
    sd = model.state_dict()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    elif suffix == ".ckpt":  # Lightning-style container with prefixed keys
        torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}, "epoch": 3}, path)
    else:
        torch.save(sd, path)
    enc = create_encoder("test_resnet", weights=path, device="cpu")
    x = _x(64)
    with torch.no_grad():
        torch.testing.assert_close(
            enc.forward_pooled(x), model.forward_head(model.forward_features(x), pre_logits=True)
        )
    assert enc.weights_hash == file_sha256(path)
    random = create_encoder("test_resnet", pretrained=False, device="cpu")
    assert random.weights_hash != enc.weights_hash


def test_mismatched_weights_file_is_a_clear_error(tmp_path):
    path = tmp_path / "vit.pth"
    torch.save(_random_resnet_state("test_vit").state_dict(), path)
    with pytest.raises(ValueError, match=r"does not match encoder .test_resnet.*missing key"):
        create_encoder("test_resnet", weights=path, device="cpu")
    with pytest.raises(FileNotFoundError, match="weights"):
        create_encoder("test_resnet", weights=tmp_path / "nope.pth", device="cpu")


def test_ciga_checkpoint_is_converted_to_timm_resnet18(tmp_path):
    """A fake Ciga checkpoint: a random timm resnet18 renamed to 'model.resnet.*' with a projection head."""
    ref = _random_resnet_state("resnet18", seed=5)
    sd = {f"model.resnet.{k}": v for k, v in ref.state_dict().items()}
    sd["model.resnet.fc.0.weight"] = torch.randn(512, 512)
    sd["model.resnet.fc.0.bias"] = torch.randn(512)
    sd["model.resnet.fc.2.weight"] = torch.randn(128, 512)
    path = tmp_path / "tenpercent_resnet18.ckpt"
    torch.save({"epoch": 10, "global_step": 100, "state_dict": sd}, path)
    enc = create_encoder("ciga-resnet18", weights=path, device="cpu")
    x = _x(32, batch=1)
    with torch.no_grad():
        expect = ref.forward_head(ref.forward_features(x), pre_logits=True)
    torch.testing.assert_close(enc.forward_pooled(x), expect)
    assert enc.num_features == 512 and enc.data_config["mean"] == pytest.approx((0.485, 0.456, 0.406))


@pytest.mark.parametrize("name", ["uni", "hf-hub:MahmoodLab/UNI2-h", "resnet18", "ciga-resnet18"])
def test_missing_pretrained_weights_fail_fast_with_instructions(name):
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailableError) as err:
        create_encoder(name, device="cpu")
    assert time.perf_counter() - t0 < 5.0
    msg = str(err.value)
    assert "weights=" in msg and "pretrained=False" in msg
    if name != "ciga-resnet18":
        assert "HF_TOKEN" in msg and "cache" in msg
    else:
        assert "tenpercent_resnet18.ckpt" in msg


def test_unknown_encoder_and_bad_arguments():
    with pytest.raises(ValueError, match="not a registered encoder"):
        create_encoder("no_such_model_xyz")
    with pytest.raises(ValueError, match="pretrained"):
        create_encoder("test_resnet", pretrained="yes")
    with pytest.raises(ValueError, match="device"):
        create_encoder("test_resnet", pretrained=False, device="gpu0")


def test_registry():
    names = list_encoders()
    for n in ("uni", "uni2-h", "resnet18", "resnet50", "ciga-resnet18", "test_vit", "test_resnet"):
        assert n in names
    spec = register_encoder("tiny_vit_test", "test_vit", dynamic_img_size=True, overwrite=True)
    assert spec.kwargs == {"dynamic_img_size": True}
    with pytest.raises(ValueError, match="already registered"):
        register_encoder("tiny_vit_test", "test_vit")
    with pytest.raises(ValueError, match="name"):
        register_encoder("bad name!", "test_vit")
    enc = create_encoder("tiny_vit_test", pretrained=False, device="cpu")
    assert enc.identity == "tiny_vit_test" and enc.n_tokens(32) == 5
    # any timm name works without registration
    assert create_encoder("test_convnext", pretrained=False, device="cpu").identity == "test_convnext"


def test_describe_is_json_friendly(vit):
    import json

    d = vit.describe()
    json.dumps(d)
    assert d["identity"] == "test_vit" and d["num_features"] == 64 and d["weights_hash"] == vit.weights_hash
    assert np.allclose(d["data_config"]["mean"], vit.data_config["mean"])


def test_pooled_width_always_equals_token_width():
    """MobileNetV3's pre-logits head widens 576 → 1024; the pooled feature must stay at D = 576."""
    enc = create_encoder("mobilenetv3_small_050", pretrained=False, device="cpu")
    tokens, pooled = enc(_x(64, batch=1))
    assert tokens.shape[-1] == pooled.shape[-1] == enc.num_features
    torch.testing.assert_close(pooled, tokens.mean(dim=1))
