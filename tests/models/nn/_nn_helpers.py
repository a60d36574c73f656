"""Tiny configurations and random batches shared by the Gene-DML network tests (imported, not a conftest)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genedml.models._config import GeneDMLConfig

IN_DIM = 8
N_GENES = 6
N_TARGET = 3

_TINY = {
    "dim": 16,
    "trunk_dim": None,
    "neighbor_depth": 2,
    "neighbor_heads": 2,
    "neighbor_mlp_dim": 32,
    "neighbor_dropout": 0.0,
    "global_depth": 2,
    "global_heads": 2,
    "global_mlp_dim": 32,
    "global_dropout": 0.0,
    "fusion_mlp_dim": 32,
    "fusion_dropout": 0.0,
    "gene_mlp_dim": 32,
    "gene_dropout": 0.0,
    "gene_ffn_dropout": 0.0,
    "head_hidden": (32, 16),
    "head_dropout": 0.0,
    "K": 3,
}


def tiny_config(**overrides) -> GeneDMLConfig:
    """A few-thousand-parameter configuration without dropout."""
    return GeneDMLConfig.preset("cpu", **{**_TINY, **overrides})


def grid_positions(height: int, width: int, *, drop: tuple[int, ...] = (), seed: int = 0) -> torch.Tensor:
    """Shuffled ``(row, col)`` positions of a ``height × width`` grid without the flat cells in ``drop``."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pos = torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1)
    keep = torch.tensor([i not in drop for i in range(height * width)])
    pos = pos[keep]
    return pos[torch.randperm(pos.shape[0], generator=torch.Generator().manual_seed(seed))] + 3  # not at 0


@dataclass
class Batch:
    target: torch.Tensor
    neighbor: torch.Tensor
    neighbor_mask: torch.Tensor
    section_feats: list[torch.Tensor]
    section_pos: list[torch.Tensor]
    section_of: torch.Tensor
    spot_of: torch.Tensor
    y: torch.Tensor

    def inputs(self, *, with_y: bool = True) -> tuple:
        base = (
            self.target,
            self.neighbor,
            self.neighbor_mask,
            self.section_feats,
            self.section_pos,
            self.section_of,
            self.spot_of,
        )
        return (*base, self.y) if with_y else base


def make_batch(batch: int = 8, *, in_dim: int = IN_DIM, n_genes: int = N_GENES, seed: int = 0) -> Batch:
    """Random batch over two sections (a 3×4 grid with one hole and a full 2×3 grid); some tiles masked."""
    gen = torch.Generator().manual_seed(seed)
    pos = [grid_positions(3, 4, drop=(5,), seed=seed), grid_positions(2, 3, seed=seed + 1)]
    feats = [torch.randn(p.shape[0], in_dim, generator=gen) for p in pos]
    section_of = torch.arange(batch) % 2
    spot_of = torch.stack([torch.randint(0, pos[s].shape[0], (), generator=gen) for s in section_of.tolist()])
    mask = torch.ones(batch, 25, dtype=torch.bool)
    mask[0, :5] = False  # top row outside the image
    mask[1, ::5] = False  # left column outside the image
    neighbor = torch.randn(batch, 25, in_dim, generator=gen).masked_fill(~mask[..., None], 0.0)
    return Batch(
        target=torch.randn(batch, N_TARGET, in_dim, generator=gen),
        neighbor=neighbor,
        neighbor_mask=mask,
        section_feats=feats,
        section_pos=pos,
        section_of=section_of,
        spot_of=spot_of,
        y=torch.randn(batch, n_genes, generator=gen),
    )
