"""Named argument checks whose messages name the argument and what was expected."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

__all__ = ["assert_in_range", "assert_key_in_sdata", "assert_keys_in", "assert_one_of", "assert_positive_int"]


def assert_one_of(value: Any, options: Collection, *, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``options``."""
    if value not in options:
        raise ValueError(f"`{name}` must be one of {sorted(map(str, options))}, got {value!r}.")


def assert_in_range(
    value: float, *, name: str, low: float | None = None, high: float | None = None, inclusive: bool = True
) -> None:
    """Raise ``ValueError`` unless ``low <= value <= high`` (``<`` when not ``inclusive``)."""
    import numbers

    if not isinstance(value, numbers.Real) or isinstance(value, bool) or value != value:
        raise ValueError(f"`{name}` must be a number, got {value!r}.")
    lo_ok = low is None or (value >= low if inclusive else value > low)
    hi_ok = high is None or (value <= high if inclusive else value < high)
    if not (lo_ok and hi_ok):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        brackets = "[]" if inclusive else "()"
        raise ValueError(f"`{name}` must lie in {brackets[0]}{lo}, {hi}{brackets[1]}, got {value!r}.")


def assert_positive_int(value: Any, *, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` is an int > 0."""
    import numbers

    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")


def assert_keys_in(keys: Iterable[str], container: Collection[str], *, name: str, where: str) -> None:
    """Raise ``KeyError`` listing every key of ``keys`` missing from ``container``."""
    missing = [k for k in keys if k not in container]
    if missing:
        shown = ", ".join(map(repr, missing[:10])) + (" …" if len(missing) > 10 else "")
        raise KeyError(f"`{name}`: {len(missing)} key(s) not found in {where}: {shown}.")


def assert_key_in_sdata(sdata: Any, key: str, *, attr: str, name: str) -> None:
    """Raise ``KeyError`` unless ``sdata.<attr>`` (``images``, ``shapes``, ``tables`` …) holds ``key``."""
    elements = getattr(sdata, attr)
    if key not in elements:
        raise KeyError(f"`{name}`={key!r} is not in `sdata.{attr}` (available: {sorted(elements.keys())}).")
