"""Tools: fit, predict, evaluate, cross-validate (``gd.tl``); torch loads only inside the functions."""

from ..features import embed
from ._cv import CVResult, cross_validate
from ._evaluate import evaluate
from ._fit import fit
from ._get import get_predicted
from ._predict import predict
from ._pretrain import PretrainResult, pretrain_encoder
from ._slides import predict_slides
from ._uncertainty import calibrate

__all__ = [
    "CVResult",
    "PretrainResult",
    "calibrate",
    "cross_validate",
    "embed",
    "evaluate",
    "fit",
    "get_predicted",
    "predict",
    "predict_slides",
    "pretrain_encoder",
]


def __getattr__(name: str):
    # `gd.tl.EnsembleModel` is `gd.models.EnsembleModel` (its home), resolved on use: `import genedml` loads no torch
    if name == "EnsembleModel":
        from ..models import EnsembleModel

        return EnsembleModel
    raise AttributeError(f"module 'genedml.tl' has no attribute {name!r}")
