"""Provenance records in ``uns``: one plain form that survives h5ad/zarr round trips and compares reliably.

AnnData writers store a list as an array and a tuple as a list, and readers hand back NumPy arrays and NumPy
scalars; comparing such a record with a freshly built one (``dict != dict``) then either raises ("truth value of an
array is ambiguous") or says "different" for equal contents. :func:`plain` maps both sides onto the same Python
form; :func:`records_equal` compares two records through it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["plain", "plain_uns", "records_equal"]


def plain(obj: Any) -> Any:
    """Plain Python form of a record: dicts (string keys), lists, str, int, float, bool, ``None``.

    NumPy arrays become (nested) lists, NumPy scalars Python scalars, tuples lists. Anything else (a DataFrame, for
    instance) is returned as it is.
    """
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        if obj.ndim == 0:
            return plain(obj.item())
        return [plain(v) for v in obj.tolist()]
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bytes):
        return obj.decode()
    return obj


def plain_uns(record: Any) -> Any:
    """Normalise a record read from disk in place where it is a dict (so the table keeps one object)."""
    if not isinstance(record, dict):
        return plain(record)
    for key in list(record):
        record[key] = plain_uns(record[key]) if isinstance(record[key], dict) else plain(record[key])
    return record


def records_equal(a: Any, b: Any) -> bool:
    """Whether two records hold the same contents, whatever containers a round trip gave them (NaN equals NaN)."""
    return _equal(plain(a), plain(b))


def _equal(a: Any, b: Any) -> bool:
    if hasattr(a, "to_dict") and hasattr(b, "to_dict") and hasattr(a, "columns") and hasattr(b, "columns"):
        # DataFrames: same labels and values (a RangeIndex read back as an integer Index is the same index)
        return _equal(plain(a.to_dict("split")), plain(b.to_dict("split")))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False
