"""The ``genedml`` command line (demo, fit, predict, predict-slides, evaluate, cv): a thin layer over the API."""

from ._main import main

__all__ = ["main"]
