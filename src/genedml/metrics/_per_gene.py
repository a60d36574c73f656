"""Per-gene agreement between observed and predicted expression (arrays in, numbers out).

Every function takes ``y_true`` and ``y_pred`` shaped ``(n_spots, n_genes)`` (a 1-D array is one gene) and is
NaN-safe: a spot whose observed *or* predicted value is not finite is left out of that gene's computation
(pairwise-complete). A gene without enough information (fewer than two valid spots, or a constant observed or
predicted column for the correlations) scores NaN, silently: the means over genes elsewhere in
:mod:`genedml.metrics` omit NaN and count them.
"""

from __future__ import annotations

import numpy as np

from .._docs import inject_docs

__all__ = [
    "ccc_per_gene",
    "explained_variance",
    "mae",
    "mse",
    "pearson_per_gene",
    "spearman_per_gene",
]

_Y = (  # the two arrays every metric here takes
    "y_true\n        Observed expression, ``(n_spots, n_genes)``.\n"
    "    y_pred\n        Predicted expression, same shape."
)
_ERROR_DOC = """Parameters
    ----------
    {y}
    per_gene
        Return one value per gene instead of the mean over all pairs.

    Returns
    -------
    A float (NaN when no pair is valid), or ``(n_genes,)`` when ``per_gene``.

    Examples
    --------
    >>> import numpy as np
    >>> from genedml.metrics import {name}
    >>> {name}(np.array([[0.0, 1.0]]), np.array([[2.0, 1.0]]))
    {value}"""
_ARGS = {
    "y_true_pred": _Y,
    "error_doc_mse": _ERROR_DOC.format(y=_Y, name="mse", value="2.0"),
    "error_doc_mae": _ERROR_DOC.format(y=_Y, name="mae", value="1.0"),
}


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate, promote to 2-D float64, and return ``(a, b, valid)`` with invalid pairs set to NaN."""
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if b.ndim == 1:
        b = b[:, None]
    if a.ndim != 2:
        raise ValueError(f"`y_true` must be (n_spots, n_genes) or 1-D, got shape {np.shape(y_true)}.")
    if a.shape != b.shape:
        raise ValueError(f"`y_pred` must have the shape of `y_true` {a.shape}, got {np.shape(y_pred)}.")
    valid = np.isfinite(a) & np.isfinite(b)
    if not valid.all():
        a = np.where(valid, a, np.nan)
        b = np.where(valid, b, np.nan)
    return a, b, valid


def _constant(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per column: True when every valid entry is identical (exact, as scipy checks), or none is valid."""
    lo = np.where(valid, x, np.inf).min(axis=0, initial=np.inf)
    hi = np.where(valid, x, -np.inf).max(axis=0, initial=-np.inf)
    return ~(hi > lo)


def _moments(a: np.ndarray, b: np.ndarray, valid: np.ndarray):
    """Return counts, means and the centred (zero where invalid) columns of both inputs, over valid pairs."""
    n = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma = np.where(valid, a, 0.0).sum(axis=0) / n
        mb = np.where(valid, b, 0.0).sum(axis=0) / n
    da = np.where(valid, a - ma, 0.0)
    db = np.where(valid, b - mb, 0.0)
    return n, ma, mb, da, db


def _corr(a: np.ndarray, b: np.ndarray, valid: np.ndarray) -> np.ndarray:
    n, _, _, da, db = _moments(a, b, valid)
    cov = (da * db).sum(axis=0)
    denom = np.sqrt((da * da).sum(axis=0)) * np.sqrt((db * db).sum(axis=0))
    bad = (n < 2) | _constant(a, valid) | _constant(b, valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / denom
    r = np.clip(r, -1.0, 1.0)
    r[bad] = np.nan
    return r


@inject_docs(**_ARGS)
def pearson_per_gene(y_true, y_pred) -> np.ndarray:
    """Pearson correlation over spots, one value per gene.

    Parameters
    ----------
    {y_true_pred}

    Returns
    -------
    ``(n_genes,)`` float64; NaN for a gene with fewer than two valid spots or a constant column (no warning).

    Examples
    --------
    >>> import numpy as np
    >>> from genedml.metrics import pearson_per_gene
    >>> y = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    >>> pearson_per_gene(y, 2 * y + 1)
    array([ 1., nan])
    """
    a, b, valid = _pair(y_true, y_pred)
    return _corr(a, b, valid)


@inject_docs(**_ARGS)
def spearman_per_gene(y_true, y_pred) -> np.ndarray:
    """Spearman rank correlation over spots (average ranks for ties), one value per gene.

    Parameters
    ----------
    {y_true_pred}

    Returns
    -------
    ``(n_genes,)`` float64; NaN as for :func:`pearson_per_gene`.

    Examples
    --------
    >>> import numpy as np
    >>> from genedml.metrics import spearman_per_gene
    >>> spearman_per_gene(np.array([1.0, 2.0, 3.0]), np.array([1.0, 10.0, 100.0]))
    array([1.])
    """
    from scipy.stats import rankdata

    a, b, valid = _pair(y_true, y_pred)
    ra = rankdata(a, axis=0, nan_policy="omit") if a.size else a
    rb = rankdata(b, axis=0, nan_policy="omit") if b.size else b
    return _corr(ra, rb, valid)


@inject_docs(**_ARGS)
def ccc_per_gene(y_true, y_pred) -> np.ndarray:
    """Lin's concordance correlation coefficient per gene (population moments).

    ``2 cov / (var_true + var_pred + (mean_true − mean_pred)²)``: 1 only for ``y_pred == y_true``; it penalises
    shifts and scale changes that Pearson ignores.

    Parameters
    ----------
    {y_true_pred}

    Returns
    -------
    ``(n_genes,)`` float64; NaN when a gene has no valid spot or the denominator is zero (both columns constant
    and equal).

    Examples
    --------
    >>> import numpy as np
    >>> from genedml.metrics import ccc_per_gene
    >>> ccc_per_gene(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    array([1.])
    """
    a, b, valid = _pair(y_true, y_pred)
    n, ma, mb, da, db = _moments(a, b, valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = (da * db).sum(axis=0) / n
        denom = (da * da).sum(axis=0) / n + (db * db).sum(axis=0) / n + (ma - mb) ** 2
        out = 2.0 * cov / denom
    out[(n < 1) | ~(denom > 0)] = np.nan
    return out


def _error(y_true, y_pred, *, per_gene: bool, power: int) -> float | np.ndarray:
    a, b, valid = _pair(y_true, y_pred)
    err = np.abs(a - b) ** power
    n = valid.sum(axis=0)
    if per_gene:
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(valid, err, 0.0).sum(axis=0) / n
        out[n == 0] = np.nan
        return out
    total = int(n.sum())
    return float(np.where(valid, err, 0.0).sum() / total) if total else float("nan")


@inject_docs(**_ARGS)
def mse(y_true, y_pred, *, per_gene: bool = False) -> float | np.ndarray:
    """Mean squared error over valid (finite) spot × gene pairs.

    {error_doc_mse}
    """
    return _error(y_true, y_pred, per_gene=per_gene, power=2)


@inject_docs(**_ARGS)
def mae(y_true, y_pred, *, per_gene: bool = False) -> float | np.ndarray:
    """Mean absolute error over valid (finite) spot × gene pairs.

    {error_doc_mae}
    """
    return _error(y_true, y_pred, per_gene=per_gene, power=1)


@inject_docs(**_ARGS)
def explained_variance(y_true, y_pred, *, per_gene: bool = False) -> float | np.ndarray:
    """Explained variance ``1 − Var(y_true − y_pred) / Var(y_true)`` per gene (population variances).

    The definition of scikit-learn's ``explained_variance_score`` and torchmetrics' ``ExplainedVariance``.

    Parameters
    ----------
    {y_true_pred}
    per_gene
        Return one value per gene instead of their NaN-omitting mean (``multioutput="uniform_average"``).

    Returns
    -------
    A float, or ``(n_genes,)`` when ``per_gene``; NaN for a gene whose observed values are constant.

    Examples
    --------
    >>> import numpy as np
    >>> from genedml.metrics import explained_variance
    >>> explained_variance(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0]))
    1.0
    """
    a, b, valid = _pair(y_true, y_pred)
    n, _, _, da, _ = _moments(a, b, valid)
    _, _, _, dr, _ = _moments(a - b, a, valid)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = 1.0 - ((dr * dr).sum(axis=0) / n) / ((da * da).sum(axis=0) / n)
    out[(n < 1) | _constant(a, valid)] = np.nan
    if per_gene:
        return out
    return _nanmean(out)


def _nanmean(x: np.ndarray) -> float:
    """Mean of the finite entries; NaN (no warning) when there are none."""
    x = np.asarray(x, dtype=np.float64)
    ok = np.isfinite(x)
    return float(x[ok].mean()) if ok.any() else float("nan")
