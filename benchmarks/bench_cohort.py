"""A cohort of slide files through `gd.tl.predict_slides`: in this process, on 1 and on 2 Dask workers.

Issue 13 (deliverable 4, Measure): wall time of a 4-slide cohort with 1 and 2 Dask workers, and the same result as
sequential prediction (identical tables). The slides are pale tiled TIFFs (2 µm/px) with ``--tissue``² px of
synthetic H&E each (the test cohort of tests/tl/test_predict_slides.py at the default 320); the model is a tiny
random-init ``test_resnet`` fitted for one epoch on the synthetic "tiny" preset. The bound measured in the same run
is the in-process time (``scheduler="sync"``, one thread): ideal parallel time = sync / workers, plus the cluster's
start (worker processes importing torch) and the model load per worker, which the table shows separately as the
difference between the wall time and the sum of the per-slide seconds. Each run has its own (cold) feature store.
Run::

    python benchmarks/bench_cohort.py                       # 4 slides of 320² px tissue
    python benchmarks/bench_cohort.py --slides 8 --tissue 900   # larger slides (≈ 80 spots each)
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path


def _slides(sdata, folder: Path, n: int, tissue: int) -> list[Path]:
    import numpy as np
    import tifffile

    he = {s: sdata.images[f"{s}_hne"].data.compute().transpose(1, 2, 0) for s in ("S1", "S2")}
    pad, paths = 80, []
    for i in range(n):
        src = he["S1" if i % 2 == 0 else "S2"]
        reps = -(-tissue // 320)
        block = np.tile(src[300 - 100 * (i % 2) : 620 - 100 * (i % 2), 300:620], (reps, reps, 1))[:tissue, :tissue]
        img = np.full((tissue + 2 * pad, tissue + 2 * pad, 3), 242, np.uint8)
        img[pad:-pad, pad:-pad] = block
        paths.append(folder / f"slide{i}.tif")
        tiff = dict(tile=(256, 256), resolution=(5e3, 5e3), resolutionunit="CENTIMETER", compression="zlib")
        tifffile.imwrite(paths[-1], img, **tiff)
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--slides", type=int, default=4)
    p.add_argument("--tissue", type=int, default=320, help="px per side of each slide's tissue square (2 µm/px)")
    args = p.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    import spatialdata
    import torch

    import genedml as gd

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="bench-cohort-"))
    gd.settings.cachedir = root / "features"
    gd.settings.progress_bar = False
    try:
        sdata = gd.datasets.synthetic(preset="tiny", seed=0)
        fit = dict(n_top_genes=20, encoder="test_resnet", pretrained=False, config="cpu", max_epochs=1, progress=False)
        model = gd.tl.fit(sdata, **fit)
        paths = _slides(sdata, root, args.slides, args.tissue)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()}; OMP_NUM_THREADS=1, torch threads 1")
        print(f"{args.slides} slides, {args.tissue}² px tissue each, model {model.encoder.encoder}, 20 genes")
        runs = {"in process (sync)": {"scheduler": "sync"}, "1 worker": {"n_workers": 1}}
        runs["2 workers"] = {"n_workers": 2}
        ref, base = None, None
        print(f"{'run':<18} {'wall s':>7} {'Σ slide s':>9} {'spots':>6} {'spots/s':>7} {'vs sync':>7} identical")
        for name, kw in runs.items():
            out = root / name.split()[0]
            gd.settings.cachedir = out.with_name(out.name + "-features")  # every run computes its own features
            t0 = time.perf_counter()
            df = gd.tl.predict_slides(paths, model, out_dir=out, progress=False, **kw)
            wall = time.perf_counter() - t0
            assert (df["status"] == "done").all(), df
            preds = [np.asarray(spatialdata.read_zarr(o)["table"].layers["predicted"]) for o in df["output"]]
            ref = ref or preds
            base = base or wall
            same = all(np.array_equal(a, b) for a, b in zip(ref, preds, strict=True))
            n = int(df["n_spots"].sum())
            print(f"{name:<18} {wall:7.1f} {df['seconds'].sum():9.1f} {n:6d} {n / wall:7.1f} {base / wall:7.2f} {same}")
        print(f"load average after: {os.getloadavg()}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
