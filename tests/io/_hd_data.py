"""A tiny fake Visium HD ``outs`` folder for the reader tests (written by the tests; no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from _io_data import _write_10x_h5

HD_MPP = 0.5  # µm per full-resolution pixel
HD_FULL = (200, 240)  # (h, w) of the full-resolution frame
HD_ORIGIN = (20.0, 30.0)  # (x, y) px of the centre of bin (0, 0)
HD_GENES = ["GA", "GB", "GC", "GD"]


def _bins(bin_um: int, n_rows: int, n_cols: int):
    rows, cols = (a.ravel() for a in np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij"))
    step = bin_um / HD_MPP
    x = HD_ORIGIN[0] + cols * step
    y = HD_ORIGIN[1] + rows * step
    barcodes = [f"s_{bin_um:03d}um_{r:05d}_{c:05d}-1" for r, c in zip(rows, cols)]
    return rows, cols, x, y, barcodes


def write_bin_folder(root: Path, bin_um: int, n_rows: int, n_cols: int, *, seed: int = 0) -> None:
    """``binned_outputs/square_<bin>um``: counts of every bin but the first (off tissue), positions, scale factors."""
    rng = np.random.default_rng(seed)
    d = root / "binned_outputs" / f"square_{bin_um:03d}um"
    (d / "spatial").mkdir(parents=True)
    rows, cols, x, y, barcodes = _bins(bin_um, n_rows, n_cols)
    in_tissue = np.ones(len(rows), np.int32)
    in_tissue[0] = 0
    # the filtered matrix holds in-tissue bins only, in an order other than the positions file's
    order = np.flatnonzero(in_tissue)[::-1]
    X = rng.poisson(1.5, (len(order), len(HD_GENES)))
    _write_10x_h5(d / "filtered_feature_bc_matrix.h5", X, [barcodes[i] for i in order], HD_GENES)
    pos = pd.DataFrame(
        {
            "barcode": barcodes,
            "in_tissue": in_tissue,
            "array_row": rows.astype(np.int32),
            "array_col": cols.astype(np.int32),
            "pxl_row_in_fullres": y,
            "pxl_col_in_fullres": x,
        }
    )
    pos.to_parquet(d / "spatial" / "tissue_positions.parquet", index=False)
    sf = {
        "spot_diameter_fullres": bin_um / HD_MPP,
        "bin_size_um": float(bin_um),
        "microns_per_pixel": HD_MPP,
        "tissue_hires_scalef": 0.5,
        "tissue_lowres_scalef": 0.1,
        "fiducial_diameter_fullres": 100.0,
        "regist_target_img_scalef": 0.5,
    }
    (d / "spatial" / "scalefactors_json.json").write_text(json.dumps(sf))


def make_visium_hd_dir(tmp_path: Path, *, prefix: str = "HD1") -> Path:
    """A tiny Visium HD ``outs`` folder: 8 µm (8 × 10 bins) and 16 µm (4 × 5 bins) binned outputs, 4 genes, a
    200×240 px full-resolution frame at 0.5 µm/px with hires (×0.5) and lowres (×0.1) PNGs and a tiled TIFF in
    ``microscope_image/``; ``<prefix>_feature_slice.h5`` carries the layout metadata spatialdata-io reads."""
    import h5py
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(5)
    root = tmp_path / "outs"
    (root / "spatial").mkdir(parents=True)
    write_bin_folder(root, 8, 8, 10, seed=1)
    write_bin_folder(root, 16, 4, 5, seed=2)
    (root / "spatial" / "scalefactors_json.json").write_text(
        (root / "binned_outputs" / "square_016um" / "spatial" / "scalefactors_json.json").read_text()
    )
    meta = {"hd_layout_json": json.dumps({"file_format": "1.0", "transform": [1, 0, 0, 0, 1, 0, 0, 0, 1]})}
    with h5py.File(root / f"{prefix}_feature_slice.h5" if prefix else root / "feature_slice.h5", "w") as f:
        f.attrs["metadata_json"] = json.dumps(meta)
    h, w = HD_FULL
    full = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    (root / "microscope_image").mkdir()
    tifffile.imwrite(root / "microscope_image" / "tissue.tif", full, photometric="rgb", tile=(64, 64))
    Image.fromarray(full[::2, ::2]).save(root / "spatial" / "tissue_hires_image.png")
    Image.fromarray(full[::10, ::10]).save(root / "spatial" / "tissue_lowres_image.png")
    return root


def hd_full_image(root: Path) -> np.ndarray:
    """The full-resolution pixels written by :func:`make_visium_hd_dir`."""
    import tifffile

    return tifffile.imread(root / "microscope_image" / "tissue.tif")
