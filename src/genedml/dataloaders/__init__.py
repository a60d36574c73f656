"""Tensors, samplers and splits for training (torch; imported lazily by ``gd.dataloaders``)."""

from ._data import SpotBatch, SpotData
from ._image_data import ImageBatch, ImageSpotData, make_image_collate
from ._sampler import SectionBatchSampler, SpotIndexDataset, make_collate
from ._splits import group_kfold, inner_validation_split, leave_one_group_out
from ._tiles import TissueTiles, tissue_fraction

__all__ = [
    "ImageBatch",
    "ImageSpotData",
    "SectionBatchSampler",
    "SpotBatch",
    "SpotData",
    "SpotIndexDataset",
    "TissueTiles",
    "group_kfold",
    "inner_validation_split",
    "leave_one_group_out",
    "make_collate",
    "make_image_collate",
    "tissue_fraction",
]
