"""`GeneDML`: the user-facing model — setup from SpatialData, train, predict, save, load."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._base import SpotModel, feature_spec_from_record
from ._config import GeneDMLConfig, as_config
from ._network import NetworkModel
from ._train_config import TrainConfig

if TYPE_CHECKING:
    from ..dataloaders import SpotData

__all__ = ["GeneDML"]


class GeneDML(NetworkModel, SpotModel):
    """Gene-DML: dual-pathway multi-level discrimination for spot expression from H&E.

    Three layers (house style): the tensor-only network (`genedml.models.nn.GeneDMLNet`), the Lightning plan
    (`genedml.models.train.SpotTrainingPlan`), and this class, which owns the SpatialData side.

    Parameters
    ----------
    config
        Architecture and loss settings: a `GeneDMLConfig`, a preset name (``"her2st"``, ``"stnet"``, ``"skinst"``,
        ``"cpu"``) or a dict.
    train_config
        A `TrainConfig` or a dict of its fields.
    features
        The features' recipe: a `genedml.features.FeatureSpec` or an encoder name; ``None``: ``FeatureSpec()``.
    **feature_kwargs
        `FeatureSpec` fields overriding those of ``features`` (``encoder``, ``pretrained``, ``weights``,
        ``target_px``, ``target_um``, ``target_mpp``, ``dihedral``, ``neighbor_grid``, ``dtype``, ``device``;
        ``embed_batch_size`` is its ``batch_size``).

    Examples
    --------
    >>> import genedml as gd
    >>> from genedml.models import GeneDML
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> model = GeneDML("cpu", {"max_epochs": 1, "batch_size": 32}, encoder="test_resnet", pretrained=False)
    >>> model = model.setup(sdata, n_top_genes=20).train()
    >>> pred = model.predict(sdata)
    """

    def __init__(
        self,
        config: GeneDMLConfig | str | dict | None = None,
        train_config: TrainConfig | dict | None = None,
        *,
        features: Any = None,
        **feature_kwargs: Any,
    ) -> None:
        super().__init__(train_config, features=features, **feature_kwargs)
        self.config = as_config(config)
        self.net = None

    def _check_before_writes(self, *, n_train: int) -> None:
        _check_k(self.config, self.train_config, n_train)

    def _after_setup(self) -> None:
        import torch

        _check_k(self.config, self.train_config, len(self._train_data))
        self._build_net()
        # Start the regression head at the training mean (as ST-Net-style heads are often initialised): the network
        # then learns deviations from the mean instead of spending its first epochs on the offset, which matters on
        # small datasets with few optimisation steps. A documented deviation from the released code.
        with torch.no_grad():
            self.net.head[-1].bias.copy_(torch.from_numpy(self._train_data.y.mean(axis=0)))
        # Standardise the frozen features with training statistics (pooled features of the training spots).
        feats = np.asarray(self._train_data.global_feats, dtype=np.float64)
        self.net.set_feature_stats(torch.from_numpy(feats.mean(axis=0)), torch.from_numpy(feats.std(axis=0) + 1e-6))

    def _build_net(self) -> None:
        import torch

        from .nn import GeneDMLNet

        torch.manual_seed(self.train_config.seed)  # same seed → same initial weights → same model

        self.net = GeneDMLNet(self.config, in_dim=self.in_dim_, n_genes=len(self.genes_))

    # ------------------------------------------------------------------------------------------------- train
    def train(self, *, progress: bool | None = None) -> GeneDML:
        """Train with Lightning (early stopping on validation PCC(A); the best weights are restored)."""
        from .nn import GeneDMLLoss
        from .train import SpotDataModule, SpotTrainingPlan

        self._fit_net(SpotTrainingPlan, GeneDMLLoss(self.config), SpotDataModule, progress=progress)
        return self

    def _predict_data(self, data: SpotData) -> np.ndarray:
        out = np.empty((len(data), len(self.genes_)), dtype=np.float32)
        for rows, pred in self._iter_predict(data):
            out[rows] = pred
        return out

    def _iter_predict(self, data: SpotData, *, chunk: int | None = None, bar=None):
        """Predictions chunk by chunk, in bounded memory (see `genedml.models._stream`)."""
        from ._stream import CHUNK_SPOTS, iter_predictions

        return iter_predictions(self.net, data, chunk=chunk or CHUNK_SPOTS, bar=bar)

    # ------------------------------------------------------------------------------------------------- save/load
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """One self-describing file: weights, configs, ordered genes, recipe, encoder id + weights hash, version."""
        from ._save_load import write_checkpoint

        if self.net is None:
            raise RuntimeError("nothing to save: the model has no network yet.")
        state = self._state()
        payload = self._payload(state, config=self.config.to_dict(), is_trained=self.is_trained_, state_dict=state)
        return write_checkpoint(path, payload, overwrite=overwrite)

    @classmethod
    def _from_checkpoint(cls, ck: dict, path: str | Path) -> tuple[GeneDML, dict]:
        if ck.get("method") is not None:
            raise ValueError(
                f"`path`={str(path)!r} holds a {ck['method']!r} model, not 'gene_dml': use its class or "
                "genedml.models.load_method."
            )
        tc = TrainConfig.from_dict(ck["train_config"])
        model = cls(GeneDMLConfig.from_dict(ck["config"]), tc, features=feature_spec_from_record(ck["encoder"]))
        model.is_trained_ = ck["is_trained"]
        return model, ck["state_dict"]

    def _empty_net(self, state) -> None:
        self._build_net()

    def __repr__(self) -> str:
        g = "?" if self.genes_ is None else len(self.genes_)
        return f"GeneDML(encoder={self.encoder.name!r}, genes={g}, trained={self.is_trained_})"


def _check_k(config: GeneDMLConfig, tc: TrainConfig, n_train: int) -> None:
    if config.instance_group and config.feature_grouping:
        bs = min(tc.batch_size, n_train)
        if config.K > bs:
            raise ValueError(
                f"`K`={config.K} feature groups exceed the batch size {bs} (batch_size={tc.batch_size}, "
                f"{n_train} training spots): lower `K` or raise `batch_size`."
            )
