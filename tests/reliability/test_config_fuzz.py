"""Fuzzing the YAML run configuration: random truncations, shuffled and misspelt keys, wrong types and stray
characters give a clear `ConfigError` (or a valid config), never a traceback, a hang or a changed file."""

from __future__ import annotations

import random
import signal

import pytest
import yaml

from genedml._cli import main
from genedml._cli._config import SECTIONS, ConfigError, load_config

BASE = {
    "data": {"synthetic": {"preset": "tiny", "seed": 0}},
    "fit": {"n_top_genes": 12, "encoder": "test_resnet", "pretrained": False, "config": "cpu", "max_epochs": 1},
    "predict": {"key_added": "predicted"},
    "evaluate": {"n_hpg": 5, "aggregate": "section"},
    "cv": {"methods": ["mean", "gene_dml"], "n_top_genes": 12, "k": None},
    "output": "run",
}
VALUES = [None, True, 0, -1, 3, 2.5, "", "x", "tiny", [], [1], ["a", 2], {}, {"a": 1}, 1e300, "1", "null"]
CHARS = [":", "-", "[", "]", "{", "}", "\t", "'", '"', "#", "&", "*", "!", "|", ">", "%", "@", "\n", " ", "\x00"]
N_CASES = 400


def _mutate(rng: random.Random) -> str:
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    keys = list(cfg)
    rng.shuffle(keys)
    cfg = {k: cfg[k] for k in keys}
    kind = rng.randrange(6)
    sec = rng.choice([k for k in cfg if isinstance(cfg[k], dict)])
    if kind == 0:  # a wrong-typed value
        key = rng.choice(list(cfg[sec]))
        cfg[sec][key] = rng.choice(VALUES)
    elif kind == 1:  # a misspelt key
        key = rng.choice(list(cfg[sec]))
        i = rng.randrange(len(key))
        cfg[sec][key[:i] + key[i + 1 :]] = cfg[sec].pop(key)
    elif kind == 2:  # a misspelt or wrong-typed section
        cfg[sec + rng.choice(["s", "_", ""])] = cfg.pop(sec) if rng.random() < 0.5 else rng.choice(VALUES)
    text = yaml.safe_dump(cfg, sort_keys=False)
    if kind == 3:  # truncated anywhere
        text = text[: rng.randrange(len(text) + 1)]
    elif kind == 4:  # stray characters
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(text) + 1)
            text = text[:i] + rng.choice(CHARS) + text[i:]
    elif kind == 5:  # lines dropped or swapped
        lines = text.splitlines()
        if rng.random() < 0.5:
            del lines[rng.randrange(len(lines))]
        else:
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        text = "\n".join(lines)
    return text


@pytest.fixture
def no_hang():
    def _raise(*_):
        raise TimeoutError("a config took more than 10 s to check")

    old = signal.signal(signal.SIGALRM, _raise)
    yield lambda: signal.alarm(10)
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_fuzzed_configs_give_a_clear_error_or_a_valid_config(tmp_path, no_hang):
    rng = random.Random(2021)
    path = tmp_path / "run.yaml"
    outcomes = {"valid": 0, "error": 0}
    for case in range(N_CASES):
        text = _mutate(rng)
        path.write_text(text)
        no_hang()
        try:
            cfg = load_config(path)
        except ConfigError as e:
            outcomes["error"] += 1
            msg = str(e)
            assert str(path) in msg, f"case {case}: the message does not name the file: {msg}\n{text}"
            assert "Traceback" not in msg
        else:
            outcomes["valid"] += 1
            assert isinstance(cfg, dict) and set(cfg) <= set(SECTIONS), f"case {case}: {cfg!r}"
        assert path.read_text() == text  # never rewritten
    assert outcomes["error"] > N_CASES // 3 and outcomes["valid"] > 10, outcomes  # the generator covers both


def test_fuzzed_configs_through_the_command(tmp_path, capsys, no_hang):
    """The command turns every bad config into one line on stderr and exit status 2, before touching the data."""
    rng = random.Random(7)
    path = tmp_path / "run.yaml"
    for _ in range(60):
        text = _mutate(rng)
        path.write_text(text)
        no_hang()
        code = main(["evaluate", "--data", str(tmp_path / "missing.zarr"), "--config", str(path)])
        err = capsys.readouterr().err
        assert code == 2
        assert err.startswith("genedml evaluate: error: ") and err.count("\n") == 1, err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]
