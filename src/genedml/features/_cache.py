"""On-disk feature cache of :func:`genedml.tl.embed`.

One entry per (section image, scale, augmentation variant), named by a hash of everything that changes its
content. A complete entry is a folder of ``.npy`` arrays plus ``meta.json``, written to a temporary sibling folder and
renamed into place, so a killed run never leaves an entry that could be read as complete; its arrays are opened
memory-mapped, so readers gather the rows of one batch without loading the entry. The partial results of an
unfinished computation (*parts*, for resuming) are ``.npz`` files written the same way. An entry that fails to load is
treated as missing and removed.

Entries of older cache versions (``.npz`` files beside the folders) are never read: their keys differ, because the
version is part of every key.
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

CACHE_VERSION = 2
_META = "__meta__"
_META_FILE = "meta.json"


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
    """Content-addressed store of feature entries under ``root``; ``enabled=False`` turns every read into a miss."""

    def __init__(self, root: str | os.PathLike, *, enabled: bool = True) -> None:
        self.root = Path(root)
        self.enabled = enabled

    # ------------------------------------------------------------------ paths
    def path(self, key: str) -> Path:
        """Folder of a complete entry."""
        return self.root / key[:2] / key

    def part_path(self, key: str, start: int, stop: int) -> Path:
        """File of the finished part ``[start, stop)`` of an entry under computation."""
        return self.root / key[:2] / "parts" / f"{key}.{start}-{stop}.npz"

    # ------------------------------------------------------------------ entries
    def has(self, key: str) -> bool:
        """Whether a complete entry exists (without reading it)."""
        return self.enabled and (self.path(key) / _META_FILE).is_file()

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """Arrays of a complete entry (read-only memory maps), or ``None`` when absent or unreadable."""
        if not self.enabled:
            return None
        return _read_entry(self.path(key), key)

    def save(
        self, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None = None
    ) -> dict[str, np.ndarray]:
        """Write a complete entry atomically, drop its parts, and return it opened memory-mapped."""
        path = self.path(key)
        _write_entry(path, key, arrays, meta, root=self.root)
        self.clear_parts(key)
        out = _read_entry(path, key)
        if out is None:  # pragma: no cover - written a moment ago
            raise OSError(f"the feature store entry {path} could not be read back.")
        return out

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


def _write_entry(path: Path, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None, *, root) -> None:
    """A folder of ``.npy`` files and ``meta.json``, built beside ``path`` and renamed into place."""
    import shutil
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=path.parent))
        try:
            digests = {}
            for name, arr in arrays.items():
                with open(tmp / f"{name}.npy", "wb") as fh:
                    np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
                    fh.flush()
                    os.fsync(fh.fileno())
                digests[name] = _file_sha256(tmp / f"{name}.npy")
            shapes = {k: list(np.shape(v)) for k, v in arrays.items()}
            record = {"key": key, "arrays": shapes, "sha256": digests, **(meta or {})}
            (tmp / _META_FILE).write_text(json.dumps(record, default=str))
            if path.exists():  # a concurrent writer finished first: same content by construction
                shutil.rmtree(tmp, ignore_errors=True)
                return
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    except OSError as err:
        raise _cache_error(err, root) from None


def _read_entry(path: Path, key: str) -> dict[str, np.ndarray] | None:
    meta_file = path / _META_FILE
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("key") != key:
            raise ValueError(f"entry key {meta.get('key')!r} does not match the folder name")
        out = {}
        _verify_once(path, meta)
        for name, shape in meta["arrays"].items():
            arr = np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            if list(arr.shape) != list(shape):
                raise ValueError(f"array {name!r} has shape {arr.shape}, expected {tuple(shape)}")
            out[name] = arr
        return out
    except Exception as err:
        import shutil

        logger.warning("discarding unreadable feature-store entry %s (%s: %s).", path, type(err).__name__, err)
        shutil.rmtree(path, ignore_errors=True)
        return None


_VERIFIED: set[tuple] = set()


def _verify_once(path: Path, meta: dict) -> None:
    """Check each array file's sha256 against ``meta.json`` once per process (and again if a file changes).

    A memory map would otherwise read a flipped byte as a valid number; the check streams the files at disk speed
    (and warms the page cache that the batches read from afterwards).
    """
    for name, digest in meta.get("sha256", {}).items():
        f = path / f"{name}.npy"
        st = f.stat()
        memo = (str(f), st.st_size, st.st_mtime_ns)
        if memo in _VERIFIED:
            continue
        if _file_sha256(f) != digest:
            raise ValueError(f"array {name!r} does not match its recorded sha256")
        _VERIFIED.add(memo)


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _cache_error(err: OSError, root) -> OSError:
    """Name the store folder the user chose, not our temporary file."""
    return OSError(
        err.errno,
        f"cannot write the feature store in {str(root)!r} (`gd.settings.cachedir`): {err.strerror or err}. "
        "Point `gd.settings.cachedir` to a writable folder with free space (`cache=False` writes to the system's "
        "temporary folder instead).",
    )


def _write(path: Path, key: str, arrays: dict[str, np.ndarray], meta: dict[str, Any] | None) -> None:
    payload = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    payload[_META] = np.array(json.dumps({"key": key, **(meta or {})}, default=str))
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        raise _cache_error(err, path.parents[2]) from None


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
