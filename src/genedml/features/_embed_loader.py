"""Background batch producer for :func:`genedml.tl.embed`: cuts windows while the encoder computes.

Worker threads cut batches into a small pool of preallocated ``uint8`` buffers (NumPy copies and torch resizing
release the GIL), so decoding/cutting overlaps the forward pass. Batches come back in order.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ._windows import resample

__all__ = ["Batch", "iter_batches", "plan_batches"]

Batch = tuple[int, int, np.ndarray, Callable[[], None]]
"""``(start, stop, windows (b, 3, out, out) uint8, release)``; call ``release()`` once the array is consumed."""


def plan_batches(slices: list[tuple[int, int]], batch_size: int) -> list[tuple[int, int]]:
    """Split ``[start, stop)`` ranges into batches that never cross a range boundary."""
    out = []
    for s, e in slices:
        out += [(b, min(b + batch_size, e)) for b in range(s, e, batch_size)]
    return out


class _Pool:
    """Fixed set of reusable buffers; ``get`` gives up when ``stop`` is set (so threads never hang)."""

    def __init__(self, n: int, shape: tuple[int, ...], stop: threading.Event) -> None:
        self._free: queue.Queue = queue.Queue()
        for _ in range(n):
            self._free.put(np.empty(shape, dtype=np.uint8))
        self._stop = stop

    def get(self) -> np.ndarray | None:
        while not self._stop.is_set():
            try:
                return self._free.get(timeout=0.05)
            except queue.Empty:
                continue
        return None

    def put(self, buf: np.ndarray) -> None:
        self._free.put(buf)


def _noop() -> None:
    return None


def iter_batches(
    source: Any,
    origins: np.ndarray,
    *,
    crop_px: int,
    out_px: int,
    batches: list[tuple[int, int]],
    num_workers: int = 1,
) -> Iterator[Batch]:
    """Yield the windows at ``origins[start:stop]`` for every planned batch, in order.

    Parameters
    ----------
    source
        Pixel source (``.cut(origins, n, out)``) of one pyramid level.
    origins
        ``(m, 2)`` integer window origins ``(y, x)`` in level pixels.
    crop_px, out_px
        Window side cut from the level and after resampling.
    batches
        ``(start, stop)`` ranges into ``origins``.
    num_workers
        Background threads; ``0`` cuts in the calling thread.
    """
    if not batches:
        return
    size = max(e - s for s, e in batches)
    if num_workers <= 0:
        buf = np.empty((size, 3, crop_px, crop_px), dtype=np.uint8)
        for s, e in batches:
            source.cut(origins[s:e], crop_px, buf)
            yield s, e, resample(buf[: e - s], out_px), _noop
        return
    yield from _threaded(source, origins, crop_px, out_px, batches, num_workers, size)


def _threaded(source, origins, crop_px, out_px, batches, num_workers, size) -> Iterator[Batch]:
    stop = threading.Event()
    in_flight = 2 * num_workers
    pool = _Pool(in_flight + 2, (size, 3, crop_px, crop_px), stop)

    def work(s: int, e: int) -> tuple[np.ndarray, Callable[[], None]] | None:
        buf = pool.get()
        if buf is None:
            return None
        source.cut(origins[s:e], crop_px, buf)
        if crop_px == out_px:
            return buf[: e - s], lambda: pool.put(buf)
        small = resample(buf[: e - s], out_px)
        pool.put(buf)
        return small, _noop

    executor = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="genedml-embed")
    pending: deque = deque()
    todo = iter(batches)
    try:
        for s, e in todo:
            pending.append((s, e, executor.submit(work, s, e)))
            if len(pending) >= in_flight:
                break
        while pending:
            s, e, fut = pending.popleft()
            arr, release = fut.result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((*nxt, executor.submit(work, *nxt)))
            yield s, e, arr, release
    finally:
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
