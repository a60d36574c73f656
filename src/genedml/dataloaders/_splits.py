"""Grouped splits: no patient (or section) on both sides."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["group_kfold", "inner_validation_split", "leave_one_group_out"]


def leave_one_group_out(groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """``[(train_rows, test_rows, group), ...]``, one fold per distinct group, in order of appearance."""
    groups = np.asarray(groups).astype(str)
    out = []
    for g in pd.unique(groups):
        test = np.flatnonzero(groups == g)
        out.append((np.flatnonzero(groups != g), test, str(g)))
    return out


def group_kfold(groups: np.ndarray, *, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """``k`` folds over shuffled groups (as even as possible); each group is tested exactly once."""
    groups = np.asarray(groups).astype(str)
    uniq = np.array(pd.unique(groups))
    if not 2 <= k <= len(uniq):
        raise ValueError(f"`k` must lie in [2, {len(uniq)}] (the number of groups), got {k}.")
    order = np.random.default_rng(seed).permutation(uniq)
    out = []
    for f in range(k):
        held = order[f::k]
        test = np.flatnonzero(np.isin(groups, held))
        out.append((np.flatnonzero(~np.isin(groups, held)), test, "+".join(sorted(held))))
    return out


def inner_validation_split(
    patients: np.ndarray, sections: np.ndarray, *, seed: int = 0, val_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, str]:
    """Hold out a validation group from training data: by patient, by section when there is one patient.

    With a single section, a random ``val_fraction`` of spots is held out (a documented last resort; spatial
    autocorrelation makes it optimistic) and the returned level says so.
    """
    patients = np.asarray(patients).astype(str)
    sections = np.asarray(sections).astype(str)
    rng = np.random.default_rng(seed)
    for level, groups in (("patient", patients), ("section", sections)):
        uniq = pd.unique(groups)
        if len(uniq) >= 2:
            held = uniq[rng.integers(len(uniq))]
            val = groups == held
            return np.flatnonzero(~val), np.flatnonzero(val), level
    n = len(patients)
    val = np.zeros(n, dtype=bool)
    val[rng.permutation(n)[: max(1, int(round(val_fraction * n)))]] = True
    return np.flatnonzero(~val), np.flatnonzero(val), "spot"
