"""Builders and constants for the reader tests: tiny fake layouts (ST, Space Ranger, HEST) and tiny sections.

Imported by ``conftest.py`` (fixtures) and the test modules; a uniquely named module, so it never clashes with the
other test folders' ``conftest`` modules.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

HER2ST_IMAGES = {
    "B4": "data/ST-imgs/B/B4/BT10737_D2_HE.jpg",
    "C2": "data/ST-imgs/C/C2/5714_HE_BT_C2.jpg",
    "C3": "data/ST-imgs/C/C3/5714_HE_BT_D1.jpg",
    "C4": "data/ST-imgs/C/C4/5714_HE_BT_D2.jpg",
    "C5": "data/ST-imgs/C/C5/5714_HE_BT_E1.jpg",
}


def sha256_files(paths) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders)."""
    out = {}
    for p in map(Path, paths):
        for f in sorted([p] if p.is_file() else p.rglob("*")):
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def her2st_samples_table() -> pd.DataFrame:
    """The samples table of the 5 real HER2ST sections (paths relative to the her2st folder), as in SOURCE.md."""
    return pd.DataFrame(
        [
            {
                "section": s,
                "patient": s[0],
                "counts": f"data/ST-cnts/{s}.tsv.gz",
                "spots": f"data/ST-spotfiles/{s}_selection.tsv",
                "image": img,
            }
            for s, img in HER2ST_IMAGES.items()
        ]
    )


# --------------------------------------------------------------------------------------------------- tiny ST layout

PITCH_PX = 40.0  # pixels per array unit in the tiny layout → 200 µm / 40 px = 5 µm/px


def write_st_section(
    root: Path, name: str, *, genes=None, image_format: str = "jpg", size=(360, 300), seed: int = 0
) -> dict[str, str]:
    """A tiny ST section: array x 1..8, y 1..7 on a 40 px grid; one unselected spot, one spot without counts and one
    count row without a spot. Returns the samples-table row (paths relative to ``root``)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    genes = [f"G{i}" for i in range(8)] if genes is None else genes
    xs, ys = np.meshgrid(np.arange(2, 9), np.arange(2, 8))
    x, y = xs.ravel(), ys.ravel()
    spots = pd.DataFrame(
        {
            "x": x,
            "y": y,
            "new_x": x + rng.normal(0, 0.02, x.size),
            "new_y": y + rng.normal(0, 0.02, y.size),
            "selected": 1,
        }
    )
    spots["pixel_x"] = np.round(PITCH_PX * (spots["new_x"] - 1), 2)
    spots["pixel_y"] = np.round(PITCH_PX * (spots["new_y"] - 1), 2)
    spots = spots[["x", "y", "new_x", "new_y", "pixel_x", "pixel_y", "selected"]]
    spots.loc[0, "selected"] = 0
    ids = [f"{a}x{b}" for a, b in zip(x, y)]
    counts = pd.DataFrame(rng.poisson(3, (len(ids), len(genes))), index=ids, columns=genes)
    counts = counts.drop(index=ids[1])  # a spot without counts
    counts.loc["30x30"] = 1  # a count row without a spot
    (root / "cnts").mkdir(parents=True, exist_ok=True)
    (root / "spots").mkdir(exist_ok=True)
    (root / "imgs").mkdir(exist_ok=True)
    counts.to_csv(root / "cnts" / f"{name}.tsv.gz", sep="\t")
    spots.to_csv(root / "spots" / f"{name}_selection.tsv", sep="\t", index=False)
    w, h = size
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = root / "imgs" / f"{name}.{image_format}"
    if image_format == "tif":
        import tifffile

        tifffile.imwrite(img, pixels, photometric="rgb", tile=(128, 128))
    else:
        Image.fromarray(pixels).save(img)
    return {
        "section": name,
        "patient": f"P{name}",
        "counts": f"cnts/{name}.tsv.gz",
        "spots": f"spots/{name}_selection.tsv",
        "image": f"imgs/{name}.{image_format}",
    }


def make_st_layout(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """Two tiny ST sections (S1: JPEG, S2: tiled TIFF with one extra gene) and their samples table."""
    root = tmp_path / "st"
    rows = [
        write_st_section(root, "S1", image_format="jpg", seed=1),
        write_st_section(root, "S2", genes=[f"G{i}" for i in range(9)], image_format="tif", seed=2),
    ]
    return root, pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------- fake Visium

VISIUM_FULL = (300, 400)  # (h, w) of the full-resolution frame
VISIUM_SCALEF = {"spot_diameter_fullres": 20.0, "tissue_hires_scalef": 0.5, "tissue_lowres_scalef": 0.1}


def _write_10x_h5(path: Path, X, barcodes, genes) -> None:
    import h5py
    import scipy.sparse as sp

    X = sp.csr_matrix(X)  # barcodes × genes; 10x stores genes × barcodes in CSC, i.e. the same three arrays
    with h5py.File(path, "w") as f:
        f.attrs["library_ids"] = np.array([b"lib1"])
        m = f.create_group("matrix")
        m["barcodes"] = np.array(barcodes, dtype="S")
        m["data"] = X.data.astype(np.int32)
        m["indices"] = X.indices.astype(np.int64)
        m["indptr"] = X.indptr.astype(np.int64)
        m["shape"] = np.array([X.shape[1], X.shape[0]], dtype=np.int32)
        feat = m.create_group("features")
        feat["id"] = np.array([f"ENSG{i:05d}" for i in range(len(genes))], dtype="S")
        feat["name"] = np.array(genes, dtype="S")
        feat["feature_type"] = np.array([b"Gene Expression"] * len(genes))
        feat["genome"] = np.array([b"GRCh38"] * len(genes))


def make_visium_dir(tmp_path: Path) -> Path:
    """A tiny Space Ranger 2 ``outs`` folder: 20 barcodes in the h5 (2 of them off tissue), 5 genes, a 300×400 px
    full-resolution frame with hires (×0.5) and lowres (×0.1) PNGs, plus ``fullres.tif`` and ``fullres.png``."""
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(3)
    root = tmp_path / "outs"
    (root / "spatial").mkdir(parents=True)
    rows, cols = np.meshgrid(np.arange(4), np.arange(0, 10, 2))
    rows, cols = rows.ravel(), cols.ravel() + (rows.ravel() % 2)  # Visium's offset rows
    barcodes = [f"AAAC{i:04d}-1" for i in range(rows.size)]
    genes = ["GA", "GB", "GC", "GD", "GE"]
    _write_10x_h5(root / "filtered_feature_bc_matrix.h5", rng.poisson(2, (len(barcodes), len(genes))), barcodes, genes)
    pos = pd.DataFrame(
        {
            "barcode": [*barcodes, "OFFT0000-1"],
            "in_tissue": [0, 0, *[1] * (len(barcodes) - 2), 0],
            "array_row": [*rows, 9],
            "array_col": [*cols, 9],
            "pxl_row_in_fullres": [*(60 + 32 * rows), 5],  # 2.75 µm/px: 88 µm per row
            "pxl_col_in_fullres": [*(40 + 18 * cols), 5],  # 49.5 µm per column
        }
    )
    pos.to_csv(root / "spatial" / "tissue_positions.csv", index=False)
    (root / "spatial" / "scalefactors_json.json").write_text(
        json.dumps({**VISIUM_SCALEF, "fiducial_diameter_fullres": 30.0})
    )
    h, w = VISIUM_FULL
    full = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    tifffile.imwrite(root / "fullres.tif", full, photometric="rgb", tile=(128, 128))
    Image.fromarray(full).save(root / "fullres.png")
    Image.fromarray(full[::2, ::2]).save(root / "spatial" / "tissue_hires_image.png")
    Image.fromarray(full[::10, ::10]).save(root / "spatial" / "tissue_lowres_image.png")
    return root


# --------------------------------------------------------------------------------------------------- fake HEST

HEST_SHAPE = (1000, 1200)  # (h, w) of level 0


def write_pyramid(path: Path, img: np.ndarray, *, layout: str) -> None:
    """A 3-level tiled pyramid: ``"subifds"`` (levels in SubIFDs) or ``"pages"`` (plain pages, as pyvips writes)."""
    import tifffile

    levels = [img, img[::2, ::2], img[::4, ::4]]
    with tifffile.TiffWriter(path) as tw:
        if layout == "subifds":
            tw.write(levels[0], subifds=2, tile=(256, 256), photometric="rgb", compression="zlib")
            for lv in levels[1:]:
                tw.write(lv, subfiletype=1, tile=(256, 256), photometric="rgb", compression="zlib")
        else:
            for lv in levels:
                tw.write(lv, tile=(256, 256), photometric="rgb", compression="zlib")


def make_hest_image() -> np.ndarray:
    rng = np.random.default_rng(4)
    return rng.integers(0, 256, (*HEST_SHAPE, 3), dtype=np.uint8)


def make_hest_files(tmp_path: Path, image: np.ndarray, layout: str) -> dict[str, Path]:
    """One fake HEST-1k sample (h5ad, pyramidal tif, metadata json); 24 spots, 2 of them off tissue."""
    import anndata as ad

    rng = np.random.default_rng(5)
    rows, cols = np.meshgrid(np.arange(4), np.arange(6))
    rows, cols = rows.ravel(), cols.ravel()
    adata = ad.AnnData(
        X=rng.poisson(4, (rows.size, 7)).astype(np.float32),
        obs=pd.DataFrame(
            {"array_row": rows, "array_col": cols, "in_tissue": [0, 0, *[1] * (rows.size - 2)]},
            index=[f"BC{i:03d}" for i in range(rows.size)],
        ),
        var=pd.DataFrame(index=[f"H{i}" for i in range(7)]),
    )
    adata.obsm["spatial"] = np.column_stack(
        [100 + 91 * cols, 120 + 157 * rows]
    )  # 0.55 µm/px on Visium's grid.astype(np.float64)
    root = tmp_path / "hest"
    for d in ("st", "wsis", "metadata"):
        (root / d).mkdir(parents=True)
    files = {
        "h5ad": root / "st" / "TENX00.h5ad",
        "image": root / "wsis" / "TENX00.tif",
        "metadata": root / "metadata" / "TENX00.json",
    }
    adata.write_h5ad(files["h5ad"])
    write_pyramid(files["image"], image, layout=layout)
    meta = {
        "id": "TENX00",
        "patient": "Patient 1",
        "st_technology": "Visium",
        "pixel_size_um_estimated": 0.55,
        "pixel_size_um_embedded": None,
        "spot_diameter": 55.0,
        "inter_spot_dist": 100.0,
        "fullres_px_width": HEST_SHAPE[1],
        "fullres_px_height": HEST_SHAPE[0],
    }
    files["metadata"].write_text(json.dumps(meta))
    return files


# --------------------------------------------------------------------------------------------------- tiny sdata


def tiny_section(name: str = "T1", *, n: int = 6, image_hw=(64, 80), seed: int = 0, **kw):
    """A SectionData from tiny arrays (spots on a 10 px grid inside a 64×80 image)."""
    from genedml.io import SectionData

    rng = np.random.default_rng(seed)
    xy = np.column_stack([10.0 + 10 * np.arange(n), np.full(n, 20.0)])
    args = dict(
        name=name,
        patient="P",
        image=rng.integers(0, 256, (*image_hw, 3), dtype=np.uint8),
        pixel_size=2.0,
        xy=xy,
        array_row=np.zeros(n, dtype=int),
        array_col=np.arange(n),
        counts=rng.poisson(2, (n, 4)),
        genes=["a", "b", "c", "d"],
        barcodes=[f"b{i}" for i in range(n)],
        spot_diameter_um=10.0,
        pitch_um=20.0,
    )
    args.update(kw)
    return SectionData(**args)
