"""On-disk feature cache of :func:`genedml.tl.embed`.

One entry per (section image, scale, augmentation variant), named by a hash of everything that changes its
content. Entries and the partial results of an unfinished computation (*parts*) are ``.npz`` files written to a
temporary sibling and renamed into place, so a killed run never leaves a file that could be read as complete; a
file that fails to load is treated as missing and removed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._logging import logger
from .._utils import atomic_path

__all__ = ["CACHE_VERSION", "FeatureCache", "hash_array", "hash_key"]

CACHE_VERSION = 1
_META = "__meta__"


def hash_key(parts: dict[str, Any]) -> str:
    """Stable hex id of a JSON-serialisable dict (sorted keys, version included)."""
    blob = json.dumps({"cache_version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


def hash_array(arr: np.ndarray) -> str:
    """Hex sha256 of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(arr)
    h = hashlib.sha256(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


class FeatureCache:
    """Content-addressed ``.npz`` store under ``root``; ``enabled=False`` turns every call into a no-op miss."""

    def __init__(self, root: str | os.PathLike, *, enabled: bool = True) -> None:
        self.root = Path(root)
        self.enabled = enabled

    # ------------------------------------------------------------------ paths
    def path(self, key: str) -> Path:
        """File of a complete entry."""
        return self.root / key[:2] / f"{key}.npz"

    def part_path(self, key: str, start: int, stop: int) -> Path:
        """File of the finished part ``[start, stop)`` of an entry under computation."""
        return self.root / key[:2] / "parts" / f"{key}.{start}-{stop}.npz"

    # ------------------------------------------------------------------ entries
    def has(self, key: str) -> bool:
        """Whether a complete entry exists (without reading it)."""
        return self.enabled and self.path(key).is_file()

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """Arrays of a complete entry, or ``None`` when absent or unreadable."""
        if not self.enabled:
            return None
        return _read(self.path(key), key)

    def save(self, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None) -> None:
        """Write a complete entry atomically and drop its parts."""
        if not self.enabled:
            return
        _write(self.path(key), key, arrays, meta)
        self.clear_parts(key)

    # ------------------------------------------------------------------ parts (resume)
    def load_part(self, key: str, start: int, stop: int) -> dict[str, np.ndarray] | None:
        """A finished part, or ``None``; a part whose arrays do not hold ``stop - start`` rows is discarded."""
        if not self.enabled:
            return None
        path = self.part_path(key, start, stop)
        arrays = _read(path, key)
        if arrays is not None and any(len(v) != stop - start for v in arrays.values()):
            logger.warning("discarding feature-cache part %s: wrong number of rows.", path.name)
            path.unlink(missing_ok=True)
            return None
        return arrays

    def save_part(self, key: str, start: int, stop: int, arrays: dict[str, np.ndarray]) -> None:
        """Write a finished part atomically."""
        if self.enabled:
            _write(self.part_path(key, start, stop), key, arrays, {"start": start, "stop": stop})

    def clear_parts(self, key: str) -> None:
        """Remove every part of ``key``."""
        folder = self.root / key[:2] / "parts"
        if folder.is_dir():
            for p in folder.glob(f"{key}.*.npz"):
                p.unlink(missing_ok=True)


def _write(path: Path, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None) -> None:
    payload = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    payload[_META] = np.array(json.dumps({"key": key, **(meta or {})}, default=str))
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:  # name the cache folder the user chose, not our temporary file
        root = path.parents[2] if path.parent.name == "parts" else path.parents[1]
        raise OSError(
            err.errno,
            f"cannot write the feature cache in {str(root)!r} (`gd.settings.cachedir`): {err.strerror or err}. "
            "Point `gd.settings.cachedir` to a writable folder with free space, or pass `cache=False`.",
        ) from None


def _read(path: Path, key: str) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:  # own handle: closed even if np.load fails
            meta = json.loads(str(z[_META])) if _META in z.files else {}
            if meta.get("key") != key:
                raise ValueError(f"entry key {meta.get('key')!r} does not match the file name")
            return {k: z[k] for k in z.files if k != _META}
    except Exception as err:
        logger.warning("discarding unreadable feature-cache file %s (%s: %s).", path, type(err).__name__, err)
        path.unlink(missing_ok=True)
        return None
