"""``genedml demo``: train / validation / test patients kept apart, and every output says which section had which
role."""

from __future__ import annotations

import pandas as pd

from genedml._cli import main
from genedml._cli._demo import DEMO_OUTPUTS


def test_demo_keeps_the_test_patient_apart(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--preset", "tiny", "--epochs", "2", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(DEMO_OUTPUTS)
    scores = pd.read_csv(out / "evaluation.csv", index_col=0)
    assert scores["role"].to_dict() == {"S1": "train", "S2": "validation", "S3": "test"}
    assert "test ['S3'] (untouched until evaluation)" in printed and "test sections ['S3']: model MSE" in printed
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(argv) == 2  # a second run refuses to overwrite the first ...
    assert "--overwrite" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # ... and touched nothing
