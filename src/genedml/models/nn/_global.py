"""Global encoder: transformer over all spots of a section with a grid positional-encoding generator."""

from __future__ import annotations

import torch
from torch import nn

from ._blocks import TransformerLayer

__all__ = ["GlobalEncoder", "PositionalEncodingGenerator", "grid_index"]

# A grid this much larger than the number of spots almost surely holds pixel coordinates, not array indices.
_MAX_CELLS_PER_SPOT = 100
_MIN_CELL_LIMIT = 1 << 16


def grid_index(pos: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Flat cell index of each spot on the section's dense grid.

    Parameters
    ----------
    pos
        ``(N, 2)`` integer ``(row, col)`` array positions; shifted so that each column's minimum is 0.

    Returns
    -------
    ``(index, height, width)``: ``index`` ``(N,)`` is ``row · width + col``.
    """
    if pos.dim() != 2 or pos.shape[1] != 2:
        raise ValueError(f"`section_pos` must have shape (N, 2) (row, col), got {tuple(pos.shape)}.")
    if pos.dtype.is_floating_point or pos.dtype.is_complex or pos.dtype == torch.bool:
        raise ValueError(f"`section_pos` must hold integer array positions, got dtype {pos.dtype}.")
    pos = pos.long()
    pos = pos - pos.min(dim=0).values
    height, width = (int(v) + 1 for v in pos.max(dim=0).values.tolist())
    n = pos.shape[0]
    if height * width > max(_MAX_CELLS_PER_SPOT * n, _MIN_CELL_LIMIT):
        raise ValueError(
            f"`section_pos` spans a {height}×{width} grid for {n} spots: pass integer array (row, col) indices, "
            "not pixel coordinates."
        )
    index = pos[:, 0] * width + pos[:, 1]
    if torch.unique(index).numel() != n:
        raise ValueError(
            "`section_pos` has duplicate (row, col) positions: every spot of a section needs its own grid cell."
        )
    return index, height, width


class PositionalEncodingGenerator(nn.Module):
    """Depthwise convolution over the section's spot grid, added as a residual (method.md §2.4).

    Tokens are scattered into a dense ``(dim, H, W)`` grid at explicit cell indices, convolved depthwise
    (``kernel × kernel``, zero padding, bias), the output is zeroed at empty cells, added to the grid and read back
    at the same indices: the result does not depend on the order of the spots.
    """

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=True)

    def forward(self, x: torch.Tensor, index: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Map tokens ``(N, dim)`` at flat cells ``index`` of an ``height × width`` grid to ``(N, dim)``."""
        dim = x.shape[1]
        grid = x.new_zeros(dim, height * width)
        grid = grid.index_copy(1, index, x.transpose(0, 1))
        occupied = x.new_zeros(height * width).index_fill(0, index, 1.0)
        conv = self.conv(grid.view(1, dim, height, width)).view(dim, height * width) * occupied
        return (grid + conv).index_select(1, index).transpose(0, 1)


class GlobalEncoder(nn.Module):
    """Transformer over every spot of one section (method.md §2.4).

    One layer, the positional-encoding generator, ``depth − 1`` more layers, then a LayerNorm. Call it once per
    section; it maps ``(N, dim)`` features and ``(N, 2)`` integer positions to ``(N, dim)`` tokens in input order.
    Duplicate positions raise ``ValueError``.
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float, kernel_size: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, mlp_dim, dropout) for _ in range(depth))
        self.peg = PositionalEncodingGenerator(dim, kernel_size)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        index, height, width = grid_index(pos.to(x.device))
        x = self.layers[0](x[None])
        x = self.peg(x[0], index, height, width)[None]
        for layer in self.layers[1:]:
            x = layer(x)
        return self.norm(x[0])
