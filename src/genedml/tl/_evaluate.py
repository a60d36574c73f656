"""``gd.tl.evaluate``: the paper's metrics on predictions written by `gd.tl.predict`."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from .._data_model import get_table
from .._keys import Keys
from .._validators import assert_positive_int

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["EvaluationFrame", "evaluate"]

#: Columns of the compact view, in order (the frame holds more: ``ccc``, ``explained_variance``, ``n_nan_*``).
_SHOWN = ("role", "n_spots", "mse", "mae", "pcc_a", "pcc_h", "spearman")


class EvaluationFrame(pd.DataFrame):
    """The per-section scores of `gd.tl.evaluate`: a DataFrame whose ``print`` is a compact summary.

    ``repr``/``print`` show each section's role, spot count and the metrics rounded to 3 digits (``n/a`` where a
    score is undefined), then the mean over sections and how PCC(H)'s genes were chosen; every column is still in
    the frame (``scores.columns``, ``scores.to_string()``, ``scores.to_csv(...)``). Operations return plain DataFrames.
    """

    _metadata: ClassVar[list[str]] = ["note"]

    @property
    def _constructor(self):
        return pd.DataFrame

    def __repr__(self) -> str:
        shown = [c for c in _SHOWN if c in self.columns]
        view = pd.DataFrame(self[shown]).copy()
        for c in shown:
            if c not in ("role", "n_spots"):
                view[c] = [("n/a" if not np.isfinite(v) else f"{v:.3f}") for v in view[c].to_numpy(dtype=float)]
        hidden = [c for c in self.columns if c not in shown]
        lines = [view.to_string()]
        note = getattr(self, "note", None)
        if note:
            lines.append(note)
        if hidden:
            lines.append(f"[{len(self)} sections; more columns: {', '.join(hidden)}]")
        return "\n".join(lines)


def evaluate(
    sdata: SpatialData,
    *,
    layer: str = Keys.predicted,
    hpg: list[str] | None = None,
    n_hpg: int = 50,
    sections: list[str] | None = None,
    aggregate: str = "section",
    table_key: str | None = None,
) -> pd.DataFrame:
    """Score predictions against the measured counts, section by section (method.md §5).

    The measured counts of the predicted genes go through the recipe recorded with the predictions (same genes,
    normalisation, smoothing), then per section: MSE, MAE, PCC(A) (mean per-gene Pearson r, NaN genes omitted),
    PCC(H) over the highly predictive genes, Spearman. Scores average over sections without weights (``aggregate=
    "section"``, the paper's convention) or by spot count (``"spots"``).

    HPG: ``hpg`` if given; else the model's genes chosen on its validation split (``protocol="clean"``, recorded at
    prediction); else the top ``n_hpg`` genes of *this* evaluation — selection on the test data itself, marked
    ``hpg_source="evaluated (optimistic)"``.

    Writes, under names derived from ``layer`` (so that the `gd.pl` readers find them with the same ``layer=``; see the
    key vocabulary in the data-model page), ``layers[f"{layer}_observed"]`` (normalised measured values of the predicted
    genes, NaN elsewhere), ``var[f"genedml_pcc_{layer}"]`` (per-gene PCC averaged over sections) and
    ``uns["genedml"]["evaluation"][layer]`` (``per_section`` DataFrame, ``summary`` dict, ``genes``, ``hpg``,
    ``hpg_source``, ``protocol``, ``optimistic``, recipe). With interval layers (``layers[f"{layer}_lower"]``/
    ``_upper``, from `gd.tl.predict(..., interval=…)`) the per-section scores gain ``coverage`` (share of measured
    values inside their interval) and ``interval_width`` (mean ``upper − lower``), ``var`` gains
    ``genedml_coverage_{layer}`` and ``genedml_width_{layer}`` (per gene, averaged over sections), and the evaluation
    entry gains ``interval`` (level, per-gene coverage and width per section) and ``coverage_curve`` (empirical coverage
    per section at the nominal levels 0.05 … 0.95, for `gd.pl.calibration`). A spot is scored when it has a prediction;
    single NaN predictions are left out pairwise (a gene never predicted finitely scores NaN and is counted in
    ``n_nan_genes``).

    Parameters
    ----------
    sdata
        Data with counts and predictions.
    layer
        Prediction layer (`gd.tl.predict`'s ``key_added``).
    hpg
        Genes for PCC(H).
    n_hpg
        Number of HPG when they are selected here.
    sections
        Sections to score (``None``: every section with predictions).
    aggregate
        ``"section"`` (unweighted) or ``"spots"``.
    table_key
        Spot table.

    PCC(H) is ``NaN`` (shown ``n/a``) when no more than ``n_hpg`` genes are evaluated and ``hpg`` is not given:
    the "highly predictive" genes would then be all genes and PCC(H) would merely repeat PCC(A).

    Returns
    -------
    Per-section scores, an ``EvaluationFrame`` (a DataFrame whose ``print`` is a compact summary; index ``section``;
    columns ``n_spots``, ``mse``, ``mae``, ``pcc_a``, ``pcc_h``, …, ``spearman`` and ``role``: ``"train"``,
    ``"validation"`` (early stopping, gene choice), ``"train+validation"`` (the small-cohort inner split gave a
    spatial block of the section to validation) or ``"test"`` for the model that predicted, ``"unknown"`` when the
    predictions do not record it).

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> model = gd.tl.fit(sdata, n_top_genes=20, encoder="test_resnet", pretrained=False, config="cpu",
    ...                   max_epochs=1, batch_size=32)
    >>> gd.tl.predict(sdata, model)
    >>> scores = gd.tl.evaluate(sdata)
    >>> list(scores.index), list(scores.columns[:5])
    (['S1', 'S2'], ['n_spots', 'mse', 'mae', 'pcc_a', 'pcc_h'])
    """
    from .. import metrics, pp

    table = get_table(sdata, table_key=table_key)
    flag = Keys.var_flag(layer)
    if layer not in table.layers or flag not in table.var:
        raise KeyError(f"`layer`={layer!r}: no predictions in the table (run gd.tl.predict(..., key_added={layer!r})).")
    if aggregate not in ("section", "spots"):
        raise ValueError(f"`aggregate` must be 'section' or 'spots', got {aggregate!r}.")
    assert_positive_int(n_hpg, name="n_hpg")
    prov = table.uns.get(Keys.uns, {}).get(layer, {})
    genes = prov.get("genes")
    genes = list(table.var_names[table.var[flag].to_numpy()]) if genes is None else [str(g) for g in genes]
    genes = [g for g in genes if g in table.var_names]
    col = table.var_names.get_indexer(genes)
    pred = np.asarray(table.layers[layer], dtype=np.float64)[:, col]
    sec = table.obs[Keys.section].astype(str).to_numpy()
    have = np.isfinite(pred).any(axis=1)  # predicted spots; a NaN gene is then left out pairwise by the metrics
    secs = sorted(set(sec[have])) if sections is None else [str(s) for s in sections]
    unknown = sorted(set(secs) - set(sec))
    if unknown:
        raise KeyError(f"`sections`: unknown section(s) {unknown}; available: {sorted(set(sec))}.")
    unpredicted = sorted(set(secs) - set(sec[have]))
    if unpredicted:
        raise ValueError(f"`sections`: no predictions in `layer`={layer!r} for section(s) {unpredicted}.")
    rows = np.flatnonzero(np.isin(sec, secs) & have)
    if rows.size == 0:
        raise ValueError(f"`layer`={layer!r}: no spot with predictions to evaluate.")
    norm = dict(prov.get("normalize", {}))
    observed = pp.normalize(
        table,  # the table itself: `table_key` was resolved above (normalize refuses it with an AnnData)
        genes=genes,
        recipe=norm.get("recipe", "paper"),
        smooth=bool(norm.get("smooth", True)),
        grid=norm.get("grid", "auto"),
        inplace=False,
    ).astype(np.float64)
    hpg, source = _resolve_hpg(hpg, prov, genes, observed[rows], pred[rows], sec[rows], n_hpg)
    res = metrics.evaluate_sections(observed[rows], pred[rows], sec[rows], genes=genes, hpg=hpg or None)
    per_section = res.per_section.copy()
    per_section["spearman"] = [
        np.nanmean(sp) if np.isfinite(sp).any() else np.nan
        for sp in (
            metrics.spearman_per_gene(observed[rows][sec[rows] == s], pred[rows][sec[rows] == s])
            for s in per_section.index
        )
    ]
    summary = metrics.aggregate_sections(per_section, weight=aggregate).iloc[0].to_dict()
    per_section["role"] = _roles(per_section.index, prov)
    _write(table, layer, col, rows, observed, res.per_gene, per_section, summary, hpg, source, prov, norm, aggregate)
    if Keys.lower(layer) in table.layers and Keys.upper(layer) in table.layers:
        _write_intervals(table, layer, col, rows, sec, observed, pred, per_section, prov)
    out = EvaluationFrame(per_section)
    out.note = _note(summary, hpg, source)
    return out


def _roles(sections, prov) -> list[str]:
    """Each section's role for the model that predicted (from the fit record stored with the predictions)."""
    fit = prov.get("fit") or {}
    train = {str(s) for s in fit.get("train_sections", [])}
    val = {str(s) for s in fit.get("val_sections", [])}
    if not train:
        return ["unknown"] * len(sections)
    # a section can be both: the small-cohort inner split gives a spatial block of it to validation
    roles = {(True, True): "train+validation", (True, False): "train", (False, True): "validation"}
    return [roles.get((s in train, s in val), "test") for s in map(str, sections)]


def _note(summary: dict, hpg: list[str], source: str) -> str:
    mean = ", ".join(
        f"{k} {summary[k]:.3f}" for k in ("mse", "mae", "pcc_a", "pcc_h") if k in summary and np.isfinite(summary[k])
    )
    pcc_h = f"PCC(H) over {len(hpg)} genes ({source})" if hpg else f"PCC(H) {source}"
    return f"mean over sections: {mean}\n{pcc_h}"


def _write_intervals(table, layer, col, rows, sec, observed, pred, per_section, prov) -> None:
    """Coverage and width of the calibrated intervals, per section and gene, and the calibration curve."""
    from .. import metrics

    lo = np.asarray(table.layers[Keys.lower(layer)], dtype=np.float64)[np.ix_(rows, col)]
    hi = np.asarray(table.layers[Keys.upper(layer)], dtype=np.float64)[np.ix_(rows, col)]
    genes = [str(g) for g in table.var_names[col]]
    by_sec, cov, wid = metrics.interval_scores(observed[rows], lo, hi, sec[rows], genes=genes)
    per_section["coverage"] = by_sec.loc[per_section.index, "coverage"]
    per_section["interval_width"] = by_sec.loc[per_section.index, "interval_width"]
    table.var[Keys.var_flag(f"coverage_{layer}")] = _per_gene_column(table, col, cov)
    table.var[Keys.var_flag(f"width_{layer}")] = _per_gene_column(table, col, wid)
    unc = dict(prov.get("uncertainty") or {})
    ev = table.uns[Keys.uns]["evaluation"][layer]
    ev["per_section"] = per_section.reset_index()
    ev["interval"] = {
        "level": float(unc["level"]) if "level" in unc else None,
        "coverage_per_gene": cov.reset_index(names="section"),
        "width_per_gene": wid.reset_index(names="section"),
    }
    if "curve_quantiles" in unc:
        std_key = Keys.std(layer)
        sd = (
            np.asarray(table.layers[std_key], dtype=np.float64)[np.ix_(rows, col)]
            if std_key in table.layers
            else np.zeros_like(lo)
        )
        at = [[str(g) for g in prov["genes"]].index(g) for g in genes]  # model order → evaluated genes
        sigma = sd + np.asarray(unc["beta"], dtype=np.float64)[at][None, :]
        q = np.asarray(unc["curve_quantiles"], dtype=np.float64)[:, at]
        ev["coverage_curve"] = metrics.coverage_curve(
            observed[rows], pred[rows], sigma, q, list(unc["curve_levels"]), sec[rows]
        )


def _per_gene_column(table, col, per_sec) -> np.ndarray:
    out = np.full(table.n_vars, np.nan)
    out[col] = per_sec.to_numpy(dtype=np.float64).mean(axis=0)
    return out


def _resolve_hpg(hpg, prov, genes, obs, pred, sec, n_hpg) -> tuple[list[str], str]:
    from .. import metrics

    k = min(n_hpg, len(genes))
    if hpg is None and len(genes) <= n_hpg:
        return [], f"n/a: {len(genes)} genes evaluated ≤ n_hpg={n_hpg}, so PCC(H) would repeat PCC(A)"
    if hpg is not None:
        missing = [g for g in hpg if g not in genes]
        if missing:
            raise ValueError(f"`hpg`: genes not predicted: {missing[:10]}.")
        return list(hpg), "given"
    stored = prov.get("hpg")  # a list, or an array after a zarr round trip
    if stored is not None and len(stored):
        return [str(g) for g in stored if str(g) in genes][:k], "validation split (clean)"
    per_gene = metrics.evaluate_sections(obs, pred, sec, genes=genes).per_gene
    return metrics.select_hpg(per_gene.to_numpy(), k=k, genes=genes), "evaluated (optimistic)"


def _write(table, layer, col, rows, observed, per_gene, per_section, summary, hpg, source, prov, norm, aggregate):
    obs_layer = np.full(table.shape, np.nan, dtype=np.float32)
    obs_layer[np.ix_(rows, col)] = observed[rows]
    table.layers[Keys.observed(layer)] = obs_layer
    pcc = np.full(table.n_vars, np.nan)
    r = per_gene.to_numpy(dtype=np.float64)
    ok = np.isfinite(r)
    n_ok = ok.sum(axis=0)  # a gene NaN in every section stays NaN (np.nanmean would warn "Mean of empty slice")
    pcc[col] = np.where(n_ok > 0, np.where(ok, r, 0.0).sum(axis=0) / np.maximum(n_ok, 1), np.nan)
    table.var[Keys.pcc(layer)] = pcc
    ev = table.uns.setdefault(Keys.uns, {}).setdefault("evaluation", {})
    optimistic = bool(prov.get("optimistic", False)) or source.endswith("(optimistic)")
    ev[layer] = {
        "per_section": per_section.reset_index(),
        "summary": {k: float(v) for k, v in summary.items()},
        "genes": [str(g) for g in table.var_names[col]],
        "hpg": list(hpg),
        "hpg_source": source,
        "protocol": prov.get("protocol", "unknown"),
        "optimistic": optimistic,
        "aggregate": aggregate,
        "normalize": {k: v for k, v in norm.items() if k in ("recipe", "log_base", "smooth", "grid")},
    }
