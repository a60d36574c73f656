"""`Baseline`: what the baselines add to `SpotModel` — patients per section, fit data, HPG, save/load, hash."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..._keys import Keys
from .._base import SpotModel, _plain, feature_spec_from_record
from .._train_config import TrainConfig

if TYPE_CHECKING:
    import torch
    from spatialdata import SpatialData

    from ...dataloaders import SpotData

__all__ = ["Baseline", "as_bool"]


class Baseline(SpotModel):
    """Base of the baselines: `SpotModel` plus checkpointing, the model hash and the data a final fit may use.

    Encoder keyword arguments are those of `SpotModel`; ``dihedral`` is accepted (so one set of shared keyword
    arguments builds every method) and ignored: frozen-feature baselines use the pooled feature of the unaugmented
    window, and ST-Net augments its pixels on the fly.
    """

    #: registry name written into checkpoints
    method: ClassVar[str] = ""
    #: constructor parameters saved in checkpoints (besides ``train_config`` and the encoder settings)
    param_names: ClassVar[tuple[str, ...]] = ()
    scales: tuple[str, ...] = ("global",)

    def __init__(self, train_config: TrainConfig | dict | None = None, **encoder_kwargs: Any) -> None:
        super().__init__(train_config, **encoder_kwargs)
        self.feature_spec = self.feature_spec.replace(dihedral=False)
        self._section_patient: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------- data
    def _spot_data(
        self, sdata: SpatialData, *, sections: list[str], table_key: str | None, progress: bool | None, y=None
    ) -> SpotData:
        data = super()._spot_data(sdata, sections=sections, table_key=table_key, progress=progress, y=y)
        self._record_patients(sdata, table_key)
        return data

    def _record_patients(self, sdata: SpatialData, table_key: str | None) -> None:
        from ... import io as gio

        obs = gio.get_table(sdata, table_key=table_key).obs
        if Keys.patient not in obs:
            return
        pairs = obs[[Keys.section, Keys.patient]].astype(str).drop_duplicates()
        self._section_patient.update(zip(pairs[Keys.section], pairs[Keys.patient], strict=True))

    def _uses_val(self, use_val: bool) -> bool:
        """Whether the final fit may also use the inner-validation spots (never under ``protocol="paper"``)."""
        return bool(use_val) and self.train_config.protocol == "clean" and self._val_data is not None

    def _fit_parts(self, use_val: bool) -> list[SpotData]:
        if self._train_data is None:
            raise RuntimeError("call `setup(sdata, ...)` before `train()`.")
        parts = [self._train_data]
        if self._uses_val(use_val):  # refit on every training spot: inner validation and the block's border too
            parts += [self._val_data] + ([self._buffer_data] if self._buffer_data is not None else [])
        self.fit_info_["fit_on"] = "train+val" if len(parts) > 1 else "train"
        self.fit_info_["n_fit"] = int(sum(len(p) for p in parts))
        return parts

    @staticmethod
    def _section_names(data: SpotData) -> np.ndarray:
        return np.asarray(data.section_names, dtype=object)[data.section].astype(str)

    def _patients(self, sections: np.ndarray) -> np.ndarray | None:
        if not self._section_patient:
            return None
        return np.array([self._section_patient.get(s, s) for s in sections])

    def _hpg_from(
        self, y: np.ndarray, pred: np.ndarray, sections: np.ndarray, k: int | None = None
    ) -> list[str] | None:
        """Genes ranked by mean per-section PCC of held-out predictions, best first (the top ``k``; ``None``: all).

        ``None`` when no PCC is defined. Consumers take the first ``n_hpg`` of the ranking.
        """
        from ... import metrics

        per_gene = metrics.evaluate_sections(y, pred, sections, genes=self.genes_).per_gene.to_numpy()
        if not np.isfinite(per_gene).any():
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN gene columns: ranked last below
            mean_r = np.nanmean(per_gene, axis=0)
        n = len(self.genes_) if k is None else min(k, len(self.genes_))
        return metrics.top_k_genes(mean_r, n, genes=self.genes_)

    def _validation_hpg(self, k: int | None = None) -> list[str] | None:
        """Genes ranked by PCC on the validation split, best first (`SpotModel`'s rule, silent for all-NaN genes)."""
        data = self._val_data
        if data is None or data.y is None or len(data) < 3:
            return None
        return self._hpg_from(data.y, self._predict_data(data), self._section_names(data), k=k)

    # ------------------------------------------------------------------------------------------- state
    def _state(self) -> dict[str, torch.Tensor]:
        """Fitted state as tensors (checkpoint and hash)."""
        raise NotImplementedError

    def _set_state(self, state: dict[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def is_ready(self) -> bool:
        """Whether `predict` can run."""
        return self.is_trained_ and self.genes_ is not None

    @property
    def model_hash(self) -> str:
        """sha256 (16 hex digits) of the fitted state."""
        from .._save_load import state_hash

        if not self.is_ready():
            raise RuntimeError(f"{type(self).__name__} is not trained: it has no fitted state to hash.")
        return state_hash(self._state())

    def params(self) -> dict[str, Any]:
        """The method's own constructor parameters."""
        return {name: getattr(self, name) for name in self.param_names}

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write one self-describing checkpoint (method, parameters, fitted state, genes, recipe, encoder)."""
        from ..._version import __version__
        from .._save_load import write_checkpoint

        if not self.is_ready():
            raise RuntimeError(f"nothing to save: the {type(self).__name__} is not trained.")
        state = {k: v.detach().cpu() for k, v in self._state().items()}
        payload = {
            "genedml_version": __version__,
            "method": self.method,
            "params": _plain(self.params()),
            "train_config": self.train_config.to_dict(),
            "encoder": self._encoder_record(),
            "encoder_info": _plain(self.encoder_info_),
            "in_dim": self.in_dim_,
            "genes": list(self.genes_),
            "normalize": _plain(self.normalize_),
            "history": _plain(self.history_),
            "fit_info": _plain(self.fit_info_),
            "state": state,
            "model_hash": self.model_hash,
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
    ) -> Baseline:
        """Load a checkpoint written by `save` (checksum verified); with ``sdata``, refuse data it cannot serve.

        ``weights``: the encoder's local weights file, when it was trained with one (see `GeneDML.load`).
        """
        from .._save_load import read_checkpoint

        ck = read_checkpoint(path)
        if ck.get("method") != cls.method:
            found = ck.get("method") or "gene_dml"
            raise ValueError(f"`path`={str(path)!r} holds a {found!r} model, not {cls.method!r}: use its class.")
        enc = ck["encoder"]
        spec = feature_spec_from_record(enc).replace(dihedral=False)
        model = cls(TrainConfig.from_dict(ck["train_config"]), **ck["params"], features=spec)
        model.genes_ = list(ck["genes"])
        model.normalize_ = ck["normalize"]
        model.encoder_info_ = ck["encoder_info"]
        model.in_dim_ = ck["in_dim"]
        model.history_ = ck["history"]
        model.fit_info_ = ck["fit_info"]
        model._set_state(ck["state"])
        model.is_trained_ = True
        model._restore_weights(enc, weights)
        if sdata is not None:
            model.check_compatible(sdata, table_key=table_key)
        return model

    def __repr__(self) -> str:
        g = "?" if self.genes_ is None else len(self.genes_)
        return f"{type(self).__name__}(encoder={self.encoder.name!r}, genes={g}, trained={self.is_trained_})"


def as_bool(value: Any, name: str) -> bool:
    """``value`` as a bool; ``ValueError`` naming ``name`` for anything else."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"`{name}` must be True or False, got {value!r}.")
    return bool(value)
