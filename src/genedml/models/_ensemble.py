"""`EnsembleModel`: several fitted models as one, with their spread and (optionally) a conformal calibration.

A saved ensemble is a folder: ``ensemble.json`` (format, member files, genes, calibration metadata), one checkpoint
per member (``member0.pt`` …) and, once calibrated, ``calibration.npz`` (plain arrays, no pickle).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._predictor import Predictor

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["EnsembleModel"]

FORMAT = "genedml-ensemble/1"


class EnsembleModel:
    """Mean of several fitted models over their common genes; usable with `gd.tl.predict`.

    The spread of the members (standard deviation over members, per spot and gene) is what `gd.tl.calibrate` turns
    into calibrated prediction intervals; ``calibration_`` holds that calibration once done (``None`` before).
    An ensemble is a `Predictor` itself; its members are any predictors (fold models of `gd.tl.cross_validate`,
    models of several seeds, a mix of methods).

    Parameters
    ----------
    models
        The fitted members; the ensemble predicts the genes they all predict, in the first member's order.
    calibration
        A calibration made by `gd.tl.calibrate` (``None``: uncalibrated).

    Examples
    --------
    >>> import genedml as gd
    >>> from genedml.models import EnsembleModel, make_method
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> members = [
    ...     make_method("ridge", alpha=a, encoder="test_resnet", pretrained=False, target_px=32)
    ...     .setup(sdata, n_top_genes=10, progress=False)
    ...     .train()
    ...     for a in (1.0, 10.0)
    ... ]
    >>> ens = EnsembleModel(members)
    >>> mean, sd = ens.predict(sdata, return_std=True)
    >>> mean.shape == sd.shape == (sdata["table"].n_obs, 10)
    True
    """

    def __init__(self, models: list[Predictor], *, calibration: dict | None = None) -> None:
        if not models:
            raise ValueError("`models`: an ensemble needs at least one fitted model.")
        for i, m in enumerate(models):
            if not isinstance(m, Predictor):
                raise TypeError(
                    f"`models[{i}]` is a {type(m).__name__}, not a fitted genedml model (see "
                    "genedml.models.Predictor: genes_, predict, is_ready, save/load …)."
                )
        common = [g for g in models[0].genes_ if all(g in m.genes_ for m in models[1:])]
        if not common:
            raise ValueError("the fold models share no gene.")
        self.models = list(models)
        self.genes_ = common
        first = models[0]
        self.encoder, self.encoder_info_, self.normalize_ = first.encoder, first.encoder_info_, first.normalize_
        self.train_config = first.train_config
        self.fit_info_ = {"ensemble": len(models), "hpg": None}
        self.calibration_ = calibration

    @property
    def model_hash(self) -> str:
        """Hash over the member hashes."""
        import hashlib

        return hashlib.sha256("".join(m.model_hash for m in self.models).encode()).hexdigest()[:16]

    @property
    def geometry_(self) -> dict | None:
        """The first member's training geometry (see `GeneDML.geometry_`), ``None`` when it has none."""
        return getattr(self.models[0], "geometry_", None)

    def is_ready(self) -> bool:
        """Whether `predict` can run: every member is ready."""
        return all(m.is_ready() for m in self.models)

    def set_weights(self, weights: str | os.PathLike) -> None:
        """Give every member the local encoder weights file it was trained with (see `GeneDML.set_weights`)."""
        for m in self.models:
            m.set_weights(weights)

    def seen_sections(self) -> list[set[str]]:
        """Per member, the sections it trained or early-stopped on (``fit_info_`` train and validation sections)."""
        out = []
        for m in self.models:
            info = getattr(m, "fit_info_", None) or {}
            out.append({str(s) for s in list(info.get("train_sections") or []) + list(info.get("val_sections") or [])})
        return out

    def member_predictions(self, sdata: SpatialData, *, sections=None, table_key=None, progress=None) -> np.ndarray:
        """``(n_members, n_spots_of_sections, n_genes)`` predictions over the common genes."""
        preds = []
        for m in self.models:
            p = m.predict(sdata, sections=sections, table_key=table_key, progress=progress)
            preds.append(p[:, [m.genes_.index(g) for g in self.genes_]])
        return np.stack(preds).astype(np.float32)

    def predict(self, sdata: SpatialData, *, sections=None, table_key=None, progress=None, return_std: bool = False):
        """Mean of the members' predictions over the common genes; with ``return_std``, also their spread.

        The spread is the standard deviation over members (``ddof=1``; zeros for a single member).
        """
        preds = self.member_predictions(sdata, sections=sections, table_key=table_key, progress=progress)
        mean = preds.mean(axis=0).astype(np.float32)
        if not return_std:
            return mean
        sd = preds.std(axis=0, ddof=1) if len(preds) > 1 else np.zeros_like(mean)
        return mean, sd.astype(np.float32)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the ensemble (members and calibration) into the folder ``path``; replaced only with ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"`path`={str(path)!r} exists; pass overwrite=True to replace it.")
        tmp = path.with_name(f".{path.name}.tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        files = []
        for i, m in enumerate(self.models):
            m.save(tmp / f"member{i}.pt")
            files.append(f"member{i}.pt")
        manifest = {"format": FORMAT, "members": files, "genes": list(self.genes_), "calibration": None}
        if self.calibration_ is not None:
            cal = self.calibration_
            np.savez(tmp / "calibration.npz", scores=cal["scores"], beta=cal["beta"])
            manifest["calibration"] = {k: v for k, v in cal.items() if k not in ("scores", "beta")}
        (tmp / "ensemble.json").write_text(json.dumps(manifest, indent=1, default=_plain))
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        tmp.rename(path)
        return path

    @classmethod
    def load(cls, path: str | Path, *, weights=None, sdata=None, table_key: str | None = None) -> EnsembleModel:
        """Load a folder written by `save` (members through `genedml.models.load_method`).

        ``weights``: the encoder's local weights file, when the members were trained with one (sha256 checked).
        """
        from ._registry import load_method

        path = Path(path)
        manifest_path = path / "ensemble.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"`path`={str(path)!r} is not a saved ensemble (no ensemble.json).")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"`path`={str(path)!r}: unknown ensemble format {manifest.get('format')!r}.")
        models = [load_method(path / f, weights=weights, sdata=sdata, table_key=table_key) for f in manifest["members"]]
        cal = manifest.get("calibration")
        if cal is not None:
            with np.load(path / "calibration.npz", allow_pickle=False) as z:
                cal = {**cal, "scores": z["scores"], "beta": z["beta"]}
        ens = cls(models, calibration=cal)
        if ens.genes_ != list(manifest["genes"]):
            raise ValueError(f"`path`={str(path)!r}: the members' genes do not match the saved ensemble's.")
        return ens

    def __repr__(self) -> str:
        cal = "uncalibrated" if self.calibration_ is None else f"calibrated on {self.calibration_['groups']}"
        return f"EnsembleModel({len(self.models)} members, {len(self.genes_)} genes, {cal})"


def _plain(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")
