"""Highly predictive genes (HPG): the paper's rank averaging, and the selection-bias null for PCC(H).

PCC(H) is the mean Pearson r over the ``k`` (= 50) genes a model predicts best. The paper ranks genes by their
per-fold PCC **on the test folds** and scores the same folds on them, so part of PCC(H) is selection: with ~180
spots per section, picking the best 50 of 250 noisy correlations yields a clearly positive mean even for random
predictions (method.md, "Evaluation pitfalls"). Choose HPG on training/validation results
(``protocol="clean"``) and report :func:`permutation_null_pcc_h` next to any test-selected PCC(H).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from genedml._utils import get_rng
from genedml._validators import assert_positive_int

from ._per_gene import pearson_per_gene

__all__ = ["permutation_null_pcc_h", "select_hpg", "top_k_genes"]


def _fold_matrix(per_gene_pcc_by_fold, genes: Sequence[str] | None) -> tuple[np.ndarray, list]:
    """``(n_folds, n_genes)`` float matrix and the gene labels (names, or column positions)."""
    if isinstance(per_gene_pcc_by_fold, pd.DataFrame):
        if genes is not None:
            raise ValueError("`genes` must be None when `per_gene_pcc_by_fold` is a DataFrame (columns name them).")
        return per_gene_pcc_by_fold.to_numpy(dtype=np.float64), list(per_gene_pcc_by_fold.columns)
    if isinstance(per_gene_pcc_by_fold, Mapping):
        folds = list(per_gene_pcc_by_fold.values())
        if folds and all(isinstance(f, pd.Series) for f in folds):
            first = folds[0].index
            for f in folds[1:]:
                if set(f.index) != set(first):
                    raise ValueError("`per_gene_pcc_by_fold`: every fold must score the same genes.")
            return np.vstack([f.reindex(first).to_numpy(dtype=np.float64) for f in folds]), list(first)
        per_gene_pcc_by_fold = folds
    mat = np.asarray(per_gene_pcc_by_fold, dtype=np.float64)
    if mat.ndim == 1:
        mat = mat[None, :]
    if mat.ndim != 2:
        raise ValueError(f"`per_gene_pcc_by_fold` must be (n_folds, n_genes), got shape {mat.shape}.")
    if genes is None:
        return mat, list(range(mat.shape[1]))
    genes = list(genes)
    if len(genes) != mat.shape[1]:
        raise ValueError(f"`genes` must name the {mat.shape[1]} genes, got {len(genes)} names.")
    return mat, genes


def _fold_ranks(mat: np.ndarray) -> np.ndarray:
    """Average ranks per fold (row), 1 = lowest PCC; NaN ties below every finite value."""
    from scipy.stats import rankdata

    return rankdata(np.where(np.isnan(mat), -np.inf, mat), axis=1, method="average")


def _top(score: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores (NaN last; ties keep the original order)."""
    key = np.where(np.isnan(score), -np.inf, score)
    return np.lexsort((np.arange(len(key)), -key))[:k]


def select_hpg(per_gene_pcc_by_fold, *, k: int = 50, genes: Sequence[str] | None = None) -> list:
    """Highly predictive genes by the paper's rank averaging over folds.

    In each fold genes are ranked by PCC (1 = lowest; NaN ranks below every finite value; ties share their
    average rank); the ``k`` genes with the highest mean rank over folds are returned, best first (ties in mean
    rank keep the input gene order).

    Parameters
    ----------
    per_gene_pcc_by_fold
        Per-fold per-gene PCC: a DataFrame (folds × genes), a mapping fold → Series indexed by gene, or an
        array ``(n_folds, n_genes)``. Build it from :attr:`SectionScores.per_gene` of each fold (e.g. its mean
        over the fold's sections). Under ``protocol="clean"`` use validation, not test, results.
    k
        Number of genes (50 in the paper).
    genes
        Gene names of the columns when ``per_gene_pcc_by_fold`` is an array; otherwise positions are returned.

    Returns
    -------
    The ``k`` selected gene names (or column positions), best first.

    Examples
    --------
    >>> import pandas as pd
    >>> from genedml.metrics import select_hpg
    >>> pcc = pd.DataFrame({"A": [0.9, 0.1], "B": [0.5, 0.6], "C": [0.1, 0.2]})
    >>> select_hpg(pcc, k=2)
    ['B', 'A']
    """
    assert_positive_int(k, name="k")
    mat, labels = _fold_matrix(per_gene_pcc_by_fold, genes)
    if mat.shape[0] == 0:
        raise ValueError("`per_gene_pcc_by_fold` holds no fold.")
    if k > mat.shape[1]:
        raise ValueError(f"`k`={k} exceeds the number of genes ({mat.shape[1]}).")
    mean_rank = _fold_ranks(mat).mean(axis=0)
    return [labels[i] for i in _top(mean_rank, k)]


def top_k_genes(per_gene_pcc, k: int, *, genes: Sequence[str] | None = None) -> list:
    """Return the ``k`` genes with the highest PCC in one result (e.g. one validation run).

    Parameters
    ----------
    per_gene_pcc
        A Series indexed by gene or a 1-D array.
    k
        Number of genes.
    genes
        Gene names when ``per_gene_pcc`` is an array.

    Returns
    -------
    Gene names (or positions), best first; NaN genes come last.

    Examples
    --------
    >>> import numpy as np
    >>> from genedml.metrics import top_k_genes
    >>> top_k_genes(np.array([0.1, np.nan, 0.7]), 2, genes=["a", "b", "c"])
    ['c', 'a']
    """
    if isinstance(per_gene_pcc, pd.Series):
        return select_hpg(per_gene_pcc.to_frame().T, k=k, genes=genes)
    arr = np.asarray(per_gene_pcc, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"`per_gene_pcc` must be 1-D, got shape {arr.shape}.")
    return select_hpg(arr[None, :], k=k, genes=genes)


def _test_selected_pcc_h(r: np.ndarray, k: int) -> float:
    top = r[_top(r, k)]
    top = top[np.isfinite(top)]
    return float(top.mean()) if top.size else float("nan")


def permutation_null_pcc_h(
    y_true,
    y_pred,
    sections,
    *,
    k: int = 50,
    n_perm: int = 100,
    seed: int | np.random.Generator | None = None,
    postprocess: Callable[[np.ndarray], np.ndarray] | None = None,
) -> pd.DataFrame:
    """How much PCC(H) comes from picking the top ``k`` genes on the scored section itself.

    Scores each section with PCC(H) selected on that same section (the external-test code's practice), then
    repeats it ``n_perm`` times after shuffling the predicted spots *within* each section. The shuffled
    predictions keep every gene's distribution but carry no information about which spot is which, so their
    PCC(H) is pure selection bias. Compare ``observed`` with ``null_mean`` / ``null_q95``, or read ``p_value``.

    Parameters
    ----------
    y_true
        Observed expression, ``(n_spots, n_genes)``.
    y_pred
        Predictions, same shape.
    sections
        Section label of each spot.
    k
        Number of genes in PCC(H).
    n_perm
        Number of shuffles.
    seed
        Random seed; ``None`` uses ``gd.settings.seed``.
    postprocess
        Applied to each full shuffled prediction array (and to ``y_pred`` for ``observed``) before scoring: pass
        the same post-processing as the method, e.g. grid smoothing
        ``lambda p: gd.pp.smooth_grid(p, row, col, section=sections)``. Smoothing shuffled predictions raises the
        null (fewer effective spots), which is exactly the inflation a smoothed method also enjoys.

    Returns
    -------
    One row per section: ``n_spots``, ``observed`` (PCC(H) with genes picked on the section), ``null_mean``,
    ``null_std``, ``null_q95``, ``p_value`` (``(1 + #null ≥ observed) / (1 + n_perm)``).

    Examples
    --------
    >>> import numpy as np
    >>> from genedml.metrics import permutation_null_pcc_h
    >>> rng = np.random.default_rng(0)
    >>> y, noise = rng.random((100, 20)), rng.random((100, 20))
    >>> res = permutation_null_pcc_h(y, noise, ["s"] * 100, k=5, n_perm=20, seed=0)
    >>> bool(res.loc["s", "null_mean"] > 0.1)  # random predictions, yet a clearly positive PCC(H)
    True
    """
    assert_positive_int(k, name="k")
    assert_positive_int(n_perm, name="n_perm")
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"`y_true` and `y_pred` must be (n_spots, n_genes) of equal shape, got {a.shape}, {b.shape}.")
    labels = np.asarray(sections)
    if labels.shape != (a.shape[0],):
        raise ValueError(f"`sections` must hold one label per spot ({a.shape[0]}), got shape {labels.shape}.")
    if k > a.shape[1]:
        raise ValueError(f"`k`={k} exceeds the number of genes ({a.shape[1]}).")
    codes, names = pd.factorize(labels, sort=False)
    groups = [np.flatnonzero(codes == i) for i in range(len(names))]
    post = postprocess if postprocess is not None else (lambda p: p)

    def scores(pred: np.ndarray) -> np.ndarray:
        pred = np.asarray(post(pred), dtype=np.float64)
        return np.array([_test_selected_pcc_h(pearson_per_gene(a[g], pred[g]), k) for g in groups])

    observed = scores(b)
    rng = get_rng(seed)
    null = np.empty((n_perm, len(groups)))
    for p in range(n_perm):
        perm = np.arange(a.shape[0])
        for g in groups:
            perm[g] = g[rng.permutation(len(g))]
        null[p] = scores(b[perm])
    return _null_table(names, groups, observed, null)


def _null_table(names, groups, observed: np.ndarray, null: np.ndarray) -> pd.DataFrame:
    with np.errstate(invalid="ignore"):
        exceed = (null >= observed[None, :]).sum(axis=0)
    finite = np.isfinite(null)
    table = {
        "n_spots": [len(g) for g in groups],
        "observed": observed,
        "null_mean": [_finite_stat(null[:, i], finite[:, i], np.mean) for i in range(len(groups))],
        "null_std": [_finite_stat(null[:, i], finite[:, i], np.std) for i in range(len(groups))],
        "null_q95": [
            _finite_stat(null[:, i], finite[:, i], lambda v: np.quantile(v, 0.95)) for i in range(len(groups))
        ],
        "p_value": np.where(np.isfinite(observed), (1 + exceed) / (1 + null.shape[0]), np.nan),
    }
    return pd.DataFrame(table, index=pd.Index([str(s) for s in names], name="section"))


def _finite_stat(v: np.ndarray, ok: np.ndarray, fn) -> float:
    return float(fn(v[ok])) if ok.any() else float("nan")
