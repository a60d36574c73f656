"""Evaluation metrics on arrays: ``gd.metrics`` (NumPy/SciPy only, NaN-safe)."""

from ._evaluate import SectionScores, aggregate_folds, aggregate_sections, evaluate_sections
from ._hpg import permutation_null_pcc_h, select_hpg, top_k_genes
from ._interval import coverage_curve, interval_scores
from ._per_gene import ccc_per_gene, explained_variance, mae, mse, pearson_per_gene, spearman_per_gene

__all__ = [
    "SectionScores",
    "aggregate_folds",
    "aggregate_sections",
    "ccc_per_gene",
    "coverage_curve",
    "evaluate_sections",
    "explained_variance",
    "interval_scores",
    "mae",
    "mse",
    "pearson_per_gene",
    "permutation_null_pcc_h",
    "select_hpg",
    "spearman_per_gene",
    "top_k_genes",
]
