"""HPG rank averaging and the selection-bias null of PCC(H)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from genedml.metrics import permutation_null_pcc_h, select_hpg, top_k_genes

# Hand-made 3-fold example (rank 1 = lowest PCC, NaN lowest, ties averaged):
#   fold 1: A .9  B .5  C nan D .1  E .3   -> ranks A5 B4 C1 D2 E3
#   fold 2: A .2  B .6  C .4  D .8  E nan  -> ranks A2 B4 C3 D5 E1
#   fold 3: A .7  B .7  C .1  D .3  E .0   -> ranks A4.5 B4.5 C2 D3 E1
#   mean rank: A 3.83, B 4.17, C 2.00, D 3.33, E 1.67 -> top 3 = B, A, D
# (by mean PCC A and B would tie at 0.6).
FOLDS = pd.DataFrame(
    {
        "A": [0.9, 0.2, 0.7],
        "B": [0.5, 0.6, 0.7],
        "C": [np.nan, 0.4, 0.1],
        "D": [0.1, 0.8, 0.3],
        "E": [0.3, np.nan, 0.0],
    },
    index=["f1", "f2", "f3"],
)


def test_select_hpg_rank_averaging_by_hand():
    assert select_hpg(FOLDS, k=3) == ["B", "A", "D"]
    assert select_hpg(FOLDS, k=5) == ["B", "A", "D", "C", "E"]


def test_select_hpg_input_forms_agree():
    as_dict = {f: FOLDS.loc[f] for f in FOLDS.index}
    assert select_hpg(as_dict, k=3) == ["B", "A", "D"]
    assert select_hpg(FOLDS.to_numpy(), k=3, genes=list(FOLDS.columns)) == ["B", "A", "D"]
    assert select_hpg(FOLDS.to_numpy(), k=3) == [1, 0, 3]
    shuffled = {f: FOLDS.loc[f].iloc[::-1] for f in FOLDS.index}  # gene order differs per fold
    assert select_hpg(shuffled, k=3) == ["B", "A", "D"]


def test_nan_ranks_lowest():
    # gene X is NaN in one fold: it must rank below every finite PCC there, even a negative one
    folds = pd.DataFrame({"X": [0.9, np.nan], "Y": [0.5, -0.5], "Z": [0.1, -0.9]})
    # fold 1 ranks: X3 Y2 Z1; fold 2: X1 Y3 Z2 -> mean X2, Y2.5, Z1.5
    assert select_hpg(folds, k=1) == ["Y"]


def test_select_hpg_bad_inputs():
    with pytest.raises(ValueError, match="`k`"):
        select_hpg(FOLDS, k=6)
    with pytest.raises(ValueError, match="`k`"):
        select_hpg(FOLDS, k=0)
    with pytest.raises(ValueError, match="same genes"):
        select_hpg({"f1": FOLDS.loc["f1"], "f2": FOLDS.loc["f2"].drop("A")}, k=2)
    with pytest.raises(ValueError, match="`genes`"):
        select_hpg(FOLDS.to_numpy(), k=2, genes=["A"])


def test_top_k_genes():
    pcc = pd.Series({"a": 0.1, "b": np.nan, "c": 0.7, "d": 0.7})
    assert top_k_genes(pcc, 3) == ["c", "d", "a"]  # tie keeps input order, NaN last
    assert top_k_genes(np.array([0.1, np.nan, 0.7]), 3, genes=["a", "b", "c"]) == ["c", "a", "b"]


def test_permutation_null_shows_selection_bias():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(120, 60))
    noise = rng.normal(size=(120, 60))
    sections = np.repeat(["s1", "s2"], 60)
    res = permutation_null_pcc_h(y, noise, sections, k=10, n_perm=30, seed=1)
    assert list(res.index) == ["s1", "s2"]
    assert (res["n_spots"] == 60).all()
    # random predictions: top-10 of 60 noisy correlations on 60 spots is clearly positive, and not significant
    assert (res["null_mean"] > 0.15).all()
    assert (res["observed"] > 0.15).all()
    assert (res["p_value"] > 0.05).all()
    again = permutation_null_pcc_h(y, noise, sections, k=10, n_perm=30, seed=1)
    pd.testing.assert_frame_equal(res, again)


def test_permutation_null_good_predictor_and_postprocess():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(80, 20))
    pred = y + 0.3 * rng.normal(size=y.shape)
    calls = []

    def post(p):
        calls.append(p.shape)
        return p

    res = permutation_null_pcc_h(y, pred, ["s"] * 80, k=5, n_perm=19, seed=0, postprocess=post)
    assert res.loc["s", "observed"] > 0.9
    assert res.loc["s", "null_mean"] < 0.5
    assert res.loc["s", "p_value"] == pytest.approx(1 / 20)
    assert len(calls) == 20 and calls[0] == (80, 20)


def test_permutation_null_bad_inputs():
    y = np.zeros((5, 3))
    with pytest.raises(ValueError, match="`k`"):
        permutation_null_pcc_h(y, y, ["s"] * 5, k=4)
    with pytest.raises(ValueError, match="`sections`"):
        permutation_null_pcc_h(y, y, ["s"] * 4, k=2)
    with pytest.raises(ValueError, match="`n_perm`"):
        permutation_null_pcc_h(y, y, ["s"] * 5, k=2, n_perm=0)
