"""The encoder's local weights file of a model: recorded by hash in checkpoints, passed back by the user, checked.

A model file never opens a path by itself (a weights file can be a pickle that runs code): only the file's name and
sha256 are stored, and `set_weights` checks a file the user names against them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["WeightsFile"]


class WeightsFile:
    """Mixin of `SpotModel`: the weights-file side of saving, loading and predicting."""

    def _encoder_record(self) -> dict[str, Any]:
        """Encoder settings for a checkpoint, without the weights file's path.

        `load` must never open a file the user did not name: only the file's name and sha256 are stored, so that the
        user can pass it back and have it checked.
        """
        rec = self.feature_spec.to_dict()
        path = rec["weights"]
        rec["weights"] = None
        needed = self._weights_needed
        if path is not None and self.uses_frozen_encoder:
            needed = {"name": _file_name(path), "sha256": (self.encoder_info_ or {}).get("weights_hash")}
        if needed is not None and self.uses_frozen_encoder:
            rec["weights_file"] = dict(needed)
        return rec

    def _restore_weights(self, rec: dict[str, Any], weights: str | os.PathLike | None) -> None:
        """After `load`: note the weights file the encoder needs, and check and attach ``weights`` when given."""
        needed = rec.get("weights_file")
        if needed is None and rec.get("weights") and self.uses_frozen_encoder:  # older files stored the path
            needed = {"name": _file_name(rec["weights"]), "sha256": (self.encoder_info_ or {}).get("weights_hash")}
        self.feature_spec = self.feature_spec.replace(weights=None)
        self._weights_needed = dict(needed) if needed is not None and self.uses_frozen_encoder else None
        if weights is not None:
            self.set_weights(weights)

    def set_weights(self, weights: str | os.PathLike) -> None:
        """Give a loaded model the local encoder weights file it was trained with (its sha256 is checked first).

        A checkpoint stores the sha256 of the encoder's weights file, never a path to open: prediction needs the
        file passed back, as ``GeneDML.load(path, weights=...)``, ``gd.tl.predict(..., weights=...)`` or this method.

        Parameters
        ----------
        weights
            The weights file (``.safetensors``, or a torch file holding tensors only).
        """
        from .._utils import file_sha256

        p = Path(weights).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"`weights`={str(weights)!r} is not a file.")
        needed = self._weights_needed
        if needed is None and self.encoder.weights is None:
            raise ValueError(
                f"`weights`={str(weights)!r}: this model's encoder {self.encoder.name!r} was not trained with a local "
                "weights file (it used "
                f"{'pretrained' if self.encoder.pretrained else 'random'} weights); do not pass `weights`."
            )
        expected = (needed or {}).get("sha256") or (self.encoder_info_ or {}).get("weights_hash")
        got = file_sha256(p)
        if expected is not None and got != expected and _combined_hash(self.encoder.name, got) != expected:
            name = (needed or {}).get("name", "?")
            raise ValueError(
                f"`weights`={str(weights)!r} is not the file this model was trained with: sha256 {got[:16]}… "
                f"but the model needs {name!r} with sha256 {str(expected)[:16]}…."
            )
        self.feature_spec = self.feature_spec.replace(weights=str(p))
        self._weights_needed = None

    def _require_weights(self) -> None:
        needed = self._weights_needed
        if needed is not None and self.encoder.weights is None:
            raise ValueError(
                f"this model's encoder {self.encoder.name!r} was trained with the local weights file "
                f"{needed.get('name')!r} (sha256 {str(needed.get('sha256'))[:16]}…), which a model file never opens "
                "by itself: pass it as `weights=` (GeneDML.load(path, weights=...), gd.tl.predict(sdata, model, "
                "weights=...) or model.set_weights(...))."
            )


def _file_name(path) -> str:
    return Path(str(path)).name


def _combined_hash(name: str, file_hash: str) -> str | None:
    """The weights hash a combined encoder (``"morphology+resnet18"``) records when its CNN part loads ``file_hash``."""
    import hashlib

    parts = str(name).split("+")
    if len(parts) < 2:
        return None
    from ..encoders import MORPHOLOGY_VERSION

    morph = hashlib.sha256(MORPHOLOGY_VERSION.encode()).hexdigest()
    return hashlib.sha256("|".join(morph if q == "morphology" else file_hash for q in parts).encode()).hexdigest()
