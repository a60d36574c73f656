"""Models: ``GeneDML``, the baselines, configs, encoders (torch; loaded lazily by ``gd.models``)."""

from ..encoders import create_encoder, list_encoders
from ._config import GeneDMLConfig
from ._ensemble import EnsembleModel
from ._model import GeneDML
from ._predictor import Predictor
from ._registry import ABLATIONS, BASELINES, METHODS, load_method, make_method, triplex_config
from ._save_load import CheckpointError
from ._train_config import TrainConfig
from .baselines import BLEEPBaseline, MeanBaseline, RidgeBaseline, STNetBaseline
from .train import TrainingDivergedError

__all__ = [
    "ABLATIONS",
    "BASELINES",
    "METHODS",
    "BLEEPBaseline",
    "CheckpointError",
    "EnsembleModel",
    "GeneDML",
    "GeneDMLConfig",
    "MeanBaseline",
    "Predictor",
    "RidgeBaseline",
    "STNetBaseline",
    "TrainConfig",
    "TrainingDivergedError",
    "create_encoder",
    "list_encoders",
    "load_method",
    "make_method",
    "triplex_config",
]
