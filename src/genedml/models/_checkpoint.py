"""`Checkpointed`: one checkpoint format for every method — what a file holds, how a model comes back from it.

`SpotModel` inherits it. A method adds its own entries to `_payload` in its ``save`` (Gene-DML: its config; a
baseline: its name and parameters) and says in `_from_checkpoint` how to build the untrained model a file
describes; reading, verifying, restoring the shared record and checking the data are written once, in `load`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["Checkpointed"]


class Checkpointed:
    """Mixin of `SpotModel`: the fitted state's hash, the shared checkpoint entries and `load`."""

    @property
    def model_hash(self) -> str:
        """Hash identifying the trained state (sha256 of `_state`, 16 hex digits)."""
        from ._save_load import state_hash

        return state_hash(self._state())

    def _state(self) -> dict[str, Any]:
        """Fitted state as tensors (checkpoint and hash)."""
        raise NotImplementedError

    def _set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _payload(self, state: dict[str, Any], /, **entries: Any) -> dict[str, Any]:
        """A checkpoint of ``state``: the entries every method writes, plus the method's own ``entries``."""
        from .._version import __version__
        from ._save_load import state_hash

        return {
            "genedml_version": __version__,
            **entries,
            "train_config": self.train_config.to_dict(),
            "encoder": self._encoder_record(),
            "encoder_info": _plain(self.encoder_info_),
            "in_dim": self.in_dim_,
            "genes": list(self.genes_),
            "normalize": _plain(self.normalize_),
            "history": _plain(self.history_),
            "fit_info": _plain(self.fit_info_),
            "features": _plain(getattr(self, "features_", None)),
            "model_hash": state_hash(state),
        }

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        weights: str | Path | None = None,
        sdata: SpatialData | None = None,
        table_key: str | None = None,
    ) -> Self:
        """Load a checkpoint written by ``save``; with ``sdata``, refuse data the model cannot serve.

        The file is read safely (tensors and plain values only) and its checksum verified: a damaged or truncated
        file raises `genedml.models.CheckpointError`. A model whose encoder used a local weights file needs that
        file passed back as ``weights`` (here, or later to `gd.tl.predict`); its sha256 is checked against the one
        stored in the checkpoint, which never opens a file by itself.

        Refused: a file of another method, a table lacking model genes when it holds counts (evaluation would be
        impossible), or features in ``sdata`` computed by a different encoder or weights than the model's.
        """
        from ._save_load import read_checkpoint

        ck = read_checkpoint(path)
        model, state = cls._from_checkpoint(ck, path)
        model.genes_ = list(ck["genes"])
        model.normalize_ = ck["normalize"]
        model.encoder_info_ = ck["encoder_info"]
        model.in_dim_ = ck["in_dim"]
        model.history_ = ck["history"]
        model.fit_info_ = ck["fit_info"]
        model.features_ = ck.get("features")  # absent from files of earlier versions
        model._set_state(state)
        model._restore_weights(ck["encoder"], weights)
        if sdata is not None:
            model.check_compatible(sdata, table_key=table_key)
        return model

    @classmethod
    def _from_checkpoint(cls, ck: dict[str, Any], path: str | Path) -> tuple[Self, dict[str, Any]]:
        """The untrained model a checkpoint describes (its constructor arguments) and the fitted state to load."""
        raise NotImplementedError


def _plain(obj):
    """Make a checkpoint-safe copy (numpy scalars/arrays → Python; torch.load weights_only compatible)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj
