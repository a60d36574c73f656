"""Lightning training: plan, data module, trainer construction.

``TrainingDivergedError`` is importable here too; it is documented once, as `genedml.models.TrainingDivergedError`.
"""

from ._datamodule import SpotDataModule
from ._plan import GeneDMLPlan, section_pcc
from ._plan import TrainingDivergedError as TrainingDivergedError
from ._trainer import (
    DivergenceCheck,
    FitResult,
    HistoryCallback,
    build_trainer,
    run_fit,
)

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
