"""Build the Lightning `Trainer` and run a fit that ends on the best-validation weights."""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar

from ..._logging import logger
from ..._utils import LOG_INTERVAL_S, is_terminal
from .._train_config import TrainConfig
from ._spot_plan import TrainingDivergedError, diverged_message

__all__ = ["DivergenceCheck", "FitResult", "HistoryCallback", "TrainingDivergedError", "build_trainer", "run_fit"]


# Lightning's start-up banners ("GPU available: False …", "TPU available …", a LitLogger advert) go through these
# loggers at INFO; genedml shows them only when its own logger is at DEBUG.
_LIGHTNING_BANNER_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's INFO banners and its pytree ``LeafSpec`` deprecation notice for the enclosed block."""
    loggers = [logging.getLogger(n) for n in _LIGHTNING_BANNER_LOGGERS]
    levels = [lg.level for lg in loggers]
    if not logger.isEnabledFor(logging.DEBUG):
        for lg in loggers:
            lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            # Lightning's own helper calls a torch API that recent torch deprecates; nothing a user can act on.
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class HistoryCallback(Callback):
    """Per-epoch record of every logged loss term and metric (``history_`` on the model)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Append this epoch's metrics (after validation has run, Lightning calls this last)."""
        row = {"epoch": trainer.current_epoch}
        for k, v in trainer.callback_metrics.items():
            row[k] = float(v.detach().cpu()) if torch.is_tensor(v) else float(v)
        row["lr"] = float(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else np.nan
        self.rows.append(row)


class DivergenceCheck(Callback):
    """Stop at the first optimisation step whose loss or resulting weights are not finite (NaN or ±inf).

    Under fp16 mixed precision the gradient scaler skips steps whose gradients overflow, so a non-finite loss is
    tolerated there for up to ``fp16_tolerance`` consecutive steps while the weights stay finite.
    """

    def __init__(self, tc: TrainConfig, *, fp16: bool = False, fp16_tolerance: int = 10) -> None:
        self.tc = tc
        self.tolerance = fp16_tolerance if fp16 else 0
        self.bad_steps = 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int):
        """Check this step's loss and the weights it left."""
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        loss_ok = loss is None or bool(torch.isfinite(loss.detach()).all())
        params = [p.detach() for p in pl_module.parameters() if p.requires_grad]
        weights_ok = not params or bool(torch.stack([torch.isfinite(p).all() for p in params]).all())
        self.bad_steps = 0 if loss_ok else self.bad_steps + 1
        if weights_ok and self.bad_steps <= self.tolerance:
            return
        what = "the training loss" if not loss_ok else "the weights"
        msg = diverged_message(self.tc, epoch=trainer.current_epoch + 1, what=f"{what} (batch {batch_idx + 1})")
        raise TrainingDivergedError(msg)


class EpochLines(Callback):
    """Progress as plain lines (for a log file): epoch, metrics, elapsed and estimated time left, every few seconds.

    The estimate assumes ``max_epochs`` (early stopping can only shorten it) at the mean epoch time so far.
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._t0 = self._last = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import time

        self._t0 = time.monotonic()
        self._last = -float("inf")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import sys
        import time

        now, epoch, total = time.monotonic(), trainer.current_epoch + 1, trainer.max_epochs or 0
        if now - self._last < self.interval_s and epoch < total:
            return
        self._last = now
        per_epoch = (now - self._t0) / epoch
        metrics = ", ".join(
            f"{k} {float(v):.3f}" for k, v in sorted(trainer.callback_metrics.items()) if k in ("train_loss", "val_pcc")
        )
        left = f", at most ~{per_epoch * (total - epoch):.0f} s left" if total > epoch else ""
        sys.stderr.write(f"training: epoch {epoch}/{total} ({metrics}); {now - self._t0:.0f} s elapsed{left}\n")
        sys.stderr.flush()


def _precision(tc: TrainConfig, accelerator: str) -> str:
    if tc.precision is not None:
        return tc.precision
    # AMP only on GPU: bf16/fp16 autocast is far slower than fp32 on CPUs.
    return "16-mixed" if accelerator in ("gpu", "cuda") else "32-true"


def _accelerator(tc: TrainConfig) -> str:
    if tc.accelerator != "auto":
        return tc.accelerator
    return "gpu" if torch.cuda.is_available() else "cpu"


def build_trainer(
    tc: TrainConfig, *, has_val: bool, progress: bool, ckpt_dir: str, history: HistoryCallback
) -> tuple[L.Trainer, ModelCheckpoint | None]:
    """A `Trainer` with early stopping and best checkpointing on ``val_pcc`` (when there is validation data)."""
    acc = _accelerator(tc)
    precision = _precision(tc, acc)
    callbacks: list[Callback] = [history, DivergenceCheck(tc, fp16=str(precision).startswith("16"))]
    ckpt = None
    if has_val:
        ckpt = ModelCheckpoint(dirpath=ckpt_dir, monitor="val_pcc", mode="max", save_top_k=1, save_weights_only=True)
        callbacks.append(ckpt)
        if tc.patience is not None:
            callbacks.append(EarlyStopping(monitor="val_pcc", mode="max", patience=tc.patience, check_finite=False))
    bar = progress and is_terminal()
    if bar:
        callbacks.append(TQDMProgressBar(leave=False))
    elif progress:  # output to a file or pipe: lines every few seconds, not a redrawn bar
        callbacks.append(EpochLines(LOG_INTERVAL_S))
    kwargs = dict(
        accelerator=acc,
        devices=tc.devices,
        strategy=tc.strategy,
        precision=precision,
        max_epochs=tc.max_epochs,
        min_epochs=min(tc.min_epochs, tc.max_epochs),
        gradient_clip_val=tc.gradient_clip_val,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=bar,
        enable_model_summary=False,
        enable_checkpointing=has_val,
        deterministic=acc == "cpu",
        use_distributed_sampler=False,
        log_every_n_steps=tc.log_every_n_steps,
        num_sanity_val_steps=0,
        default_root_dir=ckpt_dir,
    )
    kwargs.update(tc.extra_trainer_kwargs)
    return L.Trainer(**kwargs), ckpt


@dataclass
class FitResult:
    """What a fit leaves behind."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_pcc: float | None = None
    epochs_run: int = 0
    stopped_early: bool = False
    world_size: int = 1


_FIT_DIR_ENV = "GENEDML_FIT_DIR"


def run_fit(plan: L.LightningModule, dm: L.LightningDataModule, tc: TrainConfig, *, progress: bool) -> FitResult:
    """Fit, then load the best-validation weights into ``plan.net`` on every rank.

    ``plan`` is a `SpotTrainingPlan` (or `ImageTrainingPlan`); ``dm`` a data module with a ``val_data`` attribute
    (`SpotDataModule`, `ImageDataModule`).

    Under Lightning's ``"ddp"`` strategy the script is re-executed once per extra process; the checkpoint folder is
    handed to those processes through an environment variable so every rank restores the same best weights.
    """
    import os

    L.seed_everything(tc.seed, workers=True, verbose=False)
    history = HistoryCallback()
    inherited = os.environ.get(_FIT_DIR_ENV)
    tmp = None if inherited else tempfile.TemporaryDirectory(prefix="genedml-fit-")
    ckpt_dir = inherited or tmp.name
    os.environ[_FIT_DIR_ENV] = ckpt_dir
    # restored if training diverges: weights and each module's train/eval mode
    initial = {k: v.detach().clone() for k, v in plan.state_dict().items()}
    modes = [(m, m.training) for m in plan.modules()]
    try:
        with quiet_lightning():
            trainer, ckpt = build_trainer(
                tc, has_val=dm.val_data is not None, progress=progress, ckpt_dir=ckpt_dir, history=history
            )
        with quiet_lightning(), warnings.catch_warnings():
            # Our loaders are in-memory tensors: worker processes would only add start-up cost.
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*The number of training batches.*")
            try:
                trainer.fit(plan, datamodule=dm)
            except TrainingDivergedError:
                plan.cpu()
                plan.load_state_dict({k: v.cpu() for k, v in initial.items()})
                for m, mode in modes:
                    m.training = mode
                raise
        del initial, modes
        res = FitResult(history=history.rows, epochs_run=trainer.current_epoch)
        if ckpt is not None and ckpt.best_model_path:
            state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
            plan.load_state_dict(state)
            res.best_val_pcc = float(ckpt.best_model_score) if ckpt.best_model_score is not None else None
            vals = [r.get("val_pcc", -np.inf) for r in history.rows]
            res.best_epoch = int(np.argmax(vals)) if vals else None
        trainer.strategy.barrier("genedml-restored")  # no rank may delete the folder while another still reads it
        res.stopped_early = trainer.current_epoch < tc.max_epochs
        res.world_size = trainer.world_size
        logger.info(
            "trained %d epoch(s) on %d process(es); best val PCC %s at epoch %s",
            res.epochs_run,
            trainer.world_size,
            res.best_val_pcc,
            res.best_epoch,
        )
    finally:
        if tmp is not None:
            os.environ.pop(_FIT_DIR_ENV, None)
            tmp.cleanup()
    return res
