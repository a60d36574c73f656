"""Benchmark of the feature store (issue 11): the code before the redesign (features in ``obsm``) against the store.

Four parts, each measurement in a fresh subprocess (peak RSS from ``resource.getrusage``), run with the ``src`` of
``--code before`` (a git ref or a checkout of the pre-store code, ``--before``) and/or ``--code after`` (this checkout):

1. ``scale``: ≈ 20k spots (4 sections of the ``"large"`` synthetic layout, legacy-ST pitch 200 µm at 1 µm/px, H&E
   replaced by lazily generated noise as in ``bench_patches.py``), all three scales embedded with a small random-init
   encoder, then ``gd.tl.fit`` (1 epoch, ``config="cpu"``) and ``gd.tl.predict``: bytes of the neighbour features
   (before: the ``obsm`` array; after: the store's ``neighbor`` entry, tiles + index), all feature bytes, distinct
   neighbour tiles per spot, and the peak RSS after each stage. ``--window-um`` defaults to the spot pitch, the
   setting in which the tiles of adjacent spots coincide; ``--geometry`` also counts, from the window geometry
   alone (no encoder), the distinct tiles per spot at other window sizes.
2. ``throughput``: the five HER2ST sections, ``gd.tl.embed(..., cache=False)`` against the encoder's raw forward on
   pre-cut in-memory ``uint8`` windows of the same count and size, timed in the same process before and after the
   call, with 1 and 2 torch threads (run one after the other) and each ``--num-workers`` value.
3. ``hit``: a second ``gd.tl.embed`` of the five HER2ST sections in a new process with the store warm, and the
   image work of a hit alone (before: decode + sampled-pixel fingerprint; after: ``SectionImage.file_fingerprint``).
4. ``equal``: the same seeded ``gd.tl.fit`` + ``gd.tl.predict`` on ``gd.datasets.synthetic()`` with both codes:
   max |Δ| of the predictions (a regression check, not a timing).

    python benchmarks/bench_store.py                              # all parts, before and after, one table each
    python benchmarks/bench_store.py --parts scale --code after   # one part, one code
    python benchmarks/bench_store.py --before 2ef8a9c             # the pre-store commit (default), via git archive
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import numpy as np
from _common import HER2ST, REPO, read_her2st
from bench_patches import _noise_block

BEFORE_REF = "2ef8a9c"  # the last commit with features in obsm (gd.pp.embed)
PARTS = ("scale", "throughput", "hit", "equal")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _is_after() -> bool:
    import genedml as gd

    return hasattr(gd, "features")


def _mod(name: str):
    """``genedml.features.<name>`` (after) or ``genedml.pp.<name>`` (before)."""
    import importlib

    return importlib.import_module(f"genedml.{'features' if _is_after() else 'pp'}.{name}")


def _top_genes(n: int) -> dict:
    """The top-genes keyword of either code: ``n_top_genes`` since the recipes, ``n_genes`` before."""
    import genedml as gd

    spec = getattr(gd.pp, "TargetSpec", None)
    return {"n_top_genes" if "n_top_genes" in getattr(spec, "__dataclass_fields__", {}) else "n_genes": n}


def _counting():
    """Count the windows that reach the encoder (either code's ``_encode_batch``)."""
    run = _mod("_embed_run")
    counter = {"n": 0, "encode_s": 0.0}
    orig = run._encode_batch

    def wrapped(ctx, arr, release, **kw):
        t0 = time.perf_counter()
        out = orig(ctx, arr, release, **kw)
        counter["encode_s"] += time.perf_counter() - t0
        counter["n"] += len(arr)
        return out

    run._encode_batch = wrapped
    return counter


def _feature_bytes(sdata, ident: str) -> dict:
    """Neighbour and total feature bytes, and distinct neighbour tiles, of either code's output."""
    import genedml as gd

    table = sdata.tables["table"]
    if _is_after():
        fs = gd.features.open_features(sdata, encoder=ident)
        distinct = n = 0
        for ents in fs.entries.values():
            idx = np.asarray(ents["neighbor"]["index"])
            distinct += len(np.unique(idx[idx >= 0]))
            n += len(idx)
        return {"neighbor_bytes": fs.nbytes("neighbor"), "feature_bytes": fs.nbytes(), "obsm_bytes": _obsm(table),
                "distinct_tiles": distinct, "spots": n}  # fmt: skip
    nb = table.obsm[f"genedml_{ident}_neighbor"]
    return {"neighbor_bytes": int(nb.nbytes), "feature_bytes": _obsm(table), "obsm_bytes": _obsm(table),
            "spots": int(table.n_obs)}  # fmt: skip


def _obsm(table) -> int:
    return int(sum(np.asarray(v).nbytes for k, v in table.obsm.items() if k.startswith("genedml")))


def _identity(sdata) -> str:
    (ident,) = sdata.tables["table"].uns["genedml"]["features"].keys()
    return ident


# ------------------------------------------------------------------------------------------------ part 1: scale


def _large(a):
    """``a.sections`` sections of the ``"large"`` layout, each H&E replaced by lazy noise (as in bench_patches)."""
    import dask.array as da
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import get_transformation

    import genedml as gd

    _mod("_images").INMEMORY_MAX_BYTES = 0  # read lazily, as any large slide
    sdata = gd.datasets.synthetic(preset="large", n_sections=a.sections, n_patients=2,
                                  spots_per_side=a.spots_per_side, n_genes=a.n_genes)  # fmt: skip
    for key in list(sdata.images):
        el = sdata.images[key]
        h, w = el.shape[1:]
        split = lambda n: tuple(min(1024, n - s) for s in range(0, n, 1024))  # noqa: E731
        arr = da.map_blocks(_noise_block, dtype=np.uint8, chunks=((3,), split(h), split(w)), name=f"noise-{key}-{h}")
        sdata.images[key] = Image2DModel.parse(arr, dims=("c", "y", "x"), transformations=get_transformation(
            el, get_all=True))  # fmt: skip
    return sdata


def work_scale(a) -> dict:
    import genedml as gd

    gd.settings.cachedir = a.cachedir
    gd.settings.progress_bar = False
    sdata = _large(a)
    out = {"spots": int(sdata.tables["table"].n_obs), "rss_data_mb": _rss_mb()}
    kw = {"encoder": a.encoder, "pretrained": False, "target_px": a.target_px, "target_um": a.window_um}
    if a.neighbor_grid:  # the store only
        kw["neighbor_grid"] = a.neighbor_grid
    embed = gd.tl.embed if _is_after() else gd.pp.embed
    t0 = time.perf_counter()
    counter = _counting()
    embed(sdata, **kw, batch_size=a.batch_size, progress=False)
    out |= {"embed_s": time.perf_counter() - t0, "windows": counter["n"], "rss_embed_mb": _rss_mb()}
    out |= _feature_bytes(sdata, _identity(sdata))
    t0 = time.perf_counter()
    model = gd.tl.fit(sdata, **_top_genes(a.n_genes), normalize="log1p_cp10k", **kw, config="cpu", max_epochs=1,
                      patience=None, batch_size=a.fit_batch_size, sections_per_batch=1, accelerator="cpu",
                      seed=0, progress=False)  # fmt: skip
    out |= {"fit_s": time.perf_counter() - t0, "rss_fit_mb": _rss_mb()}
    t0 = time.perf_counter()
    gd.tl.predict(sdata, model, progress=False)
    out |= {"predict_s": time.perf_counter() - t0, "rss_predict_mb": _rss_mb()}
    out["obsm_bytes_end"] = _obsm(sdata.tables["table"])
    return out


def work_geometry(a) -> dict:
    """Distinct neighbour tiles per spot from the window geometry alone, per window size (no encoder)."""
    import genedml as gd

    sdata = _large(a)
    res = {}
    win = _mod("_windows")
    for um in [float(x) for x in a.geometry.split(",")]:
        grid = {"neighbor_grid": a.neighbor_grid} if a.neighbor_grid else {}
        spec = win.WindowSpec.resolve(target_px=a.target_px, target_um=um, target_mpp=None, **grid)
        distinct = n = 0
        for sec in gd.io.sections(sdata):
            image = _mod("_images").SectionImage.from_sdata(sdata, sec)
            xy = gd.io.spot_centers(sdata, sec)
            geo = win.section_geometry(image, spec, xy, mpp_full=gd.io.pixel_size(sdata, sec), section=sec)
            org, mask = geo.neighbor_origins(), geo.neighbor_mask()
            tiles = np.unique(np.concatenate([org[mask], geo.origins]), axis=0)  # target windows count too
            distinct, n = distinct + len(tiles), n + len(xy)
        res[f"{um:g}"] = {"tiles_per_spot": distinct / n, "spots": n}
    return {"windows": res}


# ------------------------------------------------------------------------------------------------ part 2: throughput


def _windows(sdata, a) -> list[np.ndarray]:
    """Every spot's target window of every section, ``uint8`` ``(B, 3, px, px)`` batches, cut before timing."""
    import genedml as gd

    cut = gd.features.spot_windows if _is_after() else gd.pp.spot_windows
    arrs = [cut(sdata, section=s, target_px=a.target_px).images for s in gd.io.sections(sdata)]
    allw = np.ascontiguousarray(np.concatenate(arrs).transpose(0, 3, 1, 2))
    return [allw[i : i + a.batch_size] for i in range(0, len(allw), a.batch_size)]


def _raw(enc, batches, px) -> float:
    """Windows/s of the encoder's own work on in-memory windows, as the embedding does it per batch."""
    import torch

    t0 = time.perf_counter()
    for b in batches:
        x = enc.prepare(torch.from_numpy(b), size=px)
        with torch.inference_mode():
            tokens, pooled = enc(x)
        tokens.to(torch.float16).numpy(), pooled.float().numpy()
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


def work_throughput(a) -> dict:
    import torch

    import genedml as gd
    from genedml.encoders import create_encoder

    gd.settings.progress_bar = False
    sdata = read_her2st(Path(a.her2st_dir))
    enc = create_encoder(a.encoder, pretrained=False, device="cpu")
    px = enc.input_px(a.target_px)
    batches = _windows(sdata, a)
    with torch.inference_mode():
        enc(enc.prepare(torch.from_numpy(batches[0][:4]), size=px))  # warm-up
    raw1 = _raw(enc, batches, px)
    counter = _counting()
    embed = gd.tl.embed if _is_after() else gd.pp.embed
    nw = None if a.num_workers == "none" else int(a.num_workers)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    embed(sdata, encoder=enc, scales=tuple(a.scales.split(",")), target_px=a.target_px, batch_size=a.batch_size,
          cache=False, num_workers=nw, progress=False)  # fmt: skip
    dt = time.perf_counter() - t0
    raw2 = _raw(enc, batches, px)
    n_raw = sum(len(b) for b in batches)
    return {"windows": counter["n"], "encode_s": counter["encode_s"], "raw_windows": n_raw, "embed_s": dt,
            "raw1": raw1, "raw2": raw2, "load": (load0 + os.getloadavg()[0]) / 2, "rss_mb": _rss_mb()}  # fmt: skip


# ------------------------------------------------------------------------------------------------ part 3: cache hit


def _her2st_embed(a, cachedir):
    import genedml as gd

    gd.settings.cachedir = cachedir
    gd.settings.progress_bar = False
    sdata = read_her2st(Path(a.her2st_dir))
    embed = gd.tl.embed if _is_after() else gd.pp.embed
    counter = _counting()
    t0 = time.perf_counter()
    embed(sdata, encoder=a.encoder, pretrained=False, scales=tuple(a.scales.split(",")), target_px=a.target_px,
          batch_size=a.batch_size, progress=False)  # fmt: skip
    return sdata, time.perf_counter() - t0, counter["n"]


def work_fill(a) -> dict:
    _, dt, n = _her2st_embed(a, a.cachedir)
    return {"fill_s": dt, "windows": n}


def work_hit(a) -> dict:
    import genedml as gd

    sdata, dt, n = _her2st_embed(a, a.cachedir)
    images = _mod("_images")
    images._FP_MEMO.clear()
    t_img = 0.0
    for sec in gd.io.sections(sdata):
        image = images.SectionImage.from_sdata(sdata, sec)
        t0 = time.perf_counter()
        if _is_after():
            fp = image.file_fingerprint()
        else:  # what the pre-store code does on a hit: decode the finest level, fingerprint its pixels
            src = images.open_source(image.levels[0])
            fp = image.fingerprint(finest=src.array)
        assert fp, sec
        t_img += time.perf_counter() - t0
    return {"hit_s": dt, "windows": n, "image_s": t_img}


# ------------------------------------------------------------------------------------------------ part 4: equal


def work_equal(a) -> dict:
    import genedml as gd

    gd.settings.cachedir = a.cachedir
    gd.settings.progress_bar = False
    her2st = a.equal_data == "her2st"
    sdata = read_her2st(Path(a.her2st_dir)) if her2st else gd.datasets.synthetic()
    win = {"target_px": 32, "target_um": 112.0} if her2st else {"target_px": 32}
    # feature_clip (issue 12, after the store) changes the model on purpose: off here, so that only the store differs
    clip_off = "feature_clip" in getattr(gd.models.GeneDMLConfig, "__dataclass_fields__", {})
    config = {"preset": "cpu", "feature_clip": None} if clip_off else "cpu"
    model = gd.tl.fit(sdata, **_top_genes(50), normalize="log1p_cp10k", encoder="test_resnet", pretrained=False, **win,
                      config=config, max_epochs=3, patience=None, batch_size=64, accelerator="cpu", seed=7,
                      progress=False)  # fmt: skip
    gd.tl.predict(sdata, model, progress=False)
    table = sdata.tables["table"]
    pred = np.asarray(table.layers["predicted"], dtype=np.float64)
    path = Path(a.out) / f"pred-{a.code}.npy"
    np.save(path, pred)
    return {"path": str(path), "genes": int(np.isfinite(pred).all(axis=0).sum()), "spots": int(table.n_obs)}


WORKERS = {"scale": work_scale, "geometry": work_geometry, "throughput": work_throughput, "fill": work_fill,
           "hit": work_hit, "equal": work_equal}  # fmt: skip


# ------------------------------------------------------------------------------------------------ driver


def _before_src(before: str) -> str:
    """``src`` of the code at ``before``: a checkout folder as is, or a git ref exported to a temp dir."""
    p = Path(before)
    if p.is_dir():
        return str((p / "src") if (p / "src").is_dir() else p)
    data = subprocess.run(["git", "-C", str(REPO), "archive", before, "src"], capture_output=True, check=True).stdout
    dest = tempfile.mkdtemp(prefix="genedml-before-")
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return str(Path(dest) / "src")


def _spawn(task: str, a, code: str, **extra) -> dict:
    args = [sys.executable, __file__, "--worker", task, "--code", code]
    for k, v in {**vars(a), **extra}.items():
        if k in ("worker", "code", "parts", "before", "after", "src") or v is None or isinstance(v, bool):
            continue
        args += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": a.src[code]}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(extra.get("threads", a.threads))
    print(f"  [{time.strftime('%H:%M:%S')}] {task} ({code}) {extra or ''} ...", flush=True)
    t0 = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"worker {task} ({code}) failed:\n{out.stderr[-4000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t0
    return res


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def _mb(b: float) -> str:
    return f"{b / 2**20:,.1f} MB"


def part_scale(a, codes) -> None:
    res = {c: _spawn("scale", a, c, cachedir=tempfile.mkdtemp(prefix="genedml-bench-store-")) for c in codes}
    r0 = next(iter(res.values()))
    rows = []
    keys = [("spots", lambda r: f"{r['spots']:,}"), ("windows encoded", lambda r: f"{r['windows']:,}"),
            ("neighbour feature bytes", lambda r: _mb(r["neighbor_bytes"])),
            ("all feature bytes", lambda r: _mb(r["feature_bytes"])),
            ("feature bytes in the table (obsm) at the end", lambda r: _mb(r["obsm_bytes_end"])),
            ("distinct neighbour tiles per spot", lambda r: f"{r['distinct_tiles'] / r['spots']:.3f}"
             if "distinct_tiles" in r else "(dense: 25 rows per spot)"),
            ("peak RSS after building the data", lambda r: f"{r['rss_data_mb']:,.0f} MB"),
            ("peak RSS after embed", lambda r: f"{r['rss_embed_mb']:,.0f} MB"),
            ("peak RSS after fit", lambda r: f"{r['rss_fit_mb']:,.0f} MB"),
            ("peak RSS after predict", lambda r: f"{r['rss_predict_mb']:,.0f} MB"),
            ("time embed / fit / predict", lambda r: f"{r['embed_s']:.0f} / {r['fit_s']:.0f} / {r['predict_s']:.0f} s"),
            ]  # fmt: skip
    for name, f in keys:
        row = [name] + [f(res[c]) for c in codes]
        if len(codes) == 2:
            ratio = {"neighbour feature bytes": "neighbor_bytes", "all feature bytes": "feature_bytes",
                     "peak RSS after predict": "rss_predict_mb"}.get(name)  # fmt: skip
            if ratio == "rss_predict_mb":
                gb, ga = (res[c]["rss_predict_mb"] - res[c]["rss_data_mb"] for c in codes)
                row.append(f"growth over the data: {ga:,.0f} vs {gb:,.0f} MB = {100 * ga / gb:.1f} %")
            else:
                row.append(f"{100 * res['after'][ratio] / res['before'][ratio]:.2f} %" if ratio else "")
        rows.append(row)
    head = ["", *codes] + (["after / before"] if len(codes) == 2 else [])
    _print_table(f"Scale row: {a.sections} sections, {r0['spots']:,} spots, {a.encoder} (random init), window "
                 f"{a.window_um:g} µm → {a.scale_target_px} px, neighbour grid {a.neighbor_grid or 'spot'} (after), "
                 f"spot pitch 200 µm; fit 1 epoch config='cpu' batch "
                 f"{a.fit_batch_size}, {a.n_genes} genes", head, rows)  # fmt: skip
    if a.geometry:
        geo = _spawn("geometry", a, codes[-1])
        rows = [[f"{um} µm", f"{g['tiles_per_spot']:.2f}", f"{100 * g['tiles_per_spot'] / 25:.1f} %"]
                for um, g in geo["windows"].items()]  # fmt: skip
        _print_table("Distinct windows (target + neighbour tiles) per spot, from the geometry (no encoder)",
                     ["window", "windows per spot", "vs 25 dense rows"], rows)  # fmt: skip


def part_throughput(a, codes) -> None:
    rows = []
    for threads in [int(t) for t in a.thread_counts.split(",")]:  # one after the other, never concurrently
        for code in codes:
            for nw in a.num_workers_list.split(","):
                r = _spawn("throughput", a, code, threads=threads, num_workers=nw)
                raw = (r["raw1"] + r["raw2"]) / 2
                rate = r["windows"] / r["embed_s"]
                rows.append([str(threads), code, nw, f"{r['windows']:,}", f"{raw:,.1f} /s "
                             f"({r['raw1']:,.1f}, {r['raw2']:,.1f})", f"{rate:,.1f} /s ({r['embed_s']:.1f} s)",
                             f"**{100 * rate / raw:.0f} %**", f"{100 * r['encode_s'] / r['embed_s']:.0f} %",
                             f"{r['load']:.1f}"])  # fmt: skip
    _print_table(f"Embedding vs raw encoder throughput, 5 HER2ST sections, {a.encoder} (random init), "
                 f"{a.target_px} px native, scales {a.scales}, batch {a.batch_size}, cache=False",
                 ["threads", "code", "num_workers", "windows", "raw forward (before, after the call)",
                  "embed", "embed / raw", "encoder share of the call", "load"], rows)  # fmt: skip


def part_hit(a, codes) -> None:
    rows = []
    for code in codes:
        cachedir = tempfile.mkdtemp(prefix="genedml-bench-store-")
        fill = _spawn("fill", a, code, cachedir=cachedir)
        hit = _spawn("hit", a, code, cachedir=cachedir)
        rows.append([code, f"{fill['fill_s']:.1f} s ({fill['windows']:,} windows)",
                     f"{hit['hit_s']:.2f} s ({hit['windows']} windows)", f"**{hit['image_s']:.2f} s**",
                     f"{os.getloadavg()[0]:.1f}"])  # fmt: skip
    _print_table(f"Cache hit, 5 HER2ST sections, new process, {a.encoder}, scales {a.scales}",
                 ["code", "cold call", "warm call (new process)", "image work of the hit (fingerprints)", "load"],
                 rows)  # fmt: skip


def part_equal(a, codes) -> None:
    out = tempfile.mkdtemp(prefix="genedml-bench-store-")
    preds = {}
    for code in codes:
        r = _spawn("equal", a, code, cachedir=tempfile.mkdtemp(prefix="genedml-bench-store-"), out=out)
        preds[code] = np.load(r["path"])
        print(f"  {code}: {r['spots']} spots × {r['genes']} predicted genes")
    if len(preds) == 2:
        b, f = preds["before"], preds["after"]
        ok = np.isfinite(b) & np.isfinite(f)
        same = bool((np.isfinite(b) == np.isfinite(f)).all())
        d = np.abs(b[ok] - f[ok])
        scale = np.abs(b[ok]).max()
        data = "HER2ST, 112 µm → 32 px" if a.equal_data == "her2st" else "gd.datasets.synthetic(), 32 px"
        print(
            f"\nPredictions before vs after ({data}, seed 7, test_resnet random init, 3 epochs): max |Δ| = "
            f"{d.max():.3g} (max |prediction| {scale:.3g}; mean |Δ| {d.mean():.3g}); same NaN pattern: {same}"
        )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--code", default="both", choices=("before", "after", "both"))
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated of {PARTS}")
    p.add_argument("--before", default=BEFORE_REF, help="pre-store code: git ref of this repository or a checkout")
    p.add_argument("--after", default=None, help="store code: git ref or checkout (default: this checkout)")
    p.add_argument("--encoder", default="mobilenetv3_small_100")
    p.add_argument("--batch-size", type=int, default=64, help="embedding batch")
    p.add_argument("--threads", type=int, default=1, help="threads of the scale, hit and equal workers")
    # scale
    p.add_argument("--sections", type=int, default=4)
    p.add_argument("--spots-per-side", type=int, default=85, help="legacy-ST positions per side (85, 4 sections: 20k)")
    p.add_argument("--window-um", type=float, default=200.0, help="target window in µm (200 = the spot pitch)")
    p.add_argument("--scale-target-px", type=int, default=32, help="scale row: window resampled to this many px")
    p.add_argument("--n-genes", type=int, default=20)
    p.add_argument("--fit-batch-size", type=int, default=512)
    p.add_argument("--neighbor-grid", default=None, help="after only: embed(neighbor_grid=...), 'spot' or 'lattice'")
    p.add_argument("--geometry", default="200,112,100", help="window sizes (µm) for the distinct-tile count")
    # throughput, hit
    p.add_argument("--her2st-dir", default=str(HER2ST))
    p.add_argument("--target-px", type=int, default=224, help="HER2ST window, native resolution")
    p.add_argument("--scales", default="target,global")
    p.add_argument("--thread-counts", default="1,2", help="torch threads of the throughput runs, one after the other")
    p.add_argument("--num-workers-list", default="none,0", help="embed(num_workers=...) values compared")
    p.add_argument("--equal-data", default="synthetic", choices=("synthetic", "her2st"), help="data of `equal`")
    # worker-only
    for name in ("worker", "cachedir", "out", "num_workers"):
        p.add_argument(f"--{name.replace('_', '-')}", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        import torch

        torch.set_num_threads(a.threads)
        if a.worker in ("scale", "geometry"):
            a.target_px = a.scale_target_px
        print(json.dumps(WORKERS[a.worker](a)))
        return
    codes = ["before", "after"] if a.code == "both" else [a.code]
    a.src = {"after": str(REPO / "src") if a.after is None else _before_src(a.after)}
    if "before" in codes:
        a.src["before"] = _before_src(a.before)
    parts = [x for x in a.parts.split(",") if x]
    bad = sorted(set(parts) - set(PARTS))
    if bad:
        p.error(f"--parts: unknown {bad}; expected some of {list(PARTS)}")
    print(f"genedml bench_store: codes {codes} (before = {a.before}), {os.cpu_count()} CPUs, "
          f"load {' / '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)  # fmt: skip
    t0 = time.perf_counter()
    for part in parts:
        {"scale": part_scale, "throughput": part_throughput, "hit": part_hit, "equal": part_equal}[part](a, codes)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s, load {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
