"""`GeneDML`: the user-facing model — setup from SpatialData, train, predict, save, load."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._utils import resolve_progress
from ._base import SpotModel, _plain, feature_spec_from_record
from ._config import GeneDMLConfig
from ._train_config import TrainConfig

if TYPE_CHECKING:
    from spatialdata import SpatialData

    from ..dataloaders import SpotData

__all__ = ["GeneDML"]


class GeneDML(SpotModel):
    """Gene-DML: dual-pathway multi-level discrimination for spot expression from H&E.

    Three layers (house style): the tensor-only network (`genedml.models.nn.GeneDMLNet`), the Lightning plan
    (`genedml.models.train.GeneDMLPlan`), and this class, which owns the SpatialData side.

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
    >>> model = model.setup(sdata, n_genes=20).train()
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
        self.config = _as_config(config)
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
        from .train import GeneDMLPlan, SpotDataModule, run_fit

        if self._train_data is None:
            raise RuntimeError("call `setup(sdata, ...)` before `train()`.")
        plan = GeneDMLPlan(self.net, GeneDMLLoss(self.config), self.train_config)
        dm = SpotDataModule(self._train_data, self._val_data, self.train_config)
        res = run_fit(plan, dm, self.train_config, progress=resolve_progress(progress))
        self.net = plan.net.cpu().eval()
        self.history_ = res.history
        self.fit_info_.update(
            {"best_epoch": res.best_epoch, "best_val_pcc": res.best_val_pcc, "epochs_run": res.epochs_run}
        )
        self.fit_info_["hpg"] = self._validation_hpg()
        self.is_trained_ = True
        return self

    def _predict_data(self, data: SpotData) -> np.ndarray:
        import torch

        net = self.net.eval()
        out = np.zeros((len(data), len(self.genes_)), dtype=np.float32)
        with torch.inference_mode():
            for code in range(len(data.section_names)):
                rows = data.section_rows(code)
                first = data.batch(rows[:1])
                tokens = net.encode_sections(first.section_feats, first.section_pos)  # once per section
                for i in range(0, len(rows), 512):
                    b = data.batch(rows[i : i + 512])
                    out[b.rows.numpy()] = net(**b.inputs(), section_tokens=tokens).pred.float().numpy()
        return out

    def is_ready(self) -> bool:
        """Whether `predict` can run: trained (or loaded) and not left half-trained by a failed `train`."""
        return self.is_trained_ and self.net is not None and self.genes_ is not None

    # ------------------------------------------------------------------------------------------------- save/load
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """One self-describing file: weights, configs, ordered genes, recipe, encoder id + weights hash, version."""
        from .._version import __version__
        from ._save_load import state_hash, write_checkpoint

        if self.net is None:
            raise RuntimeError("nothing to save: the model has no network yet.")
        state = {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
        payload = {
            "genedml_version": __version__,
            "config": self.config.to_dict(),
            "train_config": self.train_config.to_dict(),
            "encoder": self._encoder_record(),
            "encoder_info": self.encoder_info_,
            "in_dim": self.in_dim_,
            "genes": list(self.genes_),
            "normalize": _plain(self.normalize_),
            "history": self.history_,
            "fit_info": _plain(self.fit_info_),
            "is_trained": self.is_trained_,
            "state_dict": state,
            "model_hash": state_hash(state),
        }
        return write_checkpoint(path, payload, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        weights: str | Path | None = None,
        sdata: SpatialData | None = None,
        table_key: str | None = None,
    ) -> GeneDML:
        """Load a checkpoint written by `save`; with ``sdata``, refuse data the model cannot serve.

        The file is read safely (tensors and plain values only) and its checksum verified: a damaged or truncated
        file raises `genedml.models.CheckpointError`. A model whose encoder used a local weights file needs that
        file passed back as ``weights`` (here, or later to `gd.tl.predict`); its sha256 is checked against the one
        stored in the checkpoint, which never opens a file by itself.

        Refused: a table lacking model genes when it holds counts (evaluation would be impossible), or features in
        ``sdata`` computed by a different encoder or weights than the model's.
        """
        from ._save_load import read_checkpoint

        ck = read_checkpoint(path)
        enc = ck["encoder"]
        model = cls(
            GeneDMLConfig.from_dict(ck["config"]),
            TrainConfig.from_dict(ck["train_config"]),
            features=feature_spec_from_record(enc),
        )
        model.genes_ = list(ck["genes"])
        model.normalize_ = ck["normalize"]
        model.encoder_info_ = ck["encoder_info"]
        model.in_dim_ = ck["in_dim"]
        model.history_ = ck["history"]
        model.fit_info_ = ck["fit_info"]
        model.is_trained_ = ck["is_trained"]
        model.model_hash_ = ck["model_hash"]
        model._build_net()
        model.net.load_state_dict(ck["state_dict"])
        model.net.eval()
        model._restore_weights(enc, weights)
        if sdata is not None:
            model.check_compatible(sdata, table_key=table_key)
        return model

    @property
    def model_hash(self) -> str:
        """Hash of the current weights."""
        from ._save_load import state_hash

        return state_hash(self.net.state_dict())

    def __repr__(self) -> str:
        g = "?" if self.genes_ is None else len(self.genes_)
        return f"GeneDML(encoder={self.encoder.name!r}, genes={g}, trained={self.is_trained_})"


def _as_config(config) -> GeneDMLConfig:
    if config is None:
        return GeneDMLConfig()
    if isinstance(config, GeneDMLConfig):
        return config
    if isinstance(config, str):
        _check_preset(config, name="config")
        return GeneDMLConfig.preset(config)
    if isinstance(config, dict):
        if "preset" in config:
            _check_preset(config["preset"], name="config['preset']")
            rest = {k: v for k, v in config.items() if k != "preset"}
            _check_config_keys(rest)
            return GeneDMLConfig.preset(config["preset"], **rest)
        _check_config_keys(config)
        return GeneDMLConfig.from_dict(config)
    raise TypeError(f"`config` must be a GeneDMLConfig, a preset name or a dict, got {type(config).__name__}.")


def _check_preset(value, *, name: str) -> None:
    """The user's argument (``config``) named in the error, not `GeneDMLConfig.preset`'s ``name``."""
    from ._config import _PRESETS

    if value not in _PRESETS:
        raise ValueError(
            f"`{name}` must be a GeneDMLConfig, a dict or one of the presets {sorted(_PRESETS)}, got {value!r}."
        )


def _check_config_keys(d: dict) -> None:
    from dataclasses import fields

    valid = [f.name for f in fields(GeneDMLConfig)]
    unknown = sorted(str(k) for k in d if k not in valid)
    if unknown:
        raise ValueError(f"`config` has unknown GeneDMLConfig key(s) {unknown}; valid keys are {valid}.")


def _check_k(config: GeneDMLConfig, tc: TrainConfig, n_train: int) -> None:
    if config.instance_group and config.feature_grouping:
        bs = min(tc.batch_size, n_train)
        if config.K > bs:
            raise ValueError(
                f"`K`={config.K} feature groups exceed the batch size {bs} (batch_size={tc.batch_size}, "
                f"{n_train} training spots): lower `K` or raise `batch_size`."
            )
