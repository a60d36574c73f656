"""The "large" preset: the image is a dask array rendered block by block, only on demand."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import genedml as gd
from genedml.datasets import _render, _synthetic


@pytest.fixture
def render_calls(monkeypatch):
    calls = []
    original = _render.render_window

    def counting(layout, y0, x0, h, w):
        calls.append((layout.name, y0, x0, h, w))
        return original(layout, y0, x0, h, w)

    monkeypatch.setattr(_render, "render_window", counting)
    return calls


def _large(**kw):
    return gd.datasets.synthetic(preset="large", **{"spots_per_side": 40, **kw})


def _one_section(**kw):
    """A single "large"-preset section of 20 x 20 ST positions: 4100 px, 5 x 5 blocks."""
    return _large(n_sections=1, n_patients=1, spots_per_side=20, n_genes=20, **kw)


def test_large_preset_builds_without_rendering(render_calls):
    tracemalloc.start()
    try:
        sdata = _large()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert render_calls == []
    img = sdata.images["S1_hne"].data
    assert img.shape == (3, 8100, 8100) and img.chunksize == (3, 1024, 1024)
    image_bytes = sum(int(np.prod(el.data.shape)) for el in sdata.images.values())
    # the layouts (~30 MiB a section, kept for rendering) dominate; the 390 MiB of pixels are never allocated
    assert peak < 0.3 * image_bytes, f"building used {peak / 2**20:.0f} MiB for {image_bytes / 2**20:.0f} MiB of image"
    gd.io.validate(sdata)  # checks geometry and metadata without touching pixels
    assert render_calls == []
    table = sdata.tables["table"]  # the counts and the truth are computed now, only the pixels wait
    assert table.n_obs > 1500 and table.n_vars == 250 and table.X.nnz > 0
    assert table.obsm["synthetic_logmu"].shape == (table.n_obs, 250)


def test_window_is_rendered_on_demand_and_reproducibly(render_calls):
    img = _one_section().images["S1_hne"].data
    window = img[:, 2500:2600, 2100:2200]  # inside one block
    first = np.asarray(window.compute())
    assert len(render_calls) == 1 and render_calls[0][1:] == (2048, 2048, 1024, 1024)
    second = np.asarray(window.compute())
    np.testing.assert_array_equal(first, second)
    assert first.dtype == np.uint8 and first.std() > 5  # tissue, not an empty block


def test_blocks_join_without_seams(monkeypatch):
    """A window across block borders is the same whatever the block partition, and equals a direct render.

    Nuclei, fibres and blur near a border are computed from global positions (with a halo), so a block never
    cuts a nucleus differently from its neighbour.
    """
    reference = np.asarray(_one_section().images["S1_hne"].data[:, 2000:2150, 2000:2100].compute())  # crosses 2048
    monkeypatch.setattr(_synthetic, "_BLOCK", 700)
    data = _one_section().images["S1_hne"].data
    assert data.chunksize[1:] == (700, 700)
    np.testing.assert_array_equal(np.asarray(data[:, 2000:2150, 2000:2100].compute()), reference)  # crosses 2100
    cfg = _synthetic._resolve("large", 1, 1, 20, "st", 20, None, 0, None)
    layouts, _ = _synthetic._sections(cfg)
    np.testing.assert_array_equal(_render.render_window(layouts[0], 2000, 2000, 150, 100), reference)
    assert reference.std() > 5  # tissue, not background


@pytest.mark.slow
def test_full_large_preset_scale():
    tracemalloc.start()
    try:
        sdata = gd.datasets.synthetic(preset="large")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    table = sdata.tables["table"]
    assert 45_000 <= table.n_obs <= 55_000
    assert peak < 1.0 * 2**30, f"peak {peak / 2**20:.0f} MiB"  # the two images would take 8 GiB
