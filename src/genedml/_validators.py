"""Named argument checks whose messages name the argument and what was expected."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable
from typing import Any, TypeVar

__all__ = [
    "RENAMED_KEYWORDS",
    "UnknownKeywordError",
    "assert_in_range",
    "assert_key_in_sdata",
    "assert_keys_in",
    "assert_one_of",
    "assert_positive_int",
    "did_you_mean",
    "refuse_renamed",
    "rename_legacy_keys",
    "renamed_hint",
    "unknown_keys_error",
]

#: Keywords renamed before the first release, old spelling → new. The old spelling is an error that names the new one
#: (no silent alias); only records written by earlier versions are read with the old spelling mapped.
RENAMED_KEYWORDS = {"n_genes": "n_top_genes"}  # how many top genes to select: scanpy's and `select_genes`' name

_F = TypeVar("_F", bound=Callable[..., Any])


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


class UnknownKeywordError(TypeError, ValueError):
    """An unknown keyword argument (a ``TypeError`` as Python raises, and a ``ValueError`` like genedml's checks)."""


def renamed_hint(name: str, known: Collection[str]) -> str | None:
    """The "did you mean" of a renamed keyword (its new name, and that it was renamed), or None if not applicable."""
    new = RENAMED_KEYWORDS.get(name)
    if new is None or new not in known:
        return None
    return f" (did you mean {new!r}? `{name}` was renamed to `{new}`, the name scanpy and `select_genes` use)"


def did_you_mean(name: str, known: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for a renamed keyword's new name or the closest of ``known``, or an empty string."""
    import difflib

    renamed = renamed_hint(name, known)
    if renamed is not None:
        return renamed
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_keys_error(unknown: list[str], known: list[str], *, where: str) -> UnknownKeywordError:
    """An error naming unknown keyword arguments, with a "did you mean" for each renamed keyword or close match."""
    hints = [f"{k!r}{did_you_mean(k, known)}" for k in unknown]
    return UnknownKeywordError(f"{where}: unknown keyword argument(s) {', '.join(hints)}; known: {sorted(set(known))}.")


def refuse_renamed(func: _F) -> _F:
    """Decorate ``func`` so that a renamed keyword (e.g. ``n_genes=``) raises `UnknownKeywordError` naming the new one.

    Python's own error ("unexpected keyword argument") would not say what the keyword is called now. The signature
    (and hence docs and the CLI schema) stays that of ``func``.
    """
    import inspect

    params = [p for p in inspect.signature(func).parameters if p != "self"]
    where = func.__qualname__.replace(".__init__", "")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        old = sorted(k for k in kwargs if k in RENAMED_KEYWORDS and k not in params)
        if old:
            raise unknown_keys_error(old, params, where=where)
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def rename_legacy_keys(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of a record written by an earlier version with renamed keys under their new names.

    A record holding both spellings keeps the new one.
    """
    out = dict(record)
    for old, new in RENAMED_KEYWORDS.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)
    return out
