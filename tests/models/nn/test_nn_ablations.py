"""GeneDMLLoss on the network: every switch combination trains every built parameter."""

from __future__ import annotations

import itertools

import pytest
import torch
from _nn_helpers import IN_DIM, N_GENES, make_batch, tiny_config

from genedml.models.nn import GeneDMLLoss, GeneDMLNet, soft_contrastive_loss

SWITCHES = ("instance_level", "global_scale", "instance_group", "feature_grouping")
COMBOS = [dict(zip(SWITCHES, values)) for values in itertools.product([True, False], repeat=4)]
BIMODAL = [
    {"instance_level": False, "instance_group": False, "bimodal_contrastive": True, "global_scale": gs}
    for gs in (True, False)
]


def _run(switches: dict, *, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = tiny_config(**switches, **overrides)
    net = GeneDMLNet(cfg, in_dim=IN_DIM, n_genes=N_GENES)
    b = make_batch(seed=seed)
    out = net(*b.inputs())
    loss = GeneDMLLoss(cfg)(out, b.y, generator=torch.Generator().manual_seed(seed))
    return cfg, net, out, loss


def _expected_terms(switches: dict) -> set[str]:
    terms = {"reg"}
    if switches.get("instance_level"):
        scales = ("local", "neighbor", "global") if switches["global_scale"] else ("local", "neighbor")
        terms |= {"inst", *(f"inst_{s}" for s in scales)}
    if switches.get("instance_group"):
        terms |= {"ig", "cluster_acc"}
    if switches.get("bimodal_contrastive"):
        terms.add("bimodal")
    return terms


@pytest.mark.parametrize("switches", COMBOS + BIMODAL, ids=lambda s: "-".join(k for k, v in s.items() if v) or "none")
def test_every_built_parameter_gets_a_finite_nonzero_gradient(switches):
    _, net, _, loss = _run(switches)
    assert set(loss.terms) == _expected_terms(switches)
    assert loss.loss.requires_grad and torch.isfinite(loss.loss)
    assert all(not t.requires_grad and t.dim() == 0 for t in loss.terms.values())
    loss.loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("switches", COMBOS + BIMODAL, ids=lambda s: "-".join(k for k, v in s.items() if v) or "none")
def test_total_is_the_documented_sum_of_the_terms(switches):
    _, _, _, loss = _run(switches, lam=0.5)
    t = loss.terms
    expected = t["reg"] + t.get("inst", 0.0) + 0.5 * t.get("ig", 0.0) + t.get("bimodal", 0.0)
    torch.testing.assert_close(loss.loss.detach(), torch.as_tensor(expected))


def test_inst_is_the_mean_over_active_scales_computed_from_the_embeddings():
    _, _, out, loss = _run({"global_scale": False})
    parts = [soft_contrastive_loss(out.g, v, tau=0.07) for v in (out.v_local, out.v_neighbor)]
    torch.testing.assert_close(loss.terms["inst"], torch.stack(parts).mean().detach())
    torch.testing.assert_close(loss.terms["inst_local"], parts[0].detach())


def test_global_scale_switch_changes_only_inst():
    _, _, _, full = _run({})
    _, _, _, no_global = _run({"global_scale": False})
    for key in ("reg", "ig", "inst_local", "inst_neighbor"):
        torch.testing.assert_close(full.terms[key], no_global.terms[key])
    assert "inst_global" not in no_global.terms


def test_plain_baseline_is_the_regression_loss_alone():
    _, _, out, loss = _run({"instance_level": False, "instance_group": False})
    assert set(loss.terms) == {"reg"}
    torch.testing.assert_close(loss.loss, torch.nn.functional.mse_loss(out.pred, make_batch().y))


def test_k_larger_than_the_batch_raises_a_clear_error():
    with pytest.raises(ValueError, match=r"K=9 groups.*batch size is 8"):
        _run({}, K=9)
    # without feature grouping K is unused
    _run({"feature_grouping": False}, K=9)


def test_loss_rejects_outputs_of_a_mismatched_network():
    net = GeneDMLNet(tiny_config(instance_group=False), in_dim=IN_DIM, n_genes=N_GENES)
    b = make_batch()
    out = net(*b.inputs())
    with pytest.raises(ValueError, match="built without the instance-group pathway"):
        GeneDMLLoss(tiny_config())(out, b.y)
    with pytest.raises(ValueError, match=r"`output\.g` is None"):
        GeneDMLLoss(tiny_config())(net(*b.inputs(with_y=False)), b.y)
    with pytest.raises(ValueError, match=r"`y` must have the prediction's shape \(8, 6\)"):
        GeneDMLLoss(tiny_config(instance_group=False))(out, b.y[:, :3])


def test_mixed_precision_forward_and_loss_are_finite():
    torch.manual_seed(0)
    cfg = tiny_config()
    net = GeneDMLNet(cfg, in_dim=IN_DIM, n_genes=N_GENES)
    b = make_batch()
    b.neighbor_mask[3] = False  # all tiles masked: the logit floor must stay finite in bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(*b.inputs())
        loss = GeneDMLLoss(cfg)(out, b.y, generator=torch.Generator().manual_seed(0))
    assert out.pred.dtype == torch.bfloat16 and loss.loss.dtype == torch.float32
    loss.loss.backward()
    assert torch.isfinite(loss.loss) and all(torch.isfinite(p.grad).all() for p in net.parameters())
