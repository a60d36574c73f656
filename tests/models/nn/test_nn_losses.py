from __future__ import annotations

import numpy as np
import pytest
import torch

from genedml.models.nn import (
    cluster_accuracy,
    group_instances,
    instance_group_loss,
    kmeans,
    regression_loss,
    soft_contrastive_loss,
)


def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _log_softmax(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=1, keepdims=True))


def _unit(rows: list[list[float]]) -> np.ndarray:
    a = np.asarray(rows, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------- regression


def test_regression_loss_is_plain_mse():
    pred = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    y = torch.tensor([[0.0, 2.0], [2.0, -1.0]])
    torch.testing.assert_close(regression_loss(pred, y), torch.tensor((1.0 + 0 + 4 + 0) / 4))


# ------------------------------------------------------------------------------------- soft contrastive


def test_soft_contrastive_matches_a_hand_computation():
    g = _unit([[1.0, 0.2, 0.0], [0.1, 1.0, 0.3], [0.0, 0.4, 1.0]])
    v = _unit([[0.9, 0.0, 0.3], [0.2, 1.0, 0.0], [0.3, 0.3, 1.0]])
    tau = 0.5
    s = g @ v.T / tau  # gene rows, image columns
    t = _softmax((v @ v.T + g @ g.T) / (2 * tau))
    gene_to_image = -(t * _log_softmax(s)).sum(axis=1)
    image_to_gene = -(t.T * _log_softmax(s.T)).sum(axis=1)
    expected = np.mean(0.5 * (gene_to_image + image_to_gene))
    got = soft_contrastive_loss(torch.tensor(g), torch.tensor(v), tau=tau)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_soft_contrastive_is_small_for_matched_orthogonal_pairs():
    e = torch.eye(3)
    assert soft_contrastive_loss(e, e, tau=0.01).item() < 1e-6
    shuffled = e[[1, 2, 0]]
    assert soft_contrastive_loss(e, shuffled, tau=0.01).item() > 10


def test_soft_contrastive_targets_are_not_detached():
    g = torch.nn.functional.normalize(torch.randn(4, 5), dim=1).requires_grad_()
    v = torch.nn.functional.normalize(torch.randn(4, 5), dim=1)
    soft_contrastive_loss(g, v, tau=0.07).backward()
    grad_full = g.grad.clone()
    g.grad = None
    # reference with detached targets: the gradients must differ, since the code does not detach
    logits = g @ v.T / 0.07
    targets = torch.softmax((v @ v.T + g @ g.T).detach() / 0.14, dim=-1)
    loss = 0.5 * (-(targets * logits.log_softmax(-1)).sum(-1) - (targets.T * logits.T.log_softmax(-1)).sum(-1))
    loss.mean().backward()
    assert not torch.allclose(grad_full, g.grad)


# ---------------------------------------------------------------------------------------------- k-means


def _blobs(centres: list[list[float]], per_blob: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    c = torch.tensor(centres)
    labels = torch.arange(len(centres)).repeat_interleave(per_blob)
    x = c[labels] + 0.01 * torch.randn(len(labels), c.shape[1], generator=gen)
    order = torch.randperm(len(labels), generator=gen)
    return x[order], labels[order]


def _same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool((a[:, None] == a[None, :]).eq(b[:, None] == b[None, :]).all())


@pytest.mark.parametrize("seed", range(5))
def test_kmeans_separates_two_blobs_from_any_start(seed):
    x, labels = _blobs([[0.0, 0.0], [10.0, 10.0]], per_blob=5)
    assign, centroids = kmeans(x, 2, generator=torch.Generator().manual_seed(seed))
    assert _same_partition(assign, labels)
    for k in range(2):
        torch.testing.assert_close(centroids[k], x[assign == k].mean(0))


def test_kmeans_three_blobs_from_a_start_in_each_blob():
    x, labels = _blobs([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], per_blob=4)
    # pick a seed whose initial rows (the first K of the permutation) fall in three different blobs
    seed = next(
        s
        for s in range(100)
        if labels[torch.randperm(12, generator=torch.Generator().manual_seed(s))[:3]].unique().numel() == 3
    )
    assign, _ = kmeans(x, 3, iters=10, generator=torch.Generator().manual_seed(seed))
    assert _same_partition(assign, labels)


def test_kmeans_initialises_from_the_permuted_rows():
    x = torch.randn(7, 3)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(4))
    assign, centroids = kmeans(x, 7, iters=1, generator=torch.Generator().manual_seed(4))
    # with K = B every row is its own cluster, centroid = itself, labelled by its place in the permutation
    torch.testing.assert_close(centroids, x[perm])
    assert torch.equal(perm[assign], torch.arange(7))


def test_kmeans_is_reproducible_with_a_generator():
    x = torch.randn(20, 4)
    a1, c1 = kmeans(x, 4, generator=torch.Generator().manual_seed(1))
    a2, c2 = kmeans(x, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a1, a2) and torch.equal(c1, c2)


def test_kmeans_empty_cluster_keeps_a_zero_centroid():
    x = torch.ones(4, 3)  # identical points: every point joins the first centroid
    assign, centroids = kmeans(x, 2, generator=torch.Generator().manual_seed(0))
    assert (assign == 0).all()
    torch.testing.assert_close(centroids, torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]))


def test_kmeans_centroids_carry_gradients():
    x = torch.randn(10, 3, requires_grad=True)
    assign, centroids = kmeans(x, 3, generator=torch.Generator().manual_seed(0))
    centroids.sum().backward()
    counts = torch.bincount(assign, minlength=3).float()
    torch.testing.assert_close(x.grad, (1.0 / counts[assign])[:, None].expand(10, 3))


def test_kmeans_k_larger_than_batch_raises_naming_both():
    with pytest.raises(ValueError, match=r"K=18 groups.*batch size is 6"):
        kmeans(torch.randn(6, 2), 18)
    with pytest.raises(ValueError, match="`k` must be a positive integer"):
        kmeans(torch.randn(6, 2), 0)


# ------------------------------------------------------------------------------------- instance group


def _ce(logits: np.ndarray, targets: np.ndarray) -> float:
    return float(-_log_softmax(logits)[np.arange(len(targets)), targets].mean())


def test_instance_group_loss_matches_a_hand_computation():
    z = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 2.0]])
    g = _unit([[1.0, 0.1], [0.2, 1.0], [0.0, 1.0]])
    c_img = np.array([[1.0, 0.0], [0.0, 1.0]])
    c_gene = np.array([[0.8, 0.2], [0.1, 0.9]])
    a_img = np.array([0, 1, 1])
    a_gene = np.array([0, 0, 1])
    tau = 0.1
    expected = 0.5 * (_ce(z @ c_gene.T / tau, a_gene) + _ce(g @ c_img.T / tau, a_img))
    acc_expected = np.mean((z @ c_gene.T).argmax(1) == a_gene)
    t = torch.tensor
    loss, acc = instance_group_loss(t(z), t(g), t(a_img), t(c_img), t(a_gene), t(c_gene), tau_ig=tau)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    assert acc.item() == pytest.approx(acc_expected)


def test_instance_group_normalisation_makes_the_loss_scale_free():
    gen = torch.Generator().manual_seed(0)
    z, g = torch.randn(6, 4, generator=gen), torch.randn(6, 4, generator=gen)
    c_img, c_gene = torch.randn(2, 4, generator=gen), torch.randn(2, 4, generator=gen)
    a_img, a_gene = torch.tensor([0, 1, 0, 1, 0, 1]), torch.tensor([1, 1, 0, 0, 1, 0])
    args = (a_img, c_img, a_gene, c_gene)
    norm1, _ = instance_group_loss(z, g, *args, tau_ig=0.07, normalize=True)
    norm10, _ = instance_group_loss(10 * z, g, *args, tau_ig=0.07, normalize=True)
    raw1, _ = instance_group_loss(z, g, *args, tau_ig=0.07)
    raw10, _ = instance_group_loss(10 * z, g, *args, tau_ig=0.07)
    torch.testing.assert_close(norm1, norm10)
    assert not torch.allclose(raw1, raw10)


def test_group_instances_without_grouping_makes_every_instance_its_own_group():
    u = torch.randn(5, 3)
    assign, centroids = group_instances(u, 99, grouping=False)
    assert torch.equal(assign, torch.arange(5)) and centroids is u
    with pytest.raises(ValueError, match="K=99"):
        group_instances(u, 99, grouping=True)


def test_cluster_accuracy():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert cluster_accuracy(logits, torch.tensor([0, 1, 1])).item() == pytest.approx(2 / 3)
