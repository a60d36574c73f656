"""Shared by the benchmark scripts: where the HER2ST test sections are, how to read them, thread settings."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HER2ST = REPO.parent / "shared" / "data" / "her2st"
SECTIONS = ("B4", "C2", "C3", "C4", "C5")


def her2st_samples(base: Path, sections=SECTIONS):
    """The samples table of `gd.io.read_st` for a local copy of the HER2ST files (paths relative to ``base``)."""
    import pandas as pd

    rows = []
    for s in sections:
        (img,) = sorted((base / "data" / "ST-imgs" / s[0] / s).glob("*.jpg"))
        rows.append(
            {
                "section": s,
                "patient": s[0],
                "counts": f"data/ST-cnts/{s}.tsv.gz",
                "spots": f"data/ST-spotfiles/{s}_selection.tsv",
                "image": str(img.relative_to(base)),
            }
        )
    return pd.DataFrame(rows)


def read_her2st(base: Path, sections=SECTIONS):
    """The local HER2ST ``sections`` as one SpatialData."""
    import genedml as gd

    return gd.io.read_st(her2st_samples(base, sections), base_dir=base)


def set_threads(n: int) -> int:
    """BLAS/OpenMP thread counts; they must be set before numpy/torch are imported (torch's own count after)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return n
