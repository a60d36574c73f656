"""The README's quick start runs as written, offline, in a fresh interpreter and an empty folder; the docs' quick-start
page holds the very same code, so neither can drift."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _block(path: Path) -> str:
    """The Python block after the ``<!-- quickstart -->`` marker."""
    found = re.findall(r"<!-- quickstart -->\n```python\n(.*?)```", path.read_text(), flags=re.S)
    assert len(found) == 1, f"{path.name}: expected one quick-start block"
    return found[0]


def test_docs_quickstart_is_the_readme_quickstart():
    assert _block(REPO / "docs" / "quickstart.md") == _block(REPO / "README.md")


def test_readme_quickstart_runs_as_written(tmp_path):
    code = _block(REPO / "README.md")
    (tmp_path / "quickstart.py").write_text(code)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "GENEDML_CACHEDIR": str(tmp_path / "cache"),
        "GENEDML_DATASETDIR": str(tmp_path / "datasets"),
    }
    proc = subprocess.run(
        [sys.executable, "quickstart.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    # the evaluation shows each section's role, with one untouched test section
    for role in ("train", "validation", "test"):
        assert re.search(rf"^S\d\s+{role}\s", out, flags=re.M), out
    assert "mean over sections" in out
    # the cross-validation table compares the three methods, mean ± std over folds
    for method in ("gene_dml", "ridge", "mean"):
        assert re.search(rf"^{method}\s.*±", out, flags=re.M), out
    assert (tmp_path / "truth_vs_prediction.png").stat().st_size > 10_000
    assert (tmp_path / "model.pt").is_file()
