"""Fixed, hand-built inputs for the plotting tests (no dependency on the synthetic generator, so baselines stay put).

The H&E of each section is pale tissue with a dark dot at every spot centre (radius 0.6 × the spot radius): a
spot drawn at the right place and size covers its dot concentrically, which the tests check in pixels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GENES = ["GNAS", "FASN", "ERBB2", "ACTB", "MT-CO1", "KRT19"]
PIXEL_SIZE = 2.0  # µm per full-resolution pixel
DIAMETER_UM, PITCH_UM = 100.0, 200.0
RADIUS_PX = 0.5 * DIAMETER_UM / PIXEL_SIZE  # 25
PITCH_PX = PITCH_UM / PIXEL_SIZE  # 100
H, W = 640, 880  # full-resolution image size


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = np.meshgrid(np.arange(5), np.arange(7), indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    xy = np.column_stack([140.0 + cols * PITCH_PX, 120.0 + rows * PITCH_PX])
    inside = ((xy[:, 0] - 440) / 360) ** 2 + ((xy[:, 1] - 320) / 250) ** 2 <= 1.0
    return xy[inside], rows[inside], cols[inside]


def _image(xy: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.empty((H, W, 3), dtype=np.float32)
    img[:] = (245, 242, 246)
    tissue = ((xx - 440) / 400) ** 2 + ((yy - 320) / 290) ** 2 <= 1.0
    img[tissue] = (232, 178, 208)
    blocks = rng.normal(0, 8, (H // 40 + 1, W // 40 + 1, 1)).astype(np.float32)  # coarse texture: small PNGs
    img += np.repeat(np.repeat(blocks, 40, axis=0), 40, axis=1)[:H, :W] * tissue[..., None]
    for x, y in xy:
        dot = (xx - x) ** 2 + (yy - y) ** 2 <= (0.6 * RADIUS_PX) ** 2
        img[dot] = (96, 48, 128)
    return np.clip(img, 0, 255).astype(np.uint8)


def _expression(xy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = (xy[:, 0] - 140) / 600
    y = (xy[:, 1] - 120) / 400
    r = np.hypot(x - 0.5, y - 0.5)
    base = np.column_stack([x, y, 1 - r, 0.5 + 0 * x, x * y, (1 - x) * y])
    return rng.poisson(np.exp(1.0 + 2.5 * base)).astype(np.int32)


def make_sdata(n_sections: int = 2, *, seed: int = 0):
    """Sections ``S1``.. with measured counts; ``S2`` stores its image at half resolution (``image_scale=2``)."""
    from genedml.io import SectionData, build_sdata

    rng = np.random.default_rng(seed)
    xy, rows, cols = _grid()
    secs = []
    for i in range(n_sections):
        name = f"S{i + 1}"
        img = _image(xy, seed + i)
        scale = 2.0 if i == 1 else 1.0
        if scale != 1.0:
            img = img[::2, ::2]
        secs.append(
            SectionData(
                name=name,
                patient=f"P{i + 1}",
                image=img,
                pixel_size=PIXEL_SIZE,
                xy=xy,
                array_row=rows,
                array_col=cols,
                counts=_expression(xy, rng),
                genes=GENES,
                barcodes=[f"{r}x{c}" for r, c in zip(rows, cols)],
                spot_diameter_um=DIAMETER_UM,
                pitch_um=PITCH_UM,
                image_scale=scale,
            )
        )
    return build_sdata(secs)


def add_predictions(sdata, *, layer: str = "predicted", seed: int = 0, observed: bool = True) -> None:
    """Write what `gd.tl.predict` / `gd.tl.evaluate` would: the first five genes predicted (noisy truth)."""
    table = sdata.tables["table"]
    rng = np.random.default_rng(seed)
    truth = np.log1p(table.layers["counts"].toarray().astype(np.float32))
    predicted_genes = np.array([g != GENES[-1] for g in table.var_names])
    pred = 0.7 * truth + 0.5 + rng.normal(0, 0.35, truth.shape).astype(np.float32)
    pred[:, ~predicted_genes] = np.nan
    table.layers[layer] = pred.astype(np.float32)
    table.var[f"genedml_{layer}"] = predicted_genes
    if observed:
        obs = truth.copy()
        obs[:, ~predicted_genes] = np.nan
        table.layers[f"{layer}_observed"] = obs
        pcc = np.array(
            [np.corrcoef(truth[:, j], pred[:, j])[0, 1] if m else np.nan for j, m in enumerate(predicted_genes)]
        )
        table.var[f"genedml_pcc_{layer}"] = pcc


def cv_frame(seed: int = 0) -> pd.DataFrame:
    """A tidy cross-validation table: 3 methods × 4 folds × 2 sections."""
    rng = np.random.default_rng(seed)
    level = {"Gene-DML": 0.32, "TRIPLEX": 0.28, "ST-Net": 0.16}
    rows = []
    for method, pcc in level.items():
        for fold in range(4):
            for s in range(2):
                a = pcc + rng.normal(0, 0.03)
                rows.append(
                    {
                        "method": method,
                        "fold": fold,
                        "section": f"F{fold}S{s}",
                        "mse": 0.45 - 0.4 * pcc + rng.normal(0, 0.02),
                        "mae": 0.52 - 0.3 * pcc + rng.normal(0, 0.02),
                        "pcc_a": a,
                        "pcc_h": a + 0.15 + rng.normal(0, 0.02),
                    }
                )
    return pd.DataFrame(rows)


def ablation_frame(seed: int = 1) -> pd.DataFrame:
    """An ablation table in the cross-validation format."""
    df = cv_frame(seed)
    variants = ["full", "no_instance_level", "no_global_scale", "no_instance_group", "no_feature_grouping", "plain"]
    drop = dict(zip(variants, [0.0, 0.03, 0.02, 0.015, 0.01, 0.05]))
    base = df[df["method"] == "Gene-DML"]
    out = []
    for v in variants:
        part = base.copy()
        part["method"] = v
        part[["pcc_a", "pcc_h"]] -= drop[v]
        part[["mse", "mae"]] += drop[v] / 3
        out.append(part)
    return pd.concat(out, ignore_index=True)


def history_list(n_epochs: int = 30) -> list[dict]:
    """A training history like ``model.history_`` (val metrics every epoch, lr halved every 10)."""
    out = []
    for e in range(n_epochs):
        t = e / n_epochs
        rec = {
            "epoch": e,
            "train_reg": 0.9 * np.exp(-3 * t) + 0.25,
            "train_inst_local": 0.5 * np.exp(-2 * t) + 0.1,
            "train_inst_neighbor": 0.4 * np.exp(-2 * t) + 0.12,
            "train_inst_global": 0.3 * np.exp(-2.5 * t) + 0.08,
            "train_ig": 0.6 * np.exp(-1.5 * t) + 0.2,
            "train_cluster_acc": 0.4 + 0.5 * (1 - np.exp(-4 * t)),
            "val_pcc": 0.3 * (1 - np.exp(-5 * t)) - 0.05 * max(0.0, t - 0.6),
            "val_mse": 0.6 * np.exp(-4 * t) + 0.3 + 0.1 * max(0.0, t - 0.6),
            "lr": 1e-4 * 0.5 ** (e // 10),
        }
        rec["train_inst"] = rec["train_inst_local"] + rec["train_inst_neighbor"] + rec["train_inst_global"]
        rec["train_loss"] = rec["train_reg"] + 0.5 * rec["train_inst"] + 0.3 * rec["train_ig"]
        out.append({k: float(v) if k != "epoch" else v for k, v in rec.items()})
    return out
