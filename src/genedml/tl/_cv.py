"""``gd.tl.cross_validate``: grouped cross-validation of Gene-DML and baselines in one harness."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._data_model import get_table
from .._keys import Keys
from .._logging import logger
from .._utils import resolve_progress
from .._validators import assert_positive_int
from ._cv_resume import data_fingerprint, load_done, model_path, run_fingerprint, save_done
from ._recipes import route_shorthands

if TYPE_CHECKING:
    from spatialdata import SpatialData

    from ..models import EnsembleModel

__all__ = ["CVResult", "cross_validate"]

SCORES = ["mse", "mae", "pcc_a", "pcc_h"]


@dataclass
class CVResult:
    """Cross-validation results.

    Attributes
    ----------
    scores
        Tidy per-section scores: ``method, fold, test_group, section, n_spots, mse, mae, pcc_a, pcc_h, …``.
    summary
        Per method and metric: ``mean`` and ``std`` over folds of the fold means (the paper's "mean ± std").
    models
        ``{(method, fold): model}`` when ``keep_models=True``.
    params
        Everything that decided the numbers (protocol, genes, recipe, encoder, folds).
    """

    scores: pd.DataFrame
    summary: pd.DataFrame
    models: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    def table(self, *, metrics: tuple[str, ...] = tuple(SCORES), digits: int = 3) -> pd.DataFrame:
        """The paper's Table 1 layout: one row per method, ``mean ± std`` strings per metric.

        Under ``protocol="paper"`` the index is named ``"method (paper protocol: optimistic)"``, so a printed table
        carries the label.
        """
        out = {}
        for m, df in self.summary.groupby(level=0, sort=False):
            df = df.droplevel(0)
            out[m] = {k: _mean_std(df.loc[k, "mean"], df.loc[k, "std"], digits) for k in metrics if k in df.index}
        df = pd.DataFrame(out).T
        df.index.name = "method (paper protocol: optimistic)" if self.params.get("optimistic") else "method"
        return df

    def ensemble(self, method: str) -> EnsembleModel:
        """The fold models of ``method`` as one model whose prediction is their mean (for external data)."""
        from ..models import EnsembleModel

        models = [m for (name, _), m in self.models.items() if name == method]
        if not models:
            raise KeyError(
                f"`method`={method!r}: no kept fold models (methods: {sorted({k[0] for k in self.models})})."
            )
        return EnsembleModel(models)


def _scratch_restored(func):
    """Run ``func(sdata, …, table_key=…)`` and put the table back afterwards except the documented keys."""
    import functools

    @functools.wraps(func)
    def wrapper(sdata, *args, **kwargs):
        from .._snapshot import restore_table, table_state

        table = get_table(sdata, table_key=kwargs.get("table_key"))
        if "n_hpg" in kwargs:  # checked here, not as `k` deep inside the HPG selection after all folds ran
            assert_positive_int(kwargs["n_hpg"], name="n_hpg")
        state = table_state(table)
        try:
            out = func(sdata, *args, **kwargs)
        except BaseException:
            restore_table(table, state)
            raise
        restore_table(table, state, keep_uns=("cv",))  # a safety net: the models write nothing
        return out

    return wrapper


@_scratch_restored
def cross_validate(
    sdata: SpatialData,
    *,
    methods: tuple[str, ...] | list[str] = ("gene_dml",),
    groupby: str = Keys.patient,
    k: int | None = None,
    features: Any = None,
    targets: Any = None,
    train_config: Any = None,
    method_kwargs: dict[str, dict] | None = None,
    n_hpg: int = 50,
    interval: float | None = None,
    resume_dir: str | Path | None = None,
    table_key: str | None = None,
    progress: bool | None = None,
    **shorthands: Any,
) -> CVResult:
    """Grouped cross-validation: leave-one-group-out (``k=None``) or ``k``-fold over ``obs[groupby]`` groups.

    Every method sees the same folds, genes recipe, features and metrics. Inside each fold, data-driven gene
    selection uses the training spots only and normalisation is per section (no leakage); early stopping uses an
    inner split of the training fold grouped by patient (``protocol="clean"``) or the test fold itself
    (``"paper"``, the released code's choice, marked optimistic). PCC(H) uses the genes chosen on each model's
    validation split (clean) or the paper's rank-averaging over test folds (paper).

    Parameters
    ----------
    sdata
        Data with counts and at least two groups.
    methods
        Names understood by `genedml.models.make_method`: ``"gene_dml"``, ``"triplex"``, ablation rows
        (``"no_instance_level"`` …), ``"mean"``, ``"ridge"``, ``"bleep"``, ``"stnet"``.
    groupby
        ``obs`` column of the groups (``"patient"``; ``"section"`` for leave-one-section-out).
    k
        Number of folds over groups; ``None`` = one fold per group.
    features
        The features' recipe shared by all methods: `genedml.features.FeatureSpec` or an encoder name.
    targets
        The targets' recipe: `genedml.pp.TargetSpec` (genes / ``n_top_genes`` / panel, normalisation, smoothing).
    train_config
        `TrainConfig` (or dict of its fields) shared by trainable methods. Its ``protocol`` (``"clean"`` or
        ``"paper"``) decides the validation data, and its ``seed`` the fold assignment of ``k`` folds too (when not
        given: ``gd.settings.seed``).
    method_kwargs
        Extra keyword arguments per method name; a ``"train_config"`` entry updates ``train_config`` for that method
        only (``protocol`` and ``seed`` stay those of the call).
    n_hpg
        Number of highly predictive genes.
    interval
        Also score cross-conformal prediction intervals at this level (strictly between 0 and 1): fold ``f``'s
        half-width per gene is the conformal quantile (crepes) of the absolute residuals of the *other* folds'
        models on their held-out groups, so no fold calibrates on its own test data. Adds ``coverage`` and
        ``interval_width`` to the scores and the per-gene coverage to ``uns["genedml"]["cv"]["interval"]``. Intervals
        normalised by an ensemble's spread: `gd.tl.calibrate`. Resumed folds need their saved models.
    resume_dir
        Folder where each finished (method, fold) stores its scores (and model when it can be saved); a rerun skips
        them.
    table_key
        Spot table.
    progress
        Progress bar over folds.
    **shorthands
        Single recipe fields for short calls, overriding ``features``, ``targets`` and ``train_config``:
        `FeatureSpec` fields (``encoder``, ``target_um`` …; ``embed_batch_size``), `TargetSpec` fields
        (``n_top_genes`` …) and `TrainConfig` fields (``protocol``, ``seed``, ``max_epochs`` …); plus ``config``
        (`GeneDMLConfig`, preset name or dict for the Gene-DML family) and ``keep_models`` (default ``True``: keep
        every fold model in the result, for ensembles).

    Returns
    -------
    A `CVResult`; its scores, summary and parameters are also stored in ``uns["genedml"]["cv"]``, the only thing
    written into the table (features stay in the feature store, targets and genes in the fold models). A failed call
    leaves the table as it was.
    """
    from .. import metrics, pp
    from .._settings import settings
    from ..dataloaders import group_kfold, leave_one_group_out
    from ..models import METHODS, TrainConfig, load_method, make_method

    rec = route_shorthands(
        shorthands, features=features, targets=targets, extra={"config": None, "keep_models": True},
        where="gd.tl.cross_validate",
    )  # fmt: skip
    if isinstance(train_config, TrainConfig):
        train_config = train_config.to_dict()
    if train_config is not None and not isinstance(train_config, dict):
        raise ValueError(f"`train_config` must be a TrainConfig or a dict of its fields, got {train_config!r}.")
    train_config = {**(train_config or {}), **rec.train}
    protocol = train_config.pop("protocol", "clean")
    seed = train_config.pop("seed", None)
    config, keep_models = rec.extra["config"], rec.extra["keep_models"]
    if not isinstance(keep_models, bool):
        raise ValueError(f"`keep_models` must be a bool, got {keep_models!r}.")
    ts = rec.targets
    genes = None if ts.genes is None else list(ts.genes)
    n_top_genes, panel, normalize, smooth = ts.n_top_genes, ts.panel, ts.normalize, ts.smooth
    weights = rec.features.weights
    if protocol not in ("clean", "paper"):
        raise ValueError(f"`protocol` must be 'clean' or 'paper', got {protocol!r}.")
    if interval is not None:
        from ._uncertainty import check_level

        interval = check_level(interval)
    methods = [methods] if isinstance(methods, str) else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"`methods` must name some of {list(METHODS)}; unknown: {unknown or 'none given'}.")
    table = get_table(sdata, table_key=table_key)
    if groupby not in table.obs:
        raise KeyError(f"`groupby`={groupby!r} is not an obs column (e.g. 'patient' or 'section').")
    seed = settings.seed if seed is None else seed
    sec = table.obs[Keys.section].astype(str).to_numpy()
    groups = table.obs[groupby].astype(str).to_numpy()
    _check_groups_nest_sections(sec, groups, groupby)
    n_groups = len(pd.unique(groups))
    if n_groups < 2:
        raise ValueError(f"`groupby`={groupby!r} has {n_groups} group: cross-validation needs at least 2.")
    folds = leave_one_group_out(groups) if k is None else group_kfold(groups, k=k, seed=seed)
    shared = {"features": rec.features}
    resume = Path(resume_dir) if resume_dir is not None else None
    data_fp = data_fingerprint(sdata, table) if resume is not None else None
    rows, models, per_gene, resid = [], {}, {}, {}
    bar = _bar(len(folds) * len(methods), progress)
    inner = resolve_progress(progress)  # nested: each task's embedding and epochs under the task bar
    for f, (tr, te, label) in enumerate(folds):
        train_secs, test_secs = sorted(set(sec[tr])), sorted(set(sec[te]))
        for name in methods:
            kw = {**shared, **(method_kwargs or {}).get(name, {})}
            # per-method training settings (e.g. fewer epochs for a fine-tuned CNN) over the shared ones; the call's
            # protocol and seed always win
            tc_m = {**(train_config or {}), **(kw.pop("train_config", None) or {}), "protocol": protocol, "seed": seed}
            fingerprint = run_fingerprint(
                method=name,
                method_kwargs=kw,
                train_sections=train_secs,
                test_sections=test_secs,
                groupby=groupby,
                k=k,
                protocol=protocol,
                genes=genes,
                n_top_genes=n_top_genes,
                panel=panel,
                normalize=normalize,
                smooth=smooth,
                config=config,
                train_config=tc_m,
                n_hpg=n_hpg,
                data=data_fp,
            )
            done = load_done(resume, name, f, fingerprint)
            saved = model_path(resume, name, f) if resume is not None else None
            if done is not None and keep_models and not saved.is_file():
                # scores without a model (an earlier run with keep_models=False): retrain so that every fold
                # model is there for `CVResult.ensemble`
                logger.info("resume: %s fold %d has scores but no saved model; retraining it", name, f)
                done = None
            if done is not None:
                rows += done["rows"]
                per_gene[(name, f)] = pd.DataFrame(done["per_gene"])
                if keep_models:
                    models[(name, f)] = load_method(saved, weights=weights, sdata=sdata, table_key=table_key)
                if interval is not None:
                    resid[(name, f)] = _residuals(
                        sdata, models.get((name, f)), sec, test_secs, normalize, smooth, table_key
                    )
                bar.update(1)
                continue
            bar.set_description(f"cross-validation: {name}, fold {f + 1}/{len(folds)}")  # epochs show below
            model = make_method(name, config=config, train_config=tc_m, **kw)
            model.setup(
                sdata,
                genes=genes,
                n_top_genes=n_top_genes,
                panel=panel,
                normalize=normalize,
                smooth=smooth,
                sections=train_secs,
                val_sections=test_secs if protocol == "paper" else None,
                table_key=table_key,
                progress=inner,
            )
            model.train(progress=inner)
            pred = model.predict(sdata, sections=test_secs, table_key=table_key, progress=inner)
            test_rows = np.flatnonzero(np.isin(sec, test_secs))
            truth = pp.normalize(
                sdata, genes=model.genes_, recipe=normalize, smooth=smooth, table_key=table_key, inplace=False
            )[test_rows]
            hpg = list(model.fit_info_.get("hpg") or [])[:n_hpg] if protocol == "clean" else None  # best first
            res = metrics.evaluate_sections(truth, pred, sec[test_rows], genes=model.genes_, hpg=hpg or None)
            if len(model.genes_) <= n_hpg:  # PCC(H) over all genes would only repeat PCC(A): n/a, as in evaluate
                res.per_section["pcc_h"] = np.nan
            fold_rows = [
                {"method": name, "fold": f, "test_group": label, "section": s, **r}
                for s, r in res.per_section.to_dict("index").items()
            ]
            rows += fold_rows
            per_gene[(name, f)] = res.per_gene
            if interval is not None:
                resid[(name, f)] = (sec[test_rows], np.abs(truth - pred), list(model.genes_))
            if resume is not None and keep_models:  # the model first: the scores file marks the fold as done
                model.save(saved, overwrite=True)
            save_done(resume, name, f, fold_rows, res.per_gene, fingerprint)
            if keep_models:
                models[(name, f)] = model
            bar.update(1)
            pcc = res.per_section["pcc_a"].to_numpy(dtype=float)
            shown = float(pcc[np.isfinite(pcc)].mean()) if np.isfinite(pcc).any() else float("nan")
            logger.info("fold %d (%s) %s: PCC(A) %.3f", f, label, name, shown)
    bar.close()
    scores = pd.DataFrame(rows)
    if protocol == "paper":
        scores = _paper_hpg(scores, per_gene, n_hpg)
    cv_interval = _interval_scores(scores, resid, interval) if interval is not None else None
    if cv_interval is not None:
        scores = cv_interval.pop("scores")
    summary = _summarise(scores)
    params = {
        "methods": list(methods),
        "groupby": groupby,
        "k": k,
        "protocol": protocol,
        "optimistic": protocol == "paper",
        "folds": [{"test_group": lbl, "n_test": len(te)} for _, te, lbl in folds],
        "genes": genes,
        "n_top_genes": n_top_genes,
        "panel": panel,
        "normalize": normalize,
        "smooth": smooth,
        "encoder": rec.features.to_dict(),
        "seed": seed,
        "n_hpg": n_hpg,
        "interval": interval,
    }
    table.uns.setdefault(Keys.uns, {})["cv"] = {"scores": scores, "summary": summary.reset_index(), "params": params}
    if cv_interval is not None:
        table.uns[Keys.uns]["cv"]["interval"] = cv_interval
    return CVResult(scores=scores, summary=summary, models=models, params=params)


def _residuals(sdata, model, sec, test_secs, normalize, smooth, table_key):
    """``(sections, |y − ŷ|, genes)`` of a resumed fold's saved model on its test sections."""
    from .. import pp

    if model is None:
        raise ValueError("`interval` with `resume_dir` needs the finished folds' models: pass keep_models=True.")
    pred = model.predict(sdata, sections=test_secs, table_key=table_key, progress=False)
    rows = np.flatnonzero(np.isin(sec, test_secs))
    truth = pp.normalize(sdata, genes=model.genes_, recipe=normalize, smooth=smooth, table_key=table_key, inplace=False)
    return sec[rows], np.abs(truth[rows] - pred), list(model.genes_)


def _interval_scores(scores: pd.DataFrame, resid: dict, level: float) -> dict:
    """Cross-conformal coverage and width per method, fold and section (columns added to ``scores``)."""
    from ._uncertainty import _library, cross_conformal

    parts, genes_out = [], []
    for name in scores["method"].unique():
        folds = {f: r for (m, f), r in resid.items() if m == name}
        common = [g for g in next(iter(folds.values()))[2] if all(g in r[2] for r in folds.values())]
        folds = {f: (s, e[:, [gs.index(g) for g in common]]) for f, (s, e, gs) in folds.items()}
        per_sec, per_gene = cross_conformal(folds, common, level)
        parts.append(per_sec.assign(method=name))
        genes_out.append(per_gene.assign(method=name))
    add = pd.concat(parts, ignore_index=True)
    merged = scores.drop(columns=["coverage", "interval_width"], errors="ignore").merge(
        add, on=["method", "fold", "section"], how="left"
    )
    return {
        "scores": merged,
        "level": level,
        "method": "cross-conformal: absolute residuals of the other folds' models on their held-out groups",
        "library": _library(),
        "coverage_per_gene": pd.concat(genes_out, ignore_index=True),
    }


def _check_groups_nest_sections(sec: np.ndarray, groups: np.ndarray, groupby: str) -> None:
    df = pd.DataFrame({"s": sec, "g": groups}).drop_duplicates()
    split = df.groupby("s")["g"].nunique()
    if (split > 1).any():
        raise ValueError(
            f"`groupby`={groupby!r} splits section(s) {list(split.index[split > 1])[:5]} across groups; groups must "
            "contain whole sections (the global encoder sees a section at once)."
        )


def _paper_hpg(scores: pd.DataFrame, per_gene: dict, n_hpg: int) -> pd.DataFrame:
    """Paper protocol: HPG per method = rank-average over test folds, then PCC(H) recomputed (optimistic)."""
    from .. import metrics

    scores = scores.copy()
    for name in scores["method"].unique():
        folds = {f: pg for (m, f), pg in per_gene.items() if m == name}
        common = sorted(set.intersection(*[set(pg.columns) for pg in folds.values()]))
        by_fold = pd.DataFrame({f: pg[common].mean(axis=0) for f, pg in folds.items()}).T
        if len(common) <= n_hpg:  # PCC(H) over all genes would only repeat PCC(A): n/a, as in evaluate
            scores.loc[scores["method"] == name, "pcc_h"] = np.nan
            continue
        hpg = metrics.select_hpg(by_fold, k=min(n_hpg, len(common)))
        for f, pg in folds.items():
            for s in pg.index:
                m = (scores["method"] == name) & (scores["fold"] == f) & (scores["section"] == s)
                r = pg.loc[s, hpg].to_numpy(dtype=float)
                scores.loc[m, "pcc_h"] = float(r[np.isfinite(r)].mean()) if np.isfinite(r).any() else np.nan
                if "n_nan_hpg" in scores:
                    scores.loc[m, "n_nan_hpg"] = int(np.isnan(r).sum())
    return scores


def _mean_std(mean: float, std: float, digits: int) -> str:
    """``"mean ± std"``, or ``"n/a"`` for a metric that was not computed (e.g. PCC of the constant mean predictor)."""
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _summarise(scores: pd.DataFrame) -> pd.DataFrame:
    from .. import metrics

    out = []
    for name, df in scores.groupby("method", sort=False):
        per_fold = metrics.aggregate_sections(df.drop(columns=["method", "test_group", "section"]), by="fold")
        agg = metrics.aggregate_folds(per_fold)
        agg.index = pd.MultiIndex.from_product([[name], agg.index], names=["method", "metric"])
        out.append(agg)
    return pd.concat(out)


def _bar(total: int, progress: bool | None):
    from .._utils import tqdm_class

    return tqdm_class()(total=total, desc="cross-validation", disable=not resolve_progress(progress), leave=False)
