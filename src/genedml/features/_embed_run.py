"""The compute side of :func:`genedml.tl.embed`: per-section passes over windows, resumable through the cache.

Per section the image level is opened once (decoded into memory, or read lazily chunk by chunk). The target windows
of all spots are encoded once, giving both the target tokens and the pooled (global) feature; the neighbour tiles are
deduplicated by their integer origin, and tiles that coincide with a target window reuse its pooled feature. Each
pass runs in chunks of windows whose results are stored as cache *parts*, so an interrupted run resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._cache import FeatureCache, hash_key
from ._embed_loader import iter_batches, plan_batches
from ._images import open_source
from ._windows import GRID, SectionGeometry

__all__ = ["RunContext", "SectionTask", "run_section"]

CHUNK_WINDOWS = 2048
"""Windows per resumable part."""


@dataclass
class RunContext:
    """Everything shared by the sections of one ``embed`` call."""

    encoder: Any
    cache: FeatureCache
    batch_size: int
    num_workers: int
    amp_dtype: Any  # torch dtype or None
    bar: Any
    chunk: int = CHUNK_WINDOWS
    stats: dict[str, float] = field(default_factory=lambda: {"windows": 0, "encode_s": 0.0, "wait_s": 0.0})


@dataclass
class SectionTask:
    """One section: geometry, cache keys of the wanted entries, and what is already cached."""

    section: str
    geometry: SectionGeometry
    keys: dict[str, str]  # entry name ("global", "neighbor", "target/<v>") → cache key
    base: dict[str, Any]  # key parts shared by the entries
    source: Any = None  # pixel source, opened lazily
    pass_keys: list[str] = field(default_factory=list)  # keys whose parts are dropped once the section is done
    loaded: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    store_dtype: Any = np.float32  # of the pooled features and neighbour tiles


def _encode_batch(ctx: RunContext, arr: np.ndarray, release, *, variant: int, input_px: int):
    """Forward one batch of ``uint8`` windows; returns ``(tokens float16, pooled float32)`` as NumPy arrays."""
    import torch

    from ..encoders import dihedral

    enc = ctx.encoder
    x = torch.from_numpy(arr)
    x = enc.prepare(dihedral(x, variant) if variant else x, size=input_px)
    release()
    with torch.inference_mode():
        if ctx.amp_dtype is not None:
            with torch.autocast(device_type=x.device.type, dtype=ctx.amp_dtype):
                tokens, pooled = enc(x)
        else:
            tokens, pooled = enc(x)
    return tokens.to(torch.float16).cpu().numpy(), pooled.float().cpu().numpy()


def _run_pass(
    ctx: RunContext,
    task: SectionTask,
    origins: np.ndarray,
    *,
    name: str,
    variant: int,
    want_tokens: bool,
    rows: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Encode the windows at ``origins`` (``(m, 2)``, level pixels), resuming from finished parts.

    Window ``j`` (in the given, row-major order) lands in output row ``rows[j]`` (default ``j``), so results come
    back in the caller's order without a second copy.
    """
    geo, enc = task.geometry, ctx.encoder
    m = len(origins)
    rows = np.arange(m) if rows is None else rows
    input_px = enc.input_px(geo.out_px)
    if hasattr(enc, "set_um_per_px"):  # encoders that measure in µm (morphology) learn the window's scale
        enc.set_um_per_px(geo.out_mpp)
    D = enc.num_features
    out = {"pooled": np.zeros((m, D), np.float32)}
    if want_tokens:
        out["tokens"] = np.zeros((m, enc.n_tokens(input_px), D), np.float16)
    key = hash_key(
        {**task.base, "pass": name, "variant": variant, "tokens": want_tokens, "origins": _origins_hash(origins)}
    )
    task.pass_keys.append(key)
    chunks = [(s, min(s + ctx.chunk, m)) for s in range(0, m, ctx.chunk)]
    todo = []
    for s, e in chunks:
        part = ctx.cache.load_part(key, s, e)
        if part is not None and set(part) == set(out):
            for k, v in part.items():
                out[k][rows[s:e]] = v
        else:
            todo.append((s, e))
    if todo:
        _encode_chunks(ctx, task, origins, rows, out, key, todo, variant=variant, input_px=input_px)
    return out


def _encode_chunks(ctx, task, origins, rows, out, key, todo, *, variant: int, input_px: int) -> None:
    geo = task.geometry
    if task.source is None:
        task.source = open_source(geo.level)
    batches = plan_batches(todo, ctx.batch_size)
    ends = {e: s for s, e in todo}
    stream = iter_batches(
        task.source, origins, crop_px=geo.crop_px, out_px=geo.out_px, batches=batches, num_workers=ctx.num_workers
    )
    t_ready = time.perf_counter()
    for s, e, arr, release in stream:
        t_got = time.perf_counter()
        tokens, pooled = _encode_batch(ctx, arr, release, variant=variant, input_px=input_px)
        ctx.stats["wait_s"] += t_got - t_ready  # waiting for pixels (decode / cut not hidden behind compute)
        t_ready = time.perf_counter()
        ctx.stats["encode_s"] += t_ready - t_got
        ctx.stats["windows"] += e - s
        out["pooled"][rows[s:e]] = pooled
        if "tokens" in out:
            out["tokens"][rows[s:e]] = tokens
        if ctx.bar is not None:
            ctx.bar.update(e - s)
        if e in ends:
            cs = ends[e]
            ctx.cache.save_part(key, cs, e, {k: v[rows[cs:e]] for k, v in out.items()})


def _origins_hash(origins: np.ndarray) -> str:
    from ._cache import hash_array

    return hash_array(np.ascontiguousarray(origins, dtype=np.int64))


def _row_major(origins: np.ndarray) -> np.ndarray:
    """Permutation sorting origins by ``(y, x)`` so that consecutive windows share image chunks."""
    return np.lexsort((origins[:, 1], origins[:, 0]))


# ------------------------------------------------------------------------------------------------- passes


def _target(ctx: RunContext, task: SectionTask, *, variant: int, want_tokens: bool) -> dict[str, np.ndarray]:
    origins = task.geometry.origins
    order = _row_major(origins)
    return _run_pass(ctx, task, origins[order], name="target", variant=variant, want_tokens=want_tokens, rows=order)


_PLAN_CHUNK = 1 << 16  # spots per block of neighbour-tile lookups (memory ∝ block, not section)


def _neighbor_plan(geo, *, with_index: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """Every spot's 25 neighbour tiles resolved against the spots' own windows, block by block.

    Returns ``(index, todo)``: ``index`` ``(n, 25)`` int64 holds ``-1`` where the tile is masked (not entirely inside
    the image), ``j < n`` where it is spot ``j``'s target window, and ``n + t`` where it is the ``t``-th distinct
    other tile, whose flat key ``y · W + x`` is ``todo[t]`` (sorted: row-major). Only ``todo`` needs encoding. The
    n × 25 origins are never held at once: a block of spots is looked up in the sorted target keys, and only the
    keys of tiles that are no spot's window (the tissue border on a lattice) are kept and deduplicated.
    ``with_index=False`` returns ``(None, todo)`` without allocating the index (a count).
    """
    n, W = len(geo.origins), geo.level.shape[1]
    inside = np.flatnonzero(_target_inside(geo))
    t_keys = geo.origins[inside, 0] * W + geo.origins[inside, 1]
    t_order = np.argsort(t_keys, kind="stable")
    t_sorted = t_keys[t_order]
    index = np.full((n, GRID * GRID), -1, np.int64) if with_index else None
    miss_keys, miss_pos = [], []
    for s in range(0, n, _PLAN_CHUNK):
        e = min(n, s + _PLAN_CHUNK)
        nb = geo.neighbor_origins(np.arange(s, e))
        mask = geo.neighbor_mask(nb)
        keys = nb[..., 0] * W + nb[..., 1]
        hit = np.zeros_like(mask)
        if len(t_sorted):
            pos = np.minimum(np.searchsorted(t_sorted, keys), len(t_sorted) - 1)
            hit = mask & (t_sorted[pos] == keys)
            if index is not None:
                index[s:e][hit] = inside[t_order[pos[hit]]]
        miss = mask & ~hit
        miss_keys.append(keys[miss])
        if index is not None:
            miss_pos.append(np.flatnonzero(miss.ravel()) + s * GRID * GRID)
    todo, inverse = np.unique(np.concatenate(miss_keys) if miss_keys else np.zeros(0, np.int64), return_inverse=True)
    if index is not None and len(todo):
        index.reshape(-1)[np.concatenate(miss_pos)] = n + inverse.ravel()
    return index, todo


def _target_inside(geo) -> np.ndarray:
    """``(n,)`` bool: the spot's target window lies entirely inside the image level (so it equals a tile cut there)."""
    o, n = geo.origins, geo.crop_px
    H, W = geo.level.shape
    return (o[:, 0] >= 0) & (o[:, 1] >= 0) & (o[:, 0] + n <= H) & (o[:, 1] + n <= W)


def count_windows(geo, *, scales: tuple[str, ...], variants: int) -> int:
    """How many windows :func:`run_section` encodes for a section when nothing is cached (a progress total)."""
    n = len(geo.origins)
    passes = int("target" in scales or "global" in scales or "neighbor" in scales)
    total = n * passes + (n * (variants - 1) if "target" in scales else 0)
    if "neighbor" in scales:
        total += len(_neighbor_plan(geo, with_index=False)[1])  # memory of one block of spots
    return total


def _neighbor(ctx: RunContext, task: SectionTask) -> dict[str, np.ndarray]:
    """The distinct neighbour tiles that are not a spot's own target window, and every spot's 25 tile indices.

    ``index[i, k]`` is ``-1`` where tile ``k`` of spot ``i`` is masked (not entirely inside the image), ``j < n`` where
    the tile is spot ``j``'s target window (its pooled feature is the ``global`` entry's row ``j``), and ``n + t``
    where it is row ``t`` of ``tiles``: each distinct tile is stored once, not once per spot that sees it.
    """
    geo, D = task.geometry, ctx.encoder.num_features
    W, n = geo.level.shape[1], len(geo.origins)
    index, todo = _neighbor_plan(geo)
    tiles = np.zeros((len(todo), D), np.float32)
    if len(todo):
        jobs = np.stack([todo // W, todo % W], axis=1)  # already row-major (sorted keys)
        tiles[:] = _run_pass(ctx, task, jobs, name="neighbor", variant=0, want_tokens=False)["pooled"]
    index = index.astype(np.int32 if n + len(tiles) < 2**31 else np.int64, copy=False)
    return {"tiles": tiles.astype(task.store_dtype, copy=False), "index": index}


def run_section(ctx: RunContext, task: SectionTask, *, scales: tuple[str, ...], variants: int) -> dict[str, dict]:
    """Compute every missing entry of ``task`` (saving each to the store) and return all entries, memory-mapped.

    ``"neighbor"`` implies ``"global"``: neighbour tiles that coincide with a target window are the global rows.
    """
    entries = dict(task.loaded)
    need_tokens = "target" in scales and "target/0" not in entries
    need_pooled = ("global" in scales or "neighbor" in scales) and "global" not in entries
    if need_tokens or need_pooled:
        res = _target(ctx, task, variant=0, want_tokens=need_tokens)
        if need_tokens:
            entries["target/0"] = _save(ctx, task, "target/0", {"tokens": res["tokens"]})
        if need_pooled:
            entries["global"] = _save(
                ctx, task, "global", {"pooled": res["pooled"].astype(task.store_dtype, copy=False)}
            )
        del res
        _drop_parts(ctx, task)
    for v in range(1, variants):
        name = f"target/{v}"
        if name not in entries:
            entries[name] = _save(
                ctx, task, name, {"tokens": _target(ctx, task, variant=v, want_tokens=True)["tokens"]}
            )
            _drop_parts(ctx, task)
    if "neighbor" in scales and "neighbor" not in entries:
        entries["neighbor"] = _save(ctx, task, "neighbor", _neighbor(ctx, task))
        _drop_parts(ctx, task)
    task.source = None
    return entries


def _drop_parts(ctx: RunContext, task: SectionTask) -> None:
    """Remove the parts of passes whose entries are saved."""
    for key in task.pass_keys:
        ctx.cache.clear_parts(key)
    task.pass_keys.clear()


def _save(ctx: RunContext, task: SectionTask, name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return ctx.cache.save(task.keys[name], arrays, {"section": task.section, "entry": name})
