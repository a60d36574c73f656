"""Histology augmentations and the self-supervised heads/losses (tensors only, CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("lightly")

from genedml.models.nn._histo_augment import (
    HistoAugment,
    HistoAugmentConfig,
    _hed_matrices,
    hed_to_rgb,
    rgb_to_hed,
)
from genedml.models.nn._ssl import SSLConfig, SSLNet, import_lightly


def _tiles(n=8, px=32, seed=0) -> torch.Tensor:
    """Pink/purple H&E-like tiles on white: eosin background with haematoxylin blobs."""
    g = torch.Generator().manual_seed(seed)
    x = torch.empty(n, 3, px, px)
    x[:, 0], x[:, 1], x[:, 2] = 0.92, 0.75, 0.85  # eosin pink
    yy, xx = torch.meshgrid(torch.arange(px), torch.arange(px), indexing="ij")
    for i in range(n):
        for _ in range(6):
            cy, cx = torch.randint(0, px, (2,), generator=g)
            blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < 9
            x[i, 0][blob], x[i, 1][blob], x[i, 2][blob] = 0.35, 0.25, 0.6  # haematoxylin purple
    return x


def test_hed_round_trip_matches_skimage():
    from skimage.color import hed2rgb, rgb2hed

    rng = np.random.default_rng(0)
    img = rng.uniform(0.05, 1.0, size=(16, 16, 3))
    h, r = _hed_matrices()
    x = torch.from_numpy(img).float().permute(2, 0, 1)[None]
    hed = rgb_to_hed(x, h)
    np.testing.assert_allclose(hed[0].permute(1, 2, 0).numpy(), rgb2hed(img), atol=1e-5)
    back = hed_to_rgb(hed, r)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(back, np.clip(hed2rgb(rgb2hed(img)), 0, 1), atol=1e-4)
    exact = hed_to_rgb(rgb_to_hed(x, h, clip=False), r)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(exact, img, atol=1e-4)  # the jitter's unclipped transform is invertible


def test_augment_shapes_range_and_randomness():
    torch.manual_seed(0)
    aug = HistoAugment()
    x = _tiles()
    v0, v1 = aug(x), aug(x)
    assert v0.shape == x.shape and v0.dtype == x.dtype
    assert float(v0.min()) >= 0.0 and float(v0.max()) <= 1.0
    assert not torch.allclose(v0, v1)
    with pytest.raises(ValueError, match="`x` must be shaped"):
        aug(x[:, :2])


def test_augment_never_inverts_or_greys_out():
    """White stays light, dark nuclei stay darker than the background, and pink/purple stay pink/purple."""
    torch.manual_seed(1)
    aug = HistoAugment()
    white = torch.full((64, 3, 32, 32), 0.95)
    white[:, :, 10:14, 10:14] = torch.tensor([0.35, 0.25, 0.6])[:, None, None]  # a nucleus
    out = aug(white)
    means = out.mean(dim=(1, 2, 3))
    # every view of a mostly white tile stays mostly light (inverted it would be ~0.1): at worst the ±10 %
    # brightness and the small stain shift darken it a little
    assert float(means.min()) > 0.75 and float(means.mean()) > 0.88

    # no crop: pixels stay in place, so the nucleus/background contrast can be compared per image
    keep = HistoAugment(HistoAugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), blur_p=0.0))
    x = _tiles(n=64)
    y = keep(x)
    nuclei = x[:, 0] < 0.5  # in the original positions (dihedral moves them: undo by checking brightness ranks)
    for i in range(len(x)):
        a, b = x[i].mean(0).flatten(), y[i].mean(0).flatten()
        assert torch.corrcoef(torch.stack([a.sort().values, b.sort().values]))[0, 1] > 0.95
    assert nuclei.any()
    # colour: eosin background keeps R > G, haematoxylin keeps B > G (no inversion, no grey)
    bright = y.mean(1) > 0.7
    dark = y.mean(1) < 0.5
    assert bool(((y[:, 0] - y[:, 1])[bright] > 0.05).float().mean() > 0.99)
    assert bool(((y[:, 2] - y[:, 1])[dark] > 0.1).float().mean() > 0.99)


def test_augment_dihedral_covers_the_eight_symmetries():
    torch.manual_seed(0)
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(200, 3, 1, 1)
    y = HistoAugment.dihedral(x)
    assert len({tuple(t[0].flatten().tolist()) for t in y}) == 8


def test_augment_config_validates():
    with pytest.raises(ValueError, match="crop_scale"):
        HistoAugmentConfig(crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="hed_scale"):
        HistoAugmentConfig(hed_scale=1.5)


def _backbone():
    import timm

    torch.manual_seed(0)
    return timm.create_model("test_resnet", pretrained=False, num_classes=0)


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_ssl_loss_decreases_on_a_fixed_batch(method):
    torch.manual_seed(0)
    bb = _backbone()
    net = SSLNet(bb, bb.num_features, SSLConfig(method=method, hidden_dim=64, proj_dim=32), max_epochs=2)
    aug = HistoAugment()
    x = _tiles(n=16)
    v0, v1 = aug(x), aug(x)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(12):
        net.momentum_update(0.9)
        loss = net(v0, v1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses


def test_dino_runs_and_teacher_follows_student():
    torch.manual_seed(0)
    bb = _backbone()
    net = SSLNet(bb, bb.num_features, SSLConfig(method="dino", hidden_dim=64, proj_dim=16, dino_out_dim=64))
    x = _tiles(n=8)
    loss = net(x, x.flip(-1))
    loss.backward()
    net.after_backward(epoch=0)  # last layer frozen in the first epoch
    assert all(p.grad is None for p in net.projection.last_layer.parameters())
    assert torch.isfinite(loss)
    before = [p.clone() for p in net.backbone_momentum.parameters()]
    with torch.no_grad():
        for p in net.backbone.parameters():
            p.add_(1.0)
    net.momentum_update(0.5)
    moved = [not torch.equal(a, b) for a, b in zip(before, net.backbone_momentum.parameters())]
    assert all(moved)


def test_ssl_config_rejects_unknown_method():
    with pytest.raises(ValueError, match="`method` must be one of"):
        SSLConfig(method="mae")


def test_missing_lightly_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lightly", None)
    with pytest.raises(ImportError, match=r"genedml\[ssl\]"):
        import_lightly()
