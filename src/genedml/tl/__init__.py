"""Tools: fit, predict, evaluate, cross-validate (``gd.tl``); torch loads only inside the functions."""

from ._cv import CVResult, cross_validate
from ._ensemble import EnsembleModel
from ._evaluate import evaluate
from ._fit import fit, predict
from ._get import get_predicted
from ._uncertainty import calibrate

__all__ = [
    "CVResult",
    "EnsembleModel",
    "calibrate",
    "cross_validate",
    "evaluate",
    "fit",
    "get_predicted",
    "predict",
]
