"""gd.pl.uncertainty and gd.pl.calibration: panels in absolute units, the curve per section, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import genedml as gd


def _with_uncertainty(sdata, *, intervals: bool = True) -> None:
    t = sdata.tables["table"]
    pred = t.layers["predicted"]
    std = np.where(np.isfinite(pred), 0.1 + 0.05 * np.arange(t.n_obs)[:, None] / t.n_obs, np.nan).astype(np.float32)
    t.layers["predicted_std"] = std
    if intervals:
        t.layers["predicted_lower"], t.layers["predicted_upper"] = pred - 2 * std, pred + 2 * std
        t.uns.setdefault("genedml", {})["predicted"] = {"uncertainty": {"level": 0.9}}


def test_uncertainty_panels(fresh_sdata):
    from matplotlib.figure import Figure

    _with_uncertainty(fresh_sdata)
    fig = gd.pl.uncertainty(fresh_sdata, genes="GNAS", sections="S1")
    assert isinstance(fig, Figure)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["H&E", "GNAS predicted", "spread (std)", "interval width (90%)"]
    # the spread panel keeps its units: its colour bar spans the std of S1's spots, not [0, 1]
    t = fresh_sdata.tables["table"]
    s1 = (t.obs["section"] == "S1").to_numpy()
    std = t.layers["predicted_std"][s1, t.var_names.get_loc("GNAS")]
    cbars = [ax for ax in fig.axes if not ax.get_title()]
    assert len(cbars) == 3
    lo, hi = cbars[1].get_ylim()
    assert lo == pytest.approx(std.min(), rel=1e-5) and hi == pytest.approx(std.max(), rel=1e-5)


def test_uncertainty_spread_only_and_errors(fresh_sdata):
    _with_uncertainty(fresh_sdata, intervals=False)
    fig = gd.pl.uncertainty(fresh_sdata, genes=["GNAS", "FASN"])
    assert [ax.get_title() for ax in fig.axes if ax.get_title()].count("spread (std)") == 4  # 2 genes × 2 sections
    del fresh_sdata.tables["table"].layers["predicted_std"]
    with pytest.raises(KeyError, match="no uncertainty layers"):
        gd.pl.uncertainty(fresh_sdata, genes="GNAS")


def test_calibration_curve(fresh_sdata):
    from matplotlib.figure import Figure

    levels = np.round(np.arange(0.05, 1.0, 0.05), 2)
    curve = pd.DataFrame(
        {
            "section": np.repeat(["S1", "S2"], len(levels)),
            "level": np.tile(levels, 2),
            "coverage": np.concatenate([levels, levels * 0.8]),
            "interval_width": 1.0,
        }
    )
    t = fresh_sdata.tables["table"]
    t.uns["genedml"] = {"evaluation": {"predicted": {"coverage_curve": curve, "interval": {"level": 0.8}}}}
    fig = gd.pl.calibration(fresh_sdata)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert {"nominal", "S1", "S2"} <= set(lines)
    np.testing.assert_allclose(lines["S2"].get_ydata(), levels * 0.8)
    assert gd.pl.calibration(t, sections="S1", ax=ax) is fig  # an AnnData works too
    with pytest.raises(KeyError, match="no calibration curve"):
        gd.pl.calibration(fresh_sdata, layer="other")
    with pytest.raises(KeyError):
        gd.pl.calibration(fresh_sdata, sections="S9")
