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
    patients: np.ndarray,
    sections: np.ndarray,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    coords: np.ndarray | None = None,
    min_patients: int | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Hold out an early-stopping split from training data, sized for small cohorts.

    The rule (documented in ``docs/protocols.md``), with ``p`` patients in the training data:

    * ``p ≥ min_patients`` (default ``ceil(1 / val_fraction)``, 5 for 20 %): whole patients,
      ``round(val_fraction · p)`` of them (at least one) — the cleanest split, affordable when patients are many;
    * otherwise every patient contributes, so that no patient's data is lost to training and validation sees every
      patient: a patient with several sections gives ``round(val_fraction · n_sections)`` whole sections (at least
      one, never all); a patient with one section gives a **spatially contiguous block** of ``val_fraction`` of its
      spots (the spots nearest a random spot, in array coordinates ``coords``), and the spots that touch the block
      (within one grid step: the targets' smoothing neighbourhood) are left out of training, so no smoothed target
      is shared across the boundary;
    * without ``coords``, the block falls back to a random ``val_fraction`` of the section's spots (spatial
      autocorrelation makes it optimistic).

    Parameters
    ----------
    patients, sections
        Patient and section label per training spot.
    seed
        Seed of every random choice.
    val_fraction
        Target share of held-out data.
    coords
        ``(n, 2)`` integer array coordinates (row, col) per spot, for spatial blocks.
    min_patients
        Smallest number of patients held out whole.

    Returns
    -------
    ``(train_rows, val_rows, level)``: ``level`` is ``"patient"``, ``"section"`` (sections of multi-section
    patients only), ``"section+block"`` (both kinds), ``"block"`` or ``"spot"`` (the random fallback).
    Spots in a block's buffer are in neither set.

    Examples
    --------
    >>> import numpy as np
    >>> tr, va, level = inner_validation_split(np.array(list("PPPPQQ")), np.array(list("aabbcd")), seed=0)
    >>> level
    'section'
    """
    patients = np.asarray(patients).astype(str)
    sections = np.asarray(sections).astype(str)
    if not 0 < val_fraction < 1:
        raise ValueError(f"`val_fraction` must lie in (0, 1), got {val_fraction!r}.")
    if coords is not None:
        coords = np.asarray(coords)
        if coords.shape != (len(patients), 2):
            raise ValueError(f"`coords` must be shaped (n_spots, 2) = ({len(patients)}, 2), got {coords.shape}.")
    rng = np.random.default_rng(seed)
    n = len(patients)
    uniq_p = pd.unique(patients)
    min_p = int(np.ceil(1.0 / val_fraction - 1e-9)) if min_patients is None else int(min_patients)
    if len(uniq_p) >= max(min_p, 2):
        n_held = max(1, int(round(val_fraction * len(uniq_p))))
        held = rng.permutation(uniq_p)[:n_held]
        val = np.isin(patients, held)
        return np.flatnonzero(~val), np.flatnonzero(val), "patient"
    val = np.zeros(n, dtype=bool)
    buffer = np.zeros(n, dtype=bool)
    kinds = set()
    for p in uniq_p:
        in_p = patients == p
        secs = pd.unique(sections[in_p])
        if len(secs) >= 2:
            n_held = min(len(secs) - 1, max(1, int(round(val_fraction * len(secs)))))
            val |= np.isin(sections, rng.permutation(secs)[:n_held]) & in_p
            kinds.add("section")
            continue
        rows = np.flatnonzero(in_p)
        m = max(1, int(round(val_fraction * len(rows))))
        if len(rows) < 2:
            continue  # one spot: nothing to hold out
        if coords is None:
            val[rows[rng.permutation(len(rows))[:m]]] = True
            kinds.add("spot")
            continue
        xy = coords[rows].astype(np.float64)
        centre = xy[rng.integers(len(rows))]
        d = np.hypot(*(xy - centre).T)
        block = np.argsort(d, kind="stable")[:m]
        val[rows[block]] = True
        # buffer: training spots within one grid step (Chebyshev, cols may step by 2 on hex grids) of the block
        near = np.zeros(len(rows), dtype=bool)
        for r, c in xy[block]:
            near |= (np.abs(xy[:, 0] - r) <= 1) & (np.abs(xy[:, 1] - c) <= 2)
        buffer[rows[near]] = True
        kinds.add("block")
    buffer &= ~val
    if not val.any():  # e.g. every patient a single spot
        val[rng.permutation(n)[: max(1, int(round(val_fraction * n)))]] = True
        kinds = {"spot"}
    level = "spot" if "spot" in kinds else "+".join(k for k in ("section", "block") if k in kinds)
    return np.flatnonzero(~val & ~buffer), np.flatnonzero(val), level
