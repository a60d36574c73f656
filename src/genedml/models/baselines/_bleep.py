"""BLEEP: contrastive image–expression embedding, prediction by retrieval from the training spots."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..._validators import assert_in_range, assert_positive_int
from .._network import NetworkModel
from .._train_config import TrainConfig
from ._common import Baseline, as_bool

if TYPE_CHECKING:
    import torch

    from ...dataloaders import SpotData

__all__ = ["BLEEPBaseline"]


class BLEEPBaseline(NetworkModel, Baseline):
    """BLEEP (Xie et al., NeurIPS 2023) on the cached frozen pooled features.

    Two projection heads map the spot's pooled image feature and its expression profile to a shared 256-d space;
    they are trained with BLEEP's symmetric soft-target contrastive loss (temperature 1). A spot is predicted by
    retrieval: the plain average of the expression of the ``top_k`` training spots whose expression embedding is
    most cosine-similar to its image embedding (BLEEP's "average" rule, ``k = 50``). Training runs with Lightning
    through the Gene-DML plan; early stopping and the checkpoint follow the validation PCC(A) of the retrieved
    predictions (BLEEP keeps the lowest validation loss).

    **Deviations from the paper:** BLEEP fine-tunes a ResNet50 end to end; here the image side is the frozen
    encoder shared by every frozen-feature method, and only the projection heads train. The optimiser is Adam with
    L2 weight decay (BLEEP: AdamW), at BLEEP's learning rate and decay by default.

    Parameters
    ----------
    train_config
        A `TrainConfig` or dict (epochs, batch size, patience, protocol, seed …).
    top_k
        Retrieved training spots averaged per prediction.
    dim, dropout
        Projection width and dropout.
    temperature
        Contrastive temperature.
    lr, weight_decay
        Replace ``train_config``'s values (BLEEP: 1e-3 and 1e-3); ``None`` keeps ``train_config``'s.
    use_val
        Under ``protocol="clean"``, add the inner-validation spots to the retrieval bank after training (they are
        training data). Never under ``protocol="paper"``.
    **encoder_kwargs
        Encoder settings of `SpotModel`.

    Examples
    --------
    >>> import genedml as gd
    >>> from genedml.models import BLEEPBaseline
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> model = BLEEPBaseline({"max_epochs": 1, "batch_size": 32}, top_k=5, encoder="test_resnet",
    ...                       pretrained=False, target_px=32).setup(sdata, n_top_genes=10).train(progress=False)
    >>> model.fit_info_["bank_size"], model.predict(sdata).shape  # retrieval bank: every training spot
    (98, (98, 10))
    """

    method = "bleep"
    param_names = ("top_k", "dim", "dropout", "temperature", "lr", "weight_decay", "use_val")

    def __init__(
        self,
        train_config: TrainConfig | dict | None = None,
        *,
        top_k: int = 50,
        dim: int = 256,
        dropout: float = 0.1,
        temperature: float = 1.0,
        lr: float | None = 1e-3,
        weight_decay: float | None = 1e-3,
        use_val: bool = True,
        **encoder_kwargs: Any,
    ) -> None:
        super().__init__(train_config, **encoder_kwargs)
        assert_positive_int(top_k, name="top_k")
        assert_positive_int(dim, name="dim")
        assert_in_range(dropout, name="dropout", low=0.0, high=1.0)
        assert_in_range(temperature, name="temperature", low=0.0, inclusive=False)
        self.top_k, self.dim, self.dropout, self.temperature = top_k, dim, float(dropout), float(temperature)
        self.lr, self.weight_decay = lr, weight_decay
        changes = {k: v for k, v in (("lr", lr), ("weight_decay", weight_decay)) if v is not None}
        if changes:
            self.train_config = TrainConfig.from_dict({**self.train_config.to_dict(), **changes})
        self.use_val = as_bool(use_val, "use_val")
        self.net = None

    def _after_setup(self) -> None:
        self._build_net(0)
        self._set_bank([self._train_data])

    def _build_net(self, bank_size: int) -> None:
        from ..nn._baselines import BLEEPNet

        self.net = BLEEPNet(
            self.in_dim_, len(self.genes_), dim=self.dim, dropout=self.dropout, top_k=self.top_k, bank_size=bank_size
        )

    def _set_bank(self, parts: list[SpotData]) -> None:
        import torch

        self.net.set_bank(torch.from_numpy(np.concatenate([p.y for p in parts]).astype(np.float32)))

    def train(self, *, progress: bool | None = None) -> BLEEPBaseline:
        """Train the projection heads (Lightning, early stopping on validation PCC(A)), then fill the bank."""
        from ..nn._baselines import BLEEPLoss
        from ..train import SpotDataModule, SpotTrainingPlan

        # the validation gene ranking is taken with the bank = training spots only: validation stays held out
        self._fit_net(SpotTrainingPlan, BLEEPLoss(self.temperature), SpotDataModule, progress=progress)
        self._set_bank(self._fit_parts(self.use_val))
        self.fit_info_["bank_size"] = int(self.net.bank.shape[0])
        return self

    def _predict_data(self, data: SpotData) -> np.ndarray:
        import torch

        from ..nn._baselines import retrieve_mean

        net = self.net.eval()
        feats = torch.from_numpy(np.ascontiguousarray(data.global_feats, dtype=np.float32))
        out = np.zeros((len(data), len(self.genes_)), dtype=np.float32)
        with torch.inference_mode():
            keys = net.bank_embeddings()
            for i in range(0, len(data), 4096):
                pred, _ = retrieve_mean(net.image_proj(feats[i : i + 4096]), keys, net.bank, k=net.top_k)
                out[i : i + 4096] = pred.numpy()
        return out

    def _empty_net(self, state: dict[str, torch.Tensor]) -> None:
        self._build_net(int(state["bank"].shape[0]))
