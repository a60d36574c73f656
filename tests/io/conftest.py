"""Fixtures for the readers: tiny fake layouts written in tmp dirs (built by _io_data.py) and the real HER2ST."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _io_data import her2st_samples_table, make_hest_files, make_hest_image, make_st_layout, make_visium_dir


@pytest.fixture(scope="session")
def her2st_samples(her2st_dir) -> pd.DataFrame:
    """Samples table of the 5 real HER2ST sections; paths relative to ``her2st_dir`` (skips when absent)."""
    return her2st_samples_table()


@pytest.fixture
def st_layout(tmp_path) -> tuple[Path, pd.DataFrame]:
    """Two tiny ST sections (S1: JPEG, S2: tiled TIFF with one extra gene): their folder and samples table."""
    return make_st_layout(tmp_path)


@pytest.fixture
def visium_dir(tmp_path) -> Path:
    """A tiny Space Ranger 2 ``outs`` folder (see :func:`_io_data.make_visium_dir`)."""
    return make_visium_dir(tmp_path)


@pytest.fixture
def hest_image() -> np.ndarray:
    """The level-0 pixels of the fake HEST slide."""
    return make_hest_image()


@pytest.fixture(params=["subifds", "pages"])
def hest_files(request, tmp_path, hest_image) -> dict[str, Path]:
    """One fake HEST-1k sample, its pyramid stored as SubIFDs or as plain pages."""
    return make_hest_files(tmp_path, hest_image, request.param)
