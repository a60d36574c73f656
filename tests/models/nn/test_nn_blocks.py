from __future__ import annotations

import pytest
import torch

from genedml.models.nn import (
    Attention,
    ClusterHead,
    FusionBlock,
    GeneEncoder,
    NeighborEncoder,
    PredictionHead,
    RelativePositionBias,
    TransformerEncoder,
    relative_offset_index,
)


def _assert_all_grads(module: torch.nn.Module) -> None:
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def test_relative_offset_index_counts_absolute_offsets():
    idx = relative_offset_index(5)
    assert idx.shape == (25, 25)
    assert torch.equal(idx, idx.T)
    assert (idx.diagonal() == 0).all()
    assert idx[0, 24] == 4 * 5 + 4  # (0, 0) → (4, 4)
    assert idx[7, 11] == 1 * 5 + 1  # (1, 2) → (2, 1)
    assert idx[2, 10] == idx[10, 2] == 2 * 5 + 2  # (0, 2) ↔ (2, 0)
    assert idx.unique().numel() == 25


def test_relative_position_bias_reads_the_table():
    bias = RelativePositionBias(heads=3, grid=5)
    with torch.no_grad():
        bias.table.copy_(torch.arange(75.0).view(3, 25))
    out = bias()
    assert out.shape == (3, 25, 25)
    assert out[2, 0, 24] == 2 * 25 + 24
    assert out[1, 6, 6] == 25  # zero offset of head 1


def test_attention_ignores_masked_keys_and_survives_an_all_masked_row():
    torch.manual_seed(0)
    attn = Attention(8, heads=2).eval()
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, False, True, False], [False] * 5])
    out = attn(x, key_mask=mask)
    x2 = x.clone()
    x2[0, [2, 4]] += 100.0  # change only the masked keys of row 0 ...
    out2 = attn(x2, key_mask=mask)
    valid = torch.tensor([0, 1, 3])
    torch.testing.assert_close(out2[0, valid], out[0, valid])  # ... the other queries see no change
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1], attn(x[1:], key_mask=torch.ones(1, 5, dtype=torch.bool))[0])


def test_attention_with_one_head_has_no_output_projection():
    assert isinstance(Attention(8, heads=1).out, torch.nn.Identity)
    assert not isinstance(Attention(8, heads=2).out, torch.nn.Identity)
    with pytest.raises(ValueError, match="`heads`=3 must divide the width 8"):
        Attention(8, heads=3)


def _neighbor_inputs(batch=3, dim=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(batch, 25, dtype=torch.bool)
    mask[0, :5] = False
    mask[1, [0, 5, 10, 15, 20]] = False
    return torch.randn(batch, 25, dim, generator=gen), mask


def test_neighbor_encoder_shapes_and_gradients():
    torch.manual_seed(0)
    enc = NeighborEncoder(8, depth=2, heads=2, mlp_dim=16, dropout=0.0)
    x, mask = _neighbor_inputs()
    out = enc(x, mask)
    assert out.shape == (3, 25, 8)
    out.pow(2).sum().backward()
    _assert_all_grads(enc)


def test_neighbor_encoder_output_does_not_depend_on_masked_tiles():
    torch.manual_seed(0)
    enc = NeighborEncoder(8, depth=2, heads=2, mlp_dim=16, dropout=0.1).eval()
    x, mask = _neighbor_inputs()
    ref = enc(x, mask)
    x2 = x.clone()
    x2[~mask] = torch.randn(int((~mask).sum()), 8) * 50
    torch.testing.assert_close(enc(x2, mask), ref)
    # an unmasked tile does matter
    x3 = x.clone()
    x3[2, 12] += torch.randn(8)  # not a constant shift, which the LayerNorm would remove
    assert not torch.allclose(enc(x3, mask)[2], ref[2])


def test_neighbor_encoder_all_masked_spot_is_finite():
    enc = NeighborEncoder(8, depth=1, heads=2, mlp_dim=16, dropout=0.0)
    x, mask = _neighbor_inputs()
    mask[2] = False
    out = enc(x, mask)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


def test_neighbor_encoder_uses_the_relative_position_bias():
    torch.manual_seed(0)
    enc = NeighborEncoder(8, depth=1, heads=2, mlp_dim=16, dropout=0.0).eval()
    x, mask = _neighbor_inputs()
    ref = enc(x, mask)
    with torch.no_grad():
        enc.biases[0].table[:, 1] = 5.0  # favour horizontally adjacent tiles
    assert not torch.allclose(enc(x, mask), ref)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_attention_mask_is_nan_free_in_half_precision(dtype):
    attn = Attention(8, heads=2).to(dtype).eval()
    x = torch.randn(2, 25, 8, dtype=dtype)
    mask = torch.zeros(2, 25, dtype=torch.bool)
    mask[0, 3] = True
    bias = torch.randn(2, 25, 25)
    assert torch.isfinite(attn(x, attn_bias=bias, key_mask=mask)).all()


def test_transformer_encoder_and_fusion_block_shapes_and_gradients():
    torch.manual_seed(0)
    for module in (TransformerEncoder(16, 2, 2, 32, 0.0), FusionBlock(16, 1, 1, 32, 0.0)):
        x = torch.randn(2, 7, 16)
        out = module(x)
        assert out.shape == (2, 7, 16)
        out.pow(2).sum().backward()
        _assert_all_grads(module)


def test_fusion_block_feed_forward_has_no_residual():
    block = FusionBlock(16, 1, 1, 32, 0.0)
    with torch.no_grad():
        for p in block.ffn.parameters():
            p.zero_()
    assert torch.equal(block(torch.randn(2, 5, 16)), torch.zeros(2, 5, 16))


def test_gene_encoder_is_normalised_and_trains():
    torch.manual_seed(0)
    enc = GeneEncoder(6, 16, 32, dropout=0.3, ffn_dropout=0.1)
    g = enc(torch.randn(4, 6))
    assert g.shape == (4, 16)
    torch.testing.assert_close(g.norm(dim=1), torch.ones(4))
    (g @ torch.randn(16)).sum().backward()
    _assert_all_grads(enc)


def test_prediction_head_has_no_clamp_and_cluster_head_normalises():
    torch.manual_seed(0)
    head = PredictionHead(16, (32, 16), 6, 0.0)
    assert [m.out_features for m in head if isinstance(m, torch.nn.Linear)] == [32, 16, 6]
    out = head(torch.randn(64, 16))
    assert out.shape == (64, 6) and (out < 0).any()
    u = ClusterHead(16)(torch.randn(5, 16))
    torch.testing.assert_close(u.norm(dim=1), torch.ones(5))
