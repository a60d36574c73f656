"""The ``genedml`` command on bad input: every case fails before any work, with the exact exit code, a message that
names the user's option or key, and no file created, changed or removed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from genedml._cli import main

USAGE = 2  # bad option, config, input path or existing output (argparse's own code for usage errors)


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the sha256 of its bytes (folders as "dir")."""
    out = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse exits itself
        code = e.code
    captured = capsys.readouterr()
    return code, captured.err + captured.out


# ------------------------------------------------------------------------------------------------ options

OPTION_CASES = {
    "no command": ([], "the following arguments are required: COMMAND"),
    "unknown command": (["fitt"], "invalid choice: 'fitt'"),
    "fit without --config": (["fit"], "the following arguments are required: --config"),
    "abbreviated --confi": (["fit", "--confi", "run.yaml"], "the following arguments are required: --config"),
    "abbreviated --ou": (["fit", "--config", "run.yaml", "--ou", "x"], "unrecognized arguments: --ou x"),
    "abbreviated --epoch": (["demo", "--epoch", "3"], "unrecognized arguments: --epoch"),
    "abbreviated --over": (["demo", "--over"], "unrecognized arguments: --over"),
    "unknown option": (["fit", "--config", "run.yaml", "--bogus"], "unrecognized arguments: --bogus"),
    "--epochs not an int": (["demo", "--epochs", "abc"], "argument --epochs: invalid int value: 'abc'"),
    "--preset not a choice": (["demo", "--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
    "predict without --out": (["predict", "--model", "m.pt"], "the following arguments are required: --out"),
    "evaluate without --data": (["evaluate"], "the following arguments are required: --data"),
    "cv --out without value": (["cv", "--config", "c.yaml", "--out"], "argument --out: expected one argument"),
    "cache --info and --clear": (["cache", "--info", "--clear"], "argument --clear: not allowed with argument --info"),
    "demo --epochs 0": (["demo", "--epochs", "0", "--out", "d"], "`--epochs` must be ≥ 1"),
}


@pytest.mark.parametrize(("argv", "msg"), OPTION_CASES.values(), ids=OPTION_CASES.keys())
def test_bad_options(tmp_path, monkeypatch, capsys, argv, msg):
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    code, err = _run(argv, capsys)
    assert code == USAGE
    assert msg in err
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------ configs

CONFIG_CASES = {
    "unclosed list": ("fit: [1, 2\n", "malformed YAML at line 2"),
    "bad indentation": ("fit:\n  n_top_genes: 3\n   lr: 0.1\n", "malformed YAML at line 3"),
    "tab indentation": ("fit:\n\tn_top_genes: 3\n", "malformed YAML at line 2"),
    "top level a list": ("- fit\n- cv\n", "the top level must be a mapping of sections"),
    "top level a string": ("fit\n", "the top level must be a mapping of sections"),
    "unknown section": ("fitt: {}\n", "unknown section `fitt` (did you mean 'fit'?)"),
    "unknown key": ("fit:\n  n_top_gene: 3\n", "unknown key `fit.n_top_gene` (did you mean 'n_top_genes'?)"),
    # the name before the rename (difflib alone would suggest `genes`): the error names the new key
    "renamed fit key": (
        "fit:\n  n_genes: 3\n",
        "unknown key `fit.n_genes` (did you mean 'n_top_genes'? `n_genes` was renamed to `n_top_genes`",
    ),
    "renamed cv key": ("cv:\n  n_genes: 3\n", "unknown key `cv.n_genes` (did you mean 'n_top_genes'?"),
    "unknown TrainConfig key": ("fit:\n  max_epoch: 3\n", "unknown key `fit.max_epoch` (did you mean 'max_epochs'?)"),
    "unknown data source": (
        "data:\n  synthetc: {}\n",
        "unknown data source `data.synthetc` (did you mean 'synthetic'?)",
    ),
    "two data sources": ("data:\n  synthetic: {}\n  her2st: {}\n", "section `data` must hold exactly one source"),
    "unknown data key": (
        "data:\n  synthetic:\n    presett: tiny\n",
        "unknown key `data.synthetic.presett` (did you mean 'preset'?)",
    ),
    "zarr without path": ("data:\n  zarr: {}\n", "missing required key(s) ['data.zarr.path']"),
    "hest without files": ("data:\n  hest:\n    h5ad: a.h5ad\n", "['data.hest.image', 'data.hest.metadata']"),
    "int given as str": ("fit:\n  n_top_genes: many\n", "`fit.n_top_genes` expects int, got str 'many'"),
    "int given as bool": ("fit:\n  n_top_genes: true\n", "`fit.n_top_genes` expects int, got bool True"),
    "int given as float": ("fit:\n  max_epochs: 2.5\n", "`fit.max_epochs` expects int, got float 2.5"),
    "float given as str": ("fit:\n  lr: fast\n", "`fit.lr` expects float, got str 'fast'"),
    "bool given as str": ("fit:\n  pretrained: 'yes'\n", "`fit.pretrained` expects bool, got str 'yes'"),
    "list given as str": ("cv:\n  methods: gene_dml\n", "`cv.methods` expects list, got str 'gene_dml'"),
    "optional int as list": ("cv:\n  k: [3]\n", "`cv.k` expects int or null, got list [3]"),
    "section a list": ("fit:\n  - n_top_genes\n", "section `fit` must be a mapping of key: value"),
    "data source a list": ("data:\n  synthetic: [tiny]\n", "section `data.synthetic` must be a mapping"),
    "output a number": ("output: 3\n", "`output` expects a folder path (str), got int 3"),
    "evaluate key typo": ("evaluate:\n  n_hgp: 5\n", "unknown key `evaluate.n_hgp` (did you mean 'n_hpg'?)"),
    "predict key type": ("predict:\n  key_added: 5\n", "`predict.key_added` expects str, got int 5"),
}


@pytest.mark.parametrize(("text", "msg"), CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
@pytest.mark.parametrize("command", ["fit", "cv"])
def test_bad_config(tmp_path, capsys, command, text, msg):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(text)
    before = _snapshot(tmp_path)
    code, err = _run([command, "--config", str(cfg), "--out", str(tmp_path / "out")], capsys)
    assert code == USAGE
    assert f"genedml {command}: error:" in err and msg in err
    assert str(cfg) in err  # names the file
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before


def test_bad_config_of_evaluate_and_predict(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("evaluate:\n  aggregate: 3\n")
    (tmp_path / "pred.zarr").mkdir()
    before = _snapshot(tmp_path)
    code, err = _run(["evaluate", "--data", str(tmp_path / "pred.zarr"), "--config", str(cfg)], capsys)
    assert code == USAGE and "`evaluate.aggregate` expects str, got int 3" in err
    code, err = _run(["predict", "--model", "m.pt", "--config", str(cfg), "--out", str(tmp_path / "o.zarr")], capsys)
    assert code == USAGE and "`evaluate.aggregate`" in err  # the whole file is checked, whatever the command
    assert _snapshot(tmp_path) == before


def test_binary_and_folder_configs(tmp_path, capsys):
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00\x81fit")
    (tmp_path / "folder.yaml").mkdir()
    before = _snapshot(tmp_path)
    code, err = _run(["fit", "--config", str(tmp_path / "bin.yaml")], capsys)
    assert code == USAGE and "not a text (UTF-8) file" in err
    code, err = _run(["fit", "--config", str(tmp_path / "folder.yaml")], capsys)
    assert code == USAGE and "not a file" in err
    assert _snapshot(tmp_path) == before


# ---------------------------------------------------------------------------------------- files and outputs


def _setup_files(tmp_path: Path) -> None:
    (tmp_path / "run.yaml").write_text("data:\n  synthetic:\n    preset: tiny\n")
    (tmp_path / "model.pt").write_bytes(b"not a model: must be neither read nor changed")
    (tmp_path / "pred.zarr").mkdir()
    (tmp_path / "scores.csv").write_text("earlier scores\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt").write_bytes(b"earlier model")
    (tmp_path / "hist").mkdir()
    (tmp_path / "hist" / "history.csv").write_text("earlier history\n")
    (tmp_path / "cv").mkdir()
    (tmp_path / "cv" / "summary.csv").write_text("earlier summary\n")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "hne_spots.png").write_bytes(b"earlier figure")
    (tmp_path / "afile").write_text("a file, not a folder\n")


FILE_CASES = {
    "fit: missing config": (["fit", "--config", "none.yaml"], "`--config`='none.yaml': no such file"),
    "fit: model.pt exists": (["fit", "--config", "run.yaml", "--out", "run"], "'run/model.pt' already exist"),
    "fit: history.csv exists": (["fit", "--config", "run.yaml", "--out", "hist"], "'hist/history.csv' already exist"),
    "fit: --out under a file": (["fit", "--config", "run.yaml", "--out", "afile/run"], "'afile' is not a folder"),
    "predict: missing model": (
        ["predict", "--model", "none.pt", "--data", "pred.zarr", "--out", "o.zarr"],
        "`--model`='none.pt': no such file",
    ),
    "predict: missing data": (
        ["predict", "--model", "model.pt", "--data", "none.zarr", "--out", "o.zarr"],
        "`--data`='none.zarr': no such .zarr store",
    ),
    "predict: --out exists": (
        ["predict", "--model", "model.pt", "--data", "pred.zarr", "--out", "pred.zarr"],
        "`--out`: 'pred.zarr' already exist",
    ),
    "evaluate: missing data": (["evaluate", "--data", "none.zarr"], "`--data`='none.zarr': no such .zarr store"),
    "evaluate: --out exists": (
        ["evaluate", "--data", "pred.zarr", "--out", "scores.csv"],
        "`--out`: 'scores.csv' already exist(s); pass --overwrite",
    ),
    "evaluate: --out under a file": (
        ["evaluate", "--data", "pred.zarr", "--out", "afile/s.csv"],
        "'afile' is not a folder",
    ),
    "cv: summary.csv exists": (["cv", "--config", "run.yaml", "--out", "cv"], "'cv/summary.csv' already exist"),
    "cv: missing config": (["cv", "--config", "none.yaml", "--out", "cv2"], "no such file"),
    "demo: outputs exist": (["demo", "--out", "demo"], "'demo/hne_spots.png' already exist(s); pass --overwrite"),
}


@pytest.mark.parametrize(("argv", "msg"), FILE_CASES.values(), ids=FILE_CASES.keys())
def test_files_checked_before_any_work(tmp_path, monkeypatch, capsys, argv, msg):
    monkeypatch.chdir(tmp_path)
    _setup_files(tmp_path)
    before = _snapshot(tmp_path)
    code, err = _run(argv, capsys)
    assert code == USAGE
    assert msg in err
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------ the rest


def test_version(capsys):
    import genedml

    code, out = _run(["--version"], capsys)
    assert code == 0 and out.strip() == f"genedml {genedml.__version__}"


@pytest.mark.parametrize("command", ["demo", "fit", "predict", "evaluate", "cv", "cache"])
def test_every_option_has_help_and_its_default(command):
    from genedml._cli._main import _parser

    sub = next(a for a in _parser()._actions if a.dest == "command").choices[command]
    text = " ".join(sub.format_help().split())
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings}: no help text"
            if action.required:
                assert f"{action.help} (required)" in text
            elif action.default not in (None, False):
                assert f"(default: {action.default})" in text, f"{command} {action.option_strings}"
    assert "allow_abbrev" not in text and sub.allow_abbrev is False


def test_cache_info_and_clear_touch_only_cache_files(tmp_path, capsys):
    import genedml as gd

    root = tmp_path / "features"
    gd.settings.cachedir = root
    entry = root / "ab" / ("ab" + "0" * 38)
    entry.mkdir(parents=True)
    (entry / "meta.json").write_text("{}")  # 2 bytes
    (entry / "pooled.npy").write_bytes(b"x" * 998)
    (root / "ab" / "parts").mkdir()
    (root / "ab" / "parts" / "ab00.0-10.npz").write_bytes(b"y" * 500)
    (root / "ab" / ("ab" + "1" * 38 + ".npz")).write_bytes(b"z" * 100)  # an entry of an older genedml: stale
    (root / "notes.txt").write_text("a user's file in the same folder stays\n")
    code, out = _run(["cache", "--info"], capsys)
    assert code == 0 and str(root) in out and "entries: 1" in out and "stale: 1" in out
    assert gd.settings.cache_info() == {"path": root, "entries": 1, "parts": 1, "stale": 1, "bytes": 1600}
    code, out = _run(["cache", "--clear"], capsys)
    assert code == 0 and "cleared" in out
    assert sorted(p.name for p in root.rglob("*")) == ["notes.txt"]
    assert gd.settings.cache_info()["entries"] == 0
