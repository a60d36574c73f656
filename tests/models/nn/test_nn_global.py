from __future__ import annotations

import numpy as np
import pytest
import torch
from _nn_helpers import grid_positions

from genedml.models.nn import GlobalEncoder, PositionalEncodingGenerator, grid_index


def _peg_reference(x: np.ndarray, pos: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Loop version: each spot adds bias + Σ w[c, dr, dc] · x(neighbour at (r+dr, c+dc)) over occupied cells."""
    cells = {tuple(p): i for i, p in enumerate(pos.tolist())}
    half = weight.shape[-1] // 2
    out = x.copy()
    for i, (r, c) in enumerate(pos.tolist()):
        acc = bias.copy()
        for dr in range(-half, half + 1):
            for dc in range(-half, half + 1):
                j = cells.get((r + dr, c + dc))
                if j is not None:
                    acc += weight[:, dr + half, dc + half] * x[j]
        out[i] += acc
    return out


def test_grid_index_shifts_to_zero_and_flattens_row_major():
    pos = torch.tensor([[5, 7], [6, 9], [5, 8]])
    index, height, width = grid_index(pos)
    assert (height, width) == (2, 3)
    assert index.tolist() == [0, 5, 1]


@pytest.mark.parametrize(
    ("pos", "message"),
    [
        (torch.tensor([[0, 0], [1, 1], [0, 0]]), "duplicate"),
        (torch.tensor([[0.0, 0.0], [1.0, 1.0]]), "integer array positions"),
        (torch.tensor([0, 1, 2]), r"shape \(N, 2\)"),
        (torch.tensor([[0, 0], [5000, 7000]]), "not pixel coordinates"),
    ],
)
def test_grid_index_rejects_bad_positions(pos, message):
    with pytest.raises(ValueError, match=message):
        grid_index(pos)


@pytest.mark.parametrize("drop", [(), (1, 6, 7)])
def test_peg_matches_a_loop_reference(drop):
    torch.manual_seed(0)
    peg = PositionalEncodingGenerator(4, kernel_size=3)
    with torch.no_grad():
        peg.conv.bias.normal_()
    pos = grid_positions(3, 4, drop=drop)
    x = torch.randn(pos.shape[0], 4)
    index, height, width = grid_index(pos)
    out = peg(x, index, height, width)
    expected = _peg_reference(
        x.numpy(), pos.numpy(), peg.conv.weight.detach()[:, 0].numpy(), peg.conv.bias.detach().numpy()
    )
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_peg_reads_only_the_3x3_neighbourhood():
    torch.manual_seed(0)
    peg = PositionalEncodingGenerator(4)
    pos = grid_positions(4, 4)
    x = torch.randn(16, 4)
    index, height, width = grid_index(pos)
    ref = peg(x, index, height, width)
    far = int(((pos - pos.min(0).values) == torch.tensor([3, 3])).all(1).nonzero())
    corner = int(((pos - pos.min(0).values) == torch.tensor([0, 0])).all(1).nonzero())
    x2 = x.clone()
    x2[far] += 10.0
    out = peg(x2, index, height, width)
    torch.testing.assert_close(out[corner], ref[corner])


def _global_encoder(dropout: float = 0.0) -> GlobalEncoder:
    torch.manual_seed(0)
    return GlobalEncoder(8, depth=2, heads=2, mlp_dim=16, dropout=dropout).eval()


def test_global_encoder_is_invariant_to_spot_order():
    enc = _global_encoder()
    pos = grid_positions(3, 4, drop=(5,))
    x = torch.randn(pos.shape[0], 8)
    ref = enc(x, pos)
    perm = torch.randperm(pos.shape[0], generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(enc(x[perm], pos[perm]), ref[perm], rtol=1e-5, atol=1e-5)


def test_global_encoder_depends_on_positions():
    enc = _global_encoder()
    pos = grid_positions(3, 4)
    x = torch.randn(12, 8)
    swapped = pos.clone()
    swapped[[0, 1]] = swapped[[1, 0]]  # same features, two spots exchange places
    assert not torch.allclose(enc(x, pos), enc(x, swapped))


def test_global_encoder_shapes_gradients_and_duplicates():
    enc = GlobalEncoder(8, depth=3, heads=2, mlp_dim=16, dropout=0.0)
    pos = grid_positions(2, 3)
    x = torch.randn(6, 8)
    out = enc(x, pos)
    assert out.shape == (6, 8)
    out.pow(2).sum().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0 and torch.isfinite(p.grad).all(), name
    pos[1] = pos[0]
    with pytest.raises(ValueError, match="duplicate"):
        enc(x, pos)


def test_single_spot_section():
    enc = _global_encoder()
    out = enc(torch.randn(1, 8), torch.tensor([[4, 2]]))
    assert out.shape == (1, 8) and torch.isfinite(out).all()
