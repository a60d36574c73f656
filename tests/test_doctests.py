"""The Examples sections of the API docstrings run and print what they show (the API reference promises this)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import genedml

SRC = Path(genedml.__file__).parent


def _has_examples(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    path = SRC / rel / "__init__.py" if (SRC / rel).is_dir() else (SRC / rel).with_suffix(".py")
    return ">>> " in path.read_text(encoding="utf-8")


# modules whose source shows examples (found without importing them, so collection stays fast)
MODULES = sorted(m.name for m in pkgutil.walk_packages(genedml.__path__, prefix="genedml.") if _has_examples(m.name))


def _doctests(name: str) -> list[doctest.DocTest]:
    module = importlib.import_module(name)
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    # only the module's own objects (re-exports are tested where they are defined)
    return [t for t in tests if t.examples and (t.filename or "").endswith(module.__file__.rsplit("/", 1)[-1])]


def test_the_public_api_has_examples():
    n = sum(len(_doctests(m)) for m in MODULES)
    assert n >= 40, f"only {n} docstrings with examples"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    tests = _doctests(name)
    assert tests, f"{name} shows examples but no docstring holds them"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    res = runner.summarize(verbose=False)
    assert res.failed == 0, f"{res.failed} of {res.attempted} examples in {name} failed (output above)"
