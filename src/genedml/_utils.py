"""Small helpers shared by every layer (no heavy imports at module level)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ._settings import settings

__all__ = ["atomic_path", "get_rng", "resolve_progress"]


def get_rng(seed: int | np.random.Generator | None = None) -> np.random.Generator:
    """NumPy generator from a seed (``None`` → ``gd.settings.seed``) or pass a generator through."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(settings.seed if seed is None else seed)


def resolve_progress(progress: bool | None) -> bool:
    """Per-call progress flag with the settings fallback."""
    return settings.progress_bar if progress is None else bool(progress)


def tqdm_class():
    """The progress-bar class: notebook widgets when ipywidgets is installed, plain text otherwise.

    ``tqdm.auto`` in Jupyter without ipywidgets warns ("IProgress not found") on every bar; the text bar works there.
    """
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm
    return tqdm


@contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    Works for files and directories (e.g. ``.zarr`` stores). A failure leaves ``path`` untouched.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp = tmp_dir / (path.name + suffix)
    try:
        yield tmp
        if path.is_dir() and not path.is_symlink():
            backup = tmp_dir / "old"
            path.rename(backup)
            tmp.rename(path)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
