"""The morphology encoder and encoder combinations: features that respond to tissue, the encoder interface, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genedml as gd
from genedml.encoders import ConcatEncoder, MorphologyEncoder, create_encoder, list_encoders
from genedml.encoders._morphology import FEATURE_NAMES, morphology_features


@pytest.fixture(scope="module")
def embedded():
    sdata = gd.datasets.synthetic(preset="tiny")
    gd.tl.embed(sdata, encoder="morphology", target_px=48, target_um=48.0, scales=["global"], cache=False)
    table = sdata.tables["table"]
    feats = gd.features.load_features(sdata, encoder="morphology", scale="global")
    return table.obs, feats


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def test_features_follow_nuclei_density_and_stain(embedded):
    obs, f = embedded
    col = {n: f[:, i] for i, n in enumerate(FEATURE_NAMES)}
    tissue = obs["tissue_fraction"].to_numpy() > 0.5
    assert tissue.sum() > 20
    # nuclei: the detected density follows the generator's nuclei density under the spot
    assert _spearman(col["nuc_density"][tissue], obs["nuclei_density"][tissue]) > 0.5
    # stain: mean haematoxylin / eosin optical density follow the generator's stain concentration
    assert _spearman(col["H_mean"][tissue], obs["hematoxylin"][tissue]) > 0.5
    assert _spearman(col["E_mean"][tissue], obs["eosin"][tissue]) > 0.3
    # background: white fraction falls with the tissue fraction
    assert _spearman(col["frac_white"], obs["tissue_fraction"]) < -0.5


def test_stain_change_moves_stain_features_not_nuclei_counts():
    rng = np.random.default_rng(0)
    base = np.full((1, 64, 64, 3), 235, np.float64)
    yy, xx = np.mgrid[:64, :64]
    for cy, cx in rng.integers(6, 58, size=(12, 2)):  # purple nuclei of ~5 µm radius at 1 µm/px
        base[0][(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = (70, 40, 120)
    light = 255 - (255 - base) * 0.6  # same tissue, weaker stain
    f = morphology_features(np.concatenate([base, light]).astype(np.uint8), um_per_px=1.0)
    i = {n: k for k, n in enumerate(FEATURE_NAMES)}
    assert f[0, i["H_mean"]] > f[1, i["H_mean"]] * 1.3
    assert f[0, i["nuc_density"]] > 0
    assert f[0, i["nuc_density"]] == pytest.approx(f[1, i["nuc_density"]], rel=0.35)


def test_nuclei_scale_with_um_per_px():
    """The same picture at twice the pixel size shows a quarter of the nuclei per µm² and 4× their area."""
    img = np.full((1, 64, 64, 3), 235, np.uint8)
    yy, xx = np.mgrid[:64, :64]
    for cy, cx in ((16, 16), (16, 48), (48, 16), (48, 48)):
        img[0][(yy - cy) ** 2 + (xx - cx) ** 2 <= 25] = (70, 40, 120)
    i = {n: k for k, n in enumerate(FEATURE_NAMES)}
    f1 = morphology_features(img, um_per_px=1.0)[0]
    f2 = morphology_features(img, um_per_px=2.0)[0]
    assert f1[i["nuc_density"]] == pytest.approx(4 * f2[i["nuc_density"]], rel=0.01)
    assert f2[i["nuc_area_mean"]] == pytest.approx(4 * f1[i["nuc_area_mean"]], rel=0.15)  # smoothing is in µm


def test_encoder_interface_and_registry():
    assert "morphology" in list_encoders()
    enc = create_encoder("morphology")
    assert isinstance(enc, MorphologyEncoder) and enc.num_features == len(FEATURE_NAMES)
    x = enc.prepare(torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8))
    tokens, pooled = enc(x)
    assert tokens.shape == (3, 4, enc.num_features) and pooled.shape == (3, enc.num_features)
    assert enc.n_tokens(40) == 4 and enc.input_px(40) == 40
    # tokens are the sub-tiles' features: the top-left token equals the features of the top-left quarter
    top_left = enc(x[:, :, :20, :20])[1]
    torch.testing.assert_close(tokens[:, 0], top_left)
    with pytest.raises(ValueError, match="no weights"):
        create_encoder("morphology", weights="w.safetensors")


def test_combination_concatenates_and_is_cached(tmp_path):
    enc = create_encoder("morphology+test_resnet", pretrained=False)
    assert isinstance(enc, ConcatEncoder) and enc.identity == "morphology+test_resnet"
    x = enc.prepare(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    tokens, pooled = enc(x)
    morph = create_encoder("morphology")
    res = create_encoder("test_resnet", pretrained=False)
    T = res.n_tokens(64)
    assert tokens.shape == (2, T, morph.num_features + res.num_features)
    torch.testing.assert_close(pooled[:, : morph.num_features], morph(x)[1])
    torch.testing.assert_close(pooled[:, morph.num_features :], res.forward_pooled(res.prepare(x)))
    # one encoder name end to end, cached like any encoder
    gd.settings.cachedir = tmp_path
    sdata = gd.datasets.synthetic(preset="tiny")
    kw = dict(encoder="morphology+test_resnet", pretrained=False, target_px=64, scales=["global", "target"])
    gd.tl.embed(sdata, **kw)
    first = gd.features.load_features(sdata, encoder="morphology+test_resnet", scale="global")
    assert any(tmp_path.rglob("*")), "nothing was cached"
    sdata2 = gd.datasets.synthetic(preset="tiny")
    gd.tl.embed(sdata2, **kw)
    np.testing.assert_array_equal(
        gd.features.load_features(sdata2, encoder="morphology+test_resnet", scale="global"), first
    )


def test_combination_errors():
    with pytest.raises(ValueError, match="distinct"):
        create_encoder("morphology+", pretrained=False)
    with pytest.raises(ValueError, match="distinct"):
        create_encoder("test_resnet+test_resnet", pretrained=False)
    with pytest.raises(ValueError, match="ambiguous"):
        create_encoder("test_resnet+resnet18", pretrained=False, weights="w.pt")
    with pytest.raises(ValueError, match="not a registered encoder"):
        create_encoder("morphology+no_such_net", pretrained=False)
    vit = create_encoder("morphology+test_vit", pretrained=False)
    with pytest.raises(ValueError, match="not a square map"):
        vit.n_tokens(32)
    mixed = create_encoder("test_vit+test_resnet", pretrained=False)
    with pytest.raises(ValueError, match="different numbers of target tokens"):
        mixed.n_tokens(64)
