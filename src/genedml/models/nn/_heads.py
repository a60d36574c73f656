"""Fusion block, gene encoder and heads of Gene-DML (method.md §2.5–2.7)."""

from __future__ import annotations

import torch
from torch import nn

from ._blocks import FeedForward, TransformerEncoder, l2_normalize

__all__ = ["ClusterHead", "FusionBlock", "GeneEncoder", "PredictionHead"]


class FusionBlock(nn.Module):
    """Transformer encoder over the concatenated tokens, then a feed-forward block **without** residual or norm."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, dropout: float) -> None:
        super().__init__()
        self.encoder = TransformerEncoder(dim, depth, heads, mlp_dim, dropout)
        self.ffn = FeedForward(dim, mlp_dim, dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.encoder(tokens))


class GeneEncoder(nn.Module):
    """Expression profile → L2-normalised gene embedding ``g`` (method.md §2.6).

    ``p = W1·y + b1``; ``h = Dropout(W2·GELU(p) + b2)``; ``e = LayerNorm(h + p)``; ``g = normalise(FFN(e))`` with a
    feed-forward block without residual.
    """

    def __init__(self, n_genes: int, dim: int, mlp_dim: int, dropout: float, ffn_dropout: float) -> None:
        super().__init__()
        self.proj = nn.Linear(n_genes, dim)
        self.act = nn.GELU()
        self.fc = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, mlp_dim, ffn_dropout)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        p = self.proj(y)
        e = self.norm(self.drop(self.fc(self.act(p))) + p)
        return l2_normalize(self.ffn(e))


class PredictionHead(nn.Sequential):
    """MLP ``dim → hidden… → n_genes`` with ReLU and dropout after each hidden layer; no output clamp."""

    def __init__(self, dim: int, hidden: tuple[int, ...], n_genes: int, dropout: float) -> None:
        layers: list[nn.Module] = []
        width = dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, n_genes))
        super().__init__(*layers)


class ClusterHead(nn.Module):
    """Shared ``Linear(dim → dim)`` + L2 normalisation used to embed ``z`` and ``g`` for grouping (§2.7)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return l2_normalize(self.linear(x))
