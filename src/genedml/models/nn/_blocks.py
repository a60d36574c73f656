"""Transformer building blocks shared by the Gene-DML encoders (pre-LN, tensors only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Attention", "FeedForward", "TransformerEncoder", "TransformerLayer", "l2_normalize"]


def l2_normalize(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """L2-normalise ``x`` along ``dim`` (zero vectors stay zero)."""
    return F.normalize(x, p=2.0, dim=dim, eps=1e-12)


class FeedForward(nn.Sequential):
    """``Linear(dim → hidden) → GELU → Dropout → Linear(hidden → dim) → Dropout`` (no residual, no norm)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim), nn.Dropout(dropout)
        )


class Attention(nn.Module):
    """Multi-head self-attention with bias-free QKV and an optional additive logit bias.

    The output projection (``Linear + Dropout``) is the identity when there is one head, as in the reference
    blocks. Attention weights get dropout ``dropout`` in training.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"`heads`={heads} must divide the width {dim}.")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Identity() if heads == 1 else nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(
        self, x: torch.Tensor, attn_bias: torch.Tensor | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        batch, n, dim = x.shape
        qkv = self.qkv(x).view(batch, n, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        mask = _logit_bias(attn_bias, key_mask, q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(out.transpose(1, 2).reshape(batch, n, dim))


def _logit_bias(
    attn_bias: torch.Tensor | None, key_mask: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor | None:
    """Additive logit bias ``(B | 1, heads | 1, N, N)`` from a learned bias and a key mask ``(B, N)`` (True = valid).

    Masked keys' logits are replaced by the most negative finite value of the compute dtype, so their softmax weight
    is exactly zero. A row whose keys are all masked would have no valid key: it attends to all keys instead (the
    encoders zero masked features, so such a row averages zeros) rather than producing NaN.
    """
    if key_mask is None:
        return None if attn_bias is None else attn_bias.to(dtype)
    key_mask = key_mask | ~key_mask.any(dim=-1, keepdim=True)
    bias = torch.zeros((), dtype=dtype, device=key_mask.device) if attn_bias is None else attn_bias.to(dtype)
    floor = torch.full((), torch.finfo(dtype).min, dtype=dtype, device=key_mask.device)
    return torch.where(key_mask[:, None, None, :], bias, floor)


class TransformerLayer(nn.Module):
    """Pre-LN layer: ``x + Attn(LN(x))`` then ``x + FFN(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, mlp_dim, dropout)

    def forward(
        self, x: torch.Tensor, attn_bias: torch.Tensor | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_bias, key_mask)
        return x + self.ffn(self.norm2(x))


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerLayer` followed by a final LayerNorm."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerLayer(dim, heads, mlp_dim, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, attn_bias: torch.Tensor | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, attn_bias, key_mask)
        return self.norm(x)
