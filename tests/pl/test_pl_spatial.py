"""gd.pl.spatial and gd.pl.spots: layout, true spot geometry over the H&E, colour scales, errors."""

from __future__ import annotations

import numpy as np
import pytest
from _pl_data import GENES, RADIUS_PX, H, W

import genedml as gd


def _circles(ax) -> tuple[np.ndarray, np.ndarray, object]:
    """Centres, radii (data units) and the PatchCollection of the spots drawn in ``ax``."""
    from matplotlib.collections import PatchCollection

    (coll,) = [c for c in ax.collections if isinstance(c, PatchCollection)]
    ext = np.array([[p.vertices.min(0), p.vertices.max(0)] for p in coll.get_paths()])
    return ext.mean(axis=1), (ext[:, 1, 0] - ext[:, 0, 0]) / 2, coll


def test_grid_titles_and_colorbar(pred_sdata):
    from matplotlib.figure import Figure

    fig = gd.pl.spatial(pred_sdata, genes=["GNAS", "FASN"])
    assert isinstance(fig, Figure)
    maps, cbars = fig.axes[:12], fig.axes[12:]
    assert len(maps) == 2 * 2 * 3  # genes × sections rows, H&E | measured | predicted
    assert [ax.get_title() for ax in maps[:3]] == ["H&E", "GNAS measured", maps[2].get_title()]
    assert maps[2].get_title().startswith("GNAS predicted · PCC ")
    assert [maps[i].get_ylabel() for i in (0, 3, 6, 9)] == ["S1", "S2", "S1", "S2"]
    assert len(cbars) == 4  # the default shared scale: one colour bar per row, in the layer's units
    for row, cbar in enumerate(cbars):
        assert cbar.get_ylim() == pytest.approx(maps[3 * row + 2].collections[-1].get_clim())

    panel = gd.pl.spatial(pred_sdata, genes=["GNAS", "FASN"], scale="panel")
    *_, cbar = panel.axes
    assert len(panel.axes) == 12 + 1 and cbar.get_ylim() == (0.0, 1.0)  # one colour bar, normalised


def test_spots_at_true_position_and_size(pred_sdata):
    """Circles sit at the spot centres with the shapes' radius; the H&E spans the full-resolution frame, so the
    dark dot painted at each spot centre lies under its circle, also for S2 whose image is stored at half size."""
    fig = gd.pl.spatial(pred_sdata, genes="GNAS")
    table = pred_sdata.tables["table"]
    for row, sec in enumerate(["S1", "S2"]):
        he, _, pred_ax = fig.axes[3 * row : 3 * row + 3]
        centres, radii, _ = _circles(pred_ax)
        np.testing.assert_allclose(centres, gd.io.spot_centers(pred_sdata, sec), atol=0.05)
        np.testing.assert_allclose(radii, RADIUS_PX, rtol=1e-3)
        (img,) = he.get_images()
        assert img.get_extent() == pytest.approx([0, W, H, 0], abs=1.0)
        arr = np.asarray(img.get_array())
        sy, sx = H / arr.shape[0], W / arr.shape[1]
        xy = gd.io.spot_centers(pred_sdata, sec)
        under = arr[(xy[:, 1] / sy).astype(int), (xy[:, 0] / sx).astype(int)]
        assert (under.mean(axis=1) < 110).all(), "a spot centre does not fall on its dot in the H&E"
        assert len(centres) == int((table.obs["section"] == sec).sum())


def test_panel_scale_and_pcc_title(pred_sdata):
    fig = gd.pl.spatial(pred_sdata, genes="FASN", sections="S2", scale="panel")
    table = pred_sdata.tables["table"]
    rows = np.flatnonzero(table.obs["section"] == "S2")
    j = table.var_names.get_loc("FASN")
    meas, pred = table.layers["predicted_observed"][rows, j], table.layers["predicted"][rows, j]
    _, meas_ax, pred_ax = fig.axes[:3]
    for ax, raw in ((meas_ax, meas), (pred_ax, pred)):  # each map on its own min-max
        coll = _circles(ax)[2]
        np.testing.assert_allclose(np.asarray(coll.get_array()), raw, rtol=1e-6)
        assert coll.get_clim() == pytest.approx((raw.min(), raw.max()))
    r = np.corrcoef(meas, pred)[0, 1]
    assert pred_ax.get_title() == f"FASN predicted · PCC {r:.2f}"


def test_without_observed_layer_draws_two_columns(fresh_sdata):
    del fresh_sdata.tables["table"].layers["predicted_observed"]
    fig = gd.pl.spatial(fresh_sdata, genes="GNAS", sections=["S1"])
    assert len(fig.axes) == 2 + 1
    assert fig.axes[1].get_title() == "GNAS predicted"


def test_unmeasured_section_and_missing_predictions(fresh_sdata):
    table = fresh_sdata.tables["table"]
    j = table.var_names.get_loc("GNAS")
    s2 = np.flatnonzero(table.obs["section"] == "S2")
    table.layers["predicted_observed"][s2, j] = np.nan  # S2 has no measurement (H&E only)
    table.layers["predicted"][s2[:3], j] = np.nan  # three S2 spots were not predicted
    fig = gd.pl.spatial(fresh_sdata, genes="GNAS")
    assert fig.axes[4].get_title() == "GNAS not measured"
    assert fig.axes[5].get_title() == "GNAS predicted"
    values = _circles(fig.axes[5])[2].get_array()
    assert np.ma.getmaskarray(values).sum() == 3  # drawn in the 'bad' grey, not as a colour


def test_shapes_transformation_is_applied(fresh_sdata):
    """Spots stored at half scale with a Scale(2) to the section frame land where the unscaled ones did."""
    from spatialdata.models import ShapesModel
    from spatialdata.transformations import Scale, get_transformation

    before = gd.io.spot_centers(fresh_sdata, "S1")
    shapes = fresh_sdata.shapes["S1_spots"]
    tfs = get_transformation(shapes, get_all=True)
    tfs["S1"] = Scale([2.0, 2.0], axes=("x", "y"))
    half = ShapesModel.parse(
        np.column_stack([shapes.geometry.x, shapes.geometry.y]) / 2,
        geometry=0,
        radius=shapes["radius"].to_numpy() / 2,
        index=shapes.index,
        transformations=tfs,
    )
    fresh_sdata.shapes["S1_spots"] = half
    centres, radii, _ = _circles(gd.pl.spatial(fresh_sdata, genes="GNAS", sections="S1").axes[2])
    np.testing.assert_allclose(centres, before, atol=0.05)
    np.testing.assert_allclose(radii, RADIUS_PX, rtol=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"genes": "NOPE"}, KeyError, "`genes`.*NOPE"),
        ({"genes": []}, ValueError, "`genes` is empty"),
        ({"genes": "GNAS", "layer": "missing"}, KeyError, "`layer`='missing'.*gd.tl.predict"),
        ({"genes": "GNAS", "observed": "missing"}, KeyError, "`observed`='missing'"),
        ({"genes": "GNAS", "sections": ["S9"]}, KeyError, "`sections`.*S9"),
        ({"genes": "KRT19"}, KeyError, r"\['KRT19'\] not predicted .* 5 genes were\. Best-scoring"),
        ({"genes": "GNAS", "max_px": 0}, ValueError, "`max_px`"),
        ({"genes": "GNAS", "table_key": "other"}, KeyError, "`table_key`='other'"),
    ],
)
def test_bad_input_names_the_argument(pred_sdata, kwargs, error, match):
    with pytest.raises(error, match=match):
        gd.pl.spatial(pred_sdata, **kwargs)


def test_ax_argument(pred_sdata):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(8, 5), layout="constrained")
    assert gd.pl.spatial(pred_sdata, genes="GNAS", ax=axes) is fig  # 2 sections × (H&E, measured, predicted)
    assert axes[1, 2].get_title().startswith("GNAS predicted")
    assert gd.pl.spatial(pred_sdata, genes="GNAS", sections="S1", ax=list(axes[0])) is fig  # flat works too
    with pytest.raises(ValueError, match=r"`ax`: this plot draws 6 panel\(s\).*got 3"):
        gd.pl.spatial(pred_sdata, genes="GNAS", ax=axes[0])
    with pytest.raises(ValueError, match=r"`ax`: this plot draws 4 panel\(s\)"):
        gd.pl.spatial(pred_sdata, genes="GNAS", sections="S1", residual=True, ax=axes[0])


def test_spots_colour_by_gene(pred_sdata):
    fig = gd.pl.spots(pred_sdata, color="GNAS")
    assert len(fig.axes) == 2 + 1
    centres, radii, _ = _circles(fig.axes[1])
    np.testing.assert_allclose(centres, gd.io.spot_centers(pred_sdata, "S2"), atol=0.05)
    np.testing.assert_allclose(radii, RADIUS_PX, rtol=1e-3)
    with pytest.raises(KeyError, match="`color`"):
        gd.pl.spots(pred_sdata, color=GENES[0] + "x")


def test_he_only_table_on_its_own_grid(fresh_sdata):
    """A prediction table annotating another shapes element (as after `gd.pp.spot_grid`) is drawn on that grid."""
    import anndata as ad
    import pandas as pd
    from spatialdata.models import ShapesModel, TableModel
    from spatialdata.transformations import get_transformation

    spots = fresh_sdata.shapes["S1_spots"]
    xy = np.column_stack([spots.geometry.x, spots.geometry.y])[::2] + 50.0  # every other spot, shifted
    n = len(xy)
    fresh_sdata.shapes["S1_grid"] = ShapesModel.parse(
        xy,
        geometry=0,
        radius=np.full(n, 20.0),
        index=pd.RangeIndex(n, name="spot_id"),
        transformations=get_transformation(spots, get_all=True),
    )
    obs = pd.DataFrame(
        {"section": "S1", "region": pd.Categorical(["S1_grid"] * n), "spot_id": np.arange(n)},
        index=[f"g{i}" for i in range(n)],
    )
    table = ad.AnnData(np.zeros((n, 2), dtype=np.float32), obs=obs, var=pd.DataFrame(index=["GNAS", "FASN"]))
    table.layers["predicted"] = np.random.default_rng(0).random((n, 2), dtype=np.float32)
    fresh_sdata.tables["grid_table"] = TableModel.parse(
        table, region="S1_grid", region_key="region", instance_key="spot_id"
    )
    fig = gd.pl.spatial(fresh_sdata, genes="FASN", table_key="grid_table")
    assert len(fig.axes) == 2 + 1  # no measured values: H&E | predicted
    centres, radii, _ = _circles(fig.axes[1])
    np.testing.assert_allclose(centres, xy, atol=0.05)
    np.testing.assert_allclose(radii, 20.0, rtol=1e-3)


def test_gene_not_predicted_names_the_predicted_ones(pred_sdata):
    # a gene the model did not predict: the error says how many were and suggests the best-scoring (issue 15)
    with pytest.raises(KeyError, match=r"\['KRT19'\] not predicted in `layers\['predicted'\]`; 5 genes were"):
        gd.pl.spatial(pred_sdata, genes=["GNAS", "KRT19"], sections="S1")
