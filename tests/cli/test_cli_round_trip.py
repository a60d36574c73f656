"""The ``genedml`` command line: YAML validation (the fit → predict → evaluate → cv round trip runs the documented
example configs in test_cli_docs.py)."""

import pytest
import yaml

from genedml._cli import main

FIT = {
    "n_top_genes": 12,
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
