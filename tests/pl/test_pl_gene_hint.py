"""Plotting a gene that was not predicted says how many genes were and suggests the best-scoring ones; the colour
scale of `gd.pl.spatial` is a choice the figure states."""

from __future__ import annotations

import numpy as np
import pytest

import genedml as gd


@pytest.fixture
def sdata():
    """Tiny data where 5 genes are predicted (flagged) and scored, the 3rd best."""
    sdata = gd.datasets.synthetic(preset="tiny")
    table = sdata["table"]
    truth = np.log1p(table.layers["counts"].toarray()).astype("float32")
    pred = np.full_like(truth, np.nan)
    pred[:, :5] = truth[:, :5] * 0.5
    table.layers["predicted"] = pred
    table.layers["predicted_observed"] = np.where(np.isfinite(pred), truth, np.nan)
    flag = np.zeros(table.n_vars, bool)
    flag[:5] = True
    table.var["genedml_predicted"] = flag
    pcc = np.full(table.n_vars, np.nan)
    pcc[:5] = [0.1, 0.2, 0.9, 0.5, 0.3]
    table.var["genedml_pcc_predicted"] = pcc
    return sdata


def test_unpredicted_gene_names_the_predicted_ones(sdata):
    names = list(sdata["table"].var_names)
    for plot in (
        lambda g: gd.pl.spatial(sdata, genes=[names[0], g]),
        lambda g: gd.pl.predicted_vs_observed(sdata, gene=g),
    ):
        with pytest.raises(KeyError) as info:
            plot(names[7])  # in the table, not predicted
        msg = info.value.args[0]
        assert f"['{names[7]}'] not predicted" in msg and "5 genes were" in msg
        assert f"Best-scoring: {[names[i] for i in (2, 3, 4, 1, 0)]}" in msg
        with pytest.raises(KeyError, match="not predicted"):
            plot("NOT_A_GENE")


def test_colour_scale_is_chosen_and_labelled(sdata):
    gene = sdata["table"].var_names[2]
    panel = gd.pl.spatial(sdata, genes=gene, sections="S1", scale="panel")
    shared = gd.pl.spatial(sdata, genes=gene, sections="S1")  # the default
    assert panel.axes[-1].get_ylabel().startswith("each panel scaled to its own range")
    assert shared.axes[-1].get_ylabel() == "shared by measured & predicted"
    # shared: the prediction (half the truth) reaches only about half-way up the colours; panel: the full range
    for fig, top in ((panel, 1.0), (shared, 0.5)):
        coll = fig.axes[2].collections[-1]
        lo, hi = coll.get_clim()
        assert (np.nanmax(coll.get_array()) - lo) / (hi - lo) == pytest.approx(top, abs=0.05)
    with pytest.raises(ValueError, match="`scale`"):
        gd.pl.spatial(sdata, genes=gene, scale="joint")
