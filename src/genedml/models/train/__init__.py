"""Lightning training of every method: plans, data modules, trainer construction.

``TrainingDivergedError`` is importable here too; it is documented once, as `genedml.models.TrainingDivergedError`.
"""

from ._datamodule import ImageDataModule, SpotDataModule
from ._spot_plan import ImageTrainingPlan, SpotTrainingPlan, section_pcc
from ._spot_plan import TrainingDivergedError as TrainingDivergedError
from ._ssl import SSLHistory as SSLHistory
from ._ssl import SSLPlan as SSLPlan
from ._ssl import TileDataModule as TileDataModule
from ._ssl import build_ssl_trainer as build_ssl_trainer
from ._trainer import (
    DivergenceCheck,
    FitResult,
    HistoryCallback,
    build_trainer,
    run_fit,
)
from ._trainer import quiet_lightning as quiet_lightning

__all__ = [
    "DivergenceCheck",
    "FitResult",
    "HistoryCallback",
    "ImageDataModule",
    "ImageTrainingPlan",
    "SpotDataModule",
    "SpotTrainingPlan",
    "build_trainer",
    "run_fit",
    "section_pcc",
]
