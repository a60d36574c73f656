"""Global encoder: transformer over the spots of a section with a grid positional-encoding generator.

Full attention over all spots costs O(N²). For large sections (Visium HD bins) the encoder can attend within
square windows of ``window × window`` grid cells instead (Swin-style; windows shifted by ``window // 2`` on every
second layer), which costs O(N · window²). When one window covers the section the result equals full attention.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
from torch import nn

from ._blocks import TransformerLayer

__all__ = [
    "GLOBAL_ATTENTION_MODES",
    "GlobalEncoder",
    "PositionalEncodingGenerator",
    "WindowChunk",
    "grid_index",
    "window_partition",
]

GLOBAL_ATTENTION_MODES = ("auto", "full", "windowed")

# A grid this much larger than the number of spots almost surely holds pixel coordinates, not array indices.
_MAX_CELLS_PER_SPOT = 100
_MIN_CELL_LIMIT = 1 << 16
# Attention logits held at once by the windowed path: windows × heads × L² (64 MiB in float32).
_LOGIT_BUDGET = 1 << 24


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


class WindowChunk(NamedTuple):
    """Consecutive windows attended in one batch (see :func:`window_partition`)."""

    start: int
    stop: int
    n_windows: int
    length: int
    slots: torch.Tensor | None


def window_partition(
    index: torch.Tensor,
    height: int,
    width: int,
    window: int,
    *,
    shift: bool = False,
    max_logits: int = _LOGIT_BUDGET,
    extent: tuple[int, int] | None = None,
    row_offset: int = 0,
) -> tuple[torch.Tensor, list[WindowChunk]]:
    """Group the spots of a grid into square windows, packed for batched attention.

    Cell ``(r, c)`` belongs to window ``((r + s_r) // window, (c + s_c) // window)``, where the shift ``s`` is
    ``window // 2`` along an axis longer than ``window`` when ``shift`` is set and 0 otherwise, so a grid that fits
    in one window is always one window. Empty windows are dropped. A chunk holds as many windows as keep
    ``n_windows · length²`` within ``max_logits`` (at least one). When the grid is a band of rows of a section
    (see :meth:`GlobalEncoder.forward`), ``extent`` is the whole section's ``(height, width)``, which decides the
    shifts, and ``row_offset`` the section row of the band's first row, so the band has the section's windows.

    Returns
    -------
    ``(order, chunks)``: ``order`` ``(N,)`` lists the spots window by window, windows by decreasing size; each
    :class:`WindowChunk` covers ``order[start:stop]``, ``n_windows`` consecutive windows padded to ``length`` (the
    largest of them) slots; ``slots`` holds each spot's flat slot, ``None`` when no window of the chunk is padded.
    """
    if not isinstance(window, numbers.Integral) or isinstance(window, bool) or window < 1:
        raise ValueError(f"`window` must be a positive integer (grid cells), got {window!r}.")
    rows, cols = index // width, index % width
    full_h, full_w = (height, width) if extent is None else extent
    s_r = window // 2 if shift and full_h > window else 0
    s_c = window // 2 if shift and full_w > window else 0
    wr, wc = (rows + row_offset + s_r) // window, (cols + s_c) // window
    wid = wr * ((width + s_c) // window + 1) + wc
    _, inv, counts = torch.unique(wid, return_inverse=True, return_counts=True)
    # windows by decreasing size (ties by window id), spots of a window contiguous and in input order
    n_win = counts.numel()
    rank = torch.argsort(-counts * n_win + torch.arange(n_win, device=counts.device), stable=True)
    key = torch.empty_like(rank).index_copy_(0, rank, torch.arange(n_win, device=rank.device))[inv]
    order = torch.argsort(key, stable=True)
    sizes = counts[rank]
    size_list = sizes.tolist()
    chunks: list[WindowChunk] = []
    start, i = 0, 0
    while i < n_win:
        length = size_list[i]
        # at least one window per chunk, then as many as fit the logit budget at this length
        j = min(n_win, i + max(1, max_logits // (length * length)))
        stop = start + sum(size_list[i:j])
        slots = None if stop - start == (j - i) * length else _window_slots(sizes[i:j], length)
        chunks.append(WindowChunk(start, stop, j - i, length, slots))
        start, i = stop, j
    return order, chunks


def _window_slots(sizes: torch.Tensor, length: int) -> torch.Tensor:
    """Flat slot ``window · length + rank`` of each spot of consecutive windows of the given sizes."""
    offsets = torch.cumsum(sizes, 0) - sizes
    win = torch.repeat_interleave(torch.arange(sizes.numel(), device=sizes.device), sizes)
    rank = torch.arange(int(sizes.sum()), device=sizes.device) - offsets[win]
    return win * length + rank


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
    """Transformer over the spots of one section (method.md §2.4).

    One layer, the positional-encoding generator, ``depth − 1`` more layers, then a LayerNorm. Call it once per
    section; it maps ``(N, dim)`` features and ``(N, 2)`` integer positions to ``(N, dim)`` tokens in input order.
    Duplicate positions raise ``ValueError``.

    ``attention`` picks the attention of the layers: ``"full"`` (every spot attends to every spot, O(N²)),
    ``"windowed"`` (within ``window × window`` grid cells, windows shifted by ``window // 2`` on the layers of odd
    index, O(N · window²)) or ``"auto"`` (full up to ``full_max_spots`` spots, windowed above). Windowed attention
    equals full attention when one window covers the section.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        heads: int,
        mlp_dim: int,
        dropout: float,
        kernel_size: int = 3,
        *,
        attention: str = "auto",
        window: int = 32,
        full_max_spots: int = 4096,
    ) -> None:
        super().__init__()
        if attention not in GLOBAL_ATTENTION_MODES:
            raise ValueError(f"`attention` must be one of {list(GLOBAL_ATTENTION_MODES)}, got {attention!r}.")
        for name, value in (("window", window), ("full_max_spots", full_max_spots)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        self.attention, self.window, self.full_max_spots = attention, int(window), int(full_max_spots)
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, mlp_dim, dropout) for _ in range(depth))
        self.peg = PositionalEncodingGenerator(dim, kernel_size)
        self.norm = nn.LayerNorm(dim)

    def uses_windows(self, n_spots: int) -> bool:
        """Whether a section of ``n_spots`` spots goes through windowed attention."""
        return self.attention == "windowed" or (self.attention == "auto" and n_spots > self.full_max_spots)

    def receptive_rows(self) -> int:
        """Grid rows beyond which a windowed encoder's output cannot see: ``depth · window + kernel // 2``.

        Each windowed layer mixes a cell only with cells of its window (less than ``window`` rows away) and the
        positional encoding with the cells of its kernel, so a token depends on no spot farther away than this.
        """
        return len(self.layers) * self.window + self.peg.conv.kernel_size[0] // 2

    def forward(self, x: torch.Tensor, pos: torch.Tensor, *, band: tuple[int, int, int] | None = None) -> torch.Tensor:
        """Tokens ``(N, dim)`` of spots ``x`` ``(N, dim)`` at integer grid positions ``pos`` ``(N, 2)``.

        ``band``: ``(row0, height, width)`` when ``x`` holds only the spots of a band of grid rows ``r ≥ row0`` of a
        section whose whole grid is ``height × width`` (``pos`` relative to the section's minimum row and column):
        the band is encoded with the whole section's windows, so its rows farther than :meth:`receptive_rows` from
        the band's edges get the whole section's tokens (to float tolerance). Always windowed.
        """
        if band is not None:
            return self._forward_band(x, pos.to(x.device), *band)
        index, height, width = grid_index(pos.to(x.device))
        if not self.uses_windows(x.shape[0]):
            x = self.layers[0](x[None])
            x = self.peg(x[0], index, height, width)[None]
            for layer in self.layers[1:]:
                x = layer(x)
            return self.norm(x[0])
        return self._windowed(x, index, height, width, (height, width))

    def _forward_band(self, x: torch.Tensor, pos: torch.Tensor, row0: int, height: int, width: int) -> torch.Tensor:
        rows = pos[:, 0].long() - row0
        cols = pos[:, 1].long()
        if len(rows) and (int(rows.min()) < 0 or int(cols.min()) < 0 or int(cols.max()) >= width):
            raise ValueError("`band`: positions outside the band (rows from row0, columns below width).")
        local_h = int(rows.max()) + 1 if len(rows) else 1
        return self._windowed(x, rows * width + cols, local_h, width, (height, width), row0)

    def _windowed(self, x, index, height: int, width: int, extent: tuple[int, int], row0: int = 0) -> torch.Tensor:
        budget = _LOGIT_BUDGET // self.layers[0].attn.heads
        parts = [
            window_partition(
                index, height, width, self.window, shift=shift, max_logits=budget, extent=extent, row_offset=row0
            )
            for shift in (False, True)
        ]
        for i, layer in enumerate(self.layers):
            x = _windowed_layer(layer, x, *parts[i % 2])
            if i == 0:
                x = self.peg(x, index, height, width)
        return self.norm(x)


def _windowed_layer(
    layer: TransformerLayer, x: torch.Tensor, order: torch.Tensor, chunks: list[WindowChunk]
) -> torch.Tensor:
    """``layer`` on tokens ``(N, dim)`` with attention restricted to the windows of :func:`window_partition`.

    The whole layer runs a chunk of windows at a time (the norms, the feed-forward block and the residuals act per
    token, so this changes nothing but the working set), and no ``N × N`` matrix is ever formed.
    """
    dim = x.shape[1]
    if not torch.is_grad_enabled():  # inference: gather and scatter per chunk (two copies of the tokens, not five)
        out = torch.empty_like(x)
        for c in chunks:
            idx = order[c.start : c.stop]
            out.index_copy_(0, idx, _chunk(layer, x.index_select(0, idx), c, dim))
        return out
    xs = x.index_select(0, order)
    outs = [_chunk(layer, xs[c.start : c.stop], c, dim) for c in chunks]
    return torch.empty_like(x).index_copy(0, order, torch.cat(outs))


def _chunk(layer: TransformerLayer, tokens: torch.Tensor, c: WindowChunk, dim: int) -> torch.Tensor:
    """One transformer layer on the consecutive windows of chunk ``c`` (tokens in window order)."""
    h = layer.norm1(tokens)
    if c.slots is None:  # every window of the chunk is full: no padding, no mask
        attn = layer.attn(h.view(c.n_windows, c.length, dim)).reshape(-1, dim)
    else:
        padded = h.new_zeros(c.n_windows * c.length, dim).index_copy(0, c.slots, h)
        mask = torch.zeros(c.n_windows * c.length, dtype=torch.bool, device=h.device).index_fill(0, c.slots, True)
        attn = layer.attn(padded.view(c.n_windows, c.length, dim), key_mask=mask.view(c.n_windows, c.length))
        attn = attn.reshape(-1, dim).index_select(0, c.slots)
    tokens = tokens + attn
    return tokens + layer.ffn(layer.norm2(tokens))
