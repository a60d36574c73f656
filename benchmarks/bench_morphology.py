"""Throughput of the morphology encoder against ResNet18 on this CPU (issue 12, item 1).

Both encoders see the same windows (cut from a synthetic H&E section, as `gd.tl.embed` feeds them) and return what
the pipeline stores: target tokens and the pooled feature. Windows per second, median of ``--repeats`` round-robin
repeats (so both see the same machine load), at each window size, on ``--threads`` threads:

    python benchmarks/bench_morphology.py                     # 56 and 224 px, 1 thread
    python benchmarks/bench_morphology.py --sizes 112 --threads 2
"""

from __future__ import annotations

import argparse
import os
import time

from _common import set_threads


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="56,224", help="window sides in px (default 56,224)")
    p.add_argument("--batch", type=int, default=64, help="windows per batch (default 64)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    set_threads(a.threads)
    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    import genedml as gd
    from genedml.encoders import create_encoder

    load0 = os.getloadavg()
    sdata = gd.datasets.synthetic(preset="tiny", seed=0)
    image = np.moveaxis(np.asarray(sdata.images["S1_hne"].values), 0, -1)  # (y, x, c)
    rng = np.random.default_rng(0)
    encs = {"morphology": create_encoder("morphology"), "resnet18": create_encoder("resnet18", pretrained=False)}
    print(f"threads {a.threads}; batch {a.batch}; load average at start {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f}")
    print("| window | encoder | windows/s (median) | min–max |\n|---|---|---|---|")
    for side in [int(s) for s in a.sizes.split(",")]:
        ys = rng.integers(0, image.shape[0] - side, a.batch)
        xs = rng.integers(0, image.shape[1] - side, a.batch)
        batch = np.stack([image[y : y + side, x : x + side] for y, x in zip(ys, xs)])
        x = torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        encs["morphology"].set_um_per_px(112 / side)  # a 112 µm window, as bench_her2st
        times: dict[str, list[float]] = {k: [] for k in encs}
        for _ in range(a.repeats + 1):
            for name, enc in encs.items():
                t0 = time.perf_counter()
                with torch.inference_mode():
                    enc(enc.prepare(x))
                times[name].append(time.perf_counter() - t0)
        for name, ts in times.items():
            r = a.batch / np.array(ts[1:])
            print(f"| {side} px | {name} | {np.median(r):.0f} | {r.min():.0f}–{r.max():.0f} |")
    load1 = os.getloadavg()
    print(f"load average at end {load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
