"""Lightning training: plan, data module, trainer construction.

``TrainingDivergedError`` is importable here too; it is documented once, as `genedml.models.TrainingDivergedError`.
"""

from ._datamodule import SpotDataModule
from ._plan import GeneDMLPlan, section_pcc
from ._plan import TrainingDivergedError as TrainingDivergedError
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
    "GeneDMLPlan",
    "HistoryCallback",
    "SpotDataModule",
    "build_trainer",
    "run_fit",
    "section_pcc",
]
