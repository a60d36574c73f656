"""Package-wide conventions: light import, lazy heavy modules, signatures (scanpy's test_sig_conventions style)."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import genedml as gd

HEAVY = ("torch", "timm", "lightning", "matplotlib", "scanpy", "squidpy")

# Public functions that are getters or readers, not "data object first" transforms (named, with the reason).
SIG_EXCEPTIONS = {
    "predict",  # gd.tl.predict(sdata, model): the model is the second positional (issue 4's API)
    "calibrate",  # gd.tl.calibrate(sdata, model): like predict, the model is the second positional (issue 14)
    "predict_slides",  # gd.tl.predict_slides(paths, model): slide files, not a data object, then the model (issue 13)
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


# ---------------------------------------------------------------------------------------- private imports

SRC = Path(gd.__file__).resolve().parent


def _module_parts(path: Path, src: Path) -> tuple[list[str], bool]:
    """``["genedml", "io", "_model"]`` for ``io/_model.py``; the flag: the file is a package ``__init__``."""
    parts = ["genedml", *path.relative_to(src).with_suffix("").parts]
    if parts[-1] == "__init__":
        return parts[:-1], True
    return parts, False


def _package_of(parts: list[str], is_init: bool) -> str | None:
    """The direct subpackage of genedml a module belongs to (``io``, ``models`` …); ``None`` for a core module."""
    inside = parts[1:] if is_init else parts[1:-1]
    return inside[0] if inside else None


def _imports(tree: ast.AST, parts: list[str], is_init: bool):
    """``(line, target module parts, imported name or None)`` for every genedml import, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "genedml":
                    yield node.lineno, alias.name.split("."), None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts if is_init else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "genedml":
                target = node.module.split(".")
            else:
                continue
            for alias in node.names:
                yield node.lineno, target, alias.name


def _is_core(name: str, src: Path) -> bool:
    return (src / f"{name}.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports_across_packages(src: Path = SRC) -> list[str]:
    """Imports of another package's private module or name: ``from ..pp._normalize import x``, ``from ..io import _y``.

    Packages are the direct subpackages of genedml (io, pp, features, tl, pl, models, encoders, dataloaders,
    datasets, metrics, _cli); inside one package, subpackages included, private imports are fine. Top-level core
    modules (``genedml/_keys.py``, ``genedml/_data_model.py`` …) are shared by all, private names included.
    Imports inside functions and under ``TYPE_CHECKING`` count.
    """
    found = []
    for path in sorted(src.rglob("*.py")):
        parts, is_init = _module_parts(path, src)
        own = _package_of(parts, is_init)
        for line, target, name in _imports(ast.parse(path.read_text(encoding="utf-8")), parts, is_init):
            if len(target) == 1:  # `from genedml import x`: a core module or a package, else a private name
                bad = name is not None and _private(name) and not _is_core(name, src)
            elif _is_core(target[1], src) or target[1] == own:
                bad = False
            else:
                bad = any(map(_private, target[2:])) or (name is not None and _private(name))
            if bad:
                what = ".".join(target) + ("" if name is None else f" import {name}")
                found.append(f"{path.relative_to(src.parent)}:{line}: {what}")
    return found


def test_no_private_imports_across_packages():
    found = private_imports_across_packages()
    assert not found, (
        "modules import another package's private modules or names (move shared internals to a core module "
        "genedml/_x.py, or export the name from the owning package's __init__):\n" + "\n".join(found)
    )


def test_private_import_check_catches_each_form(tmp_path):
    """The checker sees relative, absolute, in-function and `from pkg import _mod` forms; own-package and core
    imports pass."""
    root = tmp_path / "genedml"
    files = {
        "__init__.py": "",
        "_core.py": "",
        "io/__init__.py": "from ._model import get_table\n",  # own package: fine
        "io/_model.py": "from .._core import _helper\n",  # core module, private name: fine
        "pp/__init__.py": "",
        "pp/_a.py": "from ..io._model import get_table\n",  # another package's private module
        "pp/_b.py": "def f():\n    from genedml.io import _model\n",  # a private submodule by name, in a function
        "pp/_c.py": "import genedml.io._model\n",  # absolute `import`
        "pp/_d.py": "from ..io import get_table\nfrom . import _a\n",  # public name; own package: fine
        "models/__init__.py": "",
        "models/nn/__init__.py": "",
        "models/nn/_x.py": "from .._base import _B\n",  # models.nn -> models._base: same package, fine
        "models/_base.py": "from ..pp._a import _R\n",  # both private
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    found = private_imports_across_packages(root)
    assert [f.split(":")[0] for f in found] == [
        "genedml/models/_base.py",
        "genedml/pp/_a.py",
        "genedml/pp/_b.py",
        "genedml/pp/_c.py",
    ]
