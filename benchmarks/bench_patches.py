"""Benchmark of the image side of genedml: window extraction, embedding throughput, peak memory, cache hits.

Runs on the real HER2ST sections (../shared/data/her2st, read with ``gd.io.read_st``) and on a large lazily read
synthetic slide (``gd.datasets.synthetic(preset="large")`` spot layout, ≥ 20k spots, with its H&E renderer replaced
by a cheap per-chunk noise generator so that the benchmark measures genedml, not the renderer). Every measurement
runs in a fresh subprocess so that peak RSS is its own. Prints one table.

The encoder has random weights (``pretrained=False``): no weights can be downloaded here, and throughput does not
depend on the weight values.

    python benchmarks/bench_patches.py                       # defaults: mobilenetv3_small_100, batch 64
    python benchmarks/bench_patches.py --encoder resnet18 --batch-size 32 --skip-large
    python benchmarks/bench_patches.py --large-bound        # + the in-memory bound on the large slide (~5 GB RSS)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import HER2ST, read_her2st

# ------------------------------------------------------------------------------------------------ helpers


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _noise_block(block_info=None):
    (_, _), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    rng = np.random.default_rng((y0 * 1_000_003 + x0) % (2**63))
    return rng.integers(0, 256, (3, y1 - y0, x1 - x0), dtype=np.uint8)


def _large(spots_per_side: int):
    """The synthetic large layout (one section) with a cheap lazily generated image of the same geometry.

    The image is always read lazily (as any slide above ``INMEMORY_MAX_BYTES`` is), whatever its size.
    """
    import dask.array as da
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import get_transformation

    import genedml as gd
    from genedml.features import _images

    _images.INMEMORY_MAX_BYTES = 0

    sdata = gd.datasets.synthetic(preset="large", n_sections=1, n_patients=1, spots_per_side=spots_per_side)
    (sec,) = gd.io.sections(sdata)
    key = f"{sec}_hne"
    el = sdata.images[key]
    tfs = get_transformation(el, get_all=True)
    h, w = el.shape[1:] if hasattr(el, "shape") else next(iter(el["scale0"].values())).shape[1:]
    split = lambda n: tuple(min(1024, n - s) for s in range(0, n, 1024))  # noqa: E731
    arr = da.map_blocks(_noise_block, dtype=np.uint8, chunks=((3,), split(h), split(w)), name=f"bench-noise-{h}-{w}")
    sdata.images[key] = Image2DModel.parse(arr, dims=("c", "y", "x"), transformations=tfs)
    return sdata, sec


def _geometry(sdata, sec, target_px):
    import genedml as gd
    from genedml.features._windows import SectionImage, WindowSpec, section_geometry

    image = SectionImage.from_sdata(sdata, sec)
    xy = gd.io.spot_centers(sdata, sec)
    spec = WindowSpec.resolve(target_px=target_px, target_um=None, target_mpp=None)
    return section_geometry(image, spec, xy, mpp_full=gd.io.pixel_size(sdata, sec), section=sec)


def _ours(geo, origins, batch_size, *, source=None):
    """genedml's extraction: open (decode) the level, cut all windows in the background, consume the batches.

    Returns ``(windows, source, open_s, cut_s)``.
    """
    from genedml.features._embed_loader import iter_batches, plan_batches
    from genedml.features._images import open_source

    t0 = time.perf_counter()
    source = open_source(geo.level) if source is None else source
    t1 = time.perf_counter()
    order = np.lexsort((origins[:, 1], origins[:, 0]))
    batches = plan_batches([(0, len(origins))], batch_size)
    n = 0
    for _, _, arr, release in iter_batches(source, origins[order], crop_px=geo.crop_px, out_px=geo.out_px,
                                           batches=batches, num_workers=1):  # fmt: skip
        n += len(arr)
        release()
    return n, source, t1 - t0, time.perf_counter() - t1


def _bound(level, origins, n):
    """The bound: decode the level once, then plain NumPy slicing of every inside window into a preallocated array."""
    import dask.array as da

    t0 = time.perf_counter()
    arr = np.empty(level.data.shape, np.uint8)
    da.store(level.data, arr, lock=False)
    t_decode = time.perf_counter() - t0
    H, W = arr.shape[1:]
    ok = (origins[:, 0] >= 0) & (origins[:, 1] >= 0) & (origins[:, 0] + n <= H) & (origins[:, 1] + n <= W)
    o = origins[ok]
    out = np.empty((len(o), 3, n, n), np.uint8)
    t1 = time.perf_counter()
    for i, (y, x) in enumerate(o):
        out[i] = arr[:, y : y + n, x : x + n]
    return len(o), t_decode, time.perf_counter() - t1


def _raw_forward(enc, px, batch_size, n_batches):
    import torch

    xs = [torch.randn(batch_size, 3, px, px) for _ in range(n_batches)]
    with torch.inference_mode():
        enc(xs[0])  # warm-up
        t0 = time.perf_counter()
        for x in xs:
            enc(x)
    return batch_size * n_batches / (time.perf_counter() - t0)


def _counting(enc=None, px=None, batch_size=None, every=1):
    """Count the windows reaching the encoder and the time spent in it.

    With ``enc``, also time a raw forward of a preloaded tensor batch right after every ``every``-th full batch:
    a paired reference measured under the same machine load (its time is reported separately, ``raw_s``).
    """
    import torch

    from genedml.features import _embed_run

    counter = {"n": 0, "encode_s": 0.0, "raw_n": 0, "raw_s": 0.0, "raw_cpu": 0.0, "calls": 0}
    orig = _embed_run._encode_batch
    x_raw = None if enc is None else torch.randn(batch_size, 3, px, px)

    def wrapped(ctx, arr, release, **kw):
        t0 = time.perf_counter()
        out = orig(ctx, arr, release, **kw)
        counter["encode_s"] += time.perf_counter() - t0
        counter["n"] += len(arr)
        counter["calls"] += 1
        if x_raw is not None and len(arr) == batch_size and counter["calls"] % every == 0:
            with torch.inference_mode():
                t1, c1 = time.perf_counter(), time.process_time()
                enc(x_raw)
                counter["raw_s"] += time.perf_counter() - t1
                counter["raw_cpu"] += time.process_time() - c1
            counter["raw_n"] += batch_size
        return out

    _embed_run._encode_batch = wrapped
    return counter


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ------------------------------------------------------------------------------------------------ workers


def work_her2st_extract(a) -> dict:
    import genedml as gd

    sdata = read_her2st(Path(a.her2st_dir))
    secs = gd.io.sections(sdata)
    res = {"spots": int(sdata.tables["table"].n_obs), "sections": len(secs)}
    acc = dict.fromkeys(("bound_n", "bound_decode_s", "bound_cut_s", "ours_n", "ours_open_s", "ours_cut_s",
                         "tiles_n", "tiles_s"), 0.0)  # fmt: skip
    for sec in secs:
        geo = _geometry(sdata, sec, a.target_px)
        k, t_dec, t_cut = _bound(geo.level, geo.origins, geo.crop_px)
        acc["bound_n"] += k
        acc["bound_decode_s"] += t_dec
        acc["bound_cut_s"] += t_cut
        k, source, t_open, t_cut = _ours(geo, geo.origins, a.batch_size)
        acc["ours_n"] += k
        acc["ours_open_s"] += t_open
        acc["ours_cut_s"] += t_cut
        tiles = np.unique(geo.neighbor_origins()[geo.neighbor_mask()], axis=0)
        k, _, _, t_cut = _ours(geo, tiles, a.batch_size, source=source)
        acc["tiles_n"] += k
        acc["tiles_s"] += t_cut
        del source
    return res | acc | {"rss_mb": _rss_mb()}


def work_her2st(a) -> dict:
    import genedml as gd
    from genedml.encoders import create_encoder

    gd.settings.cachedir = a.cachedir
    gd.settings.progress_bar = False
    sdata = read_her2st(Path(a.her2st_dir))
    enc = create_encoder(a.encoder, pretrained=False, device="cpu")
    px = enc.input_px(a.target_px)
    res = {"spots": int(sdata.tables["table"].n_obs), "raw_fwd": _raw_forward(enc, px, a.batch_size, a.raw_batches)}
    counter = _counting(enc, px, a.batch_size)
    scales = tuple(a.scales.split(","))
    res["rss_before_mb"] = _current_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    kw = {"encoder": enc, "scales": scales, "target_px": a.target_px, "batch_size": a.batch_size}
    gd.tl.embed(sdata, **kw, num_workers=a.num_workers)
    res["embed_s"] = time.perf_counter() - t0 - counter["raw_s"]
    res["embed_cpu"] = time.process_time() - c0 - counter["raw_cpu"]
    res |= {k: counter[k] for k in ("n", "encode_s", "raw_n", "raw_s", "raw_cpu")}
    res["rss_mb"] = _rss_mb()
    counter["n"] = 0
    t0 = time.perf_counter()
    gd.tl.embed(sdata, **kw)
    res["hit_inproc_s"], res["hit_windows"] = time.perf_counter() - t0, counter["n"]
    return res


def work_her2st_hit(a) -> dict:
    import genedml as gd
    from genedml.encoders import create_encoder

    gd.settings.cachedir = a.cachedir
    gd.settings.progress_bar = False
    sdata = read_her2st(Path(a.her2st_dir))
    enc = create_encoder(a.encoder, pretrained=False, device="cpu")
    counter = _counting()
    t0 = time.perf_counter()
    gd.tl.embed(sdata, encoder=enc, scales=tuple(a.scales.split(",")), target_px=a.target_px, batch_size=a.batch_size)
    return {"hit_fresh_s": time.perf_counter() - t0, "hit_fresh_windows": counter["n"]}


def work_large_extract(a) -> dict:
    from genedml.features import _images

    sdata, sec = _large(a.spots_per_side)
    geo = _geometry(sdata, sec, a.target_px)
    before = _current_rss_mb()
    n, source, t_open, t_cut = _ours(geo, geo.origins, a.batch_size)
    out = {"spots": n, "ours_s": t_open + t_cut, "lazy": bool(source.lazy)}
    out |= {"chunks_read": source.chunks_read, "chunks_total": int(np.prod(geo.level.data.numblocks))}
    out |= {"image_px": int(np.prod(geo.level.shape)), "lazy_cache_mb": _images.LAZY_CACHE_BYTES / 2**20}
    out["rss_mb"], out["rss_before_mb"] = _rss_mb(), before
    return out


def work_large_bound(a) -> dict:
    sdata, sec = _large(a.spots_per_side)
    geo = _geometry(sdata, sec, a.target_px)
    n, t_dec, t_cut = _bound(geo.level, geo.origins, geo.crop_px)
    return {"bound_n": n, "bound_decode_s": t_dec, "bound_cut_s": t_cut, "rss_mb": _rss_mb()}


def work_large_embed(a) -> dict:
    import genedml as gd
    from genedml.encoders import create_encoder

    gd.settings.progress_bar = False
    sdata, _ = _large(a.spots_per_side)
    enc = create_encoder(a.encoder, pretrained=False, device="cpu")
    raw = _raw_forward(enc, a.large_target_px, a.batch_size, a.raw_batches)
    counter = _counting(enc, a.large_target_px, a.batch_size, every=4)
    before = _current_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    gd.tl.embed(
        sdata,
        encoder=enc,
        scales="global",
        target_px=a.large_target_px,
        batch_size=a.batch_size,
        cache=False,
        num_workers=a.num_workers,
    )
    dt = time.perf_counter() - t0 - counter["raw_s"]
    feats = sdata.tables["table"].obsm[f"genedml_{enc.identity}_global"]
    out = {"spots": int(sdata.tables["table"].n_obs), "embed_s": dt, "raw_fwd": raw, "rss_before_mb": before}
    out["embed_cpu"] = time.process_time() - c0 - counter["raw_cpu"]
    out |= {k: counter[k] for k in ("n", "encode_s", "raw_n", "raw_s", "raw_cpu")}
    return out | {"features_mb": feats.nbytes / 2**20, "rss_mb": _rss_mb()}


WORKERS = {
    "her2st-extract": work_her2st_extract,
    "her2st": work_her2st,
    "her2st-hit": work_her2st_hit,
    "large-extract": work_large_extract,
    "large-bound": work_large_bound,
    "large-embed": work_large_embed,
}


# ------------------------------------------------------------------------------------------------ driver


def _spawn(task: str, a, **extra) -> dict:
    args = [sys.executable, __file__, "--worker", task]
    for k, v in {**vars(a), **extra}.items():
        if k in ("worker", "skip_large", "large_bound") or v is None:
            continue
        args += [f"--{k.replace('_', '-')}", str(v)]
    t0 = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        raise RuntimeError(f"worker {task} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t0
    return res


def _table(rows: list[tuple[str, str, str]]) -> str:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    return "\n".join(f"{r[0]:<{w0}}  {r[1]:>{w1}}  {r[2]}" for r in rows)


def _embed_rate(h) -> tuple[float, float, float, float]:
    """End-to-end windows/s, paired raw windows/s, their ratio, and the ratio in CPU time (robust to machine load)."""
    rate = h["n"] / h["embed_s"]
    paired = h["raw_n"] / h["raw_s"] if h["raw_s"] else float("nan")
    cpu_ratio = (h["n"] / h["embed_cpu"]) / (h["raw_n"] / h["raw_cpu"]) if h["raw_cpu"] else float("nan")
    return rate, paired, rate / paired, cpu_ratio


def _her2st_rows(x, h, hit, a) -> list[tuple[str, str, str]]:
    bound_rate = x["bound_n"] / (x["bound_decode_s"] + x["bound_cut_s"])
    ours_rate = x["ours_n"] / (x["ours_open_s"] + x["ours_cut_s"])
    rate, paired, ratio, cpu_ratio = _embed_rate(h)
    return [
        ("HER2ST", f"{x['sections']} sections", f"{x['spots']} spots, target {a.target_px} px native"),
        ("  extraction bound: decode once + slicing", f"{bound_rate:,.0f} /s",
         f"decode {x['bound_decode_s']:.1f} s + slicing {x['bound_cut_s']:.2f} s "
         f"({x['bound_n'] / x['bound_cut_s']:,.0f} /s)"),
        ("  extraction genedml: target windows", f"{ours_rate:,.0f} /s",
         f"decode {x['ours_open_s']:.1f} s + cut {x['ours_cut_s']:.2f} s ({x['ours_n'] / x['ours_cut_s']:,.0f} /s); "
         f"overhead {100 * (bound_rate / ours_rate - 1):+.1f} % vs bound"),
        ("  extraction genedml: neighbour tiles (cut only)", f"{x['tiles_n'] / x['tiles_s']:,.0f} /s",
         f"{int(x['tiles_n'])} distinct tiles"),
        ("  peak RSS extraction", f"{x['rss_mb']:,.0f} MB", "bound + genedml, one section decoded at a time"),
        (f"  raw forward {a.encoder} b{a.batch_size}", f"{paired:,.1f} /s",
         f"preloaded tensors, interleaved with the embedding batches (alone before: {h['raw_fwd']:,.1f} /s)"),
        (f"  embed scales={a.scales}", f"{rate:,.1f} /s",
         f"{h['n']} windows in {h['embed_s']:.1f} s = {100 * ratio:.0f} % of raw (CPU time: {100 * cpu_ratio:.0f} %); "
         f"encoder calls {100 * h['encode_s'] / h['embed_s']:.0f} % of the time (rest: JPEG decode, planning)"),
        ("  peak RSS embed", f"{h['rss_mb']:,.0f} MB", f"{h['rss_before_mb']:,.0f} MB before the call"),
        ("  cache hit, same process", f"{h['hit_inproc_s']:.2f} s", f"{h['hit_windows']} windows encoded"),
        ("  cache hit, fresh process", f"{hit['hit_fresh_s']:.2f} s",
         f"{hit['hit_fresh_windows']} windows encoded (JPEGs decoded once to fingerprint)"),
    ]  # fmt: skip


def _large_rows(ext, small, bound, emb, emb_small, a) -> list[tuple[str, str, str]]:
    rows = [("large synthetic (lazy)", f"{ext['spots']} spots",
             f"{ext['image_px'] / 1e9:.2f} Gpx, chunks 1024², LRU {ext['lazy_cache_mb']:.0f} MB")]  # fmt: skip
    ours_rate = ext["spots"] / ext["ours_s"]
    rows.append(("  extraction genedml (lazy, target 224)", f"{ours_rate:,.0f} /s",
                 f"chunks computed {ext['chunks_read']} of {ext['chunks_total']}"))  # fmt: skip
    if bound is not None:
        b_rate = bound["bound_n"] / (bound["bound_decode_s"] + bound["bound_cut_s"])
        rows.append(("  extraction bound (decode all + slicing)", f"{b_rate:,.0f} /s",
                     f"decode {bound['bound_decode_s']:.1f} s, RSS {bound['rss_mb']:,.0f} MB; "
                     f"genedml overhead {100 * (b_rate / ours_rate - 1):+.1f} %"))  # fmt: skip
    grow = lambda r: r["rss_mb"] - r["rss_before_mb"]  # noqa: E731
    rows.append(("  peak RSS extraction, growth in the call", f"{grow(ext):,.0f} MB",
                 f"{ext['spots']} spots; {grow(small):,.0f} MB with {small['spots']} spots"))  # fmt: skip
    rate, paired, ratio, cpu_ratio = _embed_rate(emb)
    rows += [
        (f"  embed global {a.large_target_px} px b{a.batch_size}", f"{rate:,.1f} /s",
         f"{100 * ratio:.0f} % of raw forward {paired:,.1f} /s (interleaved; alone {emb['raw_fwd']:,.1f} /s); "
         f"CPU time: {100 * cpu_ratio:.0f} %; encoder calls {100 * emb['encode_s'] / emb['embed_s']:.0f} %"),
        ("  peak RSS embed, growth in the call", f"{grow(emb):,.0f} MB",
         f"{emb['spots']} spots (features {emb['features_mb']:.0f} MB); {grow(emb_small):,.0f} MB with "
         f"{emb_small['spots']} spots (features {emb_small['features_mb']:.0f} MB)"),
    ]  # fmt: skip
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", default="mobilenetv3_small_100")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--target-px", type=int, default=224)
    p.add_argument("--scales", default="target,global", help="comma-separated scales embedded on HER2ST")
    p.add_argument("--raw-batches", type=int, default=4)
    p.add_argument("--her2st-dir", default=str(HER2ST))
    p.add_argument("--spots-per-side", type=int, default=185, help="large slide: ST positions per side")
    p.add_argument("--large-target-px", type=int, default=64, help="window size for the large-slide embedding")
    p.add_argument("--skip-large", action="store_true")
    p.add_argument("--large-bound", action="store_true", help="also run the in-memory bound on the large slide (~5 GB)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads in the workers (0: torch's default)")
    p.add_argument("--num-workers", type=int, default=None, help="embed(num_workers=...); default: genedml's choice")
    p.add_argument("--cachedir", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        if a.threads > 0:
            import torch

            torch.set_num_threads(a.threads)
        print(json.dumps(WORKERS[a.worker](a)))
        return
    a.cachedir = a.cachedir or tempfile.mkdtemp(prefix="genedml-bench-")
    t0 = time.perf_counter()
    x = _spawn("her2st-extract", a)
    h = _spawn("her2st", a)
    hit = _spawn("her2st-hit", a)
    rows = _her2st_rows(x, h, hit, a)
    if not a.skip_large:
        small_side = max(2, a.spots_per_side // 2)
        ext = _spawn("large-extract", a)
        small = _spawn("large-extract", a, spots_per_side=small_side)
        bound = _spawn("large-bound", a) if a.large_bound else None
        emb = _spawn("large-embed", a)
        emb_small = _spawn("large-embed", a, spots_per_side=small_side)
        rows += _large_rows(ext, small, bound, emb, emb_small, a)
    head = f"genedml bench_patches: encoder {a.encoder} (random weights, pretrained=False), batch {a.batch_size}, "
    head += f"{os.cpu_count()} CPUs, torch threads {a.threads or 'default'}, num_workers {a.num_workers}, "
    head += f"load {os.getloadavg()[0]:.1f}, "
    head += f"total {time.perf_counter() - t0:.0f} s"
    print(head)
    print(_table(rows))


if __name__ == "__main__":
    main()
