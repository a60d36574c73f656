"""Synthetic datasets built once per test session (tests must not modify them)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny():
    import genedml as gd

    return gd.datasets.synthetic(preset="tiny", seed=0)


@pytest.fixture(scope="session")
def tiny4():
    """Tiny-sized but with 4 sections of 2 patients, for statistics over more spots."""
    import genedml as gd

    return gd.datasets.synthetic(preset="tiny", n_sections=4, n_patients=2, spots_per_side=11, seed=3)
