"""Differentiable-centroid batch k-means in torch (method.md §3.4)."""

from __future__ import annotations

import torch

__all__ = ["kmeans"]


def kmeans(
    x: torch.Tensor, k: int, *, iters: int = 10, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on the rows of ``x`` with squared Euclidean distance.

    The initial centroids are the first ``k`` rows of a random permutation of ``x`` (drawn from ``generator``, on
    the CPU, so results are reproducible on every device). Each iteration assigns every row to its nearest centroid
    and replaces each centroid by the mean of its members; a cluster left empty gets a zero centroid. Assignments
    carry no gradient; centroids are **not** detached (they are means of ``x``) and **not** re-normalised.

    Parameters
    ----------
    x
        ``(B, d)`` points.
    k
        Number of clusters, ``1 ≤ k ≤ B``.
    iters
        Lloyd iterations (≥ 1).
    generator
        Source of the initial permutation; ``None`` uses torch's global generator.

    Returns
    -------
    ``(assignments, centroids)``: ``(B,)`` long cluster of each row, ``(k, d)`` centroids (the means of the returned
    assignments).
    """
    if x.dim() != 2:
        raise ValueError(f"`x` must have shape (B, d), got {tuple(x.shape)}.")
    n = x.shape[0]
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"`k` must be a positive integer, got {k!r}.")
    if k > n:
        raise ValueError(
            f"k-means with K={k} groups needs at least K instances, but the batch size is {n}: "
            "lower `K` or use larger batches (drop the last incomplete batch)."
        )
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f"`iters` must be a positive integer, got {iters!r}.")
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"`generator` must be a CPU torch.Generator, got one on {generator.device}.")
    perm = torch.randperm(n, generator=generator, device="cpu")[:k].to(x.device)
    with torch.autocast(device_type=x.device.type, enabled=False):
        points = x.to(torch.promote_types(x.dtype, torch.float32))
        centroids = points[perm]
        for _ in range(iters):
            assignments = _nearest(points.detach(), centroids.detach())
            centroids = _means(points, assignments, k)
    return assignments, centroids.to(x.dtype)


def _nearest(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (squared Euclidean; ties → lowest index)."""
    dist = points.pow(2).sum(1, keepdim=True) - 2.0 * points @ centroids.T + centroids.pow(2).sum(1)[None, :]
    return dist.argmin(dim=1)


def _means(points: torch.Tensor, assignments: torch.Tensor, k: int) -> torch.Tensor:
    """Mean of the members of each cluster; an empty cluster gets zeros (count clamped to 1)."""
    onehot = torch.nn.functional.one_hot(assignments, k).to(points.dtype)
    counts = onehot.sum(0).clamp_min(1.0)
    return (onehot.T @ points) / counts[:, None]
