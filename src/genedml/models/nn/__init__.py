"""Gene-DML ``nn.Module``s and losses: tensors in, tensors (or a :class:`LossOutput`) out.

Nothing here imports AnnData, SpatialData or Lightning; the network consumes precomputed image-encoder outputs.
"""

from ._blocks import Attention, FeedForward, TransformerEncoder, TransformerLayer, l2_normalize
from ._gene_dml import GeneDMLNet, GeneDMLOutput
from ._global import GlobalEncoder, PositionalEncodingGenerator, grid_index
from ._heads import ClusterHead, FusionBlock, GeneEncoder, PredictionHead
from ._histo_augment import HistoAugmentConfig as HistoAugmentConfig
from ._kmeans import kmeans
from ._losses import (
    GeneDMLLoss,
    LossOutput,
    cluster_accuracy,
    group_instances,
    instance_group_loss,
    regression_loss,
    soft_contrastive_loss,
)
from ._neighbor import NeighborEncoder, RelativePositionBias, relative_offset_index
from ._ssl import SSLConfig as SSLConfig
from ._ssl import SSLNet as SSLNet
from ._ssl import import_lightly as import_lightly

__all__ = [
    "Attention",
    "ClusterHead",
    "FeedForward",
    "FusionBlock",
    "GeneDMLLoss",
    "GeneDMLNet",
    "GeneDMLOutput",
    "GeneEncoder",
    "GlobalEncoder",
    "LossOutput",
    "NeighborEncoder",
    "PositionalEncodingGenerator",
    "PredictionHead",
    "RelativePositionBias",
    "TransformerEncoder",
    "TransformerLayer",
    "cluster_accuracy",
    "grid_index",
    "group_instances",
    "instance_group_loss",
    "kmeans",
    "l2_normalize",
    "regression_loss",
    "relative_offset_index",
    "soft_contrastive_loss",
]
