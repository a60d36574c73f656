"""Shared numpydoc snippets and the decorator that injects them (``{placeholder}`` → text)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["DOC", "inject_docs"]

F = TypeVar("F", bound=Callable)

DOC = {
    "sdata": "sdata\n        A SpatialData object in genedml's data model (see :func:`genedml.io.validate`).",
    "table_key": "table_key\n        Table annotating the spots; defaults to ``'table'``.",
    "copy": "copy\n        Return a modified copy instead of changing ``sdata`` in place.",
    "progress": "progress\n        Show a progress bar; ``None`` follows ``gd.settings.progress_bar``.",
    "seed": "seed\n        Random seed; ``None`` uses ``gd.settings.seed``.",
    "sections": "sections\n        Section names to use; ``None`` means all sections.",
}


def inject_docs(**extra: str) -> Callable[[F], F]:
    """Fill ``{name}`` placeholders of a docstring from :data:`DOC` and ``extra``."""

    def decorator(func: F) -> F:
        if func.__doc__:
            func.__doc__ = func.__doc__.format(**{**DOC, **extra})
        return func

    return decorator
