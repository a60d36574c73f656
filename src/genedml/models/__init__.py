"""Models: ``GeneDML``, configs, encoders (torch; loaded lazily by ``gd.models``)."""

from ..encoders import create_encoder, list_encoders
from ._config import GeneDMLConfig
from ._model import GeneDML
from ._train_config import TrainConfig

__all__ = ["GeneDML", "GeneDMLConfig", "TrainConfig", "create_encoder", "list_encoders"]
