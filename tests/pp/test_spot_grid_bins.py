"""``gd.pp.spot_grid(grid="bins")``: H&E-only Visium-HD-like bins whose neighbour tiles are the bins' own windows."""

from __future__ import annotations

import numpy as np
import pytest

import genedml as gd
from genedml._keys import Keys


def _hne(pixel_size: float = 0.7):
    sdata = gd.datasets.synthetic(preset="tiny", n_sections=1, n_patients=1, pixel_size=pixel_size, seed=3)
    return gd.io.he_only(sdata, section="S1")


def _extra_tiles(hne) -> float:
    """Neighbour tiles that are no spot's own window, per spot (each is one more encoder pass)."""
    spec = gd.features.FeatureSpec("test_resnet", pretrained=False, target_um=20.5, target_px=16)
    fs = gd.features.compute_features(hne, features=spec, progress=False)
    return len(fs.entries["S1"]["neighbor"]["tiles"]) / hne["table"].n_obs


def test_bins_grid_records_a_bin_lattice_and_shares_neighbour_tiles():
    hne = _hne()
    gd.pp.spot_grid(hne, image_key="S1_hne", grid="bins", pitch_um=20.5)  # 29.3 px at 0.7 µm/px: fractional
    table = hne["table"]
    meta = table.uns["genedml"]["sections"]["S1"]
    assert (meta["spot_shape"], meta["bin_size_um"], meta["spot_diameter_um"]) == ("square", 20.5, 20.5)
    r, c = table.obs[Keys.array_row].to_numpy(), table.obs[Keys.array_col].to_numpy()
    assert len(set(zip(r, c))) == table.n_obs  # one bin per lattice cell
    bins = _extra_tiles(hne)  # only the empty lattice cells around the tissue
    square = _hne()
    gd.pp.spot_grid(square, image_key="S1_hne", grid="st", pitch_um=20.5, diameter_um=20.5)
    spots = _extra_tiles(square)  # the same spots without the bin lattice: tiles drift off the bins' windows
    assert bins < 0.3 and spots > 2.0, (bins, spots)


def test_bins_grid_refuses_a_diameter_other_than_the_pitch():
    hne = _hne()
    with pytest.raises(ValueError, match="must equal it"):
        gd.pp.spot_grid(hne, image_key="S1_hne", grid="bins", pitch_um=20, diameter_um=10)
    with pytest.raises(ValueError, match="`grid`"):
        gd.pp.spot_grid(hne, image_key="S1_hne", grid="square")


def test_default_grid_follows_the_model():
    class Binned:  # what spot_grid reads of a model trained on bins
        def __init__(self):
            self.geometry_ = {"pitch_um": 16.0, "spot_diameter_um": 16.0, "spot_shape": "square", "bin_size_um": 16.0}

    hne = _hne(pixel_size=2.0)
    gd.pp.spot_grid(hne, image_key="S1_hne", model=Binned())
    assert hne["table"].uns["genedml"]["sections"]["S1"]["grid"] == "bins"
    hne = _hne(pixel_size=2.0)
    gd.pp.spot_grid(hne, image_key="S1_hne", pitch_um=200, diameter_um=100)
    assert hne["table"].uns["genedml"]["sections"]["S1"]["grid"] == "st"
    assert np.isfinite(hne["table"].obsm["spatial"]).all()
