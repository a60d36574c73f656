"""Neighbour encoder: pre-LN transformer over the tiles of a square window with a relative-position bias."""

from __future__ import annotations

import torch
from torch import nn

from ._blocks import TransformerLayer

__all__ = ["NeighborEncoder", "RelativePositionBias", "relative_offset_index"]


def relative_offset_index(grid: int) -> torch.Tensor:
    """Index ``(grid², grid²)`` of the distinct ``(|Δrow|, |Δcol|)`` offsets between tiles of a row-major grid.

    Tile ``i`` sits at ``(i // grid, i % grid)``; the pair ``(i, j)`` maps to ``|Δrow| · grid + |Δcol|``, an integer in
    ``[0, grid²)``.
    """
    rows = torch.arange(grid).repeat_interleave(grid)
    cols = torch.arange(grid).repeat(grid)
    d_row = (rows[:, None] - rows[None, :]).abs()
    d_col = (cols[:, None] - cols[None, :]).abs()
    return d_row * grid + d_col


class RelativePositionBias(nn.Module):
    """Learned scalar per head and per distinct ``(|Δrow|, |Δcol|)`` offset, added to the attention logits.

    The table (``heads × grid²``) starts at zero, so the first step attends as without a bias.
    """

    def __init__(self, heads: int, grid: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(heads, grid * grid))
        self.register_buffer("index", relative_offset_index(grid), persistent=False)

    def forward(self) -> torch.Tensor:
        """Bias ``(heads, grid², grid²)``."""
        return self.table[:, self.index]


class NeighborEncoder(nn.Module):
    """Transformer over the ``grid²`` neighbour-tile features of each spot (method.md §2.3).

    Masked tiles (``mask`` False) are zeroed on input and never attended to as keys, so their features cannot
    influence any output; each layer has its own relative-position bias table. Ends with a LayerNorm.

    Parameters
    ----------
    dim
        Feature width of the tiles.
    depth, heads, mlp_dim, dropout
        Layers, attention heads, feed-forward width and dropout.
    grid
        Side of the square window (5 → 25 tiles, row-major).
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float, grid: int = 5) -> None:
        super().__init__()
        self.grid = grid
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, mlp_dim, dropout) for _ in range(depth))
        self.biases = nn.ModuleList(RelativePositionBias(heads, grid) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode tiles ``x`` ``(B, grid², dim)``; ``mask`` ``(B, grid²)`` is True for valid tiles."""
        x = x.masked_fill(~mask[..., None], 0.0)
        for layer, bias in zip(self.layers, self.biases):
            x = layer(x, attn_bias=bias(), key_mask=mask)
        return self.norm(x)
