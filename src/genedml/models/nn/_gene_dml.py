"""The Gene-DML network: encoder outputs (+ expression) → prediction and the embeddings of its losses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from genedml.models._config import GeneDMLConfig

from ._blocks import l2_normalize
from ._checks import check_inputs, check_rows, check_section_tokens, check_sections
from ._global import GlobalEncoder
from ._heads import ClusterHead, FusionBlock, GeneEncoder, PredictionHead
from ._neighbor import NeighborEncoder

__all__ = ["GeneDMLNet", "GeneDMLOutput"]


@dataclass
class GeneDMLOutput:
    """Outputs of :meth:`GeneDMLNet.forward` for a batch of ``B`` spots.

    Attributes
    ----------
    pred
        ``(B, G)`` predicted expression (the fusion head on ``z``; no clamp).
    z
        ``(B, dim)`` mean of all fused tokens, not normalised.
    v_local, v_neighbor, v_global
        ``(B, dim)`` L2-normalised local (mean of the target tokens), neighbour (mean of the neighbour tokens) and
        global (the global token) embeddings after fusion.
    g
        ``(B, dim)`` L2-normalised gene embedding; ``None`` without ``y`` or when no loss term uses it.
    u_image, u_gene
        ``(B, dim)`` cluster-head embeddings of ``z`` and ``g`` used for grouping; ``None`` without ``y`` or when
        the instance-group pathway is off.
    """

    pred: torch.Tensor
    z: torch.Tensor
    v_local: torch.Tensor
    v_neighbor: torch.Tensor
    v_global: torch.Tensor
    g: torch.Tensor | None = None
    u_image: torch.Tensor | None = None
    u_gene: torch.Tensor | None = None


class GeneDMLNet(nn.Module):
    """Gene-DML network on precomputed image-encoder outputs (method.md §2).

    Target tokens, neighbour-tile features and section features (all of width ``in_dim = D``, the image encoder's
    ``num_features``) pass a shared ``Linear(D → dim)`` after the neighbour and global encoders, are fused by a
    one-layer transformer plus a feed-forward block, and the mean fused token ``z`` feeds the prediction head.
    The gene encoder is built only when a loss term needs ``g`` and the cluster head only with the instance-group
    pathway, so every parameter of a built network receives a gradient from :class:`GeneDMLLoss`.

    Parameters
    ----------
    config
        Architecture and switches.
    in_dim
        Width ``D`` of the encoder outputs.
    n_genes
        Number of predicted genes ``G``.

    Examples
    --------
    >>> import torch
    >>> from genedml.models import GeneDMLConfig
    >>> from genedml.models.nn import GeneDMLLoss, GeneDMLNet
    >>> cfg = GeneDMLConfig.preset("cpu", K=2)
    >>> net = GeneDMLNet(cfg, in_dim=32, n_genes=5)
    >>> pos = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])  # one section, 2×2 grid
    >>> out = net(
    ...     torch.randn(4, 3, 32),  # 3 target tokens per spot
    ...     torch.randn(4, 25, 32),
    ...     torch.ones(4, 25, dtype=torch.bool),
    ...     [torch.randn(4, 32)],
    ...     [pos],
    ...     torch.zeros(4, dtype=torch.long),
    ...     torch.arange(4),
    ...     y=torch.randn(4, 5),
    ... )
    >>> out.pred.shape
    torch.Size([4, 5])
    >>> GeneDMLLoss(cfg)(out, torch.randn(4, 5)).loss.ndim
    0
    """

    def __init__(self, config: GeneDMLConfig, *, in_dim: int, n_genes: int) -> None:
        super().__init__()
        if not isinstance(config, GeneDMLConfig):
            raise TypeError(f"`config` must be a GeneDMLConfig, got {type(config).__name__}.")
        config.validate()
        for name, value in (("in_dim", in_dim), ("n_genes", n_genes)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        c = self.config = config
        self.in_dim, self.n_genes = in_dim, n_genes
        width = c.trunk_width(in_dim)
        for name in ("neighbor_heads", "global_heads"):
            if width % getattr(c, name):
                raise ValueError(f"`config.{name}`={getattr(c, name)} must divide the trunk width {width}.")
        self.trunk_in = nn.Identity() if width == in_dim else nn.Linear(in_dim, width)
        # Per-feature standardisation of the frozen encoder's outputs (set from training statistics by the model
        # class; identity by default). Encoders differ wildly in output scale (a randomly initialised CNN gives
        # values ~1e-4), and the trunk has no input normalisation of its own.
        self.register_buffer("feature_shift", torch.zeros(in_dim))
        self.register_buffer("feature_scale", torch.ones(in_dim))
        self.neighbor_encoder = NeighborEncoder(
            width, c.neighbor_depth, c.neighbor_heads, c.neighbor_mlp_dim, c.neighbor_dropout, grid=c.neighbor_grid
        )
        self.global_encoder = GlobalEncoder(
            width,
            c.global_depth,
            c.global_heads,
            c.global_mlp_dim,
            c.global_dropout,
            kernel_size=c.peg_kernel_size,
            attention=c.global_attention,
            window=c.global_window,
            full_max_spots=c.global_full_max_spots,
        )
        self.proj = nn.Linear(width, c.dim)
        self.fusion = FusionBlock(c.dim, c.fusion_depth, c.fusion_heads, c.fusion_mlp_dim, c.fusion_dropout)
        self.head = PredictionHead(c.dim, c.head_hidden, n_genes, c.head_dropout)
        self.gene_encoder = (
            GeneEncoder(n_genes, c.dim, c.gene_mlp_dim, c.gene_dropout, c.gene_ffn_dropout)
            if c.uses_gene_encoder
            else None
        )
        self.cluster_head = ClusterHead(c.dim) if c.instance_group else None

    def encode_sections(
        self, section_feats: Sequence[torch.Tensor], section_pos: Sequence[torch.Tensor]
    ) -> list[torch.Tensor]:
        """Run the global encoder once per section.

        Returns one ``(N_s, width)`` tensor per section, in the spots' input order (``width`` = ``trunk_dim`` or
        ``D``); pass the list as ``section_tokens`` to :meth:`forward` to reuse it across chunks of a section.
        Sections above ``config.global_full_max_spots`` spots attend within windows when ``config.global_attention``
        is ``"auto"`` (see :class:`~genedml.models.GeneDMLConfig`).
        """
        return [self.global_encoder(self._trunk(f), p) for f, p in zip(section_feats, section_pos)]

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.feature_shift) / self.feature_scale
        if self.config.feature_clip is not None:  # finite values only: inf/NaN must still surface as divergence
            c = self.config.feature_clip
            z = torch.where(torch.isinf(z), z, z.clamp(-c, c))
        return self.trunk_in(z)

    def set_feature_stats(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        """Standardise encoder features as ``(x - shift) / scale`` before the trunk (``scale`` floored at 1e-8)."""
        self.feature_shift.copy_(torch.as_tensor(shift, dtype=self.feature_shift.dtype))
        self.feature_scale.copy_(torch.as_tensor(scale, dtype=self.feature_scale.dtype).clamp_min(1e-8))

    def forward(
        self,
        target: torch.Tensor,
        neighbor: torch.Tensor,
        neighbor_mask: torch.Tensor,
        section_feats: Sequence[torch.Tensor] | None,
        section_pos: Sequence[torch.Tensor] | None,
        section_of: torch.Tensor,
        spot_of: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        section_tokens: Sequence[torch.Tensor] | None = None,
    ) -> GeneDMLOutput:
        """Encode a batch of ``B`` spots.

        Parameters
        ----------
        target
            ``(B, T, D)`` target-patch tokens.
        neighbor
            ``(B, grid², D)`` neighbour-tile features, row-major.
        neighbor_mask
            ``(B, grid²)`` bool, True for tiles inside the image.
        section_feats
            One ``(N_s, D)`` tensor per section present in the batch, holding **all** spots of the section.
        section_pos
            One ``(N_s, 2)`` integer ``(row, col)`` array-position tensor per section.
        section_of
            ``(B,)`` index of each spot's section in the lists.
        spot_of
            ``(B,)`` row of each spot within its section.
        y
            ``(B, G)`` expression; needed for ``g`` (training), not for the prediction.
        section_tokens
            Output of :meth:`encode_sections` to reuse instead of running the global encoder
            (``section_feats`` and ``section_pos`` are then ignored and may be ``None``).

        Returns
        -------
        The prediction and embeddings; see :class:`GeneDMLOutput`.
        """
        c = self.config
        if section_tokens is None and (section_feats is None or section_pos is None):
            raise ValueError("Pass `section_feats` and `section_pos`, or precomputed `section_tokens`.")
        batch = check_inputs(
            target, neighbor, neighbor_mask, y, in_dim=self.in_dim, n_neighbors=c.n_neighbors, n_genes=self.n_genes
        )
        if section_tokens is None:
            check_sections(section_feats, section_pos, self.in_dim)
            section_tokens = self.encode_sections(section_feats, section_pos)
        else:
            check_section_tokens(section_tokens, c.trunk_width(self.in_dim))
        check_rows(section_of, spot_of, [t.shape[0] for t in section_tokens], batch)
        tokens = self._tokens(target, neighbor, neighbor_mask, section_tokens, section_of, spot_of)
        fused = self.fusion(self.proj(tokens))
        n_target, n_nb = target.shape[1], c.n_neighbors
        z = fused.mean(dim=1)
        out = GeneDMLOutput(
            pred=self.head(z),
            z=z,
            v_local=l2_normalize(fused[:, :n_target].mean(dim=1)),
            v_neighbor=l2_normalize(fused[:, n_target : n_target + n_nb].mean(dim=1)),
            v_global=l2_normalize(fused[:, n_target + n_nb]),
        )
        if y is not None and self.gene_encoder is not None:
            out.g = self.gene_encoder(y)
            if self.cluster_head is not None:
                out.u_image, out.u_gene = self.cluster_head(z), self.cluster_head(out.g)
        return out

    def _tokens(
        self,
        target: torch.Tensor,
        neighbor: torch.Tensor,
        neighbor_mask: torch.Tensor,
        section_tokens: Sequence[torch.Tensor],
        section_of: torch.Tensor,
        spot_of: torch.Tensor,
    ) -> torch.Tensor:
        """Concatenate target, encoded neighbour and gathered global tokens: ``(B, T + grid² + 1, width)``."""
        nb = self.neighbor_encoder(self._trunk(neighbor), neighbor_mask)
        sizes = torch.as_tensor([t.shape[0] for t in section_tokens], device=spot_of.device)
        offsets = torch.cumsum(sizes, 0) - sizes
        rows = offsets[section_of.long()] + spot_of.long()
        glob = torch.cat(list(section_tokens), dim=0)[rows.to(section_tokens[0].device)]
        return torch.cat([self._trunk(target), nb, glob[:, None, :]], dim=1)

    def predict(
        self,
        target: torch.Tensor,
        neighbor: torch.Tensor,
        neighbor_mask: torch.Tensor,
        section_feats: Sequence[torch.Tensor] | None,
        section_pos: Sequence[torch.Tensor] | None,
        section_of: torch.Tensor,
        spot_of: torch.Tensor,
        *,
        section_tokens: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``(B, G)`` prediction without expression input; arguments as in :meth:`forward`.

        Gradient mode and train/eval mode are the caller's (use ``model.eval()`` and ``torch.no_grad()``).
        """
        return self.forward(
            target, neighbor, neighbor_mask, section_feats, section_pos, section_of, spot_of,
            section_tokens=section_tokens,
        ).pred  # fmt: skip
