"""gd.pl.gene_scores and gd.pl.predicted_vs_observed: where the numbers come from, what is named, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import genedml as gd


def _ticklabels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


def test_gene_scores_from_the_evaluate_column(pred_sdata):
    from matplotlib.figure import Figure

    fig = gd.pl.gene_scores(pred_sdata)
    assert isinstance(fig, Figure)
    hist_ax, rank_ax = fig.axes
    var = pred_sdata.tables["table"].var
    expected = var.loc[var["genedml_predicted"], "genedml_pcc_predicted"].sort_values(ascending=False)
    assert _ticklabels(rank_ax) == list(expected.index)  # 5 predicted genes (KRT19 was not), best on top
    bar_widths = [p.get_width() for p in rank_ax.patches]
    np.testing.assert_allclose(bar_widths, expected.to_numpy())
    assert hist_ax.get_title() == "5 genes"


def test_gene_scores_top_and_bottom_named():
    pcc = pd.Series(np.linspace(0.6, -0.2, 40), index=[f"g{i}" for i in range(40)])
    _, rank_ax = gd.pl.gene_scores(pcc.sample(frac=1.0, random_state=0), top=3).axes
    assert _ticklabels(rank_ax) == ["g0", "g1", "g2", "g37", "g38", "g39"]
    assert rank_ax.get_title() == "top and bottom 3 genes"


def test_gene_scores_computed_from_layers_and_from_a_per_section_frame(fresh_sdata):
    table = fresh_sdata.tables["table"]
    del table.var["genedml_pcc_predicted"]
    sec = table.obs["section"].to_numpy()
    pred, meas = table.layers["predicted"], table.layers["predicted_observed"]
    per_section = pd.DataFrame(
        [[np.corrcoef(meas[sec == s, j], pred[sec == s, j])[0, 1] for j in range(5)] for s in ("S1", "S2")],
        index=["S1", "S2"],
        columns=list(table.var_names[:5]),
    )
    expected = per_section.mean().sort_values(ascending=False)
    for data in (fresh_sdata, table, per_section):
        rank_ax = gd.pl.gene_scores(data).axes[1]
        assert _ticklabels(rank_ax) == list(expected.index)
        np.testing.assert_allclose([p.get_width() for p in rank_ax.patches], expected.to_numpy(), rtol=1e-5)


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "match"),
    [
        (pd.Series(dtype=float), {}, ValueError, "empty"),
        (pd.DataFrame(), {}, ValueError, "empty DataFrame"),
        (pd.Series([np.nan, np.nan], index=["a", "b"]), {}, ValueError, "no finite per-gene PCC"),
        (pd.Series([0.1], index=["a"]), {"top": 0}, ValueError, "`top`"),
        ([0.1, 0.2], {}, TypeError, "`data` must be a SpatialData or an AnnData"),
    ],
)
def test_gene_scores_bad_input(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        gd.pl.gene_scores(data, **kwargs)


def test_gene_scores_without_results_says_run_evaluate(fresh_sdata):
    table = fresh_sdata.tables["table"]
    del table.var["genedml_pcc_predicted"], table.layers["predicted_observed"]
    with pytest.raises(KeyError, match=r"gd\.tl\.evaluate"):
        gd.pl.gene_scores(fresh_sdata)


def test_predicted_vs_observed_scatter(pred_sdata):
    from matplotlib.figure import Figure

    fig = gd.pl.predicted_vs_observed(pred_sdata, gene="GNAS")
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    table = pred_sdata.tables["table"]
    j = table.var_names.get_loc("GNAS")
    r = np.corrcoef(table.layers["predicted_observed"][:, j], table.layers["predicted"][:, j])[0, 1]
    assert ax.get_title() == f"GNAS: r = {r:.2f}  (n = {table.n_obs} spots)"
    (identity,) = [ln for ln in ax.get_lines() if ln.get_label() == "_identity"]
    xs, ys = identity.get_data()
    np.testing.assert_allclose(xs, ys)
    assert ax.get_xlim() == ax.get_ylim() == (xs[0], xs[-1])
    assert sum(len(c.get_offsets()) for c in ax.collections) == table.n_obs
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["S1", "S2"]


def test_predicted_vs_observed_hexbin_in_given_axes(pred_sdata):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    out = gd.pl.predicted_vs_observed(pred_sdata, gene="FASN", sections="S1", kind="hexbin", ax=ax)
    assert out is fig
    (hb,) = ax.collections
    n_s1 = int((pred_sdata.tables["table"].obs["section"] == "S1").sum())
    assert hb.get_array().sum() == n_s1  # every S1 spot counted once
    assert len(ax.figure.axes) == 2  # + colour bar


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"gene": "NOPE"}, KeyError, "`gene`"),
        ({"gene": "GNAS", "kind": "violin"}, ValueError, "`kind`"),
        ({"gene": "GNAS", "observed": "raw"}, KeyError, "`observed`='raw'"),
        ({"gene": "GNAS", "layer": "pred2"}, KeyError, "`layer`='pred2'"),
        ({"gene": "KRT19"}, KeyError, r"\['KRT19'\] not predicted .* 5 genes were\. Best-scoring"),
        ({"gene": "GNAS", "sections": "S7"}, KeyError, "`sections`"),
    ],
)
def test_predicted_vs_observed_bad_input(pred_sdata, kwargs, error, match):
    with pytest.raises(error, match=match):
        gd.pl.predicted_vs_observed(pred_sdata, **kwargs)
