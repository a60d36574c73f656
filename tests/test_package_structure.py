"""Package-wide conventions: light import, lazy heavy modules, signatures (scanpy's test_sig_conventions style)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import genedml as gd

HEAVY = ("torch", "timm", "lightning", "matplotlib", "scanpy", "squidpy")

# Public functions that are getters or readers, not "data object first" transforms (named, with the reason).
SIG_EXCEPTIONS = {
    "predict",  # gd.tl.predict(sdata, model): the model is the second positional (issue 4's API)
    "calibrate",  # gd.tl.calibrate(sdata, model): like predict, the model is the second positional (issue 14)
    "get_predicted",  # accepts SpatialData or AnnData; a getter (house-style output contract)
    "load_features",  # a getter
}


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_does_not_load_heavy_modules():
    loaded = _run(
        "import sys, genedml; print(','.join(m for m in %r if m in sys.modules))" % (HEAVY,)  # noqa: UP031
    )
    assert loaded == "", f"`import genedml` imported {loaded}"


def test_import_time_is_small():
    # median of 3 fresh interpreters; generous bound (shared CI machine), the measured value is ~0.5 s
    times = sorted(
        float(_run("import time; t=time.perf_counter(); import genedml; print(time.perf_counter()-t)"))
        for _ in range(3)
    )
    assert times[1] < 3.0, f"import genedml took {times[1]:.2f} s"


def test_namespaces_and_lazy_modules():
    for name in ("io", "pp", "tl", "pl", "datasets", "metrics", "settings"):
        assert name in gd.__all__ and hasattr(gd, name)
    code = "import sys, genedml as gd; m = gd.models; print('torch' in sys.modules, m.__name__)"
    assert _run(code) == "True genedml.models"
    with pytest.raises(AttributeError, match="no attribute"):
        gd.not_a_module  # noqa: B018


@pytest.mark.parametrize("ns", ["io", "pp", "tl", "pl", "datasets", "metrics"])
def test_all_names_resolve(ns):
    mod = getattr(gd, ns)
    for name in mod.__all__:
        assert hasattr(mod, name), f"gd.{ns}.__all__ lists {name!r} but it is missing"


def _public_functions(ns):
    mod = getattr(gd, ns)
    for name in mod.__all__:
        obj = getattr(mod, name)
        if inspect.isfunction(obj):
            yield name, obj


@pytest.mark.parametrize("ns", ["pp", "tl", "pl"])
def test_signature_conventions(ns):
    """Data object first and the only positional parameter; every option keyword-only; `copy` defaults False."""
    checked = 0
    for name, func in _public_functions(ns):
        if name in SIG_EXCEPTIONS:
            continue
        params = list(inspect.signature(func).parameters.values())
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        assert len(positional) == 1, f"gd.{ns}.{name}: {len(positional)} positional parameters, expected 1"
        assert positional[0].name in {"sdata", "adata", "data"}, f"gd.{ns}.{name}: first parameter {positional[0].name}"
        for p in params[1:]:
            assert p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD), f"gd.{ns}.{name}: {p.name} is not keyword-only"
        if "copy" in inspect.signature(func).parameters:
            assert inspect.signature(func).parameters["copy"].default is False
        assert func.__doc__, f"gd.{ns}.{name} has no docstring"
        checked += 1
    if ns in ("pp", "tl"):
        assert checked > 0


def test_import_contracts():
    """The layer contracts in pyproject.toml hold (import-linter)."""
    import shutil
    from pathlib import Path

    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    root = Path(__file__).resolve().parents[1]
    res = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr
