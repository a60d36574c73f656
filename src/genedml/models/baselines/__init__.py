"""Baselines in the Gene-DML harness: same genes, targets, features, protocol and metrics as `GeneDML`."""

from ._bleep import BLEEPBaseline
from ._common import Baseline
from ._linear import MeanBaseline, RidgeBaseline
from ._registry import ABLATIONS, BASELINES, METHODS, load_method, make_method, triplex_config
from ._stnet import STNetBaseline

__all__ = [
    "ABLATIONS",
    "BASELINES",
    "METHODS",
    "BLEEPBaseline",
    "Baseline",
    "MeanBaseline",
    "RidgeBaseline",
    "STNetBaseline",
    "load_method",
    "make_method",
    "triplex_config",
]
