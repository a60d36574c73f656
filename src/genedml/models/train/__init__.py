"""Lightning training: plan, data module, trainer construction."""

from ._datamodule import SpotDataModule
from ._plan import GeneDMLPlan, TrainingDivergedError, section_pcc
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
    "TrainingDivergedError",
    "build_trainer",
    "run_fit",
    "section_pcc",
]
