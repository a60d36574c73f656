"""Shared fixtures. Keep this file light: heavy objects are built once per session and copied per test."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: otherwise timm retries the Hub for ~47 s before failing offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HER2ST_DIR = REPO.parent / "shared" / "data" / "her2st"


def pytest_addoption(parser):
    parser.addoption("--internet-tests", action="store_true", default=False, help="run tests that download")
    parser.addoption("--gpu", action="store_true", default=False, help="run tests that need a CUDA device")


def pytest_collection_modifyitems(config, items):
    skip_net = pytest.mark.skip(reason="needs the internet: pass --internet-tests")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU: pass --gpu")
    for item in items:
        if "internet" in item.keywords and not config.getoption("--internet-tests"):
            item.add_marker(skip_net)
        if "gpu" in item.keywords and not config.getoption("--gpu"):
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Every test gets fresh settings with caches under pytest's tmp dir; figures are closed afterwards."""
    import genedml as gd

    saved = {k: getattr(gd.settings, k) for k in ("verbosity", "datasetdir", "cachedir", "device", "seed")}
    gd.settings.cachedir = tmp_path_factory.mktemp("features")
    gd.settings.datasetdir = tmp_path_factory.mktemp("datasets")
    gd.settings.progress_bar = False
    yield
    for k, v in saved.items():
        setattr(gd.settings, k, v)
    gd.settings.progress_bar = True
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture(scope="session")
def her2st_dir() -> Path:
    """The real HER2ST files in ../shared/data/her2st (CI has them there)."""
    if not (HER2ST_DIR / "data" / "ST-cnts").is_dir():
        pytest.skip(f"real HER2ST data not found at {HER2ST_DIR} (expected beside the repository in shared/data)")
    return HER2ST_DIR
