"""Fixtures for the plotting tests: fixed inputs (see _pl_data.py) and the baseline-image comparison.

Regenerate the baselines in tests/_images/ after an intended change of a figure with::

    GENEDML_UPDATE_BASELINES=1 .venv/bin/pytest tests/pl -k image

then look at every regenerated PNG before committing it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from _pl_data import add_predictions, make_sdata

BASELINES = Path(__file__).resolve().parents[1] / "_images"
UPDATE_ENV = "GENEDML_UPDATE_BASELINES"
TOL = 10  # RMS difference (0-255 scale) tolerated: absorbs FreeType/antialiasing differences, not layout changes
DPI = 72

# Deterministic text and lines for the image comparisons: a font matplotlib ships (DejaVu Sans), no hinting.
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "text.hinting": "none",
}


@pytest.fixture(scope="session")
def _pred_sdata():
    sdata = make_sdata()
    add_predictions(sdata)
    return sdata


@pytest.fixture
def pred_sdata(_pred_sdata):
    """Two sections with predictions, measured values and per-gene PCC; shared, so do not modify it."""
    return _pred_sdata


@pytest.fixture
def fresh_sdata():
    """A new two-section SpatialData with predictions, free to modify."""
    sdata = make_sdata()
    add_predictions(sdata)
    return sdata


@pytest.fixture
def mpl_style():
    """matplotlib's default style with the deterministic text settings above."""
    import matplotlib as mpl
    import matplotlib.style

    with matplotlib.style.context("default"), mpl.rc_context(STYLE):
        yield


@pytest.fixture
def check_image(tmp_path, mpl_style):
    """``check_image(fig, name)``: save ``fig`` and compare it with ``tests/_images/{name}.png``.

    With ``GENEDML_UPDATE_BASELINES=1`` the baseline is (re)written instead and the test passes.
    """
    from matplotlib.testing.compare import compare_images

    def check(fig, name: str) -> None:
        actual = tmp_path / f"{name}.png"
        fig.savefig(actual, dpi=DPI, metadata={"Software": None})
        expected = BASELINES / f"{name}.png"
        if os.environ.get(UPDATE_ENV) == "1":
            BASELINES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(actual, expected)
            return
        if not expected.is_file():
            pytest.fail(f"no baseline {expected}: create it with {UPDATE_ENV}=1 pytest tests/pl -k image")
        err = compare_images(str(expected), str(actual), tol=TOL)
        assert err is None, f"{name}: the figure differs from its baseline (tol={TOL}). {err}"

    return check
