"""`NetworkModel`: what the methods trained as one torch network share — the end of a fit, readiness, state.

`GeneDML`, `BLEEPBaseline` and `STNetBaseline` each build a network, a loss and a data module; everything after
that is written once here: Lightning's fit through `genedml.models.train.run_fit`, the best-validation weights back
on the CPU in eval mode, the history and fit record, the validation gene ranking, and the state a checkpoint holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._utils import resolve_progress

if TYPE_CHECKING:
    import lightning as L
    import torch

    from .train import FitResult

__all__ = ["NetworkModel"]


class NetworkModel:
    """Mixin of `SpotModel` subclasses whose fitted state is one torch network, ``net``, trained with Lightning.

    A subclass sets ``self.net = None`` in ``__init__``, builds the network in ``_after_setup`` and implements
    `_empty_net` (the untrained network a checkpoint's state is loaded into). Its ``train`` hands its plan class,
    loss and data module class to `_fit_net`.
    """

    net: torch.nn.Module | None

    def _fit_net(
        self,
        plan: type[L.LightningModule],
        loss: torch.nn.Module,
        datamodule: type[L.LightningDataModule],
        *,
        progress: bool | None,
    ) -> FitResult:
        """Fit ``net`` with ``plan(net, loss, train_config)`` on ``datamodule(train, validation, train_config)``.

        Afterwards ``net`` holds the best-validation weights, on the CPU, in eval mode; ``history_`` holds one row
        per epoch, ``fit_info_`` the best epoch, its validation PCC(A), the epochs run and the validation gene
        ranking (``"hpg"``), and the model is trained. Before `setup` it raises ``RuntimeError``; a diverged fit
        raises `genedml.models.TrainingDivergedError` and leaves the model as it was.
        """
        from .train import run_fit

        if self._train_data is None or self.net is None:
            raise RuntimeError("call `setup(sdata, ...)` before `train()`.")
        fitted = plan(self.net, loss, self.train_config)
        dm = datamodule(self._train_data, self._val_data, self.train_config)
        res = run_fit(fitted, dm, self.train_config, progress=resolve_progress(progress))
        self.net = fitted.net.cpu().eval()
        self.history_ = res.history
        self.fit_info_.update(
            {"best_epoch": res.best_epoch, "best_val_pcc": res.best_val_pcc, "epochs_run": res.epochs_run}
        )
        self.fit_info_["hpg"] = self._validation_hpg()
        self.is_trained_ = True
        return res

    def is_ready(self) -> bool:
        """Whether `predict` can run: trained (or loaded) and not left half-trained by a failed `train`."""
        return self.net is not None and self.is_trained_ and self.genes_ is not None

    def _state(self) -> dict[str, torch.Tensor]:
        """The network's weights, detached, on the CPU (checkpoint and model hash)."""
        return {k: v.detach().cpu() for k, v in self.net.state_dict().items()}

    def _set_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a checkpoint's ``state`` into a freshly built network, in eval mode."""
        self._empty_net(state)
        self.net.load_state_dict(state)
        self.net.eval()

    def _empty_net(self, state: dict[str, torch.Tensor]) -> None:
        """Build ``self.net`` untrained, shaped to receive ``state``."""
        raise NotImplementedError
