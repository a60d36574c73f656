"""Sub-commands of ``genedml``. Every step goes through the public API; outputs are written atomically."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

__all__ = ["main"]

DEMO_FIT = dict(
    # The 200 most expressed of the 250 synthetic genes (the sparsest fail `min_frac_spots`): PCC(H) then scores the
    # 50 most predictive of them, as in the paper (with only 50 genes it would equal PCC(A)).
    n_genes=200,
    encoder="mobilenetv3_small_100",
    pretrained=False,
    # One spot pitch (200 µm at 1 µm/px): neighbour tiles then coincide with neighbouring spots' windows and are
    # encoded once, which keeps the demo within minutes on 2 CPU cores (the paper's default is 224 px).
    target_px=200,
    config="cpu",
    max_epochs=20,
    patience=5,
    batch_size=32,
    lr=1e-3,  # few spots, few steps: the paper's 1e-4 is tuned for ~10k spots × 200 epochs
)


def _out(msg: str) -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def _save_fig(fig, path: Path) -> None:
    from .._utils import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")


def _save_csv(df, path: Path) -> None:
    from .._utils import atomic_path

    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp)


def _demo(args: argparse.Namespace) -> int:
    import genedml as gd

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    sdata = gd.datasets.synthetic(preset=args.preset, seed=args.seed)
    gd.io.validate(sdata)
    table = gd.io.get_table(sdata)
    _out(
        f"data: {len(gd.io.sections(sdata))} sections, {table.n_obs} spots, {table.n_vars} genes "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    qc = _qc(table)
    _save_csv(qc, out / "qc.csv")
    _save_fig(gd.pl.spots(sdata, color="auto"), out / "hne_spots.png")
    kw = {**DEMO_FIT, "encoder": args.encoder, "max_epochs": args.epochs}
    model = gd.tl.fit(sdata, **kw)
    _out(
        f"fit: {model.fit_info_['epochs_run']} epochs, best validation PCC {model.fit_info_['best_val_pcc']:.3f} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    gd.tl.predict(sdata, model)
    scores = gd.tl.evaluate(sdata)
    _save_csv(scores, out / "evaluation.csv")
    model.save(out / "model.pt", overwrite=True)
    # The held-out (validation) sections and the genes predicted best there: the training sections would flatter it.
    held = list(model.fit_info_["val_sections"])
    genes = _best_genes(sdata, model, 2)
    _save_fig(gd.pl.spatial(sdata, genes=genes, sections=held), out / "truth_vs_prediction.png")
    _save_fig(gd.pl.history(model), out / "history.png")
    _out("\nevaluation per section (normalised log10 units; PCC(H) on genes chosen on the validation split):")
    _out(scores[["n_spots", "mse", "mae", "pcc_a", "pcc_h"]].round(3).to_string())
    _out(_mean_predictor_line(sdata, model))
    _out(f"\nwrote {sorted(p.name for p in out.iterdir())} to {out}/ in {time.perf_counter() - t0:.1f} s")
    return 0


def _mean_predictor_line(sdata, model) -> str:
    import numpy as np

    from .._keys import Keys

    t = sdata["table"]
    obs = np.asarray(t.layers[Keys.observed(Keys.predicted)])[:, t.var[Keys.var_flag(Keys.predicted)].to_numpy()]
    pred = np.asarray(t.layers[Keys.predicted])[:, t.var[Keys.var_flag(Keys.predicted)].to_numpy()]
    val = set(model.fit_info_["val_sections"])
    sec = t.obs[Keys.section].astype(str).to_numpy()
    held = np.isin(sec, list(val))
    mean_mse = float(np.mean((obs[held] - obs[~held].mean(axis=0)) ** 2))
    model_mse = float(np.mean((obs[held] - pred[held]) ** 2))
    return f"held-out sections {sorted(val)}: model MSE {model_mse:.3f} vs training-mean predictor MSE {mean_mse:.3f}"


def _best_genes(sdata, model, n: int) -> list[str]:
    """The ``n`` genes with the highest PCC on the model's validation sections (its HPG order)."""
    import numpy as np

    from .._keys import Keys

    hpg = model.fit_info_.get("hpg")
    if hpg:
        return [str(g) for g in hpg[:n]]
    t = sdata["table"]
    pcc = t.var[Keys.pcc(Keys.predicted)]
    order = np.argsort(-np.nan_to_num(pcc.to_numpy(), nan=-2))
    return [str(t.var_names[i]) for i in order[:n]]


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


def _fit(args: argparse.Namespace) -> int:
    import genedml as gd

    from ._config import load_config, load_data

    cfg = load_config(args.config)
    out = Path(args.out or (cfg.get("output") or "genedml-out"))
    out.mkdir(parents=True, exist_ok=True)
    sdata = load_data(cfg)
    model = gd.tl.fit(sdata, **(cfg.get("fit") or {}))
    model.save(out / "model.pt", overwrite=args.overwrite)
    _save_csv(__import__("pandas").DataFrame(model.history_), out / "history.csv")
    _out(f"trained {model!r}; wrote {out / 'model.pt'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import genedml as gd

    from ._config import load_config, load_data

    cfg = load_config(args.config) if args.config else {}
    sdata = gd.io.read_zarr(args.data) if args.data else load_data(cfg)
    model = gd.models.GeneDML.load(args.model)
    gd.tl.predict(sdata, model, **(cfg.get("predict") or {}))
    gd.io.write_zarr(sdata, args.out, overwrite=args.overwrite)
    _out(f"predicted {len(model.genes_)} genes; wrote {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import genedml as gd

    from ._config import load_config

    cfg = load_config(args.config) if args.config else {}
    sdata = gd.io.read_zarr(args.data)
    scores = gd.tl.evaluate(sdata, **(cfg.get("evaluate") or {}))
    if args.out:
        _save_csv(scores, Path(args.out))
    _out(scores.round(4).to_string())
    return 0


def _cv(args: argparse.Namespace) -> int:
    import genedml as gd

    from ._config import load_config, load_data

    cfg = load_config(args.config)
    out = Path(args.out or (cfg.get("output") or "genedml-cv"))
    out.mkdir(parents=True, exist_ok=True)
    sdata = load_data(cfg)
    kw = {"resume_dir": out / "folds", **(cfg.get("cv") or {})}
    res = gd.tl.cross_validate(sdata, **kw)
    _save_csv(res.scores, out / "scores.csv")
    _save_csv(res.summary, out / "summary.csv")
    _out(res.table().to_string())
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genedml", description="Predict spatial gene expression from H&E (Gene-DML).")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="read → fit → predict → evaluate → save on the built-in synthetic data")
    d.add_argument("--out", default="demo", help="output folder (default: demo/)")
    d.add_argument("--preset", default="small", help="synthetic dataset preset: tiny, small (default)")
    d.add_argument("--encoder", default=DEMO_FIT["encoder"], help="timm encoder (random weights offline)")
    d.add_argument("--epochs", type=int, default=DEMO_FIT["max_epochs"], help="maximum training epochs")
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=_demo)
    f = sub.add_parser("fit", help="fit a model from a YAML config (sections: data, fit, output)")
    f.add_argument("--config", required=True)
    f.add_argument("--out", default=None, help="output folder (default: config 'output')")
    f.add_argument("--overwrite", action="store_true")
    f.set_defaults(func=_fit)
    pr = sub.add_parser("predict", help="predict with a saved model and write a .zarr")
    pr.add_argument("--model", required=True)
    pr.add_argument("--data", default=None, help=".zarr input (else the config's data section)")
    pr.add_argument("--config", default=None)
    pr.add_argument("--out", required=True, help="output .zarr")
    pr.add_argument("--overwrite", action="store_true")
    pr.set_defaults(func=_predict)
    e = sub.add_parser("evaluate", help="score the predictions in a .zarr")
    e.add_argument("--data", required=True)
    e.add_argument("--config", default=None)
    e.add_argument("--out", default=None, help="CSV of per-section scores")
    e.set_defaults(func=_evaluate)
    c = sub.add_parser("cv", help="grouped cross-validation from a YAML config (sections: data, cv, output)")
    c.add_argument("--config", required=True)
    c.add_argument("--out", default=None)
    c.set_defaults(func=_cv)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genedml`` command."""
    import os

    os.environ.setdefault("MPLBACKEND", "Agg")
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError) as e:
        sys.stderr.write(f"genedml {args.command}: error: {e}\n")
        return 2
