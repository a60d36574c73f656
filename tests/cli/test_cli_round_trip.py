"""The ``genedml`` command line: YAML validation and a fit → predict → evaluate → cv round trip on tiny data."""

import pytest
import yaml

from genedml._cli import main

FIT = {
    "n_genes": 12,
    "encoder": "test_resnet",
    "pretrained": False,
    "config": "cpu",
    "max_epochs": 1,
    "batch_size": 32,
    "patience": None,
    "progress": False,
}


def _write(path, cfg):
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_round_trip(tmp_path, capsys):
    cfg = _write(tmp_path / "run.yaml", {"data": {"synthetic": {"preset": "tiny", "seed": 0}}, "fit": FIT})
    assert main(["fit", "--config", str(cfg), "--out", str(tmp_path / "run")]) == 0
    model = tmp_path / "run" / "model.pt"
    assert model.is_file() and (tmp_path / "run" / "history.csv").is_file()
    assert main(["predict", "--model", str(model), "--config", str(cfg), "--out", str(tmp_path / "pred.zarr")]) == 0
    assert main(["evaluate", "--data", str(tmp_path / "pred.zarr"), "--out", str(tmp_path / "scores.csv")]) == 0
    text = (tmp_path / "scores.csv").read_text()
    assert "pcc_a" in text and "S1" in text and "S2" in text
    capsys.readouterr()
    cv = {
        **{k: v for k, v in FIT.items() if k not in ("max_epochs", "batch_size", "patience", "progress")},
        "methods": ["mean", "gene_dml"],
        "train_config": {"max_epochs": 1, "batch_size": 32, "patience": None},
        "progress": False,
    }
    cfg_cv = _write(tmp_path / "cv.yaml", {"data": {"synthetic": {"preset": "tiny"}}, "cv": cv})
    assert main(["cv", "--config", str(cfg_cv), "--out", str(tmp_path / "cv")]) == 0
    out = capsys.readouterr().out
    assert "gene_dml" in out and "mean" in out and "±" in out
    assert (tmp_path / "cv" / "summary.csv").is_file()
    assert len(list((tmp_path / "cv" / "folds").glob("*.json"))) == 4  # 2 methods × 2 folds, resumable


@pytest.mark.parametrize(
    ("cfg", "msg"),
    [
        ({"fitt": {}}, "unknown section"),
        ({"fit": {"n_gene": 3}}, "unknown key"),
        ({"data": {"nowhere": {}}}, "one source"),
        ({"data": {"synthetic": {"presett": "tiny"}}}, "unknown key"),
        ({"cv": {"method": ["mean"]}}, "unknown key"),
    ],
)
def test_cli_rejects_bad_config(tmp_path, capsys, cfg, msg):
    path = _write(tmp_path / "bad.yaml", cfg)
    assert main(["fit", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    assert msg in capsys.readouterr().err


def test_cli_missing_config(tmp_path, capsys):
    assert main(["fit", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
