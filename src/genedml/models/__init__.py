"""Models: ``GeneDML``, the baselines, configs, encoders (torch; loaded lazily by ``gd.models``)."""

from ..encoders import create_encoder, list_encoders
from ._config import GeneDMLConfig
from ._model import GeneDML
from ._save_load import CheckpointError
from ._train_config import TrainConfig
from .baselines import (
    ABLATIONS,
    BASELINES,
    METHODS,
    BLEEPBaseline,
    MeanBaseline,
    RidgeBaseline,
    STNetBaseline,
    load_method,
    make_method,
    triplex_config,
)
from .train import TrainingDivergedError

__all__ = [
    "ABLATIONS",
    "BASELINES",
    "METHODS",
    "BLEEPBaseline",
    "CheckpointError",
    "GeneDML",
    "GeneDMLConfig",
    "MeanBaseline",
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
