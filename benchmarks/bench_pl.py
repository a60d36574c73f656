"""Time to draw spatial maps: genedml's hand-written ``gd.pl.spots`` against spatialdata-plot on the same data.

Issue 11 item 4 asks to use spatialdata-plot where it draws what `gd.pl` needs and to keep hand-written code only
where it is clearly better. This script measures one thing both can draw: the H&E of every section with its spots
coloured by one gene on one shared colour scale, one panel per section, saved as a PNG. Both draw into Axes of the
same size and save at the same dpi. Run::

    python benchmarks/bench_pl.py                     # 8 synthetic sections of 3300 × 3300 px
    python benchmarks/bench_pl.py --sections 4 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")


def _genedml(sdata, gene: str, out: Path) -> None:
    import genedml as gd

    gd.pl.spots(sdata, color=gene, ncols=4, max_px=600, save=out, overwrite=True)


def _spatialdata_plot(sdata, gene: str, out: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np
    import spatialdata_plot  # noqa: F401  (registers the .pl accessor)
    from matplotlib.colors import Normalize

    table = sdata.tables["table"]
    values = np.log1p(table[:, gene].layers["counts"].toarray().ravel())
    norm = Normalize(float(values.min()), float(values.max()))  # one scale for every section, as gd.pl.spots
    table.layers["log1p"] = table.layers["counts"].log1p()
    sections = list(dict.fromkeys(table.obs["section"].astype(str)))
    ncols = min(4, len(sections))
    nrows = -(-len(sections) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.2 * nrows), squeeze=False, layout="constrained")
    for ax, s in zip(axes.ravel(), sections):
        (
            sdata.pl.render_images(f"{s}_hne")
            .pl.render_shapes(f"{s}_spots", color=gene, table_name="table", table_layer="log1p", norm=norm)
            .pl.show(coordinate_systems=s, ax=ax, title=s, colorbar=False)
        )
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import matplotlib.pyplot as plt

    import genedml as gd

    sdata = gd.datasets.synthetic(n_sections=args.sections, n_patients=2, seed=0)
    gene = str(sdata.tables["table"].var_names[0])
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}; matplotlib {matplotlib.__version__}")
    print(f"data: {args.sections} synthetic sections, image {sdata.images['S1_hne'].shape}, gene {gene}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {}
        for name, draw in (("gd.pl.spots", _genedml), ("spatialdata-plot", _spatialdata_plot)):
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    draw(sdata, gene, Path(tmp) / f"{name}.png")
                times.append(time.perf_counter() - t0)
                plt.close("all")
            rows[name] = min(times)
            print(f"{name:>18}: {min(times):6.2f} s (best of {args.repeats}: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"spatialdata-plot / gd.pl.spots: {rows['spatialdata-plot'] / rows['gd.pl.spots']:.1f}×")


if __name__ == "__main__":
    main()
