"""Sphinx configuration of the genedml documentation.

The build runs offline (``sphinx-build -W``, see ``tests/test_docs.py``): intersphinx inventories are only fetched
when ``GENEDML_DOCS_ONLINE=1``. The API pages are generated from each namespace's ``__all__`` at build time: a page
``api/<name>.md`` holds a marker line ``<!-- autosummary: genedml.<ns> -->`` that is replaced by an autosummary table
of every public name, and the stubs go to ``api/generated/`` (a build product, not committed). The tutorial list on
``tutorials.md`` is generated the same way from ``notebooks/*.ipynb``.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import traceback
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))  # the checkout's package wins over an installed copy

# Before anything imports huggingface_hub (timm does): never reach for the network while documenting.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

ONLINE = os.environ.get("GENEDML_DOCS_ONLINE", "") == "1"

# -- project -------------------------------------------------------------------------------------------------------

project = "genedml"
author = "genedml developers"
copyright = f"{date.today().year}, {author}"
try:
    import genedml

    release = genedml.__version__
except Exception:
    release = "unknown"
version = release

# -- extensions ----------------------------------------------------------------------------------------------------

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints", "api/generated/_*"]
root_doc = "index"

# MyST / MyST-NB: Markdown pages and notebooks committed with their outputs (the test suite executes them).
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "amsmath"]
myst_heading_anchors = 3
nb_execution_mode = "off"
nb_merge_streams = True

# autodoc / autosummary / napoleon: numpydoc docstrings, types only in the signature.
autosummary_generate = ["api/generated/_scan.rst"]
autosummary_generate_overwrite = True
autosummary_imported_members = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = False  # show values ("counts"), not the names of constants (Keys.counts)
autodoc_inherit_docstrings = False  # Lightning/torch docstrings (Google style) are not ours to build
add_module_names = False
default_role = "py:obj"  # `genedml.tl.fit` in a docstring links when it resolves, else renders as code
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# Parameters as one field list: entries that document several names at once ("lr, step_size, gamma") stay one item.
napoleon_use_param = False
# House style writes Returns/Yields as free text without types; napoleon's numpy parser would read every line as a
# separate "type" entry and split sentences into bullets. As generic sections they render as written.
# "Attributes" as a field list like Parameters: no `.. attribute::` entries that would duplicate documented
# properties, and grouped names render as written.
napoleon_custom_sections = ["Returns", "Yields", ("Attributes", "params_style")]

# References to other projects' types cannot be resolved offline; they render as text instead of warning.
nitpicky = False
# timm is not in the list: its documentation (Hugging Face doc-builder) publishes no Sphinx inventory.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}
if ONLINE:
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "spatialdata": ("https://spatialdata.scverse.org/en/stable/", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
        "lightning": ("https://lightning.ai/docs/pytorch/stable/", None),
        "distributed": ("https://distributed.dask.org/en/stable/", None),
    }
intersphinx_timeout = 10

# -- HTML ----------------------------------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = "genedml"
html_theme_options = {"show_toc_level": 2}
html_static_path: list[str] = []

# -- generated API lists -------------------------------------------------------------------------------------------

#: Namespaces with an API page section, in the order of the API index. ``settings`` is an object, not a module:
#: ``api/settings.md`` documents its class by hand.
NAMESPACES = (
    "io",
    "datasets",
    "pp",
    "features",
    "tl",
    "pl",
    "metrics",
    "models",
    "models.nn",
    "models.train",
    "encoders",
    "dataloaders",
)
GENERATED = HERE / "api" / "generated"
MARKER = re.compile(r"^<!--\s*autosummary:\s*(genedml[\w.]*)\s*-->\s*$", re.MULTILINE)
TUTORIALS_MARKER = re.compile(r"^<!--\s*tutorials\s*-->\s*$", re.MULTILINE)

_import_errors: dict[str, str] = {}


def public_names(module: str) -> list[str]:
    """``__all__`` of ``module`` in its own order (an empty list, recorded as a build warning, if it fails)."""
    try:
        mod = importlib.import_module(module)
    except Exception:
        _import_errors[module] = traceback.format_exc(limit=-3)
        return []
    names = list(getattr(mod, "__all__", []))
    missing = [n for n in names if not hasattr(mod, n)]
    if missing:
        _import_errors[module] = f"__all__ lists names the module lacks: {missing}"
    return [n for n in names if hasattr(mod, n)]


def autosummary_rst(module: str, *, toctree: str) -> str:
    """An autosummary block (reStructuredText) of every public name of ``module``."""
    names = public_names(module)
    if not names:
        return f".. currentmodule:: {module}\n\n*(no public names yet)*\n"
    body = "\n".join(f"   {n}" for n in names)
    return f".. currentmodule:: {module}\n\n.. autosummary::\n   :toctree: {toctree}\n   :nosignatures:\n\n{body}\n"


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _write_scan_file() -> None:
    """One file listing every namespace for autosummary's stub generation; remove stubs of removed names."""
    GENERATED.mkdir(parents=True, exist_ok=True)
    modules = [f"genedml.{ns}" for ns in NAMESPACES]
    blocks = [autosummary_rst(m, toctree=".") for m in modules]
    _write_if_changed(GENERATED / "_scan.rst", "\n".join(blocks))
    wanted = {f"{m}.{n}.rst" for m in modules for n in public_names(m)}
    for stub in GENERATED.glob("genedml.*.rst"):
        if stub.name not in wanted:
            stub.unlink()


def _tutorials_block() -> str:
    notebooks = sorted((HERE / "notebooks").glob("*.ipynb"))
    if not notebooks:
        return "*The tutorial notebooks are being written.*\n"  # TODO: remove once docs/notebooks/ has notebooks
    entries = "\n".join(f"notebooks/{nb.stem}" for nb in notebooks)
    return f"```{{toctree}}\n:maxdepth: 1\n\n{entries}\n```\n"


def _expand_markers(app, docname: str, source: list[str]) -> None:
    text = source[0]
    text = MARKER.sub(lambda m: f"```{{eval-rst}}\n{autosummary_rst(m.group(1), toctree='generated')}```", text)
    if docname == "tutorials":
        text = TUTORIALS_MARKER.sub(lambda m: _tutorials_block(), text)
    source[0] = text


def _generated_pages(app, env, added, changed, removed) -> list[str]:
    """Pages whose content is generated at build time are re-read on every build (their lists may have changed)."""
    pages = []
    for path in HERE.rglob("*.md"):
        text = path.read_text(encoding="utf-8")
        if MARKER.search(text) or TUTORIALS_MARKER.search(text):
            pages.append(path.relative_to(HERE).with_suffix("").as_posix())
    return [p for p in pages if p in env.found_docs]


def _data_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """Docs of a re-exported constant: its ``#:`` comment or string in the defining module, not ``dict.__doc__``.

    autodoc looks for an attribute docstring only in the module named in the page (``genedml.models``), and falls
    back to the docstring of the value's type, which for a dict or tuple is Python's own (and not valid RST).
    """
    if what != "data" or "\n".join(lines).strip() != (type(obj).__doc__ or "").strip():
        return
    from sphinx.pycode import ModuleAnalyzer

    attr = name.rsplit(".", 1)[-1]
    lines.clear()
    for modname, mod in list(sys.modules.items()):
        if not modname.startswith("genedml.") or getattr(mod, attr, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(modname).find_attr_docs()
        except Exception:
            continue
        if ("", attr) in docs:
            lines.extend(docs["", attr])
            return


def _report_import_errors(app) -> None:
    from sphinx.util import logging

    log = logging.getLogger("genedml.docs")
    for module, err in _import_errors.items():
        log.warning("genedml docs: cannot list the API of %s:\n%s", module, err)


_write_scan_file()


def setup(app):
    """Register the marker expansion and report namespaces that failed to import."""
    app.connect("source-read", _expand_markers)
    app.connect("builder-inited", _report_import_errors)
    app.connect("env-get-outdated", _generated_pages)
    app.connect("autodoc-process-docstring", _data_docstring)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
