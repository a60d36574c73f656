"""Prediction-interval metrics: empirical coverage and mean width, per section and per gene (NumPy only)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["coverage_curve", "interval_scores"]


def interval_scores(
    truth: np.ndarray, lower: np.ndarray, upper: np.ndarray, section: np.ndarray, *, genes: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Coverage (share of ``lower ≤ truth ≤ upper``) and mean width ``upper − lower``, per section and gene.

    Spot × gene pairs with a non-finite value in any input are left out.

    Parameters
    ----------
    truth, lower, upper
        ``(n_spots, n_genes)`` arrays in the same units.
    section
        ``(n_spots,)`` section labels.
    genes
        Column names.

    Returns
    -------
    ``(per_section, coverage_per_gene, width_per_gene)``: ``per_section`` has columns ``coverage``,
    ``interval_width``, ``n_pairs`` (index ``section``); the other two are sections × genes.

    Examples
    --------
    >>> import numpy as np
    >>> from genedml.metrics import interval_scores
    >>> y = np.array([[0.0, 1.0], [2.0, 3.0]])
    >>> per_section, cov, width = interval_scores(y, y - 1, y + 1, np.array(["S1", "S1"]), genes=["a", "b"])
    >>> float(per_section.loc["S1", "coverage"]), float(per_section.loc["S1", "interval_width"])
    (1.0, 2.0)
    """
    truth, lower, upper = (np.asarray(a, dtype=np.float64) for a in (truth, lower, upper))
    if not (truth.shape == lower.shape == upper.shape) or truth.ndim != 2:
        raise ValueError(
            f"`truth`, `lower`, `upper` must share one 2-D shape, got {truth.shape}, {lower.shape}, {upper.shape}."
        )
    section = np.asarray(section).astype(str)
    ok = np.isfinite(truth) & np.isfinite(lower) & np.isfinite(upper)
    inside = ((truth >= lower) & (truth <= upper) & ok).astype(np.float64)
    width = np.where(ok, upper - lower, 0.0)
    secs = list(pd.unique(section))
    rows, cov_g, wid_g = {}, {}, {}
    for s in secs:
        m = section == s
        n = ok[m].sum(axis=0)
        rows[s] = {
            "coverage": inside[m].sum() / max(n.sum(), 1) if n.sum() else np.nan,
            "interval_width": width[m].sum() / max(n.sum(), 1) if n.sum() else np.nan,
            "n_pairs": int(n.sum()),
        }
        with np.errstate(invalid="ignore", divide="ignore"):
            cov_g[s] = np.where(n > 0, inside[m].sum(axis=0) / np.maximum(n, 1), np.nan)
            wid_g[s] = np.where(n > 0, width[m].sum(axis=0) / np.maximum(n, 1), np.nan)
    per_section = pd.DataFrame.from_dict(rows, orient="index")
    per_section.index.name = "section"
    cov = pd.DataFrame.from_dict(cov_g, orient="index", columns=list(genes))
    wid = pd.DataFrame.from_dict(wid_g, orient="index", columns=list(genes))
    return per_section, cov, wid


def coverage_curve(
    truth: np.ndarray, pred: np.ndarray, sigma: np.ndarray, quantiles: np.ndarray, levels, section: np.ndarray
) -> pd.DataFrame:
    """Empirical coverage of the intervals ``pred ± q_level · sigma`` for each level, per section.

    Parameters
    ----------
    truth, pred, sigma
        ``(n_spots, n_genes)``: values, point predictions and the (normalising) spread.
    quantiles
        ``(n_levels, n_genes)`` calibrated conformity-score quantiles.
    levels
        Nominal levels matching ``quantiles``' rows.
    section
        ``(n_spots,)`` section labels.

    Returns
    -------
    Long table: ``section``, ``level``, ``coverage``, ``interval_width``.

    Examples
    --------
    >>> import numpy as np
    >>> from genedml.metrics import coverage_curve
    >>> y = np.zeros((4, 1)); q = np.array([[0.5], [2.0]])
    >>> df = coverage_curve(y + [[0.0], [1.0], [0.1], [1.5]], y, np.ones((4, 1)), q, [0.5, 0.9], np.array(["S"] * 4))
    >>> df["coverage"].tolist()
    [0.5, 1.0]
    """
    truth, pred, sigma = (np.asarray(a, dtype=np.float64) for a in (truth, pred, sigma))
    quantiles = np.asarray(quantiles, dtype=np.float64)
    section = np.asarray(section).astype(str)
    ok = np.isfinite(truth) & np.isfinite(pred) & np.isfinite(sigma)
    err = np.where(ok, np.abs(truth - pred), np.inf)
    out = []
    for s in pd.unique(section):
        m = section == s
        n = ok[m].sum()
        for level, q in zip(levels, quantiles, strict=True):
            half = q[None, :] * sigma[m]
            covered = ((err[m] <= half) & ok[m]).sum()
            width = 2 * np.where(ok[m], half, 0.0).sum()
            out.append(
                {
                    "section": s,
                    "level": float(level),
                    "coverage": covered / n if n else np.nan,
                    "interval_width": width / n if n else np.nan,
                }
            )
    return pd.DataFrame(out)
