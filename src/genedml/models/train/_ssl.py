"""Lightning plan, data module and trainer for self-supervised encoder adaptation (``gd.tl.pretrain_encoder``)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar

from ..nn._histo_augment import HistoAugment, HistoAugmentConfig
from ..nn._ssl import SSLNet

__all__ = ["SSLHistory", "SSLPlan", "TileDataModule", "build_ssl_trainer"]


class TileDataModule(L.LightningDataModule):
    """A fresh, seeded sample of ``tiles_per_epoch`` tiles each epoch (``sample(n, seed=seed + epoch)``).

    Reloaded every epoch by the trainer, so a resumed run draws the same tiles as an uninterrupted one.
    """

    def __init__(self, sample: Callable[..., np.ndarray], *, tiles_per_epoch: int, batch_size: int, seed: int) -> None:
        super().__init__()
        self.sample = sample
        self.tiles_per_epoch = int(tiles_per_epoch)
        self.batch_size = int(batch_size)
        self.seed = int(seed)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        """Tiles of the current epoch as ``uint8`` tensors, shuffled with the epoch's seed."""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        tiles = torch.from_numpy(self.sample(self.tiles_per_epoch, seed=self.seed + 1000003 * epoch))
        gen = torch.Generator().manual_seed(self.seed + epoch)
        ds = torch.utils.data.TensorDataset(tiles)
        return torch.utils.data.DataLoader(ds, batch_size=self.batch_size, shuffle=True, drop_last=True, generator=gen)


class SSLPlan(L.LightningModule):
    """Optimiser, schedules and augmentation around an :class:`~genedml.models.nn.SSLNet`.

    Parameters
    ----------
    net
        Backbone with heads and loss.
    mean, std
        The encoder's input normalisation (its timm pretrained config).
    lr, weight_decay
        AdamW settings; the learning rate follows a cosine schedule over ``max_epochs``.
    max_epochs
        Length of the schedules (learning rate, teacher momentum) …
    max_minutes
        … or this wall-clock budget, whichever runs out first: the schedules follow the larger fraction done and
        training stops when the budget is spent (so a slow machine still ends its schedule).
    augment
        Augmentation strengths.
    hparams
        Extra hyper-parameters stored in the checkpoint (encoder, geometry, seed) and checked on resume.
    """

    def __init__(
        self,
        net: SSLNet,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        lr: float,
        weight_decay: float,
        max_epochs: int,
        augment: HistoAugmentConfig,
        hparams: dict[str, Any],
        max_minutes: float | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(hparams)
        self.net = net
        self.augment = HistoAugment(augment)
        self.lr, self.weight_decay, self.max_epochs = float(lr), float(weight_decay), int(max_epochs)
        self.max_seconds = None if max_minutes is None else 60.0 * float(max_minutes)
        self._t_start = time.monotonic()
        self._elapsed = 0.0  # wall seconds of the runs before a resume
        self._total: int | None = None
        self.register_buffer("_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def _views(self, tiles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = tiles.float().div_(255.0)
        return tuple((self.augment(x) - self._mean) / self._std for _ in range(2))

    def progress(self) -> float:
        """Fraction of training done: steps of ``max_epochs``, or of the wall budget when that is further along."""
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._total is None else self._total
        done = self.global_step / total
        if self.max_seconds is not None:
            done = max(done, (self._elapsed + time.monotonic() - self._t_start) / self.max_seconds)
        return min(done, 1.0)

    def _lr_factor(self, _step: int) -> float:
        """Cosine decay from 1 to 0.01 over :meth:`progress`."""
        if self._trainer is None:
            return 1.0
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * self.progress()))

    def _momentum(self) -> float:
        """BYOL/DINO teacher momentum: cosine from ``config.momentum`` to 1 over :meth:`progress`."""
        m0 = self.net.config.momentum
        return 1.0 - (1.0 - m0) * 0.5 * (1.0 + math.cos(math.pi * self.progress()))

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Two augmented views → loss; the momentum copy follows the online network first (BYOL, DINO)."""
        self.net.momentum_update(self._momentum())
        v0, v1 = self._views(batch[0])
        loss = self.net(v0, v1, epoch=self.current_epoch)
        self.log("loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=v0.shape[0])
        return loss

    def on_after_backward(self) -> None:
        """DINO's last-layer freeze."""
        self.net.after_backward(self.current_epoch)

    def on_train_epoch_start(self) -> None:
        """One random stream per epoch for the augmentations: a resumed run draws what an uninterrupted one would."""
        torch.manual_seed(int(self.hparams.get("seed", 0)) * 1000003 + self.current_epoch)

    def on_train_start(self) -> None:
        """Start the wall clock; the schedules span this run's ``max_epochs`` (a resume may extend them)."""
        self._t_start = time.monotonic()
        self._total = max(1, int(self.trainer.estimated_stepping_batches))

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Stop when the wall budget is spent."""
        if self.max_seconds is not None and self.progress() >= 1.0:
            self.trainer.should_stop = True

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the wall time spent so far, so a resumed run honours the same budget."""
        checkpoint["genedml_elapsed_s"] = self._elapsed + time.monotonic() - self._t_start

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another encoder, method, tile geometry or seed."""
        saved = checkpoint.get("hyper_parameters", {})
        diff = {k: (saved.get(k), v) for k, v in self.hparams.items() if saved.get(k) != v}
        if diff:
            shown = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"`resume`: the checkpoint was made with other settings ({shown}).")
        self._elapsed = float(checkpoint.get("genedml_elapsed_s", 0.0))

    def configure_optimizers(self) -> dict:
        """AdamW on the trainable parameters; the learning rate decays on a cosine over :meth:`progress`."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self._lr_factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class SSLHistory(Callback):
    """Per-epoch mean loss, tiles per second, wall and CPU seconds, learning rate (kept across a resume)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._t0 = self._c0 = 0.0
        self._n = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the epoch's clock."""
        self._t0, self._c0, self._n = time.perf_counter(), time.process_time(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        """Count the tiles trained on (an epoch cut short by ``max_time`` counts what it ran)."""
        self._n += int(batch[0].shape[0])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record the epoch."""
        secs, cpu = time.perf_counter() - self._t0, time.process_time() - self._c0
        n = self._n
        loss = trainer.callback_metrics.get("loss")
        self.rows.append(
            {
                "epoch": int(trainer.current_epoch),
                "loss": float(loss) if loss is not None else float("nan"),
                "tiles": n,
                "tiles_per_s": n / secs if secs > 0 else float("nan"),
                "seconds": secs,
                "cpu_seconds": cpu,
                "lr": float(trainer.optimizers[0].param_groups[0]["lr"]),
            }
        )

    def state_dict(self) -> dict:
        """Rows so far (saved in Lightning checkpoints)."""
        return {"rows": list(self.rows)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the rows of the epochs before a resume."""
        self.rows = list(state_dict.get("rows", []))


def build_ssl_trainer(
    *,
    max_epochs: int,
    ckpt_dir: Path,
    accelerator: str,
    precision: str,
    progress: bool,
    history: SSLHistory,
) -> L.Trainer:
    """A trainer that checkpoints every epoch to ``ckpt_dir/last.ckpt`` and redraws the tiles every epoch."""
    # one file, replaced after every epoch (Lightning writes `save_last` only next to a top-k checkpoint)
    ckpt = ModelCheckpoint(
        dirpath=str(ckpt_dir), filename="last", save_top_k=1, every_n_epochs=1, enable_version_counter=False
    )
    callbacks: list[Callback] = [history, ckpt]
    if progress:
        callbacks.append(TQDMProgressBar(leave=False))
    return L.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        enable_checkpointing=True,
        reload_dataloaders_every_n_epochs=1,
        deterministic=accelerator == "cpu",
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        default_root_dir=str(ckpt_dir),
    )
