"""Gene selection: highly expressed genes (HEG), explicit lists and named panels, with provenance in ``uns``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genedml._keys import Keys
from genedml._logging import logger
from genedml._validators import assert_in_range, assert_one_of, assert_positive_int

if TYPE_CHECKING:
    from anndata import AnnData
    from spatialdata import SpatialData

__all__ = ["select_genes"]

_METHODS = ("heg",)


def _table(data: SpatialData | AnnData, table_key: str | None) -> AnnData:
    """Return the spot table of a SpatialData (via :func:`genedml.io.get_table`) or the AnnData itself."""
    from anndata import AnnData

    if isinstance(data, AnnData):
        if table_key is not None:
            raise ValueError("`table_key` only applies to a SpatialData input; got an AnnData.")
        return data
    if not hasattr(data, "tables"):
        raise TypeError(f"`data` must be a SpatialData or an AnnData, got {type(data).__name__}.")
    from genedml._data_model import get_table

    return get_table(data, table_key=table_key)


def _counts(adata: AnnData, layer: str | None) -> Any:
    """Raw counts: ``layers[layer]``, or ``X`` when ``layer`` is None."""
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise KeyError(
            f"`layer`={layer!r} is not in the table's layers (available: {sorted(adata.layers.keys())}); "
            "pass `layer=None` to use `X`."
        )
    return adata.layers[layer]


def _check_counts(X: Any, *, name: str) -> None:
    """NaN/inf or negative values are not counts."""
    import scipy.sparse as sp

    data = X.data if sp.issparse(X) else np.asarray(X)
    if data.size == 0:
        return
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise ValueError(f"{name} holds NaN or infinite values: raw counts expected.")
    if data.min() < 0:
        raise ValueError(f"{name} holds negative values: raw counts must be ≥ 0.")


def _train_rows(train_mask: Any, n_obs: int) -> np.ndarray | None:
    if train_mask is None:
        return None
    mask = np.asarray(train_mask)
    if mask.dtype != bool or mask.shape != (n_obs,):
        raise ValueError(
            f"`train_mask` must be a boolean array with one entry per spot ({n_obs}), "
            f"got dtype {mask.dtype} and shape {mask.shape}."
        )
    if not mask.any():
        raise ValueError("`train_mask` selects no spot.")
    return np.flatnonzero(mask)


def _heg(X: Any, rows: np.ndarray | None, *, n: int, min_frac_spots: float) -> tuple[np.ndarray, dict]:
    """Column positions of the top-``n`` genes by mean count among genes detected in enough spots."""
    import scipy.sparse as sp

    if rows is not None:
        X = X[rows]
    n_spots = X.shape[0]
    if sp.issparse(X):
        X = sp.csr_matrix(X)
        mean = np.asarray(X.mean(axis=0)).ravel()
        detected = np.asarray((X > 0).sum(axis=0)).ravel()
    else:
        X = np.asarray(X)
        mean = X.mean(axis=0, dtype=np.float64)
        detected = (X > 0).sum(axis=0)
    keep = detected >= min_frac_spots * n_spots
    if not keep.any():
        raise ValueError(
            f"no gene has a count > 0 in ≥ {min_frac_spots:.0%} of the {n_spots} spots: lower `min_frac_spots`."
        )
    score = np.where(keep, mean, -np.inf)
    order = np.lexsort((np.arange(len(score)), -score))
    chosen = order[: min(n, int(keep.sum()))]
    if len(chosen) < n:
        warnings.warn(
            f"only {len(chosen)} genes pass `min_frac_spots`={min_frac_spots}; returning them instead of the {n} "
            "requested (`n_top_genes`).",
            UserWarning,
            stacklevel=3,
        )
    info = {"n_spots_used": int(n_spots), "n_genes_passing_filter": int(keep.sum())}
    return chosen, info


def _resolve_list(wanted: Sequence[str], var_names: pd.Index, *, name: str) -> tuple[list[str], list[str]]:
    """Keep the genes of ``wanted`` present in the data (input order); warn about and drop the others."""
    wanted = [str(g) for g in wanted]
    if not wanted:
        raise ValueError(f"`{name}` is empty.")
    dup = sorted({g for g in wanted if wanted.count(g) > 1})
    if dup:
        raise ValueError(f"`{name}` lists genes more than once: {dup[:10]}.")
    present = set(var_names.astype(str))
    missing = [g for g in wanted if g not in present]
    kept = [g for g in wanted if g in present]
    if not kept:
        raise ValueError(f"none of the {len(wanted)} genes of `{name}` is in the table's var_names.")
    if missing:
        shown = ", ".join(missing[:20]) + (" …" if len(missing) > 20 else "")
        warnings.warn(
            f"{len(missing)} of {len(wanted)} genes of `{name}` are not in the data and are dropped: {shown}.",
            UserWarning,
            stacklevel=4,  # user → select_genes → _from_list → here
        )
    return kept, missing


def _panel_genes(panel: str) -> list[str]:
    from genedml import datasets

    if not hasattr(datasets, "gene_panel"):
        raise RuntimeError("`panel` needs `genedml.datasets.gene_panel`, which this installation lacks.")
    try:
        return list(datasets.gene_panel(panel))
    except ValueError as e:  # `gene_panel` names its own argument: name the user's, `panel`
        raise ValueError(str(e).replace("`name`", "`panel`")) from None


def select_genes(
    data: SpatialData | AnnData,
    *,
    n_top_genes: int = 250,
    method: str = "heg",
    min_frac_spots: float = 0.1,
    genes: Sequence[str] | None = None,
    panel: str | None = None,
    train_mask: np.ndarray | None = None,
    layer: str | None = Keys.counts,
    table_key: str | None = None,
    key_added: str = Keys.selected,
    inplace: bool = True,
    n: int | None = None,
) -> list[str]:
    """Choose the genes a model predicts; mark them in ``var`` (like scanpy's ``highly_variable``) and record how.

    Three ways, in this order of precedence: an explicit ``genes`` list, a named ``panel`` (e.g. the paper's
    250-gene lists, via :func:`genedml.datasets.gene_panel`), or data-driven ``method="heg"``: genes detected
    (count > 0) in at least ``min_frac_spots`` of the spots, ranked by mean raw count, top ``n_top_genes``
    (TRIPLEX's "highly expressed genes"; ties keep the table's gene order). List/panel genes absent from the data
    are dropped with a warning that names them.

    Parameters
    ----------
    data
        SpatialData in genedml's data model, or an AnnData with raw counts.
    n_top_genes
        Number of genes for ``method="heg"``.
    method
        Data-driven criterion; only ``"heg"`` so far. Ignored when ``genes`` or ``panel`` is given.
    min_frac_spots
        Minimum fraction of (training) spots with a non-zero count.
    genes
        Explicit gene list (kept in the given order).
    panel
        Name of a shipped gene panel.
    train_mask
        Boolean mask over the table's spots: data-driven selection looks at these spots only, so held-out spots
        cannot influence the genes (``protocol="clean"``).
    layer
        Layer with raw counts; ``None`` uses ``X``.
    table_key
        Table annotating the spots (SpatialData input only); defaults to ``'table'``.
    key_added
        Name of the boolean ``var`` column that marks the selected genes; the rank column and the provenance
        record are named from it (see Returns).
    inplace
        Write the columns and the record into the table; ``False`` only returns the list and leaves the table as
        it was.
    n
        Alias of ``n_top_genes`` (older spelling); give one of the two.

    Returns
    -------
    The selected gene names, in rank order. With ``inplace=True`` the table also gains

    * ``var[key_added]``: bool, ``True`` for exactly the returned genes (an existing column is replaced);
    * ``var[f"{key_added}_rank"]``: float, the gene's 0-based position in the returned list, NaN for the others
      (as scanpy's ``highly_variable_rank``);
    * ``uns["genedml"]["genes"][key_added]`` = ``{"names": [...], "method": ..., "params": {...}}`` (the params
      include thresholds, the number of spots used and any dropped genes).

    Examples
    --------
    >>> import anndata as ad
    >>> import numpy as np
    >>> adata = ad.AnnData(np.array([[5, 0, 1], [3, 1, 0], [4, 0, 2]]))
    >>> adata.var_names = ["A", "B", "C"]
    >>> select_genes(adata, n_top_genes=2, layer=None)
    ['A', 'C']
    >>> adata.var["genedml_selected"].tolist()
    [True, False, True]
    >>> adata.uns["genedml"]["genes"]["genedml_selected"]["method"]
    'heg'
    """
    adata = _table(data, table_key)
    n_top_genes = _n_top(n_top_genes, n)
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"`key_added` must be a non-empty string, got {key_added!r}.")
    if inplace and not adata.var_names.is_unique:
        raise ValueError(
            "the table's var_names are not unique, so genes cannot be marked: `adata.var_names_make_unique()`."
        )
    if genes is not None and panel is not None:
        raise ValueError("pass either `genes` or `panel`, not both.")
    if genes is not None or panel is not None:
        names, used, params = _from_list(adata, genes, panel)
    else:
        assert_one_of(method, _METHODS, name="method")
        assert_positive_int(n_top_genes, name="n_top_genes")
        assert_in_range(min_frac_spots, name="min_frac_spots", low=0.0, high=1.0)
        X = _counts(adata, layer)
        _check_counts(X, name=f"`layer`={layer!r}" if layer else "`X`")
        rows = _train_rows(train_mask, adata.n_obs)
        chosen, info = _heg(X, rows, n=n_top_genes, min_frac_spots=min_frac_spots)
        names = [str(adata.var_names[i]) for i in chosen]
        used = method
        params = {"n_top_genes": int(n_top_genes), "min_frac_spots": float(min_frac_spots),
                  "layer": str(layer or "X"), "train_mask": train_mask is not None, **info}  # fmt: skip
    if inplace:
        _write(adata, names, key_added, {"names": list(names), "method": used, "params": params})
    logger.info(f"select_genes: {len(names)} genes by {used!r}")
    return names


def _n_top(n_top_genes: int, n: int | None) -> int:
    """Resolve the ``n`` alias: either spelling, never two different numbers."""
    if n is None:
        return n_top_genes
    if n_top_genes != 250 and n_top_genes != n:
        raise ValueError(f"pass either `n_top_genes` or its alias `n`, not both (got {n_top_genes} and {n}).")
    return n


def _from_list(adata: AnnData, genes: Sequence[str] | None, panel: str | None) -> tuple[list[str], str, dict]:
    if isinstance(genes, str):
        raise TypeError("`genes` must be a list of gene names, not a single string.")
    wanted = list(genes) if genes is not None else _panel_genes(panel)
    names, missing = _resolve_list(wanted, adata.var_names, name="genes" if genes is not None else "panel")
    params: dict[str, Any] = {"n_requested": len(wanted), "missing": missing}
    if panel is not None:
        params["panel"] = str(panel)
    return names, "list" if genes is not None else "panel", params


def _write(adata: AnnData, names: list[str], key_added: str, record: dict) -> None:
    """``var[key_added]`` (bool), ``var[f"{key_added}_rank"]`` and ``uns["genedml"]["genes"][key_added]``."""
    pos = adata.var_names.get_indexer(names)
    rank = np.full(adata.n_vars, np.nan)
    rank[pos] = np.arange(len(names), dtype=np.float64)
    adata.var[key_added] = np.isfinite(rank)
    adata.var[f"{key_added}_rank"] = rank
    uns = adata.uns.setdefault(Keys.uns, {})
    per_key = uns.get("genes")
    if not isinstance(per_key, dict) or "names" in per_key:  # absent, or the one-record layout of earlier versions
        per_key = {}
    per_key[key_added] = record
    uns["genes"] = per_key
