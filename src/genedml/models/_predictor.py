"""`Predictor`: what a fitted model offers the SpatialData layer (`gd.tl.predict`, `gd.tl.calibrate`, ensembles)."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from spatialdata import SpatialData

    from ..features import FeatureSpec
    from ._train_config import TrainConfig

__all__ = ["Predictor"]

_MISSING = object()


class _StaticMembers(type(Protocol)):
    """``isinstance`` against a protocol that looks members up statically (as Python ≥ 3.12 does).

    Python 3.11 evaluates every member with ``hasattr``: a property such as ``model_hash`` would run (and raise on an
    untrained model) during the check itself. Here a member counts when it is defined on the instance or its class.
    """

    def __instancecheck__(cls, instance: Any) -> bool:
        return all(inspect.getattr_static(instance, name, _MISSING) is not _MISSING for name in cls._members)


@runtime_checkable
class Predictor(Protocol, metaclass=_StaticMembers):
    """A fitted model that predicts spot expression from H&E: `GeneDML`, every baseline and `EnsembleModel`.

    `gd.tl.predict` accepts exactly the objects that satisfy this protocol (``isinstance(model, Predictor)``), then
    asks `is_ready`; nothing else about the model's class matters. A model you write yourself works with
    `gd.tl.predict` and `EnsembleModel` when it offers the members below.

    Attributes
    ----------
    genes_
        The predicted genes, in the order of `predict`'s columns (``None`` before ``setup``).
    normalize_
        The target recipe the predictions are on (``recipe``, ``smooth``, ``grid`` …; see `gd.pp.normalize`):
        `gd.tl.evaluate` normalises the measured counts the same way.
    encoder
        The features' recipe, a `genedml.features.FeatureSpec` (encoder name, weights, window geometry):
        prediction recomputes the features identically.
    encoder_info_
        What the features were computed with (encoder identity, weights hash, width) and the training geometry.
    train_config
        The training settings; ``protocol`` and ``seed`` go into the provenance of every prediction.
    fit_info_
        The fit's record: sections, validation level, best epoch, ``"hpg"`` (genes ranked on validation) ….
    model_hash
        A hash of the fitted state, written into the provenance of every prediction.

    The methods:

    - ``is_ready()``: whether `predict` can run — trained or loaded, and not left half-trained by a failed
      ``train``.
    - ``predict(sdata, *, sections=None, table_key=None, progress=None)``: ``(n_spots, len(genes_))`` float32
      predictions for the spots of ``sections`` in table order, on the ``normalize_`` scale. Needs no counts
      (H&E-only slides work) and writes no result into ``sdata``.
    - ``set_weights(weights)``: give a loaded model the local encoder weights file it was trained with (its sha256
      is checked).
    - ``save(path, *, overwrite=False)``: write the model (one file; a folder for an ensemble) that ``load``
      restores; an existing path is replaced only with ``overwrite``.
    - ``load(path, *, weights=None, sdata=None, table_key=None)``: class method, the model ``save`` wrote, checked
      against ``sdata`` when given.
    """

    genes_: list[str] | None
    normalize_: dict | None
    encoder: FeatureSpec
    encoder_info_: dict | None
    train_config: TrainConfig
    fit_info_: dict

    @property
    def model_hash(self) -> str:
        """A hash of the fitted state."""

    def is_ready(self) -> bool:
        """Whether `predict` can run."""

    def predict(self, sdata: SpatialData, *, sections=None, table_key=None, progress=None) -> np.ndarray:
        """Predictions ``(n_spots_of_sections, n_genes)``."""

    def set_weights(self, weights: str | os.PathLike) -> None:
        """Attach the encoder's local weights file."""

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model."""

    @classmethod
    def load(cls, path: str | Path, *, weights=None, sdata=None, table_key=None) -> Predictor:
        """Read a model written by `save`."""


Predictor._members = (*Predictor.__annotations__, "model_hash", "is_ready", "predict", "set_weights", "save", "load")
