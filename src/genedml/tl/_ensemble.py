"""`EnsembleModel`: several fitted models as one, with their spread and (optionally) a conformal calibration.

A saved ensemble is a folder: ``ensemble.json`` (format, member files, genes, calibration metadata), one checkpoint
per member (``member0.pt`` …) and, once calibrated, ``calibration.npz`` (plain arrays, no pickle).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

__all__ = ["EnsembleModel"]

FORMAT = "genedml-ensemble/1"


class EnsembleModel:
    """Mean of several fitted models over their common genes; usable with `gd.tl.predict`.

    The spread of the members (standard deviation over members, per spot and gene) is what `gd.tl.calibrate` turns
    into calibrated prediction intervals; ``calibration_`` holds that calibration once done (``None`` before).
    """

    def __init__(self, models: list, *, calibration: dict | None = None) -> None:
        if not models:
            raise ValueError("`models`: an ensemble needs at least one fitted model.")
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
        self.net = True  # ready marker for gd.tl.predict

    @property
    def model_hash(self) -> str:
        """Hash over the member hashes."""
        import hashlib

        return hashlib.sha256("".join(m.model_hash for m in self.models).encode()).hexdigest()[:16]

    def seen_sections(self) -> list[set[str]]:
        """Per member, the sections it trained or early-stopped on (``fit_info_`` train and validation sections)."""
        out = []
        for m in self.models:
            info = getattr(m, "fit_info_", None) or {}
            out.append({str(s) for s in list(info.get("train_sections") or []) + list(info.get("val_sections") or [])})
        return out

    def member_predictions(self, sdata, *, sections=None, table_key=None, progress=None) -> np.ndarray:
        """``(n_members, n_spots_of_sections, n_genes)`` predictions over the common genes."""
        preds = []
        for m in self.models:
            p = m.predict(sdata, sections=sections, table_key=table_key, progress=progress)
            preds.append(p[:, [m.genes_.index(g) for g in self.genes_]])
        return np.stack(preds).astype(np.float32)

    def predict(self, sdata, *, sections=None, table_key=None, progress=None, return_std: bool = False):
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
    def load(cls, path: str | Path, *, sdata=None, table_key: str | None = None) -> EnsembleModel:
        """Load a folder written by `save` (members through `genedml.models.load_method`)."""
        from ..models import load_method

        path = Path(path)
        manifest_path = path / "ensemble.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"`path`={str(path)!r} is not a saved ensemble (no ensemble.json).")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"`path`={str(path)!r}: unknown ensemble format {manifest.get('format')!r}.")
        models = [load_method(path / f, sdata=sdata, table_key=table_key) for f in manifest["members"]]
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
