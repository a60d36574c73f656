"""Baselines in the Gene-DML harness: same genes, targets, features, protocol and metrics as `GeneDML`."""

from ._bleep import BLEEPBaseline
from ._common import Baseline
from ._linear import MeanBaseline, RidgeBaseline
from ._stnet import STNetBaseline

__all__ = [
    "BLEEPBaseline",
    "Baseline",
    "MeanBaseline",
    "RidgeBaseline",
    "STNetBaseline",
]
