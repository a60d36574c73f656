"""The documentation builds offline with ``sphinx-build -W`` and its API pages list every public name."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC_PACKAGES = ("sphinx", "myst_nb", "sphinx_book_theme")

# namespace → API page (docs/api/<page>.md) that must list every name of its __all__
API_PAGES = {
    "io": "io",
    "datasets": "datasets",
    "pp": "pp",
    "tl": "tl",
    "pl": "pl",
    "metrics": "metrics",
    "models": "models",
    "models.nn": "models",
    "models.train": "models",
    "encoders": "encoders",
    "dataloaders": "dataloaders",
}

_missing = [p for p in DOC_PACKAGES if importlib.util.find_spec(p) is None]
pytestmark = pytest.mark.skipif(
    bool(_missing), reason=f"docs build needs {_missing}: install the `doc` extra (pip install -e '.[doc]')"
)


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """Build the site once, offline, warnings as errors (``--keep-going`` still writes every page)."""
    out = tmp_path_factory.mktemp("docs")
    env = {k: v for k, v in os.environ.items() if k != "GENEDML_DOCS_ONLINE"}
    env.update(HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q", "-d", str(out / "doctrees")]
    proc = subprocess.run([*cmd, str(DOCS), str(out / "html")], capture_output=True, text=True, env=env, timeout=600)
    return proc, out / "html"


@pytest.fixture(scope="module")
def html(build) -> Path:
    out = build[1]
    assert (out / "index.html").is_file(), f"sphinx-build wrote no site:\n{build[0].stderr}"
    return out


def test_build_has_no_warnings(build):
    proc, out = build
    assert proc.returncode == 0, f"sphinx-build -W failed (exit {proc.returncode}):\n{proc.stderr}\n{proc.stdout}"
    for page in ("index", "install", "data_model", "method", "protocols", "baselines", "encoders", "gpu", "changelog"):
        assert (out / f"{page}.html").is_file(), f"docs/{page}.md was not built"


@pytest.mark.parametrize("ns", list(API_PAGES))
def test_api_page_lists_every_public_name(html, ns):
    mod = importlib.import_module(f"genedml.{ns}")
    text = (html / "api" / f"{API_PAGES[ns]}.html").read_text(encoding="utf-8")
    linked = set(re.findall(rf'href="generated/genedml\.{re.escape(ns)}\.(\w+)\.html', text))
    missing = sorted(set(mod.__all__) - linked)
    assert not missing, f"docs/api/{API_PAGES[ns]}.md does not list gd.{ns}.{missing}"
    for name in mod.__all__:
        assert (html / "api" / "generated" / f"genedml.{ns}.{name}.html").is_file()


def test_settings_page_documents_every_setting(html):
    import genedml as gd

    text = (html / "api" / "settings.html").read_text(encoding="utf-8")
    for name in ("verbosity", "datasetdir", "cachedir", "device", "num_workers", "seed", "progress_bar"):
        assert hasattr(gd.settings, name)
        assert f"Settings.{name}" in text, f"gd.settings.{name} is not documented on api/settings.md"
