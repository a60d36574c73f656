"""gd.pp.select_genes: HEG ranking, detection filter, training-only selection, lists and panels."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import genedml as gd


def _adata(counts, genes, *, layer=True):
    a = ad.AnnData(X=np.asarray(counts, dtype=np.int32))
    a.var_names = genes
    a.obs_names = [f"s{i}" for i in range(a.n_obs)]
    if layer:
        a.layers["counts"] = a.X.copy()
    return a


def _sdata(counts, genes):
    n = len(counts)
    sec = gd.io.SectionData(
        name="S1",
        patient="P1",
        image=np.zeros((64, 64, 3), dtype=np.uint8),
        pixel_size=1.0,
        xy=np.column_stack([np.arange(n) * 5 + 5, np.full(n, 10)]).astype(float),
        array_row=np.zeros(n, dtype=int),
        array_col=np.arange(n),
        counts=np.asarray(counts),
        genes=genes,
        barcodes=[f"b{i}" for i in range(n)],
        spot_diameter_um=4.0,
        pitch_um=5.0,
    )
    return gd.io.build_sdata([sec])


# 5 spots × 5 genes; means: A 4.0, B 10 (but in 1 of 5 spots = 20%), C 2.0, D 3.0, E 0
COUNTS = np.array(
    [
        [4, 0, 2, 3, 0],
        [4, 0, 2, 3, 0],
        [4, 0, 2, 3, 0],
        [4, 0, 2, 3, 0],
        [4, 50, 2, 3, 0],
    ]
)
GENES = ["A", "B", "C", "D", "E"]
PANEL = "her2st"
KEY = "genedml_selected"  # the default `key_added`


def test_heg_ranking_and_detection_filter():
    a = _adata(COUNTS, GENES)
    assert gd.pp.select_genes(a, n_top_genes=3) == ["B", "A", "D"]  # 20% ≥ 10%: B passes and has the top mean
    assert gd.pp.select_genes(a, n_top_genes=3, min_frac_spots=0.5) == ["A", "D", "C"]  # B detected in too few spots
    rec = a.uns["genedml"]["genes"][KEY]
    assert rec["names"] == ["A", "D", "C"] and rec["method"] == "heg"
    assert rec["params"]["min_frac_spots"] == 0.5 and rec["params"]["n_genes_passing_filter"] == 3


def test_heg_sparse_equals_dense():
    dense = _adata(COUNTS, GENES)
    sparse = _adata(COUNTS, GENES)
    sparse.layers["counts"] = sp.csr_matrix(sparse.layers["counts"])
    assert gd.pp.select_genes(dense, n_top_genes=4) == gd.pp.select_genes(sparse, n_top_genes=4)


def test_fewer_genes_than_n_warns():
    a = _adata(COUNTS, GENES)
    with pytest.warns(UserWarning, match="only 3 genes pass"):
        assert gd.pp.select_genes(a, n_top_genes=10, min_frac_spots=0.5) == ["A", "D", "C"]


def test_train_mask_prevents_leakage():
    rng = np.random.default_rng(0)
    counts = rng.poisson(3, size=(20, 6))
    counts[:15, 5] = 0
    counts[15:, 5] = 10_000  # gene LEAK is huge, but only in the held-out spots 15..19
    genes = ["G0", "G1", "G2", "G3", "G4", "LEAK"]
    a = _adata(counts, genes)
    assert "LEAK" in gd.pp.select_genes(a, n_top_genes=3, min_frac_spots=0.0)
    train = np.arange(20) < 15
    chosen = gd.pp.select_genes(a, n_top_genes=3, min_frac_spots=0.0, train_mask=train)
    assert "LEAK" not in chosen
    assert a.uns["genedml"]["genes"][KEY]["params"]["n_spots_used"] == 15


def test_detection_filter_counts_training_spots_only():
    counts = np.ones((10, 3), dtype=int)
    counts[:, 2] = 0
    counts[8:, 2] = 100  # detected in 20% of all spots, 0% of the training spots
    a = _adata(counts, ["G0", "G1", "ONLY_TEST"])
    assert "ONLY_TEST" in gd.pp.select_genes(a, n_top_genes=3, min_frac_spots=0.1)
    with pytest.warns(UserWarning, match="only 2 genes pass"):
        chosen = gd.pp.select_genes(a, n_top_genes=3, min_frac_spots=0.1, train_mask=np.arange(10) < 8)
    assert chosen == ["G0", "G1"]


def test_explicit_list_warns_and_drops_missing():
    a = _adata(COUNTS, GENES)
    with pytest.warns(UserWarning, match=r"2 of 4 genes of `genes`.*NOPE1, NOPE2"):
        chosen = gd.pp.select_genes(a, genes=["D", "NOPE1", "A", "NOPE2"])
    assert chosen == ["D", "A"]
    rec = a.uns["genedml"]["genes"][KEY]
    assert rec["method"] == "list" and rec["params"]["missing"] == ["NOPE1", "NOPE2"]
    with pytest.raises(ValueError, match="none of the 2 genes"):
        gd.pp.select_genes(a, genes=["X", "Y"])


def test_panel_resolved_through_datasets(monkeypatch):
    calls = []

    def fake_panel(name):
        calls.append(name)
        return ["D", "MISSING", "A"]

    monkeypatch.setattr(gd.datasets, "gene_panel", fake_panel, raising=False)
    a = _adata(COUNTS, GENES)
    with pytest.warns(UserWarning, match="1 of 3 genes of `panel`.*MISSING"):
        assert gd.pp.select_genes(a, panel="mypanel") == ["D", "A"]
    assert calls == ["mypanel"]
    rec = a.uns["genedml"]["genes"][KEY]
    assert rec["method"] == "panel" and rec["params"]["panel"] == "mypanel"


def test_panel():
    if not hasattr(gd.datasets, "gene_panel"):
        pytest.skip("genedml.datasets.gene_panel is not available yet (written by another issue)")
    try:
        panel = list(gd.datasets.gene_panel(PANEL))
    except (KeyError, ValueError) as e:  # the panel names are gd.datasets' choice
        pytest.skip(f"gd.datasets.gene_panel does not know {PANEL!r} ({e}): update PANEL in this test")
    a = _adata(np.ones((3, 4), dtype=int), [panel[2], "EXTRA", panel[0], panel[1]])
    with pytest.warns(UserWarning, match="genes of `panel` are not in the data"):
        chosen = gd.pp.select_genes(a, panel=PANEL)
    assert chosen == panel[:3]  # panel order, genes absent from the data dropped
    rec = a.uns["genedml"]["genes"][KEY]
    assert rec["method"] == "panel" and rec["params"]["panel"] == PANEL


def test_spatialdata_path_writes_the_table():
    sdata = _sdata(COUNTS, GENES)
    chosen = gd.pp.select_genes(sdata, n_top_genes=2, min_frac_spots=0.5)
    assert chosen == ["A", "D"]
    table = gd.io.get_table(sdata)
    assert table.uns["genedml"]["genes"][KEY]["names"] == ["A", "D"]
    assert list(table.var_names[table.var[KEY].to_numpy()]) == ["A", "D"]
    assert "sections" in gd.io.get_table(sdata).uns["genedml"]  # existing provenance kept
    with pytest.raises(KeyError, match="`table_key`"):
        gd.pp.select_genes(sdata, table_key="nope")


def test_provenance_survives_h5ad_roundtrip(tmp_path):
    a = _adata(COUNTS, GENES)
    gd.pp.select_genes(a, genes=["A", "B"])
    gd.pp.select_genes(a, n_top_genes=2, key_added="other")
    a.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad")
    assert list(back.uns["genedml"]["genes"][KEY]["names"]) == ["A", "B"]
    assert list(back.uns["genedml"]["genes"]["other"]["names"]) == ["B", "A"]
    assert back.var[KEY].dtype == bool and list(back.var_names[back.var["other"].to_numpy()]) == ["A", "B"]


def test_bad_inputs():
    a = _adata(COUNTS, GENES)
    with pytest.raises(ValueError, match="`method`"):
        gd.pp.select_genes(a, method="hvg")
    with pytest.raises(ValueError, match="`n_top_genes`"):
        gd.pp.select_genes(a, n_top_genes=0)
    with pytest.raises(ValueError, match="`n_top_genes` or its alias `n`"):
        gd.pp.select_genes(a, n_top_genes=3, n=2)
    with pytest.raises(ValueError, match="`key_added`"):
        gd.pp.select_genes(a, key_added="")
    with pytest.raises(ValueError, match="`min_frac_spots`"):
        gd.pp.select_genes(a, min_frac_spots=1.5)
    with pytest.raises(ValueError, match="`train_mask`"):
        gd.pp.select_genes(a, train_mask=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="`train_mask`"):
        gd.pp.select_genes(a, train_mask=np.arange(5))
    with pytest.raises(ValueError, match="either `genes` or `panel`"):
        gd.pp.select_genes(a, genes=["A"], panel="x")
    with pytest.raises(TypeError, match="`genes`"):
        gd.pp.select_genes(a, genes="A")
    with pytest.raises(ValueError, match="more than once"):
        gd.pp.select_genes(a, genes=["A", "A"])
    with pytest.raises(KeyError, match="`layer`"):
        gd.pp.select_genes(_adata(COUNTS, GENES, layer=False))
    with pytest.raises(ValueError, match="`table_key`"):
        gd.pp.select_genes(a, table_key="table")
    with pytest.raises(TypeError, match="SpatialData or an AnnData"):
        gd.pp.select_genes(COUNTS)
    neg = _adata(COUNTS, GENES)
    neg.layers["counts"][0, 0] = -1
    with pytest.raises(ValueError, match="negative"):
        gd.pp.select_genes(neg)
    nan = _adata(COUNTS, GENES)
    nan.layers["counts"] = nan.layers["counts"].astype(float)
    nan.layers["counts"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        gd.pp.select_genes(nan)
    with pytest.raises(ValueError, match="min_frac_spots"):
        gd.pp.select_genes(_adata(np.zeros((4, 2)), ["A", "B"]))


def test_var_column_marks_exactly_the_returned_genes():
    rng = np.random.default_rng(1)
    a = _adata(rng.poisson(2, size=(30, 40)), [f"G{i}" for i in range(40)])
    chosen = gd.pp.select_genes(a, n_top_genes=12, min_frac_spots=0.0)
    flag = a.var[KEY]
    assert flag.dtype == bool and int(flag.sum()) == 12 == len(chosen)
    assert set(a.var_names[flag.to_numpy()]) == set(chosen)
    rank = a.var[f"{KEY}_rank"]
    assert np.isnan(rank[~flag]).all()
    assert list(rank[chosen]) == list(range(12))  # rank = position in the returned list (by mean count)


def test_reselection_replaces_the_column_and_keys_do_not_mix():
    a = _adata(COUNTS, GENES)
    gd.pp.select_genes(a, genes=["E", "C", "B"])
    assert list(a.var[f"{KEY}_rank"][["E", "C", "B"]]) == [0.0, 1.0, 2.0]  # list order, not table order
    gd.pp.select_genes(a, n_top_genes=2, min_frac_spots=0.5)  # same key: no stale True from the first call
    assert list(a.var_names[a.var[KEY].to_numpy()]) == ["A", "D"]
    gd.pp.select_genes(a, panel=None, genes=["C"], key_added="mine")
    assert list(a.var_names[a.var["mine"].to_numpy()]) == ["C"]
    assert list(a.var_names[a.var[KEY].to_numpy()]) == ["A", "D"]  # the other key is untouched
    assert set(a.uns["genedml"]["genes"]) == {KEY, "mine"}


def test_n_alias_and_inplace_false():
    a = _adata(COUNTS, GENES)
    assert gd.pp.select_genes(a, n=3) == gd.pp.select_genes(a, n_top_genes=3) == ["B", "A", "D"]
    assert gd.pp.select_genes(a, n=3, n_top_genes=3) == ["B", "A", "D"]  # the same number twice is fine
    b = _adata(COUNTS, GENES)
    assert gd.pp.select_genes(b, n_top_genes=2, inplace=False) == ["B", "A"]
    assert list(b.var.columns) == [] and "genedml" not in b.uns  # nothing written


def test_earlier_one_record_layout_is_replaced():
    a = _adata(COUNTS, GENES)
    a.uns["genedml"] = {"genes": {"names": ["A"], "method": "list", "params": {}}, "normalize": {"recipe": "paper"}}
    gd.pp.select_genes(a, genes=["B"])
    assert set(a.uns["genedml"]["genes"]) == {KEY} and a.uns["genedml"]["normalize"] == {"recipe": "paper"}


def test_duplicate_var_names_refused_before_any_write():
    a = _adata(COUNTS, ["A", "B", "A", "D", "E"])
    with pytest.raises(ValueError, match="var_names are not unique"):
        gd.pp.select_genes(a, n_top_genes=2)
    assert list(a.var.columns) == [] and "genedml" not in a.uns
