"""Tools: fit, predict, evaluate, cross-validate (``gd.tl``); torch loads only inside the functions."""

from ._evaluate import evaluate
from ._fit import fit, predict
from ._get import get_predicted

__all__ = ["evaluate", "fit", "get_predicted", "predict"]
