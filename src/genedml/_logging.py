"""The ``"genedml"`` logger, levelled by ``gd.settings.verbosity``."""

from __future__ import annotations

import logging

from ._settings import _LEVELS, settings

__all__ = ["logger"]

logger = logging.getLogger("genedml")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(levelname)s genedml: %(message)s"))
    logger.addHandler(_handler)
logger.setLevel(_LEVELS[settings.verbosity])
logger.propagate = False
