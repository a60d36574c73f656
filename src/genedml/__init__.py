"""genedml: predict spatial gene expression from H&E histology with Gene-DML, on SpatialData.

``import genedml as gd`` loads the light namespaces eagerly (``io``, ``pp``, ``features``, ``tl``, ``pl``, ``datasets``,
``metrics``, ``settings``); the torch-backed ``models``, ``encoders`` and ``dataloaders`` load on first use, so
importing the package never imports torch, timm, lightning or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import datasets, features, io, metrics, pl, pp, tl
from ._settings import settings
from ._version import __version__

_LAZY_SUBMODULES = ("models", "encoders", "dataloaders")

__all__ = ["datasets", "features", "io", "metrics", "pl", "pp", "settings", "tl", "__version__", *_LAZY_SUBMODULES]

if TYPE_CHECKING:  # pragma: no cover
    from . import dataloaders, encoders, models  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'genedml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
