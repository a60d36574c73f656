"""Lightning training: plan, data module, trainer construction."""

from ._datamodule import SpotDataModule
from ._plan import GeneDMLPlan, section_pcc
from ._trainer import FitResult, HistoryCallback, build_trainer, run_fit

__all__ = ["FitResult", "GeneDMLPlan", "HistoryCallback", "SpotDataModule", "build_trainer", "run_fit", "section_pcc"]
