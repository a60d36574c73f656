"""Neighbour tiles on a Visium HD bin lattice: a neighbour tile is the neighbouring bin's own window.

The bin pitch here is 8 µm at 0.2737 µm/px = 29.23 px, not a whole number of pixels: tiles stepped by the window
size in pixels would drift against the bins, and every bin would need several distinct neighbour tiles.
"""

from __future__ import annotations

import numpy as np
import pytest

import genedml as gd
from genedml.features._embed_run import count_windows
from genedml.features._images import SectionImage
from genedml.features._windows import WindowSpec, bin_lattice, section_geometry

MPP = 0.2737


@pytest.fixture(scope="module")
def hd():
    return gd.datasets.synthetic(
        preset="visium_hd", bin_um=8, spots_per_side=40, n_sections=1, n_patients=1, n_genes=5, pixel_size=MPP
    )


def _geometry(sdata, *, target_um=8.0, target_px=32, grid="spot", lattice=True):
    spec = WindowSpec.resolve(target_px=target_px, target_um=target_um, target_mpp=None, neighbor_grid=grid)
    xy = gd.io.spot_centers(sdata, "S1")
    lat = bin_lattice(sdata, "S1") if lattice else None
    image = SectionImage.from_sdata(sdata, "S1")
    return section_geometry(image, spec, xy, mpp_full=gd.io.pixel_size(sdata, "S1"), section="S1", lattice=lat)


def _distinct_per_bin(geo) -> float:
    n = len(geo.origins)
    return count_windows(geo, scales=("global", "neighbor"), variants=1) / n


@pytest.mark.parametrize("grid", ["spot", "lattice"])
@pytest.mark.parametrize(("target_um", "step"), [(8.0, 1), (16.0, 2)])
def test_neighbour_tile_is_the_neighbouring_bins_window(hd, grid, target_um, step):
    geo = _geometry(hd, target_um=target_um, grid=grid)
    assert geo.bin_pitch_px == pytest.approx(8.0 / MPP) and geo.bin_pitch_px % 1 > 0.2  # a fractional pitch
    assert geo.lattice_step == step
    lat = geo.lattice
    nb = geo.neighbor_origins()
    cell = {(r, c): j for j, (r, c) in enumerate(zip(lat.rows.tolist(), lat.cols.tolist()))}
    empty: dict[tuple[int, int], tuple[int, int]] = {}
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]  # row-major, row = y
    for i, (r, c) in enumerate(zip(lat.rows.tolist(), lat.cols.tolist())):
        for k, (dy, dx) in enumerate(offsets):
            key = (r + step * dy, c + step * dx)
            if key in cell:  # an existing bin: its own target window, to the pixel
                assert tuple(nb[i, k]) == tuple(geo.origins[cell[key]])
            else:  # an empty lattice cell: one tile, whichever bin looks at it
                assert empty.setdefault(key, tuple(nb[i, k])) == tuple(nb[i, k])
    assert len(set(empty.values())) == len(empty)  # distinct empty cells are distinct tiles
    assert tuple(nb[0, 12]) == tuple(geo.origins[0])  # the centre tile is the bin's own window


def test_distinct_tiles_stay_about_one_per_bin(hd):
    # window = pitch: ≈ 1 distinct window per bin (the bins' own, plus the ring of empty cells around the tissue)
    assert _distinct_per_bin(_geometry(hd)) <= 1.3
    assert _distinct_per_bin(_geometry(hd, target_um=16.0)) <= 1.4
    # without the lattice the tiles drift against the fractional pitch: several distinct windows per bin
    assert _distinct_per_bin(_geometry(hd, lattice=False)) > 2.5


def test_empty_cells_follow_a_rotated_lattice(hd):
    """Tiles of empty cells sit on the lattice fitted to the bins' centres, rotation included."""
    from genedml.features._bins import BinLattice, bin_neighbor_origins

    theta = np.deg2rad(3.0)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    r, c = (a.ravel() for a in np.meshgrid(np.arange(6), np.arange(7), indexing="ij"))
    xy = 500 + np.column_stack([c, r]) * 29.23 @ rot.T  # (x, y)
    origins = np.floor(xy - 29 / 2 + 0.5).astype(np.int64)[:, ::-1]
    keep = np.arange(len(r)) != 16  # one cell inside the tissue is empty
    lat = BinLattice(r[keep], c[keep], 8.0)
    nb = bin_neighbor_origins(origins[keep], xy[keep], lat, step=1, crop_px=29, pitch_px=29.23)
    # the bin right of the empty cell sees it at grid offset (dy, dx) = (0, -1), tile 11
    i = int(np.flatnonzero((lat.rows == r[16]) & (lat.cols == c[16] + 1))[0])
    np.testing.assert_array_equal(nb[i, 11], origins[16])  # where that bin's window would have been


def test_embed_stores_bins_not_tiles(hd):
    fs = gd.features.compute_features(hd, encoder="test_resnet", pretrained=False, target_um=8.0, target_px=32,
                                      scales=["global", "neighbor"], cache=False)  # fmt: skip
    n = gd.io.get_table(hd).n_obs
    nbr = fs.entries["S1"]["neighbor"]
    tiles, index = np.asarray(nbr["tiles"]), np.asarray(nbr["index"])
    assert (n + len(tiles)) / n <= 1.3  # encoder passes per bin
    geo = _geometry(hd)
    assert fs.record["sections"]["S1"]["bin_lattice"]["step_bins"] == 1
    # a neighbour that is a bin points at that bin's pooled (global) row
    lat = geo.lattice
    cell = {(r, c): j for j, (r, c) in enumerate(zip(lat.rows.tolist(), lat.cols.tolist()))}
    i = int(np.flatnonzero([(r, c + 1) in cell for r, c in zip(lat.rows.tolist(), lat.cols.tolist())])[0])
    right = cell[(int(lat.rows[i]), int(lat.cols[i]) + 1)]
    assert index[i, 13] == right and index[i, 12] == i


def test_spot_windows_neighbour_tiles_are_bin_windows(hd):
    lat = bin_lattice(hd, "S1")
    cell = {(r, c): j for j, (r, c) in enumerate(zip(lat.rows.tolist(), lat.cols.tolist()))}
    i = next(j for (r, c), j in cell.items() if (r + 1, c) in cell)
    below = cell[(int(lat.rows[i]) + 1, int(lat.cols[i]))]
    nb = gd.features.spot_windows(hd, section="S1", scale="neighbor", spots=[i], target_um=8.0, target_px=32)
    tg = gd.features.spot_windows(hd, section="S1", scale="target", spots=[i, below], target_um=8.0, target_px=32)
    np.testing.assert_array_equal(nb.images[0, 12], tg.images[0])
    np.testing.assert_array_equal(nb.images[0, 17], tg.images[1])  # offset (dy, dx) = (1, 0)
    assert nb.info["bin_lattice"]["step_bins"] == 1


def test_no_lattice_for_spots(hd):
    st = gd.datasets.synthetic(preset="tiny")
    assert bin_lattice(st, "S1") is None
    geo = _geometry(st, target_um=None, target_px=32)
    assert geo.lattice is None and "bin_lattice" not in geo.to_dict()
    # Visium HD without bin metadata (e.g. a HEST sample) keeps the default grid
    t = gd.io.get_table(hd)
    meta = t.uns["genedml"]["sections"]["S1"]
    saved = meta.pop("spot_shape")
    try:
        assert bin_lattice(hd, "S1") is None
    finally:
        meta["spot_shape"] = saved
