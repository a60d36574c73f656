"""Adapt a ResNet18 to the five shared HER2ST sections by self-supervised learning (``gd.tl.pretrain_encoder``).

Writes the adapted weights for the accuracy benchmark (``--out``), and prints the training throughput (tiles/s wall
and per CPU-second, two augmented views per tile) and the loss curve, against the wall-clock budget
(``--budget-min``, default 15 min on one thread) measured in the same run.

    python benchmarks/pretrain_her2st.py --out ssl_resnet18_her2st_112um56px.safetensors
    python benchmarks/pretrain_her2st.py --cost   # tiles/s of SimCLR and BYOL at 56 and 112 px (no weights kept)

The defaults are the small-CPU recipe of docs/encoders.md: random initialisation (offline), SimCLR, 112 µm tiles
at 56 px, batches of 64, up to 20 epochs of 1024 tiles; on a slower (or shared) machine the budget ends the
schedule earlier, on fewer tiles.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import HER2ST, read_her2st, set_threads


def main(argv=None) -> int:
    """Run the adaptation and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="output .safetensors file")
    ap.add_argument("--cost", action="store_true", help="only measure tiles/s: simclr/byol × 56/112 px")
    ap.add_argument("--method", default="simclr", choices=["simclr", "byol", "dino"])
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--um", type=float, default=112.0, help="tile side in µm")
    ap.add_argument("--px", type=int, default=56, help="tile side in pixels")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--tiles-per-epoch", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--budget-min", type=float, default=15.0, help="wall-clock budget of the whole run (minutes)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--data", default=str(HER2ST), help="HER2ST directory")
    args = ap.parse_args(argv)
    set_threads(args.threads)

    import torch

    torch.set_num_threads(args.threads)
    import genedml as gd

    t0 = time.perf_counter()
    sdata = read_her2st(Path(args.data))
    t_read = time.perf_counter() - t0
    n_spots = sum(len(t) for t in sdata.tables.values())
    print(f"read {len(gd.io.sections(sdata))} sections, {n_spots} spots in {t_read:.1f} s")

    if args.cost:
        return cost(sdata, args)
    if not args.out:
        ap.error("--out is required (or pass --cost)")
    # training gets what is left of the budget after reading, opening the images and writing (1 min reserve)
    train_min = args.budget_min - (time.perf_counter() - t0) / 60 - 1.0
    res = gd.tl.pretrain_encoder(
        sdata,
        out=args.out,
        encoder=args.encoder,
        method=args.method,
        pretrained=False,
        target_px=args.px,
        target_um=args.um,
        epochs=args.epochs,
        tiles_per_epoch=args.tiles_per_epoch,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        max_minutes=train_min,
        overwrite=args.overwrite,
        device="cpu",
        progress=False,
    )
    wall = time.perf_counter() - t0
    h = res.history
    print(h.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    n_tiles = int(h["tiles"].sum())
    train_s, cpu_s = float(h["seconds"].sum()), float(h["cpu_seconds"].sum())
    print(
        f"{args.method} {args.encoder} {args.um:g} µm → {args.px} px, {args.threads} thread(s): "
        f"{n_tiles} tiles in {train_s:.0f} s of training = {n_tiles / train_s:.1f} tiles/s wall "
        f"(median epoch {h['tiles_per_s'].median():.1f}); {n_tiles / cpu_s:.1f} tiles per CPU-second "
        f"(wall/CPU {train_s / cpu_s:.2f}: above 1 the machine is shared)"
    )
    print(f"loss: first epoch {h['loss'].iloc[0]:.4f}, last epoch {h['loss'].iloc[-1]:.4f}")
    ok = wall <= args.budget_min * 60
    print(f"wall {wall / 60:.1f} min against the budget of {args.budget_min:g} min: {'OK' if ok else 'OVER'}")
    print(f"weights: {res.path}")
    return 0 if ok else 1


def cost(sdata, args) -> int:
    """Throughput of one epoch of ``--tiles-per-epoch`` tiles (default here 256) per method and tile size."""
    import os
    import tempfile

    import pandas as pd

    import genedml as gd

    n = min(args.tiles_per_epoch, 256)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for px in (56, 112):
            for method in ("simclr", "byol"):
                res = gd.tl.pretrain_encoder(
                    sdata, out=os.path.join(tmp, f"{method}{px}.safetensors"), encoder=args.encoder,
                    method=method, pretrained=False, target_px=px, target_um=args.um, epochs=1, tiles_per_epoch=n,
                    batch_size=args.batch_size, seed=args.seed, device="cpu", progress=False,
                )  # fmt: skip
                h = res.history.iloc[0]
                rows.append(
                    {
                        "method": method,
                        "px": px,
                        "tiles": int(h["tiles"]),
                        "tiles_per_s_wall": h["tiles_per_s"],
                        "tiles_per_cpu_s": h["tiles"] / h["cpu_seconds"],
                        "load_1min": os.getloadavg()[0],
                    }
                )
                print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
