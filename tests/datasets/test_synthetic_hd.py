"""The "visium_hd" preset: square bins on a lattice, configurable bin size, lazily rendered image."""

from __future__ import annotations

import numpy as np
import pytest

import genedml as gd
from genedml.datasets import _render


def _hd(**kw):
    return gd.datasets.synthetic(
        preset="visium_hd", **{"spots_per_side": 14, "n_sections": 1, "n_patients": 1, "n_genes": 12, **kw}
    )


@pytest.mark.parametrize("bin_um", [2, 8, 16, 5.5])
def test_bins_tile_a_square_lattice(bin_um):
    sdata = _hd(bin_um=bin_um, pixel_size=0.5)
    gd.io.validate(sdata)
    t = sdata.tables["table"]
    rows, cols = t.obs["array_row"].to_numpy(), t.obs["array_col"].to_numpy()
    assert rows.min() >= 0 and cols.max() <= 13
    # centres: one bin side apart along both lattice axes, in full-resolution pixels
    xy = gd.io.spot_centers(sdata, "S1")
    pitch_px = bin_um / 0.5
    np.testing.assert_allclose(xy[:, 0] - cols * pitch_px, xy[0, 0] - cols[0] * pitch_px)
    np.testing.assert_allclose(xy[:, 1] - rows * pitch_px, xy[0, 1] - rows[0] * pitch_px)
    assert len(np.unique(rows * 1000 + cols)) == t.n_obs  # one bin per lattice cell
    # each bin is drawn as the circle inscribed in its square
    np.testing.assert_allclose(sdata.shapes["S1_spots"]["radius"], 0.5 * pitch_px)
    meta = t.uns["genedml"]["sections"]["S1"]
    assert meta["technology"] == "visium_hd" and meta["spot_shape"] == "square"
    assert meta["bin_size_um"] == meta["pitch_um"] == meta["spot_diameter_um"] == float(bin_um)
    assert t.uns["genedml"]["synthetic"]["bin_um"] == float(bin_um)
    r, c = rows[0], cols[0]
    size = f"{int(bin_um):03d}" if float(bin_um).is_integer() else f"{bin_um:g}"
    assert t.obs["barcode"].iloc[0] == f"s_{size}um_{r:05d}_{c:05d}-1"
    assert t.obs["tissue_fraction"].min() >= 0.5


def test_preset_defaults_and_determinism():
    a = gd.datasets.synthetic(preset="visium_hd", n_sections=1, n_patients=1, n_genes=5)
    t = a.tables["table"]
    # 800 µm sections: 101 × 101 lattice positions of 8 µm bins at 0.5 µm/px, rendered lazily
    assert t.obs["array_col"].max() <= 100 and t.n_obs > 5000
    img = a.images["S1_hne"].data
    assert img.__class__.__module__.startswith("dask") and img.chunksize == (3, 1024, 1024)
    assert gd.io.pixel_size(a, "S1") == 0.5
    b = gd.datasets.synthetic(preset="visium_hd", n_sections=1, n_patients=1, n_genes=5)
    assert (t.X != b.tables["table"].X).nnz == 0


def test_builds_without_rendering_and_renders_bins_on_demand(monkeypatch):
    calls = []
    original = _render.render_window

    def counting(layout, y0, x0, h, w):
        calls.append((y0, x0, h, w))
        return original(layout, y0, x0, h, w)

    monkeypatch.setattr(_render, "render_window", counting)
    sdata = _hd(spots_per_side=140, bin_um=8)  # 1.1 mm: 2264 px a side, 3 × 3 blocks
    assert calls == []
    window = sdata.images["S1_hne"].data[:, 100:116, 200:216].compute()
    assert len(calls) == 1 and window.shape == (3, 16, 16)
    eager = gd.datasets.synthetic(
        preset="visium_hd", spots_per_side=140, n_sections=1, n_patients=1, n_genes=12, lazy=False
    )
    np.testing.assert_array_equal(np.asarray(eager.images["S1_hne"].data[:, 100:116, 200:216]), window)


def test_bin_um_checked():
    with pytest.raises(ValueError, match="bin_um"):
        _hd(bin_um=1)
    with pytest.raises(ValueError, match="bin_um"):
        _hd(bin_um=20)
    with pytest.raises(ValueError, match="`bin_um` applies to grid='visium_hd' only"):
        gd.datasets.synthetic(preset="tiny", bin_um=8)


def test_other_grids_keep_their_preset():
    st = gd.datasets.synthetic(preset="tiny")
    assert st.tables["table"].uns["genedml"]["sections"]["S1"]["technology"] == "st"
    hd = gd.datasets.synthetic(preset="tiny", grid="visium_hd", bin_um=16, spots_per_side=10, n_genes=5)
    assert hd.tables["table"].uns["genedml"]["sections"]["S1"]["technology"] == "visium_hd"
