"""Tools: fit, predict, evaluate, cross-validate (``gd.tl``); torch loads only inside the functions."""

from ..features import embed
from ._cv import CVResult, cross_validate
from ._ensemble import EnsembleModel
from ._evaluate import evaluate
from ._fit import fit
from ._get import get_predicted
from ._predict import predict
from ._pretrain import PretrainResult, pretrain_encoder
from ._uncertainty import calibrate

__all__ = [
    "CVResult",
    "EnsembleModel",
    "PretrainResult",
    "calibrate",
    "cross_validate",
    "embed",
    "evaluate",
    "fit",
    "get_predicted",
    "predict",
    "pretrain_encoder",
]
