"""gd.pp.normalize / normalize_counts / smooth_grid against hand computations and scanpy."""

from __future__ import annotations

import math

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import genedml as gd
from genedml.pp._normalize import _grid_neighbors, detect_grid

# A 3×3 square grid with (2, 2) absent; spot (0, 2) has library 0. Library sizes over the 2 genes:
# 4, 6, 0, 8, 8, 2, 4, 8 → median 5 (the zero library counts; without it the median would be 6).
POS = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1)]
COUNTS = np.array([[2, 2], [1, 5], [0, 0], [4, 4], [6, 2], [1, 1], [3, 1], [0, 8]])


def _l(v):
    return math.log10(1 + v)


def _adata(counts, pos, genes=("G1", "G2"), sections=None):
    obs = pd.DataFrame(
        {"array_row": [p[0] for p in pos], "array_col": [p[1] for p in pos]},
        index=[f"spot{i}" for i in range(len(pos))],
    )
    if sections is not None:
        obs["section"] = pd.Categorical(sections)
    a = ad.AnnData(X=np.asarray(counts, dtype=np.int32), obs=obs)
    a.var_names = list(genes)
    a.layers["counts"] = a.X.copy()
    return a


def _reference_paper(counts, pos):
    """Loop-based reading of method.md §1.5 for one section (ids "{x}x{y}", absent neighbours skipped)."""
    lib = counts.sum(1).astype(float)
    med = float(np.median(lib))
    y = np.log10(1 + counts / np.where(lib == 0, 1, lib)[:, None] * med)
    index = {f"{r}x{c}": i for i, (r, c) in enumerate(pos)}
    out = np.zeros_like(y)
    for i, (r, c) in enumerate(pos):
        nb = [index[f"{r + dr}x{c + dc}"] for dr in (-1, 0, 1) for dc in (-1, 0, 1) if f"{r + dr}x{c + dc}" in index]
        out[i] = y[nb].mean(0)
    return out


def test_paper_recipe_by_hand():
    a = _adata(COUNTS, POS)
    gd.pp.normalize(a, genes=["G1", "G2"])
    got = a.obsm["genedml_target"]
    assert got.dtype == np.float32 and got.shape == (8, 2)
    # x = c / L · 5: (0,1) [5/6, 25/6]; (1,0) [2.5, 2.5]; (1,1) [3.75, 1.25]; (1,2) [2.5, 2.5];
    # (2,0) [3.75, 1.25]; (2,1) [0, 5]. Spot (2, 1) averages (1,0) (1,1) (1,2) (2,0) (2,1); (2,2) is absent.
    i = POS.index((2, 1))
    assert got[i, 0] == pytest.approx((2 * _l(2.5) + 2 * _l(3.75) + _l(0)) / 5, rel=1e-6)
    assert got[i, 1] == pytest.approx((2 * _l(2.5) + 2 * _l(1.25) + _l(5)) / 5, rel=1e-6)
    # zero-library corner (0, 2): its own values are 0 and it averages with (0,1) (1,1) (1,2)
    j = POS.index((0, 2))
    assert got[j, 0] == pytest.approx((_l(5 / 6) + 0 + _l(3.75) + _l(2.5)) / 4, rel=1e-6)
    assert got[j, 1] == pytest.approx((_l(25 / 6) + 0 + _l(1.25) + _l(2.5)) / 4, rel=1e-6)
    np.testing.assert_allclose(got, _reference_paper(COUNTS, POS), rtol=1e-6)
    rec = a.uns["genedml"]["normalize"]
    assert rec["recipe"] == "paper" and rec["log_base"] == 10.0 and rec["pseudocount"] == 1.0
    assert rec["grid_resolved"] == {"all": "square"} and rec["genes"] == ["G1", "G2"]
    assert len(rec["genes_hash"]) == 64


def test_unsmoothed_and_spot_order():
    order = np.random.default_rng(0).permutation(8)
    a = _adata(COUNTS[order], [POS[k] for k in order])
    y = gd.pp.normalize(a, genes=["G1", "G2"], inplace=False)
    np.testing.assert_allclose(y, _reference_paper(COUNTS, POS)[order], rtol=1e-6)
    assert "genedml_target" not in a.obsm  # inplace=False writes nothing
    raw = gd.pp.normalize(a, genes=["G2"], smooth=False, inplace=False)
    # library over the selected genes only: with just G2 the libraries are G2's counts
    lib2 = COUNTS[order, 1]
    expected = np.log10(1 + COUNTS[order, 1] / np.where(lib2 == 0, 1, lib2) * np.median(lib2))
    np.testing.assert_allclose(raw[:, 0], expected, rtol=1e-6)


def test_sections_rescale_and_smooth_separately():
    pos = POS + POS
    counts = np.vstack([COUNTS, COUNTS * 10])
    a = _adata(counts, pos, sections=["A"] * 8 + ["B"] * 8)
    gd.pp.normalize(a, genes=["G1", "G2"])
    y = a.obsm["genedml_target"]
    ref = _reference_paper(COUNTS, POS)
    np.testing.assert_allclose(y[:8], ref, rtol=1e-6)  # same grid positions in B do not leak into A
    np.testing.assert_allclose(y[8:], _reference_paper(COUNTS * 10, POS), rtol=1e-6)
    assert a.uns["genedml"]["normalize"]["grid_resolved"] == {"A": "square", "B": "square"}


def test_log1p_cp10k_matches_scanpy():
    import scanpy as sc

    rng = np.random.default_rng(0)
    counts = rng.poisson(4, size=(8, 3))
    counts[2, [0, 2]] = 0  # a spot with no counts over the selected genes
    a = _adata(counts, POS, genes=("G1", "G2", "G3"))
    ours = gd.pp.normalize(a, genes=["G3", "G1"], recipe="log1p_cp10k", smooth=False, inplace=False)
    ref = a[:, ["G3", "G1"]].copy()
    ref.X = ref.X.astype(np.float64)
    with pytest.warns(UserWarning, match="zero counts"):  # scanpy's own notice about the empty spot
        sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    np.testing.assert_allclose(ours, ref.X, rtol=1e-6)
    smoothed = gd.pp.normalize(a, genes=["G3", "G1"], recipe="log1p_cp10k", inplace=False)
    np.testing.assert_allclose(
        smoothed, gd.pp.smooth_grid(np.asarray(ref.X), row=a.obs["array_row"], col=a.obs["array_col"]), rtol=1e-6
    )
    gd.pp.normalize(a, genes=["G1"], recipe="log1p_cp10k", key_added="cp10k")
    assert a.uns["genedml"]["normalize"]["log_base"] == pytest.approx(math.e)
    assert a.uns["genedml"]["normalize"]["key_added"] == "cp10k" and "cp10k" in a.obsm


# Visium-like hex grid: row + col even; columns step by 2 within a row.
HEX = [(0, 0), (0, 2), (0, 4), (1, 1), (1, 3), (1, 5), (2, 0), (2, 2), (2, 4)]


def test_hex_neighbourhood():
    assert detect_grid([p[0] for p in HEX], [p[1] for p in HEX]) == "hex"
    assert detect_grid([p[0] for p in POS], [p[1] for p in POS]) == "square"
    row, col = np.array([p[0] for p in HEX]), np.array([p[1] for p in HEX])
    adj = _grid_neighbors(row, col, grid="hex").toarray()
    centre = HEX.index((1, 3))
    expected = {(0, 2), (0, 4), (1, 1), (1, 3), (1, 5), (2, 2), (2, 4)}  # six touching spots + itself
    assert {HEX[j] for j in np.flatnonzero(adj[centre])} == expected
    square = _grid_neighbors(row, col, grid="square").toarray()
    assert {HEX[j] for j in np.flatnonzero(square[centre])} == expected - {(1, 1), (1, 5)}
    onehot = (np.arange(9) == HEX.index((1, 1))).astype(float)
    assert gd.pp.smooth_grid(onehot, row=row, col=col, grid="auto")[centre] == pytest.approx(1 / 7)
    assert gd.pp.smooth_grid(onehot, row=row, col=col, grid="square")[centre] == 0.0


def test_auto_grid_per_section_in_normalize():
    rng = np.random.default_rng(1)
    pos = POS + HEX
    counts = rng.poisson(5, size=(len(pos), 2))
    a = _adata(counts, pos, sections=["st"] * 8 + ["vis"] * 9)
    gd.pp.normalize(a, genes=["G1", "G2"])
    assert a.uns["genedml"]["normalize"]["grid_resolved"] == {"st": "square", "vis": "hex"}
    raw = gd.pp.normalize(a, genes=["G1", "G2"], smooth=False, inplace=False)
    vis = np.arange(8, 17)
    row, col = np.array([p[0] for p in HEX]), np.array([p[1] for p in HEX])
    np.testing.assert_allclose(
        a.obsm["genedml_target"][vis], gd.pp.smooth_grid(raw[vis], row=row, col=col, grid="hex"), rtol=1e-6
    )
    # the square section keeps the 3×3 window even though another section is hex
    np.testing.assert_allclose(a.obsm["genedml_target"][:8], _reference_paper(counts[:8], POS), rtol=1e-6)
    forced = gd.pp.normalize(a, genes=["G1", "G2"], grid="square", inplace=False)
    assert not np.allclose(forced[vis], a.obsm["genedml_target"][vis])


def test_smooth_grid_nan_and_dtype():
    v = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, 2.0]], dtype=np.float32)
    out = gd.pp.smooth_grid(v, row=[0, 0, 0], col=[0, 1, 2])
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], [2.0, 2.0, 3.0])
    assert np.isnan(out[0, 1]) and out[1, 1] == 2.0 and out[2, 1] == 2.0
    sec = gd.pp.smooth_grid([1.0, 5.0], row=[0, 0], col=[0, 1], section=["a", "b"])
    np.testing.assert_allclose(sec, [1.0, 5.0])


def test_smooth_grid_bad_inputs():
    with pytest.raises(ValueError, match="share the grid position"):
        gd.pp.smooth_grid([1.0, 2.0], row=[0, 0], col=[1, 1])
    with pytest.raises(ValueError, match="`data`"):
        gd.pp.smooth_grid([1.0, 2.0, 3.0], row=[0, 0], col=[0, 1])
    with pytest.raises(ValueError, match="`row`"):
        gd.pp.smooth_grid([1.0, 2.0], row=[0, 0.5], col=[0, 1])
    with pytest.raises(ValueError, match="`grid`"):
        gd.pp.smooth_grid([1.0, 2.0], row=[0, 0], col=[0, 1], grid="hexagonal")
    with pytest.raises(ValueError, match="`section`"):
        gd.pp.smooth_grid([1.0, 2.0], row=[0, 0], col=[0, 1], section=["a"])


def test_spatialdata_path():
    n = len(POS)
    sec = gd.io.SectionData(
        name="S1",
        patient="P1",
        image=np.zeros((64, 64, 3), dtype=np.uint8),
        pixel_size=1.0,
        xy=np.array([[10 + 10 * c, 10 + 10 * r] for r, c in POS], dtype=float),
        array_row=np.array([p[0] for p in POS]),
        array_col=np.array([p[1] for p in POS]),
        counts=COUNTS,
        genes=["G1", "G2"],
        barcodes=[f"b{i}" for i in range(n)],
        spot_diameter_um=4.0,
        pitch_um=10.0,
    )
    sdata = gd.io.build_sdata([sec])
    gd.pp.normalize(sdata, genes=["G1", "G2"], key_added="y")
    table = gd.io.get_table(sdata)
    np.testing.assert_allclose(table.obsm["y"], _reference_paper(COUNTS, POS), rtol=1e-6)
    assert table.uns["genedml"]["normalize"]["grid_resolved"] == {"S1": "square"}


def test_bad_inputs():
    a = _adata(COUNTS, POS)
    with pytest.raises(KeyError, match=r"`genes`: 1 gene\(s\) not in .*NOPE"):
        gd.pp.normalize(a, genes=["G1", "NOPE"])
    with pytest.raises(TypeError, match="`genes`"):
        gd.pp.normalize(a, genes="G1")
    with pytest.raises(ValueError, match="more than once"):
        gd.pp.normalize(a, genes=["G1", "G1"])
    with pytest.raises(ValueError, match="`recipe`"):
        gd.pp.normalize(a, genes=["G1"], recipe="cpm")
    with pytest.raises(ValueError, match="`grid`"):
        gd.pp.normalize(a, genes=["G1"], grid="hexagon")
    with pytest.raises(KeyError, match="`layer`"):
        gd.pp.normalize(a, genes=["G1"], layer="raw")
    b = _adata(COUNTS, POS)
    b.layers["counts"] = b.layers["counts"].astype(float)
    b.layers["counts"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gd.pp.normalize(b, genes=["G1"])
    b.layers["counts"][0, 0] = -1
    with pytest.raises(ValueError, match="negative"):
        gd.pp.normalize(b, genes=["G1"])
    b.layers["counts"][0, 0] = 0.5
    with pytest.warns(UserWarning, match="non-integer"):
        gd.pp.normalize(b, genes=["G1"])
    c = _adata(COUNTS, POS)
    del c.obs["array_col"]
    with pytest.raises(KeyError, match="array_col"):
        gd.pp.normalize(c, genes=["G1"])
    gd.pp.normalize(c, genes=["G1"], smooth=False)  # no grid needed without smoothing
    assert c.uns["genedml"]["normalize"]["smooth"] is False


def test_zero_median_library_warns():
    counts = np.array([[0, 0], [0, 0], [1, 2]])
    with pytest.warns(UserWarning, match="median library size is 0"):
        y = gd.pp.normalize_counts(counts)
    np.testing.assert_allclose(y[2], np.log10(1 + np.array([1, 2]) / 3))
