"""Plotting: ``gd.pl`` (matplotlib is imported inside each function)."""

from ._spots import spots

__all__ = ["spots"]
