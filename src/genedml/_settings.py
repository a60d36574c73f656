"""Global settings: ``gd.settings``."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings", "settings"]

_LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG}


def _default_datasetdir() -> Path:
    env = os.environ.get("GENEDML_DATASETDIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "genedml" / "datasets"


def _default_cachedir() -> Path:
    env = os.environ.get("GENEDML_CACHEDIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "genedml" / "features"


@dataclass
class Settings:
    """Package-wide settings with validated setters.

    Attributes
    ----------
    verbosity
        0 errors, 1 warnings (default), 2 info, 3 debug. Controls the ``"genedml"`` logger.
    datasetdir
        Where :mod:`genedml.datasets` caches downloads (env ``GENEDML_DATASETDIR``).
    cachedir
        Where :func:`genedml.tl.embed` keeps its on-disk feature cache (env ``GENEDML_CACHEDIR``).
    device
        ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    num_workers
        Background loader workers; ``0`` loads in the main process.
    seed
        Default random seed of stochastic steps (the paper's 2021).
    progress_bar
        Default for every ``progress=None`` argument.
    """

    _verbosity: int = 1
    _datasetdir: Path = field(default_factory=_default_datasetdir)
    _cachedir: Path = field(default_factory=_default_cachedir)
    _device: str = "auto"
    _num_workers: int = 0
    _seed: int = 2021
    _progress_bar: bool = True

    @property
    def verbosity(self) -> int:
        """Logging verbosity, 0–3."""
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value not in _LEVELS:
            raise ValueError(f"`verbosity` must be an int in 0..3 (0 errors … 3 debug), got {value!r}.")
        self._verbosity = value
        logging.getLogger("genedml").setLevel(_LEVELS[value])

    @property
    def datasetdir(self) -> Path:
        """Dataset download cache."""
        return self._datasetdir

    @datasetdir.setter
    def datasetdir(self, value: str | os.PathLike) -> None:
        self._datasetdir = _as_path(value, "datasetdir")

    @property
    def cachedir(self) -> Path:
        """Feature cache directory."""
        return self._cachedir

    @cachedir.setter
    def cachedir(self, value: str | os.PathLike) -> None:
        self._cachedir = _as_path(value, "cachedir")

    @property
    def device(self) -> str:
        """Compute device for encoders and models."""
        return self._device

    @device.setter
    def device(self, value: str) -> None:
        ok = isinstance(value, str) and (value in {"auto", "cpu", "cuda", "mps"} or value.startswith("cuda:"))
        if not ok:
            raise ValueError(f"`device` must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {value!r}.")
        self._device = value

    @property
    def num_workers(self) -> int:
        """Background loader workers."""
        return self._num_workers

    @num_workers.setter
    def num_workers(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"`num_workers` must be a non-negative int, got {value!r}.")
        self._num_workers = value

    @property
    def seed(self) -> int:
        """Default random seed."""
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"`seed` must be a non-negative int, got {value!r}.")
        self._seed = value

    @property
    def progress_bar(self) -> bool:
        """Show progress bars by default."""
        return self._progress_bar

    @progress_bar.setter
    def progress_bar(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError(f"`progress_bar` must be a bool, got {value!r}.")
        self._progress_bar = value

    def _cache_items(self) -> dict[str, list[Path]]:
        """What the feature store wrote under `cachedir`, nothing else in the folder.

        ``entries``: folders ``<2 hex>/<key>/`` with a ``meta.json``; ``parts``: ``<2 hex>/parts/*.npz`` of unfinished
        computations; ``stale``: ``.npz`` entries of older genedml versions and temporary folders left by a killed run.
        """
        root = self.cachedir
        if not root.is_dir():
            return {"entries": [], "parts": [], "stale": []}
        buckets = [d for d in root.glob("[0-9a-f][0-9a-f]") if d.is_dir()]
        entries = [m.parent for d in buckets for m in d.glob("*/meta.json")]
        parts = [p for d in buckets for p in d.glob("parts/*.npz")]
        stale = [p for d in buckets for p in d.glob("*.npz")] + [p for d in buckets for p in d.glob(".*") if p.is_dir()]
        return {"entries": entries, "parts": parts, "stale": stale}

    def cache_info(self) -> dict:
        """Folder, number of entries and size in bytes of the on-disk feature store.

        Returns
        -------
        ``{"path": Path, "entries": int, "parts": int, "stale": int, "bytes": int}`` (``stale``: files of older
        genedml versions and leftovers of killed runs, which are never read; ``clear_cache`` removes them).

        Examples
        --------
        >>> import genedml as gd
        >>> sorted(gd.settings.cache_info())
        ['bytes', 'entries', 'parts', 'path', 'stale']
        """
        items = self._cache_items()
        size = sum(_size(p) for group in items.values() for p in group)
        return {"path": self.cachedir, **{k: len(v) for k, v in items.items()}, "bytes": size}

    def clear_cache(self) -> int:
        """Delete everything the feature store wrote in `cachedir` (and nothing else); return the bytes freed.

        Features are recomputed by the next :func:`genedml.tl.embed` / :func:`genedml.tl.fit` that needs them. From
        the shell: ``genedml cache --clear``.

        Examples
        --------
        >>> import genedml as gd
        >>> gd.settings.clear_cache() >= 0
        True
        """
        import shutil

        freed = 0
        for group in self._cache_items().values():
            for p in group:
                freed += _size(p)
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        root = self.cachedir
        subdirs = [*root.glob("[0-9a-f][0-9a-f]/parts"), *root.glob("[0-9a-f][0-9a-f]")] if root.is_dir() else []
        for d in subdirs:  # parts folders first, then the two-letter folders, each only when empty
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        return freed

    def __repr__(self) -> str:
        names = ["verbosity", "datasetdir", "cachedir", "device", "num_workers", "seed", "progress_bar"]
        return "Settings(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in names) + ")"


def _size(path: Path) -> int:
    """Bytes of a file, or of the files in a folder."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size if path.is_file() else 0


def _as_path(value: str | os.PathLike, name: str) -> Path:
    if not isinstance(value, str | os.PathLike):
        raise ValueError(f"`{name}` must be a path, got {type(value).__name__}.")
    return Path(value).expanduser()


settings = Settings()
