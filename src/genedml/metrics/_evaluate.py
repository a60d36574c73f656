"""Per-section scores and their aggregation over sections and folds (TRIPLEX-CVPR semantics by default)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._per_gene import _nanmean, ccc_per_gene, explained_variance, mae, mse, pearson_per_gene

__all__ = ["SectionScores", "aggregate_folds", "aggregate_sections", "evaluate_sections"]

#: Columns of :attr:`SectionScores.per_section` that hold scores (the rest are counts).
SCORE_COLUMNS = ("mse", "mae", "pcc_a", "pcc_h", "ccc", "explained_variance")


@dataclass(frozen=True)
class SectionScores:
    """What :func:`evaluate_sections` returns.

    Attributes
    ----------
    per_section
        One row per section (index ``section``, in order of first appearance): ``n_spots``, ``mse``, ``mae``,
        ``pcc_a`` (mean Pearson over genes, NaN omitted), ``pcc_h`` (the same over the ``hpg`` genes; NaN without
        them), ``ccc`` and ``explained_variance`` (NaN-omitting means over genes), ``n_nan_genes`` (genes whose
        Pearson r is NaN, e.g. constant within the section) and ``n_nan_hpg``.
    per_gene
        Pearson r, sections × genes (index ``section``, columns = ``genes``).
    """

    per_section: pd.DataFrame
    per_gene: pd.DataFrame


def _section_codes(sections, n: int) -> tuple[np.ndarray, list]:
    labels = np.asarray(sections)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"`sections` must be 1-D with one label per spot ({n}), got shape {labels.shape}.")
    if pd.isna(pd.Series(labels)).any():
        raise ValueError("`sections` holds missing labels: every spot needs a section.")
    codes, uniques = pd.factorize(labels, sort=False)
    return codes, list(uniques)


def _check_genes(genes: Sequence[str], n_genes: int, hpg: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    genes = [str(g) for g in genes]
    if len(genes) != n_genes:
        raise ValueError(f"`genes` must name the {n_genes} columns of `y_true`, got {len(genes)} names.")
    if len(set(genes)) != len(genes):
        raise ValueError("`genes` holds duplicate names.")
    if hpg is None:
        return genes, np.zeros(0, dtype=np.int64)
    hpg = [str(g) for g in hpg]
    col = pd.Index(genes).get_indexer(hpg)
    if (col < 0).any():
        missing = [g for g, c in zip(hpg, col) if c < 0]
        raise ValueError(f"`hpg`: {len(missing)} gene(s) are not in `genes`: {missing[:10]}.")
    if len(hpg) == 0:
        raise ValueError("`hpg` is empty: pass None to skip PCC(H).")
    return genes, col


def evaluate_sections(
    y_true, y_pred, sections, *, genes: Sequence[str], hpg: Sequence[str] | None = None
) -> SectionScores:
    """Score predictions section by section, as the paper's tables do.

    Per section (its spots only): MSE and MAE over spots × genes; Pearson r per gene over spots; PCC(A) = mean of
    r over genes and PCC(H) = mean of r over the ``hpg`` genes, both omitting NaN genes (counted in
    ``n_nan_genes`` / ``n_nan_hpg``), unlike the released code whose plain ``.mean()`` lets one constant gene turn
    the section's score into NaN.

    Parameters
    ----------
    y_true
        Observed expression, ``(n_spots, n_genes)``, in the same units as ``y_pred``.
    y_pred
        Predictions, same shape; non-finite values are left out pairwise.
    sections
        Section label of each spot.
    genes
        Names of the columns.
    hpg
        Genes for PCC(H), e.g. from :func:`~genedml.metrics.select_hpg` on *training* folds; ``None`` leaves
        ``pcc_h`` NaN.

    Returns
    -------
    :class:`SectionScores` with ``per_section`` and ``per_gene`` tables.

    Examples
    --------
    >>> import numpy as np
    >>> from genedml.metrics import evaluate_sections
    >>> rng = np.random.default_rng(0)
    >>> y = rng.random((6, 3))
    >>> res = evaluate_sections(y, y, ["a"] * 3 + ["b"] * 3, genes=["g1", "g2", "g3"], hpg=["g1"])
    >>> res.per_section["pcc_a"].to_dict()
    {'a': 1.0, 'b': 1.0}
    >>> res.per_gene.shape
    (2, 3)
    """
    a = np.asarray(y_true, dtype=np.float64)
    b = np.asarray(y_pred, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"`y_true` must be (n_spots, n_genes), got shape {a.shape}.")
    if a.shape != b.shape:
        raise ValueError(f"`y_pred` must have the shape of `y_true` {a.shape}, got {b.shape}.")
    genes, hcol = _check_genes(genes, a.shape[1], hpg)
    codes, names = _section_codes(sections, a.shape[0])
    rows, pcc_rows = [], []
    for i in range(len(names)):
        idx = np.flatnonzero(codes == i)
        row, r = _score_one(a[idx], b[idx], hcol, has_hpg=hpg is not None)
        rows.append(row)
        pcc_rows.append(r)
    index = pd.Index([str(s) for s in names], name="section")
    per_section = pd.DataFrame(rows, index=index)
    per_gene = pd.DataFrame(np.vstack(pcc_rows) if pcc_rows else np.zeros((0, len(genes))), index=index)
    per_gene.columns = pd.Index(genes, name="gene")
    return SectionScores(per_section=per_section, per_gene=per_gene)


def _score_one(a: np.ndarray, b: np.ndarray, hcol: np.ndarray, *, has_hpg: bool) -> tuple[dict, np.ndarray]:
    r = pearson_per_gene(a, b)
    rh = r[hcol]
    row = {
        "n_spots": int(a.shape[0]),
        "mse": mse(a, b),
        "mae": mae(a, b),
        "pcc_a": _nanmean(r),
        "pcc_h": _nanmean(rh) if has_hpg else float("nan"),
        "ccc": _nanmean(ccc_per_gene(a, b)),
        "explained_variance": explained_variance(a, b),
        "n_nan_genes": int(np.isnan(r).sum()),
        "n_nan_hpg": int(np.isnan(rh).sum()),
    }
    return row, r


def _weighted_nanmean(values: pd.DataFrame, weights: np.ndarray) -> pd.Series:
    v = values.to_numpy(dtype=np.float64)
    ok = np.isfinite(v)
    w = np.where(ok, weights[:, None], 0.0)
    tot = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (np.where(ok, v, 0.0) * w).sum(axis=0) / tot
    out[tot == 0] = np.nan
    return pd.Series(out, index=values.columns)


def aggregate_sections(per_section: pd.DataFrame, *, by: str | None = None, weight: str = "section") -> pd.DataFrame:
    """Average per-section scores over sections, optionally within groups (e.g. folds).

    Parameters
    ----------
    per_section
        :attr:`SectionScores.per_section`, possibly concatenated over folds with a grouping column.
    by
        Column to group by (e.g. ``"fold"``); ``None`` averages all rows into one.
    weight
        ``"section"``: unweighted mean over sections (TRIPLEX-CVPR's reported numbers, the default);
        ``"spots"``: weighted by ``n_spots`` (what Lightning's epoch mean gives when a section is logged with
        ``batch_size = n_spots``, as in TRIPLEX's later code). NaN scores are omitted in both.

    Returns
    -------
    One row per group (index = group values; a single row ``"all"`` when ``by`` is None) with the mean of every
    score column, the summed ``n_spots`` and ``n_sections``.

    Examples
    --------
    >>> import pandas as pd
    >>> from genedml.metrics import aggregate_sections
    >>> df = pd.DataFrame({"n_spots": [10, 30], "pcc_a": [0.2, 0.4]}, index=["s1", "s2"])
    >>> aggregate_sections(df, weight="spots")["pcc_a"].round(3).tolist()
    [0.35]
    """
    if weight not in ("section", "spots"):
        raise ValueError(f"`weight` must be 'section' or 'spots', got {weight!r}.")
    if weight == "spots" and "n_spots" not in per_section:
        raise KeyError("`weight`='spots' needs an 'n_spots' column in `per_section`.")
    if by is not None and by not in per_section:
        raise KeyError(f"`by`={by!r} is not a column of `per_section` (columns: {list(per_section.columns)}).")
    groups = per_section.groupby(by, sort=False, observed=True) if by else [("all", per_section)]
    out = {}
    for key, df in groups:
        scores = df[[c for c in df.columns if c in SCORE_COLUMNS]]
        w = df["n_spots"].to_numpy(dtype=np.float64) if weight == "spots" else np.ones(len(df))
        row = _weighted_nanmean(scores, w)
        if "n_spots" in df:
            row["n_spots"] = int(df["n_spots"].sum())
        row["n_sections"] = len(df)
        out[key] = row
    res = pd.DataFrame(out).T
    res.index.name = by
    return res


def aggregate_folds(per_fold: pd.DataFrame, *, ddof: int = 0) -> pd.DataFrame:
    """Mean ± standard deviation of fold-level scores, as the paper's tables report them.

    Parameters
    ----------
    per_fold
        One row per fold (e.g. :func:`aggregate_sections` with ``by="fold"``).
    ddof
        Delta degrees of freedom of the standard deviation (0 = NumPy's default, population std).

    Returns
    -------
    Index = score columns present; columns ``mean``, ``std`` and ``n_folds`` (folds with a finite score).

    Examples
    --------
    >>> import pandas as pd
    >>> from genedml.metrics import aggregate_folds
    >>> aggregate_folds(pd.DataFrame({"pcc_a": [0.2, 0.4]}))
           mean  std  n_folds
    pcc_a   0.3  0.1        2
    """
    cols = [c for c in per_fold.columns if c in SCORE_COLUMNS]
    if not cols:
        raise ValueError(f"`per_fold` has no score column (expected some of {list(SCORE_COLUMNS)}).")
    rows = {}
    for c in cols:
        v = per_fold[c].to_numpy(dtype=np.float64)
        v = v[np.isfinite(v)]
        std = float(v.std(ddof=ddof)) if len(v) > ddof else float("nan")
        rows[c] = {"mean": float(v.mean()) if len(v) else float("nan"), "std": std, "n_folds": len(v)}
    res = pd.DataFrame(rows).T
    res["n_folds"] = res["n_folds"].astype(int)
    return res
