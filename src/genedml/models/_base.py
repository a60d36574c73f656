"""`SpotModel`: what every method shares — gene selection, targets, cached features, splits, predict.

Gene-DML (`GeneDML`) and the baselines subclass it and implement `_after_setup`, `train` and `_predict_data`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._keys import Keys
from .._logging import logger
from .._utils import resolve_progress
from .._validators import assert_positive_int, refuse_renamed
from ..features import FeatureSpec
from ..pp import RECIPES as _RECIPES
from ._checkpoint import Checkpointed, _plain
from ._train_config import TrainConfig
from ._weights_file import WeightsFile

if TYPE_CHECKING:
    from collections.abc import Iterator

    from spatialdata import SpatialData

    from ..dataloaders import SpotData

__all__ = ["SpotModel", "feature_spec_from_record"]

TARGET_KEY = Keys.target
_GEOMETRY_TOLERANCE = 0.15  # relative difference of window field of view (µm) refused at predict


class SpotModel(WeightsFile, Checkpointed):
    """Base of the spot-level expression models (see the module docstring).

    Parameters
    ----------
    train_config
        A `TrainConfig` or a dict of its fields.
    features
        The features' recipe: a `genedml.features.FeatureSpec` or an encoder name; ``None``: ``FeatureSpec()``.
    **feature_kwargs
        Fields of `FeatureSpec` overriding those of ``features`` (``encoder``, ``pretrained``, ``weights``,
        ``target_px``, ``target_um``, ``target_mpp``, ``dihedral``, ``neighbor_grid``, ``dtype``, ``device``;
        ``embed_batch_size`` sets its ``batch_size``).
    """

    @property
    def encoder(self) -> FeatureSpec:
        """The features' recipe (alias of `feature_spec`; ``encoder.name`` is the encoder's name)."""
        return self.feature_spec

    @encoder.setter
    def encoder(self, spec: FeatureSpec) -> None:
        self.feature_spec = spec

    #: which cached scales the method consumes
    scales: tuple[str, ...] = ("target", "neighbor", "global")
    #: whether prediction runs the frozen encoder (then a checkpoint needs the encoder's weights file back)
    uses_frozen_encoder: bool = True

    def __init__(
        self, train_config: TrainConfig | dict | None = None, *, features: Any = None, **feature_kwargs: Any
    ) -> None:
        from ..features import resolve_feature_spec

        self.train_config = (
            train_config if isinstance(train_config, TrainConfig) else TrainConfig.from_dict(dict(train_config or {}))
        )
        if "embed_batch_size" in feature_kwargs:
            feature_kwargs["batch_size"] = feature_kwargs.pop("embed_batch_size")
        spec, enc_obj = resolve_feature_spec(features, feature_kwargs)
        if enc_obj is not None:
            raise ValueError("`encoder`: a model takes an encoder name (it rebuilds the encoder at predict time).")
        self.feature_spec: FeatureSpec = spec
        self.genes_: list[str] | None = None
        self.normalize_: dict | None = None
        self.encoder_info_: dict | None = None
        self.features_: dict | None = None  # provenance of the training features (parameters, per-section geometry)
        self.predict_features_: dict | None = None  # the same for the last `predict`
        self.in_dim_: int | None = None
        self.history_: list[dict] = []
        self.fit_info_: dict = {}
        self.is_trained_ = False
        self._weights_needed: dict | None = None  # set by `load` when the encoder's weights file must be passed
        self._train_data: SpotData | None = None
        self._val_data: SpotData | None = None
        self._buffer_data: SpotData | None = None  # training spots in neither inner set (the block's border)

    # ------------------------------------------------------------------------------------------------- setup
    @refuse_renamed
    def setup(
        self,
        sdata: SpatialData,
        *,
        genes: list[str] | None = None,
        n_top_genes: int = 250,
        panel: str | None = None,
        normalize: str = "paper",
        smooth: bool = True,
        sections: list[str] | None = None,
        val_sections: list[str] | None = None,
        table_key: str | None = None,
        progress: bool | None = None,
    ) -> SpotModel:
        """Select genes, normalise targets, compute (stored) features and hold the training data.

        Writes nothing into ``sdata``: the genes, the normalised targets and the features (memory-mapped from the
        feature store) are the model's own.

        Parameters
        ----------
        sdata
            Training data in genedml's data model, with raw counts.
        genes, n_top_genes, panel
            Explicit gene list, or the top ``n_top_genes`` by mean expression over the training spots (TRIPLEX's
            "HEG"; the argument of `genedml.pp.select_genes`), or a named 250-gene panel (``"her2st"``, ``"stnet"``,
            ``"skinst"``).
        normalize, smooth
            Target recipe (``"paper"``: median library size, log10(1+x); ``"log1p_cp10k"``) and 3×3 grid smoothing.
        sections
            Training sections (``None``: all but ``val_sections``).
        val_sections
            Sections for early stopping. ``None`` under ``protocol="clean"``: an inner split of the training data
            (`genedml.dataloaders.inner_validation_split`: whole patients when there are ≥ 5, otherwise sections of
            every multi-section patient and a spatial block of every single-section patient). Under
            ``protocol="paper"`` these are the evaluated sections (optimistic).
        table_key
            Spot table.
        progress
            Progress bars (``None``: ``gd.settings.progress_bar``).
        """
        from .. import io as gio
        from ..dataloaders import inner_validation_split

        table = gio.get_table(sdata, table_key=table_key)
        all_secs = gio.sections(sdata, table_key=table_key)
        train_secs, val_secs = _resolve_sections(all_secs, sections, val_sections)
        if self.train_config.protocol == "paper" and not val_secs:
            raise ValueError("protocol='paper' selects checkpoints on the evaluated sections: pass `val_sections`.")
        sec_col = table.obs[Keys.section].astype(str).to_numpy()
        train_rows = np.flatnonzero(np.isin(sec_col, train_secs))
        all_train_rows = train_rows
        if val_secs:
            val_rows = np.flatnonzero(np.isin(sec_col, val_secs))
            level = "given"
        else:
            tr, va, level = inner_validation_split(
                table.obs[Keys.patient].astype(str).to_numpy()[train_rows],
                sec_col[train_rows],
                seed=self.train_config.seed,
                val_fraction=self.train_config.val_fraction,
                coords=table.obs[[Keys.array_row, Keys.array_col]].to_numpy()[train_rows],
            )
            train_rows, val_rows = train_rows[tr], train_rows[va]
        if level == "spot":
            logger.warning(
                "one training section only: early stopping uses a random %.0f%% of its spots (spatially "
                "autocorrelated, hence optimistic).",
                100 * self.train_config.val_fraction,
            )
        train_mask = np.zeros(table.n_obs, dtype=bool)
        train_mask[train_rows] = True
        if genes is None and panel is None:
            assert_positive_int(n_top_genes, name="n_top_genes")
        if not isinstance(smooth, bool):
            raise ValueError(f"`smooth` must be a bool, got {smooth!r}.")
        if normalize not in _RECIPES:  # checked here: `pp.normalize` would name its own argument, `recipe`
            raise ValueError(f"`normalize` must be one of {list(_RECIPES)}, got {normalize!r}.")
        self._check_before_writes(n_train=len(train_rows))
        self.genes_, Y, self.normalize_ = _targets(
            table,
            genes=genes,
            n_top_genes=n_top_genes,
            panel=panel,
            normalize=normalize,
            smooth=smooth,
            train_mask=train_mask,
        )
        used = sorted(set(sec_col[train_rows]) | set(sec_col[val_rows]))
        rows_used = np.flatnonzero(np.isin(sec_col, used))
        data = self._spot_data(sdata, sections=used, table_key=table_key, progress=progress, y=Y[rows_used])
        pos_of = np.full(table.n_obs, -1, np.int64)
        pos_of[rows_used] = np.arange(len(rows_used))
        self._train_data = data.subset(pos_of[train_rows])
        self._val_data = data.subset(pos_of[val_rows]) if len(val_rows) else None
        buffer_rows = np.setdiff1d(all_train_rows, np.concatenate([train_rows, val_rows]))
        self._buffer_data = data.subset(pos_of[buffer_rows]) if len(buffer_rows) else None
        self.fit_info_ = {
            "train_sections": sorted(set(sec_col[train_rows])),
            "val_sections": sorted(set(sec_col[val_rows])),
            "val_level": level,
            "n_train": len(train_rows),
            "n_val": len(val_rows),
            "protocol": self.train_config.protocol,
            "optimistic": self.train_config.protocol == "paper",
        }
        self._after_setup()
        self._record_geometry(sdata, used, table)
        return self

    def _check_before_writes(self, *, n_train: int) -> None:
        """Hook: refuse settings that cannot work with ``n_train`` training spots before anything is written."""

    # ------------------------------------------------------------------------------------------------- geometry
    def _record_geometry(self, sdata: SpatialData, secs: list[str], table) -> None:
        """Store the training sections' µm geometry in ``encoder_info_["geometry"]`` (saved with the model)."""
        from .. import io as gio

        meta = table.uns.get(Keys.uns, {}).get("sections", {})
        mpp = {s: float(gio.pixel_size(sdata, s)) for s in secs}
        first = meta.get(secs[0], {}) if secs else {}
        geo = {
            "pixel_size_um": mpp,
            "window_um": {s: self._window_um(m) for s, m in mpp.items()},
            "pitch_um": first.get("pitch_um"),
            "spot_diameter_um": first.get("spot_diameter_um"),
        }
        if first.get("spot_shape") == "square" and first.get("bin_size_um"):  # trained on bins (Visium HD)
            geo |= {"spot_shape": "square", "bin_size_um": first.get("bin_size_um")}
        if self.encoder_info_ is None:
            self.encoder_info_ = {}
        self.encoder_info_["geometry"] = _plain(geo)

    def _window_um(self, mpp: float) -> float:
        """Field of view (µm) of a target window on a section of ``mpp`` µm/px under the model's window settings."""
        return self.feature_spec.window_um(mpp)

    @property
    def geometry_(self) -> dict | None:
        """Training geometry: ``pitch_um``, ``spot_diameter_um``, per-section ``pixel_size_um`` and ``window_um``.

        ``None`` before `setup` (or for a model saved before genedml recorded it).
        """
        geo = (self.encoder_info_ or {}).get("geometry")
        return dict(geo) if geo else None

    def check_geometry(
        self, sdata: SpatialData, *, sections: list[str] | None = None, table_key: str | None = None
    ) -> None:
        """Raise ``ValueError`` when a section's windows would cover another field of view (µm) than in training.

        Windows cut at native resolution (``target_px`` pixels, the paper's choice) cover ``target_px`` × the pixel
        size: a model trained at 2 µm/px applied to a 0.5 µm/px image would see a quarter of the tissue width it
        learned on. Windows of a physical size (``target_um``) are resampled to the same µm on any image, so they
        always match. A difference above 15% is refused.
        """
        from .. import io as gio

        geo = self.geometry_
        if not geo or not geo.get("window_um"):
            return
        train_um = float(np.median(list(geo["window_um"].values())))
        train_mpp = float(np.median(list(geo["pixel_size_um"].values())))
        secs = gio.sections(sdata, table_key=table_key) if sections is None else list(sections)
        for sec in secs:
            mpp = float(gio.pixel_size(sdata, sec))
            um = self._window_um(mpp)
            if abs(um / train_um - 1.0) > _GEOMETRY_TOLERANCE:
                raise ValueError(
                    f"section {sec!r} has a pixel size of {mpp:.4g} µm/px but the model was trained at "
                    f"{train_mpp:.4g} µm/px with windows of {self.encoder.target_px} native pixels: its windows "
                    f"would cover {um:.4g} µm instead of the {train_um:.4g} µm the model learned on. Use an image at "
                    f"the training pixel size, or train with `target_um` (windows cut and resampled in µm)."
                )

    def _spot_data(
        self,
        sdata: SpatialData,
        *,
        sections: list[str],
        table_key: str | None,
        progress: bool | None,
        y: np.ndarray | None = None,
    ) -> SpotData:
        """Features of ``sections`` from the store (computed on a miss) as `SpotData`; ``y``: targets of those rows."""
        from .. import features
        from .. import io as gio
        from ..dataloaders import SpotData

        self._require_weights()
        enc = self.encoder
        scales = tuple(self.scales)
        fs = features.compute_features(
            sdata,
            features=enc,
            scales=scales,
            sections=sections,
            table_key=table_key,
            progress=resolve_progress(progress),
        )
        self._check_encoder(fs.record)
        # the provenance of the features (no arrays): of the training data, and of the last prediction
        info = _plain({k: v for k, v in fs.record.items() if k != "store"})
        if info["params"].get("weights"):  # a model file never holds a path (issue 10): the file's name only
            info["params"]["weights"] = Path(str(info["params"]["weights"])).name
        if y is not None:
            self.features_ = info
        else:
            self.predict_features_ = info
        table = gio.get_table(sdata, table_key=table_key)
        sec_col = table.obs[Keys.section].astype(str).to_numpy()
        rows = np.flatnonzero(np.isin(sec_col, sections))
        local = {s: np.arange(int((sec_col == s).sum())) for s in sections}
        variants = 8 if (enc.dihedral and self.train_config.augment and y is not None) else 1
        parts = fs.stack(sections, local, variants=variants)
        # the stack holds the sections one after another; the table may interleave them
        order = np.concatenate([np.flatnonzero(sec_col == s) for s in sections])
        stack_of = np.empty(table.n_obs, np.int64)
        stack_of[order] = np.arange(len(order))
        perm = stack_of[rows]
        identity = bool(np.array_equal(perm, np.arange(len(perm))))  # one section, or sections not interleaved
        tokens = parts["tokens"]
        names = sorted(set(sec_col[rows]))
        nb = parts["neighbor_index"]
        return SpotData(
            target=None if tokens is None else tokens[0].subset(perm),
            tiles=parts["tiles"],
            global_index=parts["global_index"][perm],
            neighbor_index=np.zeros((len(rows), 0), np.int64) if nb is None else (nb if identity else nb[perm]),
            pos=table.obs[[Keys.array_row, Keys.array_col]].to_numpy()[rows].astype(np.int64),
            section=np.searchsorted(np.array(names), sec_col[rows]),
            section_names=names,
            y=None if y is None else np.asarray(y, dtype=np.float32),
            target_variants=None if tokens is None or variants == 1 else [t.subset(perm) for t in tokens],
        )

    def _check_encoder(self, info: dict) -> None:
        enc = info.get("encoder", {})
        seen = {
            "encoder": enc.get("identity"),
            "weights_hash": enc.get("weights_hash"),
            "dim": int(info["D"]),
            "n_tokens": info.get("T"),
            "target_um": {s: g.get("target_um") for s, g in info.get("sections", {}).items()},
        }
        if self.encoder_info_ is None:
            self.encoder_info_ = {k: seen[k] for k in ("encoder", "weights_hash", "dim", "n_tokens")}
            self.encoder_info_["architecture"] = enc.get("architecture")
            self.in_dim_ = seen["dim"]
            return
        for k in ("encoder", "weights_hash", "dim"):
            if seen[k] != self.encoder_info_[k]:
                raise ValueError(
                    f"features were computed with {k}={seen[k]!r} but the model was trained with "
                    f"{self.encoder_info_[k]!r}: predictions need the training encoder and weights."
                )

    def _validation_hpg(self, k: int | None = None) -> list[str] | None:
        """Genes ranked by PCC on the validation split, best first: the top ``k`` (``None``: all).

        The HPG of protocol "clean" are the first ``n_hpg`` of this ranking, chosen without the test data.
        """
        from .. import metrics

        data = self._val_data
        if data is None or data.y is None or len(data) < 3:
            return None
        pred = self._predict_data(data)
        per_gene = metrics.evaluate_sections(data.y, pred, data.section, genes=self.genes_).per_gene
        r = per_gene.to_numpy(dtype=np.float64)
        ok = np.isfinite(r)
        if not ok.any():
            return None
        mean_r = np.where(ok, r, 0.0).sum(axis=0) / np.maximum(ok.sum(axis=0), 1)
        mean_r[~ok.any(axis=0)] = np.nan
        n = len(self.genes_) if k is None else min(k, len(self.genes_))
        return metrics.top_k_genes(mean_r, n, genes=self.genes_)

    def predict(
        self,
        sdata: SpatialData,
        *,
        sections: list[str] | None = None,
        table_key: str | None = None,
        progress: bool | None = None,
    ) -> np.ndarray:
        """Predict the model genes for every spot of ``sections``; returns ``(n_spots_of_sections, n_genes)``.

        Rows follow the table order restricted to ``sections``. Counts are not needed (H&E-only sections work).
        """
        return self._predict_data(self._prediction_data(sdata, sections, table_key, progress))

    def predict_chunks(
        self,
        sdata: SpatialData,
        *,
        sections: list[str] | None = None,
        table_key: str | None = None,
        chunk_size: int | None = None,
        progress: bool | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Like `predict`, chunk by chunk: yields ``(rows, pred)`` for consecutive rows of the spots of ``sections``.

        ``rows`` index the table order restricted to ``sections``. Gene-DML keeps memory bounded by one chunk
        (``chunk_size`` spots, default 65,536) and one band of the global encoder, whatever the number of spots;
        the baselines predict at once and then yield the slices.
        """
        if chunk_size is not None:
            assert_positive_int(chunk_size, name="chunk_size")
        yield from self._iter_predict(self._prediction_data(sdata, sections, table_key, progress), chunk=chunk_size)

    def _prediction_data(self, sdata, sections, table_key, progress) -> SpotData:
        """The features of the spots of ``sections`` (default all), after checking the model and the geometry."""
        from .. import io as gio

        if not self.is_ready():
            raise RuntimeError("the model is not trained: call `setup(...)` and `train()`, or load a saved model.")
        secs = gio.sections(sdata, table_key=table_key) if sections is None else list(sections)
        self.check_geometry(sdata, sections=secs, table_key=table_key)
        return self._spot_data(sdata, sections=secs, table_key=table_key, progress=progress)

    def _iter_predict(self, data: SpotData, *, chunk: int | None = None, bar=None):
        pred = self._predict_data(data)
        step = chunk or len(pred) or 1
        for s in range(0, len(pred), step):
            yield np.arange(s, min(len(pred), s + step)), pred[s : s + step]

    def is_ready(self) -> bool:
        """Whether `predict` can run."""
        return self.is_trained_ and self.genes_ is not None

    def _predict_data(self, data: SpotData) -> np.ndarray:
        raise NotImplementedError

    def _after_setup(self) -> None:
        """Hook run at the end of `setup` (build networks, check sizes)."""

    def check_compatible(self, sdata: SpatialData, *, table_key: str | None = None) -> None:
        """Raise ``ValueError`` if ``sdata`` is not fit for this model.

        Refused: a table lacking the model genes (when it has counts), features embedded under the model's encoder
        name with other weights, or sections whose windows would cover another field of view in µm than in training
        (see `check_geometry`).
        """
        from .. import io as gio

        self.check_geometry(sdata, table_key=table_key)
        table = gio.get_table(sdata, table_key=table_key)
        if table.n_vars > 0:
            missing = [g for g in self.genes_ if g not in table.var_names]
            if missing:
                raise ValueError(
                    f"the data lacks {len(missing)} of the model's {len(self.genes_)} genes (e.g. {missing[:5]}): "
                    "it cannot be evaluated against this model."
                )
        feats = table.uns.get(Keys.uns, {}).get("features", {})
        info = feats.get(self.encoder.name)
        if info is not None and "store" in info:  # embedded by the user with this encoder: must match the model's
            self._check_encoder(info)


def feature_spec_from_record(rec: dict[str, Any]) -> FeatureSpec:
    """The `FeatureSpec` of a checkpoint's encoder record (``weights_file`` and the former ``name`` key handled)."""
    d = {k: v for k, v in dict(rec).items() if k != "weights_file"}
    if "name" in d:
        d["encoder"] = d.pop("name")
    d["weights"] = None  # a checkpoint never names a file to open: the user passes it back (`set_weights`)
    return FeatureSpec.from_dict(d)


def _resolve_sections(all_secs, sections, val_sections) -> tuple[list[str], list[str]]:
    sections = [sections] if isinstance(sections, str) else sections  # one name, not its characters
    val_sections = [val_sections] if isinstance(val_sections, str) else val_sections
    val = list(val_sections or [])
    train = [s for s in all_secs if s not in val] if sections is None else list(sections)
    unknown = sorted((set(train) | set(val)) - set(all_secs))
    if unknown:
        raise KeyError(f"`sections`/`val_sections`: unknown section(s) {unknown}; available: {all_secs}.")
    if not train:
        raise ValueError("`sections`: no training section left.")
    if set(train) & set(val):
        raise ValueError(f"sections {sorted(set(train) & set(val))} are both training and validation sections.")
    return train, val


def _targets(table, *, genes, n_top_genes, panel, normalize, smooth, train_mask) -> tuple[list[str], np.ndarray, dict]:
    """Genes, normalised targets ``(n_obs, G)`` and the recipe record, computed on a scratch AnnData.

    The scratch object shares the table's counts and ``obs`` columns, so gene selection and normalisation run
    exactly as `gd.pp.select_genes` / `gd.pp.normalize` would on the table, without writing into it.
    """
    import anndata as ad

    from .. import pp

    cols = [c for c in (Keys.section, Keys.patient, Keys.array_row, Keys.array_col) if c in table.obs]
    layers = {Keys.counts: table.layers[Keys.counts]} if Keys.counts in table.layers else {}
    scratch = ad.AnnData(X=table.X, obs=table.obs[cols].copy(), var=table.var[[]].copy(), layers=layers)
    chosen = pp.select_genes(
        scratch, n_top_genes=n_top_genes, genes=genes, panel=panel, train_mask=train_mask, inplace=False
    )
    pp.normalize(scratch, genes=chosen, recipe=normalize, smooth=smooth, key_added=TARGET_KEY)
    return (
        list(chosen),
        np.asarray(scratch.obsm[TARGET_KEY], dtype=np.float32),
        dict(scratch.uns[Keys.uns]["normalize"]),
    )
