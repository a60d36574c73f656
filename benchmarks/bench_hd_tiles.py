"""Distinct encoder windows per Visium HD bin, and the time to plan them, with and without the bin lattice.

Issue 13 (deliverable 5) names the risk: with bins the target window equals the pitch, and a pitch that is not a
whole number of pixels makes neighbour tiles stepped in pixels drift against the bins, so a section needs up to 25
encoder passes per bin. This script builds lazily rendered synthetic Visium HD sections (no pixel is rendered: only
the geometry is planned), places the windows as :func:`genedml.tl.embed` does and counts the windows it would encode
(each bin's own target window plus the distinct neighbour tiles that are not a bin's window), per bin, for the
default ``"spot"`` grid in pixels (the bound, measured in the same run) and on the bin lattice. Run::

    python benchmarks/bench_hd_tiles.py                          # 8 µm bins at 0.2737 µm/px, 100 … 1000 bins a side
    python benchmarks/bench_hd_tiles.py --bin-um 2 --sides 400 1200 --window-bins 1 4
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from _common import set_threads


def _plan(sdata, *, window_um: float, lattice: bool):
    from genedml.features._embed_run import count_windows
    from genedml.features._images import SectionImage
    from genedml.features._windows import WindowSpec, bin_lattice, section_geometry
    from genedml.io import pixel_size, spot_centers

    t0 = time.perf_counter()
    spec = WindowSpec.resolve(target_px=224, target_um=window_um, target_mpp=None)
    xy = spot_centers(sdata, "S1")
    lat = bin_lattice(sdata, "S1") if lattice else None
    image = SectionImage.from_sdata(sdata, "S1")
    geo = section_geometry(image, spec, xy, mpp_full=pixel_size(sdata, "S1"), section="S1", lattice=lat)
    windows = count_windows(geo, scales=("global", "neighbor"), variants=1)
    return windows / len(xy), time.perf_counter() - t0, geo.crop_px


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-um", type=float, default=8.0)
    ap.add_argument("--pixel-size", type=float, default=0.2737, help="µm/px (Visium HD's 40× scans: ~0.27)")
    ap.add_argument("--sides", type=int, nargs="+", default=[100, 300, 1000], help="bins per side of the lattice")
    ap.add_argument("--window-bins", type=int, nargs="+", default=[1, 2], help="target window in bins")
    args = ap.parse_args()
    set_threads(1)
    import genedml as gd

    print(f"load average {os.getloadavg()}; bin {args.bin_um:g} µm = {args.bin_um / args.pixel_size:.3f} px")
    print(f"{'side':>5} {'bins':>8} {'window':>7} {'crop px':>7} {'spot grid':>9} {'lattice':>8} {'plan s':>7}")
    for side in args.sides:
        sd = gd.datasets.synthetic(preset="visium_hd", bin_um=args.bin_um, spots_per_side=side, n_sections=1,
                                   n_patients=1, n_genes=5, pixel_size=args.pixel_size)  # fmt: skip
        n = gd.io.get_table(sd).n_obs
        for k in args.window_bins:
            um = k * args.bin_um
            old, _, crop = _plan(sd, window_um=um, lattice=False)
            new, secs, _ = _plan(sd, window_um=um, lattice=True)
            print(f"{side:>5} {n:>8} {um:>5g}µm {crop:>7} {old:>9.3f} {new:>8.3f} {secs:>7.2f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS {rss:.2f} GiB; windows per bin = (bins' own windows + other distinct neighbour tiles) / bins")


if __name__ == "__main__":
    main()
