"""The contract of every gd.pl function (ax= in, the Figure out, save= atomic and never clobbering, show=), and the
maps' colour scales, residual panel, scale bar and categorical / numeric spot colours."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _pl_data import PIXEL_SIZE, ablation_frame, add_predictions, cv_frame, history_list, make_sdata

import genedml as gd


@pytest.fixture(scope="module")
def sdata():
    """Two sections with predictions, measured values, uncertainty layers and a calibration curve (do not modify)."""
    sdata = make_sdata()
    add_predictions(sdata)
    t = sdata.tables["table"]
    t.layers["predicted_std"] = np.where(np.isfinite(t.layers["predicted"]), 0.2, np.nan).astype(np.float32)
    levels = np.array([0.5, 0.8, 0.9])
    curve = pd.DataFrame({"section": ["S1"] * 3, "level": levels, "coverage": levels - 0.05, "interval_width": 1.0})
    t.uns["genedml"] = {"evaluation": {"predicted": {"coverage_curve": curve}}}
    t.obs["cluster"] = pd.Categorical(np.array(["a", "b", "c"])[np.arange(t.n_obs) % 3])
    t.obs["depth"] = np.arange(t.n_obs, dtype=float)
    return sdata


def _values(sdata, layer: str, gene: str, section: str) -> np.ndarray:
    t = sdata.tables["table"]
    rows = (t.obs["section"] == section).to_numpy()
    return np.asarray(t.layers[layer][rows, t.var_names.get_loc(gene)], dtype=np.float64)


def _spots(ax):
    from matplotlib.collections import PatchCollection

    (coll,) = [c for c in ax.collections if isinstance(c, PatchCollection)]
    return coll


# every public plotting function: (call, number of panels it draws)
CALLS = {
    "spatial": (lambda s, **kw: gd.pl.spatial(s, genes="GNAS", sections="S1", **kw), 3),
    "spots": (lambda s, **kw: gd.pl.spots(s, color="cluster", **kw), 2),
    "uncertainty": (lambda s, **kw: gd.pl.uncertainty(s, genes="GNAS", sections="S1", **kw), 3),
    "calibration": (lambda s, **kw: gd.pl.calibration(s, **kw), 1),
    "predicted_vs_observed": (lambda s, **kw: gd.pl.predicted_vs_observed(s, gene="GNAS", **kw), 1),
    "gene_scores": (lambda s, **kw: gd.pl.gene_scores(s, top=2, **kw), 2),
    "cv_summary": (lambda s, **kw: gd.pl.cv_summary(cv_frame(), metrics=["pcc_a", "mse"], **kw), 2),
    "ablation": (lambda s, **kw: gd.pl.ablation(ablation_frame(), metrics=["pcc_a", "mse"], **kw), 2),
    "history": (lambda s, **kw: gd.pl.history(history_list(), **kw), 4),
}


def test_every_public_function_is_covered():
    assert set(CALLS) == set(gd.pl.__all__)


@pytest.mark.parametrize("name", sorted(CALLS))
def test_contract_returns_figure_and_uses_given_axes(sdata, name):
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    call, n = CALLS[name]
    fig = call(sdata)
    assert isinstance(fig, Figure)
    given_fig, axes = plt.subplots(1, n, layout="constrained", squeeze=False)
    given = axes[0, 0] if n == 1 else axes[0]
    assert call(sdata, ax=given) is given_fig
    assert all(a.has_data() or a.images or a.collections for a in axes.ravel())  # every given Axes was drawn in
    too_many = plt.subplots(1, n + 1)[1]
    with pytest.raises(ValueError, match=rf"`ax`: this plot draws {n} panel"):
        call(sdata, ax=too_many)
    with pytest.raises(TypeError, match="`ax` must be a matplotlib Axes"):
        call(sdata, ax="left")


@pytest.mark.parametrize("name", sorted(CALLS))
def test_contract_save_is_atomic_and_never_clobbers(sdata, name, tmp_path):
    import matplotlib.pyplot as plt

    call, _ = CALLS[name]
    path = tmp_path / "figure.png"
    call(sdata, save=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png"]  # no temporary file left behind
    path.write_bytes(b"keep me")
    n_figs = len(plt.get_fignums())
    with pytest.raises(FileExistsError, match=r"`save`=.*overwrite=True"):
        call(sdata, save=path)
    assert path.read_bytes() == b"keep me"
    assert len(plt.get_fignums()) == n_figs  # refused before drawing anything
    call(sdata, save=str(path), overwrite=True)
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"`save`=.*format matplotlib writes"):
        call(sdata, save=tmp_path / "figure.nope")
    svg = tmp_path / "sub" / "figure.svg"
    call(sdata, save=svg)
    assert b"<svg" in svg.read_bytes()[:500]


def test_contract_show(sdata, monkeypatch):
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(1))
    CALLS["calibration"][0](sdata)
    assert shown == []
    fig = CALLS["calibration"][0](sdata, show=True)
    assert shown == [1] and fig is not None


def test_spatial_shared_scale_spans_measured_and_predicted(sdata):
    meas, pred = _values(sdata, "predicted_observed", "FASN", "S1"), _values(sdata, "predicted", "FASN", "S1")
    fig = gd.pl.spatial(sdata, genes="FASN", sections="S1")
    m_coll, p_coll = _spots(fig.axes[1]), _spots(fig.axes[2])
    joint = (min(meas.min(), pred.min()), max(meas.max(), pred.max()))
    assert m_coll.get_clim() == pytest.approx(joint) and p_coll.get_clim() == pytest.approx(joint)
    np.testing.assert_allclose(np.asarray(p_coll.get_array()), pred, rtol=1e-6)  # values in units, not rescaled
    panel = gd.pl.spatial(sdata, genes="FASN", sections="S1", scale="panel")
    assert _spots(panel.axes[1]).get_clim() == pytest.approx((meas.min(), meas.max()))
    assert _spots(panel.axes[2]).get_clim() == pytest.approx((pred.min(), pred.max()))
    assert (pred.max() - pred.min()) < (meas.max() - meas.min())  # the fixture's shrinkage: visible only if shared


def test_spatial_residual_panel(sdata):
    fig = gd.pl.spatial(sdata, genes="GNAS", residual=True)
    for row, sec in enumerate(["S1", "S2"]):
        res_ax = fig.axes[4 * row + 3]
        assert res_ax.get_title() == "GNAS predicted − measured"
        coll = _spots(res_ax)
        diff = _values(sdata, "predicted", "GNAS", sec) - _values(sdata, "predicted_observed", "GNAS", sec)
        np.testing.assert_allclose(np.asarray(coll.get_array()), diff, rtol=1e-6, atol=1e-9)
        lo, hi = coll.get_clim()
        assert lo == pytest.approx(-hi) and hi == pytest.approx(np.abs(diff).max())  # centred at 0
        assert coll.get_cmap().name.startswith("RdBu_r")


def test_spatial_residual_needs_measured_values(fresh_sdata):
    del fresh_sdata.tables["table"].layers["predicted_observed"]
    with pytest.raises(ValueError, match="`residual=True` needs measured values"):
        gd.pl.spatial(fresh_sdata, genes="GNAS", residual=True)


def _scalebar(ax):
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    bars = [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]
    return bars[0] if bars else None


@pytest.mark.parametrize(
    "plot",
    [
        lambda s: (gd.pl.spatial(s, genes="GNAS"), [0, 3]),
        lambda s: (gd.pl.uncertainty(s, genes="GNAS"), [0, 3]),
        lambda s: (gd.pl.spots(s), [0, 1]),
    ],
    ids=["spatial", "uncertainty", "spots"],
)
def test_scalebar_length_is_micrometres_over_pixel_size(sdata, plot):
    fig, he_axes = plot(sdata)
    for i in he_axes:  # S1 and S2 (whose image is stored at half resolution: the bar is in full-resolution pixels)
        bar = _scalebar(fig.axes[i])
        assert bar is not None
        (rect,) = bar.size_bar.get_children()
        assert rect.get_width() == pytest.approx(bar.length_um / PIXEL_SIZE)
        assert bar.length_um in {10, 20, 50, 100, 200, 500, 1000}
        assert bar.txt_label.get_text() == f"{bar.length_um:g} µm"
        view_um = np.diff(fig.axes[i].get_xlim())[0] * PIXEL_SIZE
        assert 0.1 * view_um <= bar.length_um <= 0.25 * view_um  # about a fifth of the view


def test_scalebar_can_be_switched_off(sdata):
    fig = gd.pl.spots(sdata, scalebar=False)
    assert _scalebar(fig.axes[0]) is None


def test_spots_categorical_obs_column(sdata):
    from matplotlib.colors import to_rgba

    t = sdata.tables["table"]
    fig = gd.pl.spots(sdata, color="cluster")
    assert len(fig.axes) == 2  # no colour bar
    (legend,) = fig.legends
    assert [x.get_text() for x in legend.get_texts()] == ["a", "b", "c"]
    assert legend.get_title().get_text() == "cluster"
    handle_colors = [to_rgba(h.get_color()) for h in legend.legend_handles]
    assert len(set(handle_colors)) == 3
    for ax, sec in zip(fig.axes, ["S1", "S2"]):
        labels = t.obs.loc[(t.obs["section"] == sec).to_numpy(), "cluster"].astype(str).to_numpy()
        faces = [tuple(c) for c in _spots(ax).get_facecolors()]
        for lab, face in zip(labels, faces):
            assert face == pytest.approx(handle_colors["abc".index(lab)])  # one colour per category, every section


def test_spots_categorical_colours_from_uns_and_missing_labels(fresh_sdata):
    from matplotlib.colors import to_rgba

    t = fresh_sdata.tables["table"]
    labels = np.where(np.arange(t.n_obs) < 5, None, np.array(["x", "y"])[np.arange(t.n_obs) % 2])
    t.obs["leiden"] = pd.Categorical(labels, categories=["x", "y"])
    t.uns["leiden_colors"] = ["#ff0000", "#0000ff"]  # scanpy's convention
    fig = gd.pl.spots(fresh_sdata, color="leiden", sections=["S1"])
    (legend,) = fig.legends
    assert [x.get_text() for x in legend.get_texts()] == ["x", "y", "NA"]
    assert [to_rgba(h.get_color()) for h in legend.legend_handles[:2]] == [to_rgba("#ff0000"), to_rgba("#0000ff")]
    faces = _spots(fig.axes[0]).get_facecolors()
    assert tuple(faces[0]) == pytest.approx(to_rgba("#d9d9d9"))  # unlabelled spots grey
    assert gd.pl.spots(fresh_sdata, color="leiden", legend_loc=None).legends == []


def test_spots_numeric_obs_column(sdata):
    t = sdata.tables["table"]
    fig = gd.pl.spots(sdata, color="depth")
    *maps, cbar = fig.axes
    assert cbar.get_ylabel() == "depth"
    assert cbar.get_ylim() == pytest.approx((0.0, t.n_obs - 1.0))  # one scale over all sections
    s2 = (t.obs["section"] == "S2").to_numpy()
    np.testing.assert_allclose(np.asarray(_spots(maps[1]).get_array()), t.obs["depth"].to_numpy()[s2])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"color": "nope"}, KeyError, "neither an obs column .* nor a gene"),
        ({"color": 3}, TypeError, "`color` must be"),
        ({"color": "cluster", "palette": "not_a_cmap"}, ValueError, "`palette`"),
        ({"color": "cluster", "palette": ["red"]}, ValueError, "`palette` has 1 colours for the 3 categories"),
        ({"color": "cluster", "legend_loc": "left"}, ValueError, "`legend_loc`"),
        ({"max_px": 0}, ValueError, "`max_px`"),
    ],
)
def test_spots_bad_input(sdata, kwargs, error, match):
    with pytest.raises(error, match=match):
        gd.pl.spots(sdata, **kwargs)


def test_spots_obs_column_shadowing_a_gene_is_refused(fresh_sdata):
    fresh_sdata.tables["table"].obs["GNAS"] = 1.0
    with pytest.raises(ValueError, match="both an obs column and a gene"):
        gd.pl.spots(fresh_sdata, color="GNAS")
