"""Whole-slide scale (issue 13): slide file → spot grid → embed → streamed prediction at 10k–1M spots/bins.

Each size is one H&E-only slide written once as a tiled, pyramidal JPEG TIFF with resolution tags (lazily
generated tissue-like texture: pink stroma with purple nuclei on a lattice of 6 µm cells, pale margins), with
Visium-HD-like square bins (default 8 µm) laid by ``gd.pp.spot_grid(grid="bins")``. A tiny model (random-init
``test_resnet``, ``config="cpu"``, one epoch on the tiny synthetic data at the same µm/px) is trained once. Then,
per size, in a fresh process with one torch thread (peak RSS from ``resource.getrusage``):

1. ``gd.io.read_slide`` and ``gd.pp.spot_grid(grid="bins")`` (tissue detection on a low-resolution level; square
   bins recorded as a bin lattice, so neighbour tiles are the bins' own windows);
2. ``gd.tl.embed`` (float16 store, ``neighbor_grid="lattice"``): windows cut from the lazy pyramid tile by tile;
   the time inside the encoder's forward is measured around it (instrumentation of this script only);
3. ``gd.tl.predict(..., out=...)``: chunk-by-chunk prediction into a new zarr store; the time of the global
   encoder (whole-section or band by band) is measured around it.

Printed per size: spots, seconds per stage, spots/s, encoder forward share of the wall time (read + grid + embed +
predict), global-pathway share of predict, peak RSS, store size (feature entries + prediction store). Ratios:
t(largest)/t(previous) against the spots ratio (linear time ⇒ equal). The cohort measurement (``predict_slides``
on 1 and 2 Dask workers against sequential prediction) is ``benchmarks/bench_cohort.py``.

    python benchmarks/bench_scale.py                                  # 10k, 100k, 1M bins (≈ 10–15 min here)
    python benchmarks/bench_scale.py --sizes 10000 100000             # quicker
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TILE = 256


# ------------------------------------------------------------------------------------------------- the slides


def _texture(y0: int, x0: int, h: int, w: int, *, mpp: float, side_px: int, seed: int = 0) -> np.ndarray:
    """RGB uint8 tissue-like pixels of the window ``[y0, y0+h) × [x0, x0+w)`` of a ``side_px`` square slide."""
    yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w]
    cy, cx = (yy * mpp / 6.0).astype(np.int64), (xx * mpp / 6.0).astype(np.int64)  # 6 µm cells
    hsh = (cy * 73856093) ^ (cx * 19349663) ^ (seed * 83492791)
    u = (hsh % 1000) / 1000.0
    nucleus = u > 0.72
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = np.where(nucleus, 95 + 40 * u, 225 - 30 * u)
    img[..., 1] = np.where(nucleus, 60 + 20 * u, 150 - 50 * u)
    img[..., 2] = np.where(nucleus, 150 + 30 * u, 200 - 20 * u)
    margin = 0.01 * side_px
    inside = (yy >= margin) & (yy < side_px - margin) & (xx >= margin) & (xx < side_px - margin)
    img[~inside] = 243
    return img


def write_slide(path: Path, side_px: int, *, mpp: float, levels: int = 3) -> None:
    """A tiled pyramidal JPEG TIFF (SubIFDs, resolution in pixels per cm) generated tile by tile."""
    import tifffile

    def tiles(level: int):
        f = 4**level
        n = -(-side_px // f)
        for ty in range(0, n, TILE):
            for tx in range(0, n, TILE):
                h, w = min(TILE, n - ty), min(TILE, n - tx)
                t = _texture(ty * f, tx * f, h, w, mpp=mpp, side_px=side_px) if f == 1 else _low(ty, tx, h, w, f)
                if (h, w) != (TILE, TILE):
                    t = np.pad(t, ((0, TILE - h), (0, TILE - w), (0, 0)), constant_values=243)
                yield t

    def _low(ty, tx, h, w, f):
        return _texture(ty * f, tx * f, h * f, w * f, mpp=mpp, side_px=side_px)[::f, ::f]

    tmp = path.with_suffix(".tmp.tif")
    kw = dict(tile=(TILE, TILE), photometric="rgb", compression="jpeg", dtype=np.uint8)
    with tifffile.TiffWriter(tmp, bigtiff=True) as tw:
        res = (1e4 / mpp, 1e4 / mpp)
        tw.write(
            tiles(0), shape=(side_px, side_px, 3), subifds=levels - 1, resolution=res, resolutionunit="CENTIMETER", **kw
        )
        for lv in range(1, levels):
            n = -(-side_px // 4**lv)
            tw.write(tiles(lv), shape=(n, n, 3), subfiletype=1, **kw)
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------- the model


def feature_spec(args):
    import genedml as gd

    return gd.features.FeatureSpec(
        args.encoder, pretrained=False, target_px=args.window_px, dtype="float16", neighbor_grid="lattice",
        batch_size=512,
    )  # fmt: skip


def train_model(args, path: Path) -> None:
    import genedml as gd

    sdata = gd.datasets.synthetic(preset="tiny", pixel_size=args.mpp, seed=0)
    model = gd.tl.fit(sdata, features=feature_spec(args), n_top_genes=args.genes, config="cpu", max_epochs=1,
                      batch_size=64, progress=False)  # fmt: skip
    model.save(path, overwrite=True)


# ------------------------------------------------------------------------------------------------- one size


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def child(args) -> None:
    import torch

    torch.set_num_threads(1)
    import genedml as gd
    from genedml.features import _embed_run
    from genedml.models import GeneDML, _stream
    from genedml.models.nn import GeneDMLNet

    gd.settings.cachedir = args.cache
    timers = {"encode": 0.0, "global": 0.0, "network": 0.0}

    def timed(fn, key):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timers[key] += time.perf_counter() - t

        return wrapper

    _embed_run._encode_batch = timed(_embed_run._encode_batch, "encode")
    _stream._section_tokens = timed(_stream._section_tokens, "global")
    GeneDMLNet.forward = timed(GeneDMLNet.forward, "network")  # the per-spot network (global tokens precomputed)
    model = GeneDML.load(args.model)
    rec = {}
    stage = {"name": "read"}
    peaks: dict[str, float] = {}

    def sample() -> None:  # resident memory per stage (the process's current RSS, every 0.2 s)
        import threading

        while not stage.get("done"):
            with open("/proc/self/statm") as fh:
                rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            peaks[stage["name"]] = max(peaks.get(stage["name"], 0.0), rss)
            threading.Event().wait(0.2)

    if os.path.exists("/proc/self/statm"):
        import threading

        threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    sdata = gd.io.read_slide(args.slide, section="slide")
    rec["read_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    stage["name"] = "grid"
    gd.pp.spot_grid(sdata, image_key="slide_hne", pitch_um=args.bin_um, grid="bins", model=model)
    rec["grid_s"] = time.perf_counter() - t
    rec["spots"] = int(sdata["table"].n_obs)
    stage["name"] = "embed"
    t = time.perf_counter()
    gd.tl.embed(sdata, features=feature_spec(args), progress=False)
    rec["embed_s"] = time.perf_counter() - t
    stage["name"] = "predict"
    t = time.perf_counter()
    out = Path(args.out)
    gd.tl.predict(sdata, model, out=out, overwrite=True, progress=False)
    rec["predict_s"] = time.perf_counter() - t
    rec["encode_s"], rec["global_s"], rec["network_s"] = timers["encode"], timers["global"], timers["network"]
    rec["wall_s"] = time.perf_counter() - t0
    rec["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stage["done"] = True
    rec["rss_stage_mb"] = dict(peaks)
    rec["store_mb"] = _du(Path(args.cache)) / 2**20
    rec["out_mb"] = _du(out) / 2**20
    print("RESULT " + json.dumps(rec))


# ------------------------------------------------------------------------------------------------- driver


def _run_child(args, slide: Path, cache: Path, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", "--slide", str(slide), "--cache", str(cache), "--out", str(out),
           "--model", str(args.model), "--encoder", args.encoder, "--window-px", str(args.window_px),
           "--mpp", str(args.mpp), "--bin-um", str(args.bin_um)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if res.returncode or not line:
        sys.stderr.write(res.stdout[-3000:] + res.stderr[-6000:])
        raise SystemExit(f"child failed for {slide.name}")
    return json.loads(line[0][7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="spots per slide")
    ap.add_argument("--bin-um", type=float, default=8.0, help="bin pitch = window (µm)")
    ap.add_argument("--mpp", type=float, default=0.5, help="slide µm per pixel")
    ap.add_argument("--encoder", default="test_resnet")
    ap.add_argument("--genes", type=int, default=50)
    ap.add_argument("--workdir", type=Path, default=None, help="slides and model are kept here (default: a temp dir)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for a in ("--slide", "--cache", "--out", "--model"):
        ap.add_argument(a, help=argparse.SUPPRESS)
    ap.add_argument("--window-px", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.window_px is None:
        args.window_px = round(args.bin_um / args.mpp)
    if args.child:
        return child(args)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="genedml-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    args.model = work / "model.pt"
    load = os.getloadavg()
    print(f"# bench_scale: {args.encoder} (random init) {args.window_px}-px windows = {args.bin_um:g} µm bins at "
          f"{args.mpp:g} µm/px; float16 store; 1 torch thread; load {load[0]:.1f}")  # fmt: skip
    if not args.model.exists():
        train_model(args, args.model)
    rows = []
    for n in args.sizes:
        side_bins = int(np.ceil(np.sqrt(n) / 0.98))
        side_px = int(round(side_bins * args.bin_um / args.mpp))
        slide = work / f"slide_{n}.tif"
        if not slide.exists():
            t = time.perf_counter()
            write_slide(slide, side_px, mpp=args.mpp)
            print(f"#   wrote {slide.name}: {side_px}² px, {slide.stat().st_size / 2**20:.0f} MB in "
                  f"{time.perf_counter() - t:.0f} s")  # fmt: skip
        cache = Path(tempfile.mkdtemp(prefix="store-", dir=work))
        rec = _run_child(args, slide, cache, work / f"pred_{n}.zarr")
        rows.append(rec)
        print(_row(rec), flush=True)
    _summary(rows)
    print(f"# load after: {os.getloadavg()[0]:.1f}")


def _row(r: dict) -> str:
    sps = r["spots"] / r["wall_s"]
    return (f"{r['spots']:>9,} spots | read {r['read_s']:.1f} s, grid {r['grid_s']:.1f} s, embed {r['embed_s']:.1f} s, "
            f"predict {r['predict_s']:.1f} s | wall {r['wall_s']:.1f} s = {sps:,.0f} spots/s | of wall: encoder "
            f"{100 * r['encode_s'] / r['wall_s']:.0f} %, network {100 * r['network_s'] / r['wall_s']:.0f} %, global "
            f"{100 * r['global_s'] / r['wall_s']:.0f} %, data path {100 * _data(r):.0f} % | global "
            f"{100 * r['global_s'] / r['predict_s']:.0f} % "
            f"of predict | peak RSS {r['rss_mb'] / 1024:.2f} GB ({_stages(r)}) | store {r['store_mb']:.0f} MB + "
            f"predictions {r['out_mb']:.0f} MB")  # fmt: skip


def _stages(r: dict) -> str:
    return ", ".join(f"{k} {v / 1024:.2f}" for k, v in r.get("rss_stage_mb", {}).items())


def _data(r: dict) -> float:
    """Share of the wall time outside the encoder, the network and the global encoder (reading, cutting, I/O)."""
    return 1.0 - (r["encode_s"] + r["network_s"] + r["global_s"]) / r["wall_s"]


def _summary(rows: list[dict]) -> None:
    for a, b in itertools.pairwise(rows):
        print(f"# t({b['spots']:,})/t({a['spots']:,}) = {b['wall_s'] / a['wall_s']:.2f} for "
              f"{b['spots'] / a['spots']:.2f}× the spots")  # fmt: skip


if __name__ == "__main__":
    main()
