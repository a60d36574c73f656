"""The "Command line" docs page cannot drift: its schema tables are generated from the API's signatures, and its
example configs run, in order, with the commands written in their first line."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd

from genedml._cli import main
from genedml._cli._config import load_config, schema_markdown

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _examples() -> list[tuple[str, str]]:
    """``(file name, YAML text)`` of every ``<!-- example: NAME -->`` block, in page order."""
    text = PAGE.read_text()
    return re.findall(r"<!-- example: (\S+) -->\n```yaml\n(.*?)```", text, flags=re.S)


def test_schema_tables_match_the_api():
    text = PAGE.read_text()
    body = text.split("<!-- schema:start -->\n", 1)[1].split("<!-- schema:end -->", 1)[0]
    assert body == schema_markdown(), "docs/cli.md is stale: paste genedml._cli._config.schema_markdown() in"


def test_example_configs_run_as_documented(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    examples = _examples()
    assert [name for name, _ in examples] == ["fit.yaml", "predict.yaml", "evaluate.yaml", "cv.yaml"]
    for name, text in examples:
        Path(name).write_text(text)
        load_config(name)  # valid as written
        first = text.splitlines()[0]
        assert first.startswith("# genedml "), f"{name}: the first line must be the command that runs it"
        argv = shlex.split(first[2:])[1:] + ["--no-progress"] * (argv_has_progress(first))
        assert main(argv) == 0, f"{name}: `{first[2:]}` failed: {capsys.readouterr().err}"
    assert Path("run/model.pt").is_file() and Path("run/history.csv").is_file()
    assert Path("pred.zarr").is_dir()
    scores = pd.read_csv("scores.csv", index_col=0)
    assert {"role", "mse", "pcc_a", "pcc_h"} <= set(scores.columns) and len(scores) == 2
    summary = pd.read_csv("cv/summary.csv")
    assert {"gene_dml", "ridge", "mean"} <= set(summary.iloc[:, 0])
    # a second run refuses to overwrite what the first wrote, and says how to replace it
    assert main(["evaluate", "--data", "pred.zarr", "--config", "evaluate.yaml", "--out", "scores.csv"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["evaluate", "--data", "pred.zarr", "--out", "scores.csv", "--overwrite"]) == 0


def argv_has_progress(command: str) -> bool:
    """Whether the command accepts ``--no-progress`` (all but evaluate and cache)."""
    return command.split()[2] not in ("evaluate", "cache")
