"""Tensor-only modules of the neural baselines: BLEEP (contrastive retrieval) and ST-Net (fine-tuned CNN).

Written from the papers' descriptions and the public BLEEP code's definitions (Apache-2.0), not copied:

* BLEEP (Xie et al., NeurIPS 2023): an image projection and an expression projection (``Linear → GELU → Linear →
  Dropout``, residual, ``LayerNorm``; 256-d) trained with a symmetric soft-target contrastive loss at temperature 1;
  prediction = plain average of the expression of the ``k = 50`` training spots whose L2-normalised expression
  embedding is most cosine-similar to the query's image embedding.
* ST-Net (He et al., Nat. Biomed. Eng. 2020): a CNN fine-tuned on the spot's patch with a linear gene head (MSE).

Nothing here imports Lightning, AnnData or SpatialData.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._losses import LossOutput, soft_contrastive_loss

__all__ = [
    "BLEEPLoss",
    "BLEEPNet",
    "BLEEPOutput",
    "ProjectionHead",
    "STNetNet",
    "gather_spot_features",
    "retrieve_mean",
]


class ProjectionHead(nn.Module):
    """BLEEP's projection: ``p = Linear(x)``; ``LayerNorm(p + Dropout(Linear(GELU(p))))``.

    Parameters
    ----------
    in_dim
        Input width.
    dim
        Embedding width (BLEEP: 256).
    dropout
        Dropout before the residual sum (BLEEP: 0.1).
    """

    def __init__(self, in_dim: int, dim: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, dim)
        self.fc = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_dim)`` → ``(B, dim)``."""
        p = self.proj(x)
        return self.norm(p + self.drop(self.fc(F.gelu(p))))


def gather_spot_features(
    section_feats: Sequence[torch.Tensor], section_of: torch.Tensor, spot_of: torch.Tensor
) -> torch.Tensor:
    """Each spot's own pooled feature ``(B, D)`` from the per-section feature lists of a `SpotBatch`."""
    sizes = torch.tensor([f.shape[0] for f in section_feats], device=section_of.device)
    offsets = torch.cumsum(sizes, 0) - sizes
    return torch.cat(list(section_feats), dim=0)[offsets[section_of] + spot_of]


def retrieve_mean(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, *, k: int, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the ``values`` of the ``k`` keys most cosine-similar to each query (BLEEP's "average" rule).

    Parameters
    ----------
    query
        ``(Q, d)`` query embeddings (image side).
    keys
        ``(N, d)`` bank embeddings (expression side).
    values
        ``(N, G)`` bank expression.
    k
        Neighbours averaged; capped at ``N``.
    chunk
        Queries per similarity block (bounds memory at ``chunk × N``).

    Returns
    -------
    ``(Q, G)`` predictions and the ``(Q, k)`` indices of the retrieved bank rows (most similar first).
    """
    if keys.shape[0] != values.shape[0] or keys.shape[0] == 0:
        raise ValueError(
            f"`keys` ({keys.shape[0]} rows) and `values` ({values.shape[0]} rows) must be non-empty and agree."
        )
    if k < 1:
        raise ValueError(f"`k` must be a positive integer, got {k}.")
    k = min(int(k), keys.shape[0])
    kn = F.normalize(keys.float(), dim=-1)
    preds, idx = [], []
    for i in range(0, query.shape[0], chunk):
        q = F.normalize(query[i : i + chunk].float(), dim=-1)
        top = torch.topk(q @ kn.T, k=k, dim=-1).indices
        idx.append(top)
        preds.append(values.float()[top].mean(dim=1))
    if not preds:
        return values.new_zeros((0, values.shape[1])), torch.zeros((0, k), dtype=torch.long)
    return torch.cat(preds), torch.cat(idx)


@dataclass
class BLEEPOutput:
    """Outputs of :class:`BLEEPNet`: ``pred`` (retrieval; ``None`` in training), embeddings ``image``, ``spot``."""

    pred: torch.Tensor | None
    image: torch.Tensor
    spot: torch.Tensor | None = None


class BLEEPNet(nn.Module):
    """BLEEP on frozen pooled image features: two projection heads and a retrieval bank.

    The forward signature is `GeneDMLNet`'s, so the Gene-DML training plan drives it unchanged; only each spot's own
    pooled feature is used (gathered from ``section_feats``).

    Parameters
    ----------
    in_dim
        Width of the pooled image feature.
    n_genes
        Number of genes (input of the expression head, width of the bank).
    dim, dropout
        Projection width and dropout (BLEEP: 256, 0.1).
    top_k
        Retrieved spots averaged per prediction (BLEEP: 50).
    bank_size
        Rows of the (initially zero) expression bank; fill it with :meth:`set_bank`.
    """

    def __init__(
        self, in_dim: int, n_genes: int, *, dim: int = 256, dropout: float = 0.1, top_k: int = 50, bank_size: int = 0
    ) -> None:
        super().__init__()
        self.top_k = int(top_k)
        self.image_proj = ProjectionHead(in_dim, dim, dropout)
        self.spot_proj = ProjectionHead(n_genes, dim, dropout)
        self.register_buffer("bank", torch.zeros(bank_size, n_genes))

    def set_bank(self, y: torch.Tensor) -> None:
        """Replace the retrieval bank by ``y`` ``(N, G)`` (training-spot expression)."""
        if y.ndim != 2 or y.shape[1] != self.bank.shape[1]:
            raise ValueError(f"`y` must be (N, {self.bank.shape[1]}), got {tuple(y.shape)}.")
        self.bank = y.detach().to(self.bank.device, torch.float32).clone()

    def bank_embeddings(self) -> torch.Tensor:
        """Expression embeddings of the bank (recomputed: the expression head changes while training)."""
        return self.spot_proj(self.bank)

    def forward(
        self,
        target: torch.Tensor | None = None,
        neighbor: torch.Tensor | None = None,
        neighbor_mask: torch.Tensor | None = None,
        section_feats: Sequence[torch.Tensor] | None = None,
        section_pos: Sequence[torch.Tensor] | None = None,
        section_of: torch.Tensor | None = None,
        spot_of: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        *,
        feats: torch.Tensor | None = None,
        bank_embeddings: torch.Tensor | None = None,
    ) -> BLEEPOutput:
        """Embed a batch; with ``y`` (training) also the expression, without it retrieve predictions from the bank.

        ``feats`` ``(B, D)`` may be given directly instead of the `SpotBatch` section lists; ``bank_embeddings``
        reuses :meth:`bank_embeddings` across chunks.
        """
        if feats is None:
            if section_feats is None or section_of is None or spot_of is None:
                raise ValueError("Pass `feats`, or `section_feats`, `section_of` and `spot_of`.")
            feats = gather_spot_features(section_feats, section_of, spot_of)
        image = self.image_proj(feats.float())
        if y is not None:
            return BLEEPOutput(pred=None, image=image, spot=self.spot_proj(y.float()))
        if self.bank.shape[0] == 0:
            raise RuntimeError("the retrieval bank is empty: call `set_bank(y_train)` first.")
        keys = self.bank_embeddings() if bank_embeddings is None else bank_embeddings
        pred, _ = retrieve_mean(image, keys, self.bank, k=self.top_k)
        return BLEEPOutput(pred=pred, image=image)


class BLEEPLoss(nn.Module):
    """BLEEP's symmetric soft-target contrastive loss (temperature 1 in the paper's code).

    Targets are ``softmax((I Iᵀ + S Sᵀ) / (2τ))`` over the un-normalised image (``I``) and expression (``S``)
    embeddings; the loss averages the expression→image and image→expression cross-entropies of ``S Iᵀ / τ``.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature!r}.")
        self.temperature = float(temperature)

    def forward(self, out: BLEEPOutput, y: torch.Tensor | None = None, *, generator=None) -> LossOutput:
        """Loss of one batch (``y`` and ``generator`` accepted for the plan's interface)."""
        if out.spot is None:
            raise ValueError("the BLEEP loss needs the expression embedding: call the network with `y`.")
        loss = soft_contrastive_loss(out.spot, out.image, tau=self.temperature)
        return LossOutput(loss=loss, terms={"clip": loss.detach()})


# ---------------------------------------------------------------------------------------------------- ST-Net


class STNetNet(nn.Module):
    """A trainable CNN on ``uint8`` windows with a linear gene head (ST-Net).

    Parameters
    ----------
    backbone
        A timm model built with ``num_classes=0`` (its output is the pooled feature); trained end to end.
    num_features
        Width of that pooled feature.
    n_genes
        Number of genes predicted.
    mean, std
        Per-channel normalisation of the backbone's pretrained configuration.
    image_px
        Side the windows are resized to before the backbone (``None``: as cut).
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        num_features: int,
        n_genes: int,
        mean: Sequence[float],
        std: Sequence[float],
        image_px: int | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(num_features, n_genes)
        self.image_px = image_px
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        for p in self.backbone.parameters():
            p.requires_grad_(True)
        self.backbone.train()  # a frozen encoder arrives in eval mode; fine-tuning needs train-mode norm layers

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """``uint8`` ``(B, H, W, 3)`` → normalised float ``(B, 3, s, s)`` on the network's device."""
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"`images` must be (B, H, W, 3), got {tuple(images.shape)}.")
        x = images.to(self.mean.device).permute(0, 3, 1, 2).float().div_(255.0)
        if self.image_px is not None and x.shape[-1] != self.image_px:
            x = F.interpolate(x, size=(self.image_px, self.image_px), mode="bilinear", antialias=True)
        return (x - self.mean) / self.std

    def init_bias(self, mean: torch.Tensor) -> None:
        """Start the head at the training mean (its bias), so fine-tuning begins from the mean predictor."""
        with torch.no_grad():
            self.head.bias.copy_(mean.to(self.head.bias))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, 3)`` ``uint8`` windows → ``(B, G)`` predictions."""
        return self.head(self.backbone(self.prepare(images)))
