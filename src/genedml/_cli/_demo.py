"""``genedml demo``: the whole job on built-in synthetic data, with train / validation / test sections kept apart."""

from __future__ import annotations

import sys
import time
from pathlib import Path

__all__ = ["DEMO_DATA", "DEMO_FIT", "DEMO_OUTPUTS", "run_demo"]

#: Three patients, one section each: one trains, one validates (early stopping, gene choice), one tests.
DEMO_DATA = dict(n_sections=3, n_patients=3)
DEMO_FIT = dict(
    # The 200 most expressed of the 250 synthetic genes (the sparsest fail `min_frac_spots`): PCC(H) then scores the
    # 50 most predictive of them, as in the paper (with only 50 genes it would equal PCC(A)).
    n_top_genes=200,
    # Hand-crafted colour, stain, texture and nuclei features: no weights needed, the best offline encoder measured
    # on real HER2ST (benchmarks/README.md), and better than a random CNN on the held-out section here.
    encoder="morphology",
    pretrained=False,
    # One spot pitch (200 µm, at 2 µm/px): neighbour tiles then coincide with neighbouring spots' windows and are
    # encoded once, which keeps the demo within a minute on 2 CPU cores (the paper's default is 224 px native).
    target_px=100,
    target_mpp=2.0,
    config="cpu",
    max_epochs=20,
    patience=5,
    batch_size=32,
    lr=1e-3,  # few spots, few steps: the paper's 1e-4 is tuned for ~10k spots × 200 epochs
)
DEMO_OUTPUTS = ("qc.csv", "hne_spots.png", "evaluation.csv", "model.pt", "truth_vs_prediction.png", "history.png")


def _out(msg: str) -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def split_by_patient(table) -> dict[str, list[str]]:
    """``{"train": …, "validation": …, "test": …}`` sections: the first patient(s) train, the last two hold out."""
    from .._keys import Keys

    by_patient: dict[str, list[str]] = {}
    for sec, pat in table.obs[[Keys.section, Keys.patient]].astype(str).drop_duplicates().itertuples(index=False):
        by_patient.setdefault(pat, []).append(sec)
    pats = sorted(by_patient)
    if len(pats) < 3:
        raise ValueError(f"the demo needs 3 patients (train / validation / test), got {pats}.")
    return {
        "train": [s for p in pats[:-2] for s in by_patient[p]],
        "validation": by_patient[pats[-2]],
        "test": by_patient[pats[-1]],
    }


def run_demo(out: Path, *, preset: str, encoder: str, epochs: int, seed: int, progress: bool | None) -> int:
    """Run the demo into ``out`` (its outputs were checked not to exist, or ``--overwrite`` was given)."""
    import genedml as gd

    from ._main import save_csv, save_fig

    t0 = time.perf_counter()
    sdata = gd.datasets.synthetic(preset=preset, seed=seed, **DEMO_DATA)
    gd.io.validate(sdata)
    table = gd.io.get_table(sdata)
    roles = split_by_patient(table)
    _out(
        f"data: {len(gd.io.sections(sdata))} sections, {table.n_obs} spots, {table.n_vars} genes "
        f"({time.perf_counter() - t0:.1f} s)\nsections: train {roles['train']} · validation {roles['validation']} "
        f"(early stopping, gene choice) · test {roles['test']} (untouched until evaluation)"
    )
    out.mkdir(parents=True, exist_ok=True)
    save_csv(_qc(table), out / "qc.csv")
    save_fig(gd.pl.spots(sdata, color="auto"), out / "hne_spots.png")
    kw = {**DEMO_FIT, "encoder": encoder, "max_epochs": epochs, "progress": progress}
    kw["n_top_genes"] = min(kw["n_top_genes"], table.n_vars)  # the tiny preset has 50 genes
    model = gd.tl.fit(sdata, sections=roles["train"], val_sections=roles["validation"], **kw)
    _out(
        f"fit: {model.fit_info_['epochs_run']} epochs, best validation PCC {model.fit_info_['best_val_pcc']:.3f} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    gd.tl.predict(sdata, model, progress=progress)
    scores = gd.tl.evaluate(sdata)
    save_csv(scores, out / "evaluation.csv")
    model.save(out / "model.pt", overwrite=True)
    genes = [str(g) for g in model.fit_info_["hpg"][:2]]  # the best two on the *validation* sections
    fig = gd.pl.spatial(sdata, genes=genes, sections=roles["test"], scale="shared")
    fig.suptitle(
        f"test sections {', '.join(roles['test'])} (never used in training or early stopping); genes: the two best "
        f"on validation sections {', '.join(roles['validation'])}",
        fontsize=10,
    )
    save_fig(fig, out / "truth_vs_prediction.png")
    save_fig(gd.pl.history(model), out / "history.png")
    _out("\nevaluation per section (normalised log10 units; PCC(H) on the genes chosen on the validation sections):")
    _out(scores[["role", "n_spots", "mse", "mae", "pcc_a", "pcc_h"]].round(3).to_string())
    _out(_mean_predictor_line(sdata, roles))
    _out(f"\nwrote {sorted(p.name for p in out.iterdir())} to {out}/ in {time.perf_counter() - t0:.1f} s")
    return 0


def _mean_predictor_line(sdata, roles: dict[str, list[str]]) -> str:
    import numpy as np

    from .._keys import Keys

    t = sdata["table"]
    flag = t.var[Keys.var_flag(Keys.predicted)].to_numpy()
    obs = np.asarray(t.layers[Keys.observed(Keys.predicted)])[:, flag]
    pred = np.asarray(t.layers[Keys.predicted])[:, flag]
    sec = t.obs[Keys.section].astype(str).to_numpy()
    test, train = np.isin(sec, roles["test"]), np.isin(sec, roles["train"])
    mean_mse = float(np.mean((obs[test] - obs[train].mean(axis=0)) ** 2))
    model_mse = float(np.mean((obs[test] - pred[test]) ** 2))
    return (
        f"test sections {roles['test']}: model MSE {model_mse:.3f} vs MSE {mean_mse:.3f} of predicting every spot "
        "as the training mean"
    )


def _qc(table):
    import numpy as np
    import pandas as pd

    from .._keys import Keys

    counts = table.layers[Keys.counts]
    lib = np.asarray(counts.sum(axis=1)).ravel()
    genes = np.asarray((counts > 0).sum(axis=1)).ravel()
    section = table.obs[Keys.section].astype(str).to_numpy()
    df = pd.DataFrame({"section": section, "total_counts": lib, "n_genes": genes})
    return df.groupby("section").agg(
        spots=("total_counts", "size"), median_counts=("total_counts", "median"), median_genes=("n_genes", "median")
    )
