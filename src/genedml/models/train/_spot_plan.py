"""The Lightning training plan of every trained method (optimiser, schedule, loss terms, validation metric).

`SpotTrainingPlan` trains any network that maps a `SpotBatch` of cached features to predictions (`GeneDML`'s
network, BLEEP's projection heads); `ImageTrainingPlan` is the same plan on batches of pixels (`ImageBatch`) with
an MSE loss (ST-Net's fine-tuned CNN).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from ...dataloaders import ImageBatch, SpotBatch
from .._train_config import TrainConfig

__all__ = ["ImageTrainingPlan", "SpotTrainingPlan", "TrainingDivergedError", "diverged_message", "section_pcc"]


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss, weights or predictions; the model is left as it was before `train`."""


def diverged_message(tc: TrainConfig, *, epoch: int, what: str) -> str:
    """The error text of a diverged run: where it happened and what to change."""
    return (
        f"training diverged at epoch {epoch}: {what} became non-finite (NaN or inf). Lower `lr` (now {tc.lr:g}; try "
        f"{tc.lr / 10:g}), keep `gradient_clip_val` set (now {tc.gradient_clip_val}), and check the targets and "
        "features for NaN/inf. The model was left untrained (its weights as before `train`)."
    )


def section_pcc(pred: np.ndarray, y: np.ndarray, section: np.ndarray) -> tuple[float, float]:
    """Mean over sections of the per-gene Pearson r averaged over genes (NaN-omitting), and the overall MSE."""
    from ...metrics import pearson_per_gene

    pred, y = np.asarray(pred, dtype=np.float64), np.asarray(y, dtype=np.float64)  # no float32 overflow in sums
    pccs = []
    for s in np.unique(section):
        m = section == s
        if m.sum() < 2:
            continue
        r = pearson_per_gene(y[m], pred[m])
        if np.isfinite(r).any():
            pccs.append(np.nanmean(r))
    pcc = float(np.mean(pccs)) if pccs else float("nan")
    return pcc, float(np.mean((pred - y) ** 2))


class SpotTrainingPlan(L.LightningModule):
    """Trains a network that maps a `SpotBatch` to predictions with a loss returning ``LossOutput``.

    Adam with weight decay and a StepLR schedule stepped every epoch; every loss term logged per epoch; validation
    PCC(A) (mean over sections of the mean per-gene Pearson r) for early stopping and the best checkpoint.

    Parameters
    ----------
    net
        ``GeneDMLNet``, or a baseline network with the same forward signature (``BLEEPNet``).
    loss
        Callable ``loss(output, y, generator=...) -> LossOutput`` (``.loss`` tensor, ``.terms`` dict of scalars).
    train_config
        Optimiser and schedule settings.
    """

    def __init__(self, net: torch.nn.Module, loss: torch.nn.Module, train_config: TrainConfig) -> None:
        super().__init__()
        self.net = net
        self.loss_fn = loss
        self.train_config = train_config
        self._val: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._gen = torch.Generator().manual_seed(train_config.seed)

    def training_step(self, batch: SpotBatch, batch_idx: int) -> torch.Tensor:
        """One optimisation step: forward, every loss term, logged per epoch."""
        out = self.net(**batch.inputs(), y=batch.y)
        lo = self.loss_fn(out, batch.y, generator=self._gen)
        bs = len(batch.rows)
        self.log("train_loss", lo.loss.detach(), on_step=False, on_epoch=True, batch_size=bs, prog_bar=True)
        for k, v in lo.terms.items():
            self.log(f"train_{k}", v, on_step=False, on_epoch=True, batch_size=bs)
        return lo.loss

    def validation_step(self, batch: SpotBatch, batch_idx: int) -> None:
        """Collect predictions; the metric is computed per section at the end of the epoch."""
        out = self.net(**batch.inputs())
        self._val.append(
            (
                out.pred.detach().float().cpu().numpy(),
                batch.y.detach().float().cpu().numpy(),
                batch.rows.detach().cpu().numpy(),
            )
        )

    def on_validation_epoch_end(self) -> None:
        """Validation PCC(A) (mean over sections of the mean per-gene r) and MSE."""
        if not self._val:
            return
        pred = np.concatenate([v[0] for v in self._val])
        y = np.concatenate([v[1] for v in self._val])
        rows = np.concatenate([v[2] for v in self._val])
        self._val.clear()
        if not np.isfinite(pred).all():
            what = "the validation predictions"
            raise TrainingDivergedError(diverged_message(self.train_config, epoch=self.current_epoch + 1, what=what))
        section = self.trainer.datamodule.val_data.section[rows] if self._has_dm() else np.zeros(len(rows))
        pcc, mse = section_pcc(pred, y, section)
        self.log("val_pcc", pcc if np.isfinite(pcc) else -1.0, prog_bar=True, sync_dist=False)
        self.log("val_mse", mse, sync_dist=False)

    def _has_dm(self) -> bool:
        return getattr(self.trainer, "datamodule", None) is not None and hasattr(self.trainer.datamodule, "val_data")

    def configure_optimizers(self):
        """Adam + StepLR stepped every epoch."""
        tc = self.train_config
        opt = torch.optim.Adam(self.net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=tc.step_size, gamma=tc.gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


class ImageTrainingPlan(SpotTrainingPlan):
    """`SpotTrainingPlan` (optimiser, schedule, validation PCC(A)) on batches of pixels with the MSE loss (ST-Net).

    ``net`` maps ``uint8`` windows ``(B, H, W, 3)`` to predictions ``(B, G)``; ``loss`` is unused (pass
    ``torch.nn.MSELoss()``), the step computes the MSE itself.
    """

    def training_step(self, batch: ImageBatch, batch_idx: int) -> torch.Tensor:
        """MSE of the fine-tuned CNN's predictions."""
        loss = F.mse_loss(self.net(batch.images), batch.y)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(batch.rows), prog_bar=True)
        return loss

    def validation_step(self, batch: ImageBatch, batch_idx: int) -> None:
        """Collect predictions for the epoch-end PCC(A)."""
        pred = self.net(batch.images)
        self._val.append((pred.detach().float().cpu().numpy(), batch.y.cpu().numpy(), batch.rows.cpu().numpy()))
