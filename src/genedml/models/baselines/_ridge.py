"""Ridge regression for many penalties from one SVD, and grouped cross-validation folds (NumPy only).

With the design ``X`` (optionally centred, standardised, truncated to its top principal components) written as
``X = U S Vᵀ``, the ridge solution for penalty ``α`` is ``β(α) = V diag(s / (s² + α)) Uᵀ Y``: one SVD serves every
``α`` of a grid. PCA to ``k`` components followed by ridge is the same formula restricted to the top ``k`` singular
values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["RidgePath", "cv_folds", "default_alphas", "section_scores", "spatial_band_folds"]


@dataclass
class RidgePath:
    """Everything needed to predict with any penalty, fitted once on ``(X, Y)``.

    Attributes
    ----------
    x_mean, x_scale
        Column centre and scale applied before the SVD (zeros / ones when not used).
    y_mean
        Target centre (the intercept of the centred problem; zeros without intercept).
    s, Vt, UtY
        Kept singular values ``(k,)``, right singular vectors ``(k, D)`` and ``Uᵀ Y`` ``(k, G)``.
    """

    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: np.ndarray
    s: np.ndarray
    Vt: np.ndarray
    UtY: np.ndarray

    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        Y: np.ndarray,
        *,
        fit_intercept: bool = True,
        standardize: bool = False,
        n_components: int | None = None,
    ) -> RidgePath:
        """Decompose the (centred / standardised) design; ``standardize`` needs ``fit_intercept``."""
        if standardize and not fit_intercept:
            raise ValueError("`standardize=True` centres the features, so it needs `fit_intercept=True`.")
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        D, G = X.shape[1], Y.shape[1]
        x_mean = X.mean(axis=0) if fit_intercept else np.zeros(D)
        x_scale = np.ones(D)
        if standardize:
            sd = X.std(axis=0)
            x_scale = np.where(sd > 1e-12, sd, 1.0)
        y_mean = Y.mean(axis=0) if fit_intercept else np.zeros(G)
        U, s, Vt = np.linalg.svd((X - x_mean) / x_scale, full_matrices=False)
        keep = s > (s[0] * 1e-10 if s.size else 0)
        if n_components is not None:
            keep &= np.arange(s.size) < n_components
        U, s, Vt = U[:, keep], s[keep], Vt[keep]
        return cls(x_mean, x_scale, y_mean, s, Vt, U.T @ (Y - y_mean))

    def _filter(self, alpha: float) -> np.ndarray:
        return self.s / (self.s**2 + alpha)

    def coef(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """``(coef (D, G), intercept (G,))`` on the raw features: ``pred = X @ coef + intercept``."""
        beta = self.Vt.T @ (self._filter(alpha)[:, None] * self.UtY)
        coef = beta / self.x_scale[:, None]
        return coef, self.y_mean - self.x_mean @ coef

    def project(self, X: np.ndarray) -> np.ndarray:
        """Coordinates of raw features in the kept singular directions, ``(n, k)``."""
        return ((np.asarray(X, dtype=np.float64) - self.x_mean) / self.x_scale) @ self.Vt.T

    def predict(self, Z: np.ndarray, alpha: float) -> np.ndarray:
        """Predictions from projected coordinates ``Z`` (see :meth:`project`) for penalty ``alpha``."""
        return Z @ (self._filter(alpha)[:, None] * self.UtY) + self.y_mean


def default_alphas(X: np.ndarray, *, standardize: bool, fit_intercept: bool, n: int = 15) -> np.ndarray:
    """A log grid of ``n`` penalties from 1e-4 to 1e3 times the mean squared singular value of the design.

    Relative to the spectrum, the grid spans near least squares to heavy shrinkage whatever the feature scale.
    """
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(axis=0) if fit_intercept else X
    if standardize:
        sd = Xc.std(axis=0)
        Xc = Xc / np.where(sd > 1e-12, sd, 1.0)
    scale = float((Xc**2).sum()) / max(1, min(X.shape))
    return np.logspace(-4, 3, n) * (scale if scale > 0 else 1.0)


def section_scores(y: np.ndarray, pred: np.ndarray, sections: np.ndarray, *, metric: str = "pcc") -> list[float]:
    """Score of each section, higher is better.

    ``"pcc"``: the mean over genes of the Pearson r over the section's spots (NaN genes omitted; NaN when none is
    finite). ``"mse"``: minus the mean squared error.
    """
    from ...metrics import pearson_per_gene

    out = []
    for s in pd.unique(sections):
        m = sections == s
        if metric == "mse":
            out.append(-float(np.mean((pred[m] - y[m]) ** 2)))
            continue
        r = pearson_per_gene(y[m], pred[m]) if m.sum() >= 2 else np.array([np.nan])
        out.append(float(np.nanmean(r)) if np.isfinite(r).any() else np.nan)
    return out


def cv_folds(groups: np.ndarray, *, max_folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Leave-one-group-out, or ``max_folds`` group k-fold when there are more groups; no group on both sides."""
    from ...dataloaders import group_kfold, leave_one_group_out

    groups = np.asarray(groups).astype(str)
    n_groups = len(pd.unique(groups))
    if n_groups < 2:
        raise ValueError(f"grouped cross-validation needs at least 2 groups, got {n_groups}.")
    if n_groups <= max_folds:
        return leave_one_group_out(groups)
    return group_kfold(groups, k=max_folds, seed=seed)


def spatial_band_folds(
    rows: np.ndarray, *, n_folds: int = 5, buffer: int = 1
) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Contiguous bands of grid rows of one section; training spots within ``buffer`` rows of the band are dropped.

    The last resort when the data hold a single section: the buffer keeps the 3×3 target smoothing (radius one grid
    step) from leaking held-out expression into the training side.
    """
    rows = np.asarray(rows)
    uniq = np.unique(rows)
    n_folds = min(n_folds, len(uniq))
    if n_folds < 2:
        raise ValueError(f"spatial-band cross-validation needs at least 2 distinct grid rows, got {len(uniq)}.")
    out = []
    for band in np.array_split(uniq, n_folds):
        test = np.flatnonzero(np.isin(rows, band))
        near = (rows >= band.min() - buffer) & (rows <= band.max() + buffer)
        train = np.flatnonzero(~near)
        if len(train) and len(test):
            out.append((train, test, f"rows {band.min()}-{band.max()}"))
    if len(out) < 2:
        raise ValueError("spatial-band cross-validation left fewer than 2 usable folds: too few grid rows.")
    return out
