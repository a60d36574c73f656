"""Small helpers shared by every layer (no heavy imports at module level)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ._settings import settings

__all__ = ["atomic_path", "file_sha256", "get_rng", "resolve_progress"]

_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def get_rng(seed: int | np.random.Generator | None = None) -> np.random.Generator:
    """NumPy generator from a seed (``None`` → ``gd.settings.seed``) or pass a generator through."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(settings.seed if seed is None else seed)


def resolve_progress(progress: bool | None) -> bool:
    """Per-call progress flag with the settings fallback."""
    return settings.progress_bar if progress is None else bool(progress)


#: Seconds between two progress lines when the output is not a terminal.
LOG_INTERVAL_S = 15.0


def is_terminal() -> bool:
    """Whether progress can redraw a bar: stderr is a terminal, or we run in a Jupyter kernel."""
    import sys

    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def tqdm_class():
    """The progress-bar class: a bar on a terminal or in Jupyter, plain periodic lines otherwise (a log file).

    In Jupyter, notebook widgets when ipywidgets is installed; ``tqdm.auto`` without ipywidgets warns ("IProgress not
    found") on every bar, and the text bar works there.
    """
    if not is_terminal():
        return log_bar_class()
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm
    return tqdm


def log_bar_class():
    """A tqdm class that writes one plain line every `LOG_INTERVAL_S` seconds, and a last one at the end."""
    import time

    from tqdm.std import tqdm

    class LogBar(tqdm):
        def __init__(self, *args, **kwargs):
            self._last_line, self._done = -float("inf"), False
            kwargs.setdefault(
                "bar_format", "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed} elapsed, {remaining} left, {rate_fmt}]"
            )
            kwargs["dynamic_ncols"] = False
            super().__init__(*args, **kwargs)

        def set_description(self, desc=None, refresh=True):
            self.desc = desc or ""  # tqdm appends ": ", which the line format already has
            if refresh:
                self.refresh()

        def display(self, msg=None, pos=None):
            now = time.monotonic()
            if self._done or self.disable or self.n == 0 or now - self._last_line < LOG_INTERVAL_S:
                return True  # a line only once work was done, then every LOG_INTERVAL_S
            self._last_line = now
            line = (self.__str__() if msg is None else msg).strip()
            if line:
                self.fp.write(line + "\n")
                self.fp.flush()
            return True

        def close(self):
            if self.disable:
                return
            if not self._done and self.n:
                self._last_line = -float("inf")
                self.display()
            self._done = True
            self.disable = True  # tqdm's own close would clear the line with "\r"
            self._decr_instances(self)

    return LogBar


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


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file (memoised by path, size and modification time)."""
    p = Path(path)
    st = p.stat()
    memo_key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if memo_key not in _HASH_MEMO:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        _HASH_MEMO[memo_key] = h.hexdigest()
    return _HASH_MEMO[memo_key]
