from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
from _nn_helpers import IN_DIM, N_GENES, N_TARGET, make_batch, tiny_config

from genedml.models._config import GeneDMLConfig
from genedml.models.nn import GeneDMLLoss, GeneDMLNet, GeneDMLOutput


def _net(seed: int = 0, **overrides) -> GeneDMLNet:
    torch.manual_seed(seed)
    return GeneDMLNet(tiny_config(**overrides), in_dim=IN_DIM, n_genes=N_GENES)


def test_forward_shapes_and_normalisation():
    net, b = _net(), make_batch()
    out = net(*b.inputs())
    assert isinstance(out, GeneDMLOutput)
    assert out.pred.shape == (8, N_GENES)
    for name in ("z", "v_local", "v_neighbor", "v_global", "g", "u_image", "u_gene"):
        assert getattr(out, name).shape == (8, 16), name
    for name in ("v_local", "v_neighbor", "v_global", "g", "u_image", "u_gene"):
        torch.testing.assert_close(getattr(out, name).norm(dim=1), torch.ones(8), msg=name)
    assert not torch.allclose(out.z.norm(dim=1), torch.ones(8))


def test_without_y_there_is_no_gene_embedding_and_predict_matches():
    net, b = _net().eval(), make_batch()
    out = net(*b.inputs(with_y=False))
    assert out.g is None and out.u_image is None and out.u_gene is None
    torch.testing.assert_close(net.predict(*b.inputs(with_y=False)), out.pred)
    torch.testing.assert_close(net(*b.inputs()).pred, out.pred)  # y never changes the prediction


def test_trunk_dim_adds_one_shared_input_layer():
    net = GeneDMLNet(tiny_config(trunk_dim=4), in_dim=IN_DIM, n_genes=N_GENES)
    assert isinstance(net.trunk_in, torch.nn.Linear) and net.trunk_in.out_features == 4
    assert net.proj.in_features == 4
    assert net(*make_batch().inputs()).pred.shape == (8, N_GENES)
    assert isinstance(_net(trunk_dim=IN_DIM).trunk_in, torch.nn.Identity)


def test_global_encoder_runs_once_per_section():
    net, b = _net(), make_batch()
    calls = []
    net.global_encoder.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    net(*b.inputs())
    assert calls == [b.section_feats[0].shape[0], b.section_feats[1].shape[0]]


def test_precomputed_section_tokens_give_the_same_output():
    net, b = _net().eval(), make_batch()
    tokens = net.encode_sections(b.section_feats, b.section_pos)
    ref = net.predict(*b.inputs(with_y=False))
    got = net.predict(b.target, b.neighbor, b.neighbor_mask, None, None, b.section_of, b.spot_of, section_tokens=tokens)
    torch.testing.assert_close(got, ref)


def test_prediction_of_a_spot_does_not_depend_on_the_rest_of_the_batch():
    net, b = _net().eval(), make_batch()
    ref = net.predict(*b.inputs(with_y=False))
    i = 3
    single = net.predict(
        b.target[i : i + 1],
        b.neighbor[i : i + 1],
        b.neighbor_mask[i : i + 1],
        b.section_feats,
        b.section_pos,
        b.section_of[i : i + 1],
        b.spot_of[i : i + 1],
    )
    torch.testing.assert_close(single[0], ref[i], rtol=1e-5, atol=1e-5)


def test_prediction_is_invariant_to_the_spot_order_within_a_section():
    net, b = _net().eval(), make_batch()
    ref = net.predict(*b.inputs(with_y=False))
    n0 = b.section_pos[0].shape[0]
    perm = torch.randperm(n0, generator=torch.Generator().manual_seed(5))
    inverse = torch.argsort(perm)
    feats = [b.section_feats[0][perm], b.section_feats[1]]
    pos = [b.section_pos[0][perm], b.section_pos[1]]
    spot_of = torch.where(b.section_of == 0, inverse[b.spot_of.clamp_max(n0 - 1)], b.spot_of)
    got = net.predict(b.target, b.neighbor, b.neighbor_mask, feats, pos, b.section_of, spot_of)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_the_global_token_comes_from_the_right_section_row():
    net, b = _net().eval(), make_batch()
    ref = net.predict(*b.inputs(with_y=False))
    other = b.spot_of.clone()
    other[0] = (b.spot_of[0] + 1) % b.section_feats[0].shape[0]
    got = net.predict(b.target, b.neighbor, b.neighbor_mask, b.section_feats, b.section_pos, b.section_of, other)
    assert not torch.allclose(got[0], ref[0])
    torch.testing.assert_close(got[1:], ref[1:])


def test_masked_neighbour_tiles_do_not_influence_the_output():
    net, b = _net(neighbor_dropout=0.2).eval(), make_batch()
    ref = net(*b.inputs())
    noisy = b.neighbor.clone()
    noisy[~b.neighbor_mask] = 100 * torch.randn(int((~b.neighbor_mask).sum()), IN_DIM)
    out = net(b.target, noisy, b.neighbor_mask, *b.inputs()[3:])
    for name in ("pred", "z", "v_neighbor", "v_local", "v_global"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), msg=name)


def test_a_spot_with_every_tile_masked_is_finite():
    net, b = _net(), make_batch()
    b.neighbor_mask[4] = False
    out = net(*b.inputs())
    loss = GeneDMLLoss(net.config)(out, b.y, generator=torch.Generator().manual_seed(0))
    loss.loss.backward()
    assert torch.isfinite(out.pred).all() and torch.isfinite(loss.loss)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_fixed_seed_gives_identical_outputs():
    results = []
    for _ in range(2):
        net = _net(seed=7, neighbor_dropout=0.3, head_dropout=0.1).train()
        torch.manual_seed(11)
        b = make_batch(seed=2)
        out = net(*b.inputs())
        loss = GeneDMLLoss(net.config)(out, b.y, generator=torch.Generator().manual_seed(3))
        results.append((out.pred, loss.loss, loss.terms["cluster_acc"]))
    for a, b_ in zip(*results):
        assert torch.equal(a, b_)


def test_modules_are_built_only_when_a_loss_uses_them():
    plain = _net(instance_level=False, instance_group=False)
    assert plain.gene_encoder is None and plain.cluster_head is None
    inst = _net(instance_group=False)
    assert inst.gene_encoder is not None and inst.cluster_head is None
    bimodal = _net(instance_level=False, instance_group=False, bimodal_contrastive=True)
    assert bimodal.gene_encoder is not None and bimodal.cluster_head is None
    b = make_batch()
    out = plain(*b.inputs())
    assert out.g is None and out.pred.shape == (8, N_GENES)


# --------------------------------------------------------------------------------------- input checks


def _bad(b, **changes):
    names = ("target", "neighbor", "neighbor_mask", "section_feats", "section_pos", "section_of", "spot_of", "y")
    args = dict(zip(names, b.inputs()))
    args.update(changes)
    return [args[n] for n in names]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: {"target": torch.randn(8, N_TARGET, IN_DIM + 1)}, r"`target` must have shape \(B, T ≥ 1, 8\)"),
        (lambda b: {"target": torch.randn(8, IN_DIM)}, r"`target` must have shape \(B, T, 8\)"),
        (lambda b: {"neighbor": torch.randn(8, 9, IN_DIM)}, r"`neighbor` must have shape \(8, 25, 8\)"),
        (lambda b: {"neighbor_mask": b.neighbor_mask.float()}, "`neighbor_mask` must be a bool tensor"),
        (lambda b: {"y": torch.randn(8, N_GENES + 1)}, r"`y` must have shape \(8, 6\)"),
        (lambda b: {"section_feats": [b.section_feats[0]]}, "equal length"),
        (lambda b: {"section_feats": [b.section_feats[0][:, :4], b.section_feats[1]]}, r"`section_feats\[0\]`"),
        (lambda b: {"section_pos": [b.section_pos[0][:3], b.section_pos[1]]}, r"`section_pos\[0\]` must have"),
        (lambda b: {"section_of": torch.full((8,), 2)}, "`section_of` must index the 2 given section"),
        (lambda b: {"section_of": b.section_of.float()}, "`section_of` must be an integer tensor"),
        (lambda b: {"spot_of": torch.full((8,), 7)}, r"`spot_of\[1\]`=7 is outside section 1, which has 6 spots"),
        (lambda b: {"section_pos": [b.section_pos[0], b.section_pos[1][[0, 0, 1, 2, 3, 4]]]}, "duplicate"),
    ],
)
def test_bad_inputs_raise_naming_the_tensor(change, message):
    net, b = _net(), make_batch()
    with pytest.raises((ValueError, TypeError), match=message):
        net(*_bad(b, **change(b)))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"`config\.neighbor_heads`=3 must divide the trunk width 8"):
        GeneDMLNet(tiny_config(neighbor_heads=3), in_dim=IN_DIM, n_genes=N_GENES)
    with pytest.raises(ValueError, match="`n_genes` must be a positive integer"):
        GeneDMLNet(tiny_config(), in_dim=IN_DIM, n_genes=0)
    with pytest.raises(TypeError, match="`config` must be a GeneDMLConfig"):
        GeneDMLNet({"dim": 16}, in_dim=IN_DIM, n_genes=N_GENES)


# --------------------------------------------------------------------------------------- parameter counts


def _expected_parameters(cfg: GeneDMLConfig, d: int, n_genes: int) -> int:
    """Closed-form count of every trainable parameter (no trunk layer, heads > 1 in the encoders)."""

    def layer(w: int, heads: int, mlp: int) -> int:
        out_proj = 0 if heads == 1 else w * w + w
        return 4 * w + 3 * w * w + out_proj + (w * mlp + mlp + mlp * w + w)

    n = cfg.neighbor_depth * (layer(d, cfg.neighbor_heads, cfg.neighbor_mlp_dim) + cfg.neighbor_heads * 25) + 2 * d
    k = cfg.peg_kernel_size
    glob = cfg.global_depth * layer(d, cfg.global_heads, cfg.global_mlp_dim) + d * k * k + d + 2 * d
    m = cfg.dim
    ffn = m * cfg.fusion_mlp_dim + cfg.fusion_mlp_dim + cfg.fusion_mlp_dim * m + m
    fusion = cfg.fusion_depth * layer(m, cfg.fusion_heads, cfg.fusion_mlp_dim) + 2 * m + ffn
    gene = n_genes * m + m + m * m + m + 2 * m + (m * cfg.gene_mlp_dim + cfg.gene_mlp_dim + cfg.gene_mlp_dim * m + m)
    widths = (m, *cfg.head_hidden, n_genes)
    head = sum(a * b + b for a, b in itertools.pairwise(widths))
    return n + glob + (d * m + m) + fusion + gene + head + (m * m + m)


@pytest.mark.parametrize(("name", "paper_millions"), [("her2st", 121), ("stnet", 84), ("skinst", 46)])
def test_preset_parameter_counts(name, paper_millions):
    cfg = GeneDMLConfig.preset(name)
    with torch.device("meta"):
        net = GeneDMLNet(cfg, in_dim=1024, n_genes=250)
    count = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert count == _expected_parameters(cfg, 1024, 250)
    # method.md §2.8 estimates include three untrained branch heads (512→512→250), which genedml omits
    branch_heads = 3 * (512 * 512 + 512 + 512 * 250 + 250)
    assert abs((count + branch_heads) / 1e6 - paper_millions) < 0.02 * paper_millions


def test_tiny_config_is_tiny():
    assert sum(p.numel() for p in _net().parameters()) < 20_000
    assert dataclasses.asdict(_net().config)["dim"] == 16


def test_feature_clip_bounds_the_standardised_features_fed_to_the_trunk():
    x = torch.zeros(4, IN_DIM)
    x[0, 0] = 1e4  # a feature 10,000 s.d. from its training mean (scale 1): clipped to 10 s.d.
    x[1, 0] = 10.0  # exactly at the bound: unchanged
    x[2, 1] = float("inf")  # not a feature value but broken data: left for the divergence check to report
    clipped, raw = _net(), _net(feature_clip=None)
    clipped.eval(), raw.eval()
    capture = {}
    clipped.trunk_in.register_forward_hook(lambda m, inp, out: capture.__setitem__("clip", inp[0].clone()))
    raw.trunk_in.register_forward_hook(lambda m, inp, out: capture.__setitem__("raw", inp[0].clone()))
    clipped._trunk(x), raw._trunk(x)
    assert capture["clip"][0, 0] == 10.0 and capture["raw"][0, 0] == 1e4
    assert capture["clip"][2, 1] == float("inf")
    torch.testing.assert_close(capture["clip"][1:], capture["raw"][1:])  # ordinary features are untouched


@pytest.mark.parametrize("bad", [0, -1.0, "10", True])
def test_feature_clip_rejects_non_positive_or_non_numbers(bad):
    with pytest.raises(ValueError, match="feature_clip"):
        GeneDMLConfig.preset("cpu", feature_clip=bad)
