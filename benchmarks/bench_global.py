"""Cost of the global encoder's forward pass against the number of spots: full against windowed attention.

Issue 13 (deliverable 3) asks for a global pathway whose cost is linear in spots. This script times the global
encoder alone (inference, one thread, width 64, 2 layers, 2 heads) on synthetic sections: square grids of
``n / 0.85`` cells with 85 % of the cells holding a spot (tissue with holes), for full attention (every spot
attends to every spot, O(n²)) and windowed attention (32 × 32-cell windows, shifted on the second layer, O(n)).
Full attention runs only up to ``--full-max`` spots (its time at larger sizes is extrapolated from the largest
measured size as n²). The bound measured in the same run: windowed time linear in n would give t(256k)/t(16k) = 16;
full attention's own ratio over the measured sizes shows the quadratic growth. Run::

    python benchmarks/bench_global.py                       # 1k … 256k spots, full up to 16k
    python benchmarks/bench_global.py --full-max 65536      # also full attention at 64k (minutes)
    python benchmarks/bench_global.py --sizes 1024 4096 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

from _common import set_threads

SIZES = (1024, 4096, 16384, 65536, 262144)


def _section(n: int, dim: int, seed: int = 0):
    """``n`` spots on a square grid with ≈ 15 % empty cells, in random order; random features."""
    import math

    import torch

    gen = torch.Generator().manual_seed(seed)
    side = math.ceil(math.sqrt(n / 0.85))
    cells = torch.randperm(side * side, generator=gen)[:n]
    pos = torch.stack([cells // side, cells % side], dim=1)
    return torch.randn(n, dim, generator=gen), pos, side


def _time(encoder, x, pos, repeats: int) -> float:
    import torch

    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            encoder(x, pos)
            best = min(best, time.perf_counter() - t0)
    return best


def _load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="numbers of spots")
    parser.add_argument("--full-max", type=int, default=16384, help="largest size run with full attention")
    parser.add_argument("--window", type=int, default=32, help="window side in grid cells")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs per size")
    args = parser.parse_args()
    set_threads(1)
    import torch

    from genedml.models.nn._global import GlobalEncoder

    torch.set_num_threads(1)
    torch.manual_seed(0)
    kw = dict(dim=args.dim, depth=args.depth, heads=args.heads, mlp_dim=2 * args.dim, dropout=0.0)
    full = GlobalEncoder(**kw, attention="full").eval()
    windowed = GlobalEncoder(**kw, attention="windowed", window=args.window).eval()
    windowed.load_state_dict(full.state_dict())

    print(f"machine load before: {_load()}")
    print(
        f"global encoder: width {args.dim}, {args.depth} layers, {args.heads} heads, 1 thread, inference; "
        f"windows {args.window}×{args.window} cells"
    )
    x, pos, _ = _section(512, args.dim)
    _time(full, x, pos, 1), _time(windowed, x, pos, 1)  # warm-up
    print(f"{'spots':>8} {'grid':>10} {'mode':>9} {'seconds':>9} {'spots/s':>10}")
    times: dict[str, dict[int, float]] = {"full": {}, "windowed": {}}
    for n in args.sizes:
        x, pos, side = _section(n, args.dim)
        for mode, enc in (("full", full), ("windowed", windowed)):
            if mode == "full" and n > args.full_max:
                continue
            t = _time(enc, x, pos, args.repeats)
            times[mode][n] = t
            print(f"{n:>8} {f'{side}×{side}':>10} {mode:>9} {t:>9.3f} {n / t:>10.0f}", flush=True)
    print(f"machine load after: {_load()}")

    win = times["windowed"]
    if 16384 in win and 262144 in win:
        print(f"windowed t(256k)/t(16k) = {win[262144] / win[16384]:.1f} (linear: 16, quadratic: 256)")
    measured = sorted(times["full"])
    if len(measured) >= 2:
        a, b = measured[-2], measured[-1]
        ratio = times["full"][b] / times["full"][a]
        print(f"full t({b})/t({a}) = {ratio:.1f} (linear: {b / a:.0f}, quadratic: {(b / a) ** 2:.0f})")
    if measured and win and max(win) > measured[-1]:
        big, top = max(win), measured[-1]
        estimate = times["full"][top] * (big / top) ** 2
        print(
            f"full attention at {big} spots, extrapolated as n² from {top}: ≈ {estimate:.0f} s "
            f"(windowed: {win[big]:.1f} s, {estimate / win[big]:.0f}× faster)"
        )


if __name__ == "__main__":
    main()
