"""``genedml`` command line: ``genedml demo --out DIR`` (more subcommands are added by later issues)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    import genedml as gd

    from ._logging import logger

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sdata = gd.datasets.synthetic(preset=args.preset, seed=args.seed)
    gd.io.validate(sdata)
    table = gd.io.get_table(sdata)
    qc = _qc(table)
    qc_path = out / "qc.csv"
    qc.to_csv(qc_path)
    fig_path = out / "hne_spots.png"
    _figure(sdata, gene=args.gene, path=fig_path)
    logger.info("demo finished in %.1f s", time.perf_counter() - t0)
    sys.stdout.write(f"sections: {gd.io.sections(sdata)}\nspots: {table.n_obs}, genes: {table.n_vars}\n")
    sys.stdout.write(qc.to_string() + "\n")
    sys.stdout.write(f"wrote {qc_path} and {fig_path} in {time.perf_counter() - t0:.1f} s\n")
    return 0


def _qc(table):
    import numpy as np
    import pandas as pd

    from ._keys import Keys

    counts = table.layers[Keys.counts]
    lib = np.asarray(counts.sum(axis=1)).ravel()
    genes = np.asarray((counts > 0).sum(axis=1)).ravel()
    df = pd.DataFrame(
        {"section": table.obs[Keys.section].astype(str).to_numpy(), "total_counts": lib, "n_genes": genes}
    )
    return df.groupby("section").agg(
        spots=("total_counts", "size"),
        median_counts=("total_counts", "median"),
        median_genes=("n_genes", "median"),
    )


def _figure(sdata, *, gene: str | None, path: Path) -> None:
    import genedml as gd

    fig = gd.pl.spots(sdata, color=gene or "auto")
    from ._utils import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genedml", description="Predict spatial gene expression from H&E (Gene-DML).")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run the main job on the built-in synthetic data")
    d.add_argument("--out", default="demo", help="output folder (default: demo/)")
    d.add_argument("--preset", default="small", help="synthetic dataset preset: tiny, small (default) or large")
    d.add_argument("--gene", default=None, help="gene to draw over the H&E (default: the most variable)")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genedml`` command."""
    args = _parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
