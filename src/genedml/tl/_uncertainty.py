"""``gd.tl.calibrate``: split-conformal prediction intervals, grouped by section or patient, normalised by spread.

The conformity score of a calibration spot and gene is ``|y − μ| / (σ + β)``: ``μ`` and ``σ`` are the mean and the
standard deviation of the ensemble members that never saw the spot's group (its section, or every section of its
patient), ``β`` the gene's median ``σ`` (a floor that keeps the score finite where members agree). Quantiles and
intervals come from crepes' normalised `ConformalRegressor`; genedml adds the grouping (which residuals are honest)
and the persistence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .._data_model import get_table
from .._keys import Keys
from .._logging import logger

if TYPE_CHECKING:
    from spatialdata import SpatialData

    from ..models import EnsembleModel

__all__ = ["calibrate"]

#: nominal levels at which `gd.tl.predict` records the calibrated score quantiles (for the calibration curve)
CURVE_LEVELS = tuple(round(x, 2) for x in np.arange(0.05, 1.0, 0.05))
METHOD = "split-conformal, normalised by ensemble spread"


def calibrate(
    sdata: SpatialData,
    model,
    *,
    sections: list[str] | None = None,
    groupby: str = Keys.section,
    table_key: str | None = None,
    progress: bool | None = None,
) -> EnsembleModel:
    """Calibrate prediction intervals on groups (sections or patients) the model never trained on.

    Spots of one section are spatially correlated, so spots are not exchangeable and a spot-level split gives
    optimistic intervals; here the calibration units are whole ``groupby`` groups. For every calibration spot the
    members of the ensemble that trained (or early-stopped) on none of the sections of its group give the mean
    ``μ`` and spread ``σ`` (std over those members); the normalised residuals ``|y − μ| / (σ + β)`` are kept, and
    `gd.tl.predict` with ``interval=level`` turns them into intervals ``μ ± q_level · (σ + β)`` — wider where the
    members disagree. ``β`` is the gene's median ``σ`` over the calibration spots (1 for a single model, whose
    intervals then have a constant width per gene).

    Two honest set-ups: an ensemble (seeds, fold models of `gd.tl.cross_validate`) trained without some sections,
    calibrated on those sections; or a bagged ensemble whose members each leave out different sections, calibrated
    out-of-bag on the training sections themselves (every calibration section must be unseen by at least two
    members). The calibration travels with `EnsembleModel.save`, so H&E-only slides get intervals too. Prefer the
    first when intervals should be tight: out-of-bag scores come from the few members that missed a section while the
    intervals use all members, whose mean is closer to the truth, so out-of-bag intervals are conservative (measured
    on synthetic data: 90 % coverage for 80 % intervals; ``benchmarks/bench_uncertainty.py --synthetic``).

    Parameters
    ----------
    sdata
        Data with counts for the calibration sections.
    model
        An `EnsembleModel` (e.g. ``CVResult.ensemble(...)``) or one fitted model (wrapped in a one-member ensemble).
    sections
        Calibration sections; ``None``: every section that enough members never saw.
    groupby
        ``obs`` column of the exchangeable units (``"section"`` or ``"patient"``); a member counts as having seen a
        spot when it trained on any section of the spot's group.
    table_key
        Spot table.
    progress
        Progress bars of the members' predictions.

    Returns
    -------
    A calibrated `EnsembleModel` (same members; the input model is not modified). ``calibration_`` holds the
    scores, ``beta``, the genes, ``groupby``, the calibration groups and sections, and the method.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny", n_sections=3)
    >>> kw = dict(n_top_genes=10, encoder="test_resnet", pretrained=False, config="cpu", max_epochs=1, batch_size=32)
    >>> members = [gd.tl.fit(sdata, sections=["S1"], val_sections=["S2"], seed=s, **kw) for s in (0, 1)]
    >>> model = gd.tl.calibrate(sdata, gd.models.EnsembleModel(members), sections=["S3"])
    >>> model.calibration_["groups"]
    ['S3']
    """
    from .. import pp
    from ..models import EnsembleModel

    ens = model if isinstance(model, EnsembleModel) else EnsembleModel([model])
    table = get_table(sdata, table_key=table_key)
    if groupby not in table.obs:
        raise KeyError(f"`groupby`={groupby!r} is not an obs column (e.g. 'section' or 'patient').")
    sec = table.obs[Keys.section].astype(str).to_numpy()
    grp = table.obs[groupby].astype(str).to_numpy()
    sec_group = _section_groups(sec, grp, groupby)
    missing = [g for g in ens.genes_ if g not in table.var_names]
    if missing:
        raise ValueError(f"`sdata` lacks {len(missing)} model gene(s) (e.g. {missing[:3]}): calibration needs counts.")
    oob = _out_of_group(ens, sec_group, sections)
    cal_secs = sorted(oob)
    rows = np.flatnonzero(np.isin(sec, cal_secs))
    preds = ens.member_predictions(sdata, sections=cal_secs, table_key=table_key, progress=progress)
    norm = dict(ens.normalize_ or {})
    truth = pp.normalize(
        sdata,
        genes=ens.genes_,
        recipe=norm.get("recipe", "paper"),
        smooth=bool(norm.get("smooth", True)),
        grid=norm.get("grid", "auto"),
        table_key=table_key,
        inplace=False,
    )[rows].astype(np.float64)
    mu, sd = _oob_mean_sd(preds, sec[rows], oob)
    beta = _beta(sd)
    scores = (np.abs(truth - mu) / (sd + beta)).astype(np.float32)
    groups = sorted({sec_group[s] for s in cal_secs})
    logger.info("calibrated on %d spots of %s %s", len(rows), groupby, groups)
    cal = {
        "method": METHOD,
        "library": _library(),
        "groupby": groupby,
        "groups": groups,
        "sections": cal_secs,
        "n_spots": int(len(rows)),
        "min_members": int(min(len(v) for v in oob.values())),
        "genes": list(ens.genes_),
        "scores": scores,
        "beta": beta.astype(np.float32),
    }
    return EnsembleModel(ens.models, calibration=cal)


def _section_groups(sec: np.ndarray, grp: np.ndarray, groupby: str) -> dict[str, str]:
    df = pd.DataFrame({"s": sec, "g": grp}).drop_duplicates()
    split = df.groupby("s")["g"].nunique()
    if (split > 1).any():
        raise ValueError(f"`groupby`={groupby!r} splits section(s) {list(split.index[split > 1])[:5]} across groups.")
    return dict(zip(df["s"], df["g"], strict=True))


def _out_of_group(ens: EnsembleModel, sec_group: dict[str, str], sections) -> dict[str, list[int]]:
    """Calibration section → the members that saw no section of its group (at least 2, or 1 for one member)."""
    need = 2 if len(ens.models) > 1 else 1
    seen_groups = [{sec_group.get(s, f"?{s}") for s in seen} for seen in ens.seen_sections()]
    cand = sorted(sec_group) if sections is None else [str(s) for s in sections]
    unknown = sorted(set(cand) - set(sec_group))
    if unknown:
        raise KeyError(f"`sections`: unknown section(s) {unknown}; available: {sorted(sec_group)}.")
    oob = {s: [i for i, g in enumerate(seen_groups) if sec_group[s] not in g] for s in cand}
    short = {s: len(v) for s, v in oob.items() if len(v) < need}
    if sections is not None and short:
        raise ValueError(
            f"`sections`: {sorted(short)} belong to groups that {need} or more members must never have seen, but only "
            f"{short} member(s) did not train on them (intervals calibrated on training data would be optimistic)."
        )
    oob = {s: v for s, v in oob.items() if len(v) >= need}
    if not oob:
        raise ValueError(
            "no section to calibrate on: every section was seen in training by the members (pass an ensemble trained "
            f"without some sections, needing {need} member(s) unseen per calibration section)."
        )
    return oob


def _oob_mean_sd(preds: np.ndarray, sec: np.ndarray, oob: dict[str, list[int]]) -> tuple[np.ndarray, np.ndarray]:
    mu = np.empty(preds.shape[1:], dtype=np.float64)
    sd = np.zeros(preds.shape[1:], dtype=np.float64)
    for s, members in oob.items():
        m = sec == s
        p = preds[members][:, m].astype(np.float64)
        mu[m] = p.mean(axis=0)
        if len(members) > 1:
            sd[m] = p.std(axis=0, ddof=1)
    return mu, sd


def _beta(sd: np.ndarray) -> np.ndarray:
    beta = np.median(sd, axis=0)
    return np.where(np.isfinite(beta) & (beta > 0), beta, 1.0)


def _library() -> str:
    from importlib.metadata import version

    return f"crepes {version('crepes')}"


def check_level(level, name: str = "interval") -> float:
    """A nominal coverage strictly between 0 and 1 (``0.9``, not ``90``)."""
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < float(level) < 1:
        raise ValueError(f"`{name}` must be a coverage level strictly between 0 and 1 (e.g. 0.9), got {level!r}.")
    return float(level)


def score_quantiles(cal: dict, levels, name: str = "interval") -> np.ndarray:
    """``(n_levels, n_genes)`` calibrated score quantiles (crepes' conformal quantile); inf where too few spots."""
    from crepes import ConformalRegressor

    scores = np.asarray(cal["scores"], dtype=np.float64)
    out = np.full((len(levels), scores.shape[1]), np.inf)
    for j in range(scores.shape[1]):
        a = scores[:, j][np.isfinite(scores[:, j])]
        cr = ConformalRegressor().fit(residuals=a, sigmas=np.ones_like(a))
        for i, level in enumerate(levels):
            if int((1 - level) * (len(a) + 1)) - 1 >= 0:  # crepes' index; below it warns and returns inf
                out[i, j] = cr.predict_int(y_hat=np.zeros(1), sigmas=np.ones(1), confidence=level)[0, 1]
    return out


def intervals(cal: dict, mean: np.ndarray, sd: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds ``mean ± q_level · (sd + β)`` per gene; refuses levels the calibration cannot serve."""
    scores = np.asarray(cal["scores"])
    n = int(np.isfinite(scores).sum(axis=0).min()) if scores.size else 0
    if int((1 - level) * (n + 1)) - 1 < 0:
        raise ValueError(
            f"`interval`={level}: {n} calibration spots per gene are too few for this level (at least "
            f"{int(np.ceil(1 / (1 - level))) - 1} needed); calibrate on more sections or choose a lower level."
        )
    q = score_quantiles(cal, [level])[0]
    half = q[None, :] * (sd + np.asarray(cal["beta"])[None, :])
    return (mean - half).astype(np.float32), (mean + half).astype(np.float32)


def cross_conformal(
    residuals: dict[int, tuple[np.ndarray, np.ndarray]], genes: list[str], level: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Coverage and width of cross-conformal intervals in a grouped cross-validation (one method).

    ``residuals[f] = (section labels, |y − ŷ|)`` of fold ``f``'s model on its held-out groups. Fold ``f``'s
    interval half-width per gene is the conformal quantile (crepes) of the other folds' held-out residuals — every
    residual comes from a model that never saw its group — so no fold calibrates on its own test data.

    Returns
    -------
    ``(per_section, per_gene)``: ``fold, section, coverage, interval_width`` and ``fold, section`` + one coverage
    column per gene.
    """
    from .. import metrics

    if len(residuals) < 2:
        raise ValueError("`interval` in cross-validation needs at least 2 folds (calibration uses the other folds).")
    rows, per_gene = [], []
    for f, (sec, err) in residuals.items():
        other = np.concatenate([e for g, (_, e) in residuals.items() if g != f])
        cal = {"scores": other, "beta": np.ones(other.shape[1])}
        n = int(np.isfinite(other).sum(axis=0).min())
        if int((1 - level) * (n + 1)) - 1 < 0:
            raise ValueError(f"`interval`={level}: {n} held-out spots per gene in the other folds are too few.")
        half = score_quantiles(cal, [level])[0]
        zero = np.zeros_like(err)
        by_sec, cov, _ = metrics.interval_scores(err, zero - half, zero + half, sec, genes=genes)
        for s, r in by_sec.iterrows():
            rows.append({"fold": f, "section": s, "coverage": r["coverage"], "interval_width": 2 * float(half.mean())})
        per_gene.append(cov.reset_index(names="section").assign(fold=f))
    return pd.DataFrame(rows), pd.concat(per_gene, ignore_index=True)
