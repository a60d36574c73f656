"""Gene-DML losses (method.md §3): regression, soft-target contrastive, instance-group cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genedml.models._config import GeneDMLConfig

from ._blocks import l2_normalize
from ._gene_dml import GeneDMLOutput
from ._kmeans import kmeans

__all__ = [
    "GeneDMLLoss",
    "LossOutput",
    "cluster_accuracy",
    "group_instances",
    "instance_group_loss",
    "regression_loss",
    "soft_contrastive_loss",
]

_SCALE_ATTR = {"local": "v_local", "neighbor": "v_neighbor", "global": "v_global"}


@dataclass
class LossOutput:
    """Total loss and its detached scalar terms.

    Attributes
    ----------
    loss
        Scalar to back-propagate.
    terms
        Detached scalars of the active terms only: ``reg``; with the instance-level pathway ``inst`` and
        ``inst_<scale>`` per active scale (``local``, ``neighbor``, ``global``); with the instance-group pathway
        ``ig`` and ``cluster_acc``; with ``bimodal_contrastive`` ``bimodal``.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


def regression_loss(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Plain mean squared error over spots and genes (§3.1)."""
    return F.mse_loss(pred, y)


def soft_contrastive_loss(g: torch.Tensor, v: torch.Tensor, *, tau: float) -> torch.Tensor:
    """Symmetric soft-target contrastive loss between gene and image embeddings (§3.2, BLEEP-style).

    With ``S = G Vᵀ / τ`` and soft targets ``T = softmax_row((V Vᵀ + G Gᵀ) / (2τ))`` (not detached), the loss is
    ``mean_i ½ (−Σ_j T_ij log softmax_j S_ij − Σ_j T_ji log softmax_j S_ji)``: rows of ``Sᵀ`` are scored against
    rows of ``Tᵀ``, as in the reference code.

    Parameters
    ----------
    g, v
        ``(B, d)`` L2-normalised gene and image embeddings of the same spots.
    tau
        Temperature.
    """
    logits = g @ v.T / tau
    targets = F.softmax((v @ v.T + g @ g.T) / (2.0 * tau), dim=-1)
    gene_to_image = -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1)
    image_to_gene = -(targets.T * F.log_softmax(logits.T, dim=-1)).sum(dim=-1)
    return (0.5 * (gene_to_image + image_to_gene)).mean()


def group_instances(
    u: torch.Tensor, k: int, *, grouping: bool = True, iters: int = 10, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group the rows of ``u`` ``(B, d)``: ``(assignments (B,), centroids (K, d))``.

    ``grouping=True`` runs :func:`~genedml.models.nn.kmeans` with ``k`` groups. ``grouping=False`` makes every
    instance its own group (assignments ``0 … B−1``, centroids ``u``), turning the instance-group loss into a
    hard-target instance-level cross-entropy; ``k`` is then unused.
    """
    if grouping:
        return kmeans(u, k, iters=iters, generator=generator)
    return torch.arange(u.shape[0], device=u.device), u


def cluster_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of rows whose arg-max column equals the target group."""
    return (logits.argmax(dim=-1) == targets).float().mean()


def instance_group_loss(
    z: torch.Tensor,
    g: torch.Tensor,
    assign_image: torch.Tensor,
    centroids_image: torch.Tensor,
    assign_gene: torch.Tensor,
    centroids_gene: torch.Tensor,
    *,
    tau_ig: float,
    normalize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-level instance-group cross-entropy (§3.5) and the cluster accuracy.

    ``L_IG = ½ [CE(z C_Gᵀ / τ, a_G) + CE(g C_Iᵀ / τ, a_I)]`` on the pre-cluster-head embeddings: each image
    instance must score highest on the gene-group centroid of its paired profile, and vice versa. The cluster
    accuracy is the fraction of image instances whose best gene-group centroid is ``a_G``.

    Parameters
    ----------
    z, g
        ``(B, d)`` image (fused mean token) and gene embeddings.
    assign_image, centroids_image
        Image-side groups: ``(B,)`` assignments and ``(K, d)`` centroids.
    assign_gene, centroids_gene
        Gene-side groups.
    tau_ig
        Temperature.
    normalize
        L2-normalise ``z``, ``g`` and the centroids first (§9.2; off in the reference code).

    Returns
    -------
    ``(loss, accuracy)``.
    """
    if normalize:
        z, g = l2_normalize(z), l2_normalize(g)
        centroids_image, centroids_gene = l2_normalize(centroids_image), l2_normalize(centroids_gene)
    image_logits = z @ centroids_gene.T / tau_ig
    gene_logits = g @ centroids_image.T / tau_ig
    loss = 0.5 * (F.cross_entropy(image_logits, assign_gene) + F.cross_entropy(gene_logits, assign_image))
    return loss, cluster_accuracy(image_logits, assign_gene)


class GeneDMLLoss(nn.Module):
    """``L = L_inst + L_reg + λ·L_IG`` with the switches of :class:`~genedml.models.GeneDMLConfig` (§3.6).

    ``L_inst`` averages :func:`soft_contrastive_loss` over the active scales; ``L_IG`` groups the cluster-head
    embeddings of each modality (k-means, or one group per instance without feature grouping) and scores ``z`` and
    ``g`` against the other modality's centroids. With ``bimodal_contrastive`` a single soft-target term between
    ``normalise(z)`` and ``g`` is added instead. Computed in float32 with autocast off.

    Parameters
    ----------
    config
        The network's configuration.
    """

    def __init__(self, config: GeneDMLConfig) -> None:
        super().__init__()
        if not isinstance(config, GeneDMLConfig):
            raise TypeError(f"`config` must be a GeneDMLConfig, got {type(config).__name__}.")
        config.validate()
        self.config = config

    def forward(
        self, output: GeneDMLOutput, y: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> LossOutput:
        """Loss of one batch.

        Parameters
        ----------
        output
            :meth:`GeneDMLNet.forward` output computed **with** ``y``.
        y
            ``(B, G)`` target expression.
        generator
            CPU generator of the k-means initialisation; ``None`` uses torch's global generator.
        """
        c = self.config
        self._check(output, y)
        with torch.autocast(device_type=y.device.type, enabled=False):
            terms = {"reg": regression_loss(output.pred.float(), y.float())}
            total = terms["reg"]
            if c.inst_scales:
                total = total + self._instance_level(output, terms)
            if c.instance_group:
                total = total + c.lam * self._instance_group(output, terms, generator)
            if c.bimodal_contrastive:
                terms["bimodal"] = soft_contrastive_loss(output.g.float(), l2_normalize(output.z.float()), tau=c.tau)
                total = total + terms["bimodal"]
        return LossOutput(loss=total, terms={k: v.detach() for k, v in terms.items()})

    def _instance_level(self, output: GeneDMLOutput, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        g = output.g.float()
        for scale in self.config.inst_scales:
            v = getattr(output, _SCALE_ATTR[scale]).float()
            terms[f"inst_{scale}"] = soft_contrastive_loss(g, v, tau=self.config.tau)
        terms["inst"] = torch.stack([terms[f"inst_{s}"] for s in self.config.inst_scales]).mean()
        return terms["inst"]

    def _instance_group(
        self, output: GeneDMLOutput, terms: dict[str, torch.Tensor], generator: torch.Generator | None
    ) -> torch.Tensor:
        c = self.config
        opts = {"grouping": c.feature_grouping, "iters": c.kmeans_iters, "generator": generator}
        assign_image, centroids_image = group_instances(output.u_image.float(), c.K, **opts)
        assign_gene, centroids_gene = group_instances(output.u_gene.float(), c.K, **opts)
        terms["ig"], terms["cluster_acc"] = instance_group_loss(
            output.z.float(), output.g.float(), assign_image, centroids_image, assign_gene, centroids_gene,
            tau_ig=c.tau_ig, normalize=c.normalize_instances,
        )  # fmt: skip
        return terms["ig"]

    def _check(self, output: GeneDMLOutput, y: torch.Tensor) -> None:
        c = self.config
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != tuple(output.pred.shape):
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"`y` must have the prediction's shape {tuple(output.pred.shape)}, got {shape}.")
        if c.uses_gene_encoder and output.g is None:
            raise ValueError("`output.g` is None: call the network with `y` and a config that builds the gene encoder.")
        if c.instance_group and (output.u_image is None or output.u_gene is None):
            raise ValueError(
                "`output.u_image`/`output.u_gene` are None: the network was built without the instance-group "
                "pathway; build network and loss from the same config."
            )
