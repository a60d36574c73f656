"""Gene-DML against the baselines and its ablation rows on the real HER2ST sections (issue 5, item 4).

Splits, all through ``gd.tl.cross_validate`` under ``protocol="clean"`` (early stopping and the HPG genes chosen on
an inner validation split of the training fold, never on the scored sections):

* **patient** — leave-patient-out: B4 vs C2–C5, both directions (``groupby="patient"``, 2 folds);
* **section** — leave-one-section-out within patient C (C2–C5 only, ``groupby="section"``, 4 folds).

Methods: ``gene_dml``, ``triplex`` (Gene-DML's network trained by the regression loss only), ``mean``, ``ridge``
(penalty by grouped CV), ``bleep`` (retrieval), ``stnet`` (a CNN fine-tuned end to end: small backbone and few epochs
on CPUs; ``--no-stnet`` drops it) and the ablation rows of `genedml.models.ABLATIONS` (``full`` is ``gene_dml``
itself, not trained twice). Every frozen-feature method uses the same encoder and the same cached features, which
are computed once, before any training.

The work is a queue of (split, method) tasks run by ``--jobs`` worker processes of ``--threads`` threads each; every
finished (method, fold) is stored under ``--out``/resume and never recomputed, so an interrupted run resumes. At
the end the tables are assembled from those files: per split, the paper-style tables (MSE / MAE / PCC(A) / PCC(H),
mean ± std over folds) for the methods and for the ablations, PCC(A) per test group, where the clean protocol took
its HPG genes from, a permutation null of PCC(H) for Gene-DML's predictions, and whether Gene-DML beats every
baseline and every ablation row. Tables and per-section scores are written as CSV to ``--out``.

Offline there are no pretrained weights: the default encoder is a **randomly initialised** ResNet18 (seeded), which
gives every method the same weak, untrained features — a floor, not the paper's setting. The paper's setting is
one option set away on a GPU machine with the weights (``--encoder uni --pretrained``):

    python benchmarks/bench_her2st.py                              # CPU configuration (see --help, README)
    python benchmarks/bench_her2st.py --splits section --no-stnet  # a part
    python benchmarks/bench_her2st.py --encoder uni --pretrained --target-px 224 --target-um none \\
        --config her2st --epochs 200 --patience 20 --lr 1e-4 --batch-size 256 --stnet-backbone densenet121 \\
        --stnet-pretrained --stnet-lr 1e-4 --accelerator gpu --jobs 1 --threads 8
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import _encoders_study as study
from _common import HER2ST, REPO, SECTIONS, read_her2st, set_threads

BASELINE_ROWS = ("triplex", "mean", "ridge", "bleep", "stnet")
ABLATION_ROWS = ("no_instance_level", "no_global_scale", "no_instance_group", "no_feature_grouping", "plain")
SPLITS = {
    "patient": ("patient", SECTIONS, "leave-patient-out (B4 ↔ C2–C5, 2 folds)"),
    "section": ("section", ("C2", "C3", "C4", "C5"), "leave-one-section-out within patient C (4 folds)"),
}
METRICS = {"mse": "MSE", "mae": "MAE", "pcc_a": "PCC(A)", "pcc_h": "PCC(H)"}
# relative cost of one task, to start the longest first (measured on 2 loaded CPU cores)
COST = {"stnet": 1.2, "mean": 0.1, "ridge": 0.2, "bleep": 0.4}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=HER2ST, help="HER2ST folder (default: ../shared/data/her2st)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "her2st", help="output folder")
    p.add_argument("--no-resume", action="store_true", help="discard finished folds in --out and recompute")
    p.add_argument("--splits", default="patient,section", help="patient, section or both (default)")
    g = p.add_argument_group("features (shared by every frozen-feature method)")
    g.add_argument("--encoder", default="resnet18", help="registry/timm name or hf-hub id (default resnet18)")
    g.add_argument("--pretrained", action="store_true", help="pretrained weights (default: seeded random init)")
    g.add_argument("--target-px", type=int, default=56, help="encoder input side in px (default 56)")
    g.add_argument("--target-um", default="112", help="window side in µm (resampled); 'none' = native (default 112)")
    g.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default: gd.settings.cachedir)")
    g = p.add_argument_group("genes and targets")
    g.add_argument("--panel", default="her2st", help="gene panel, or 'none' for the top --n-genes (default her2st)")
    g.add_argument("--n-genes", type=int, default=250)
    g = p.add_argument_group("training (Gene-DML family, BLEEP; ST-Net has its own epochs)")
    g.add_argument("--config", default="cpu", help="GeneDMLConfig preset (default cpu; paper: her2st)")
    g.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="GeneDMLConfig overrides, e.g. K=4 lam=0.2 (JSON values)")  # fmt: skip
    g.add_argument("--epochs", type=int, default=100, help="max epochs (default 100; paper 200)")
    g.add_argument("--patience", type=int, default=10, help="early-stopping patience (default 10; paper 20)")
    g.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default 2e-4; paper 1e-4)")
    g.add_argument("--batch-size", type=int, default=256, help="spots per batch (default 256, genedml's)")
    g.add_argument("--accelerator", default="cpu", help="cpu (default), gpu or auto")
    g = p.add_argument_group("methods")
    g.add_argument("--methods", default=",".join(("gene_dml", *BASELINE_ROWS)), help="method rows")
    g.add_argument("--ablations", default=",".join(ABLATION_ROWS), help="ablation rows ('' for none)")
    g.add_argument("--no-stnet", action="store_true", help="drop ST-Net (the slowest baseline on CPUs)")
    g.add_argument("--stnet-backbone", default="resnet10t", help="ST-Net CNN (default resnet10t; paper densenet121)")
    g.add_argument("--stnet-epochs", type=int, default=6, help="ST-Net max epochs (default 6)")
    g.add_argument("--stnet-lr", type=float, default=1e-3, help="ST-Net learning rate (default 1e-3: few epochs)")
    g.add_argument("--stnet-pretrained", action="store_true", help="ST-Net starts from pretrained weights")
    g = p.add_argument_group("machine and reporting")
    g.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    g.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per worker (default 1)")
    g.add_argument("--n-perm", type=int, default=100, help="shuffles of the PCC(H) permutation null (0: skip)")
    g.add_argument("--seed", type=int, default=2021)
    g = p.add_argument_group("offline study (issue 12): encoders × methods × seeds, raw and smoothed predictions")
    g.add_argument("--study", action="store_true", help="run the study instead of the method/ablation tables")
    g.add_argument("--encoders", default="resnet18,morphology,morphology+resnet18", help="study encoders")
    g.add_argument("--ssl-weights", type=Path, default=None,
                   help="SSL-adapted ResNet18 weights: adds ssl-resnet18 and morphology+ssl-resnet18 rows "
                        "(or name either label in --encoders to choose)")  # fmt: skip
    g.add_argument("--seeds", type=int, default=3, help="seeds of the neural methods (default 3)")
    g.add_argument("--no-smooth", action="store_true", help="study: no smoothed-prediction rows")
    g.add_argument("--no-ensemble", action="store_true",
                   help="study: no seed-ensemble rows (each fold's models of all seeds averaged)")  # fmt: skip
    g.add_argument("--report-only", action="store_true", help="study: tabulate the finished tasks, train nothing")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------ set-up


class _Once(logging.Filter):
    """Let each distinct log message through once (the random-weights warning fires for every fold)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if msg in self.seen:
            return False
        self.seen.add(msg)
        return True


def _quiet() -> None:
    """Keep the output to the tables: Lightning's banners and known-harmless warnings off."""
    import lightning  # noqa: F401  (it sets its loggers' levels on import: silence them after)

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("genedml").addFilter(_Once())
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # the 3 HER2ST panel genes absent from these sections: reported once in the HPG-source table (n_genes)
    warnings.filterwarnings("ignore", message=".*genes of `panel` are not in the data.*")


def _prepare(a) -> None:
    """Derived settings shared by the parent and the workers (no torch import here)."""
    a.panel_ = None if a.panel.lower() == "none" else a.panel
    a.target_um_ = None if str(a.target_um).lower() == "none" else float(a.target_um)
    a.method_list = [m for m in a.methods.split(",") if m and not (a.no_stnet and m == "stnet")]
    a.ablation_list = [m for m in a.ablations.split(",") if m]
    a.all_methods = list(dict.fromkeys(["gene_dml", *a.method_list, *a.ablation_list]))
    a.split_list = [s for s in a.splits.split(",") if s]
    for s in a.split_list:
        if s not in SPLITS:
            raise SystemExit(f"--splits: unknown split {s!r} (patient, section)")
    a.train_config = {
        "max_epochs": a.epochs,
        "patience": a.patience,
        "lr": a.lr,
        "batch_size": a.batch_size,
        "accelerator": a.accelerator,
        "devices": 1,
    }
    a.overrides = {}
    for item in a.set:
        key, sep, val = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects FIELD=VALUE, got {item!r}")
        try:
            a.overrides[key] = json.loads(val)
        except json.JSONDecodeError:
            a.overrides[key] = val


def _write_csv(df, path: Path, **kwargs) -> None:
    from genedml._utils import atomic_path

    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, **kwargs)


# ------------------------------------------------------------------------------------------------ workers

_STATE: dict = {}


def _init_worker(a) -> None:
    set_threads(a.threads)
    import torch

    torch.set_num_threads(a.threads)
    import genedml as gd

    gd.settings.progress_bar = False
    if a.cache_dir is not None:
        gd.settings.cachedir = a.cache_dir
    _quiet()
    _STATE["a"] = a


def _sdata(split: str):

    if split not in _STATE:
        a = _STATE["a"]
        _STATE[split] = read_her2st(a.data, SPLITS[split][1])
    return _STATE[split]


def _cv(a, split: str, methods: list[str], *, sdata=None, enc=None, seed=None):
    """``cross_validate`` of ``methods`` on ``split`` with the shared settings (resumes finished folds).

    ``enc`` = ``(label, encoder, weights)`` and ``seed`` select a study run (its own resume folder).
    """
    import genedml as gd
    from genedml.models import GeneDMLConfig

    win = {"target_um": a.target_um_}
    kwargs = {m: dict(win) for m in methods}
    tc = a.train_config
    label, encoder, weights = enc if enc is not None else (None, a.encoder, None)
    seed = a.seed if seed is None else seed
    resume = a.out / "resume" / split if enc is None else study.resume_dir(a, split, label, seed)
    if "ridge" in kwargs:
        kwargs["ridge"]["alpha"] = "cv"
        if enc is not None:  # features of mixed units (morphology): z-score them, for every encoder alike
            kwargs["ridge"]["standardize"] = True
    if "stnet" in kwargs:
        kwargs["stnet"].update(
            backbone=a.stnet_backbone,
            pretrained=a.stnet_pretrained,
            train_config={"max_epochs": a.stnet_epochs, "lr": a.stnet_lr},
        )
    return gd.tl.cross_validate(
        _sdata(split) if sdata is None else sdata,
        methods=methods,
        groupby=SPLITS[split][0],
        k=None,
        protocol="clean",
        panel=a.panel_,
        n_top_genes=a.n_genes,
        encoder=encoder,
        pretrained=a.pretrained,
        weights=weights,
        target_px=a.target_px,
        config=GeneDMLConfig.preset(a.config, **a.overrides),
        train_config=tc,
        method_kwargs=kwargs,
        keep_models=True,
        resume_dir=resume,
        seed=seed,
        progress=False,
    )


def run_task(task: tuple[str, str]) -> tuple[str, str, float]:
    """One method on one split; Gene-DML's task also leaves its HPG source and PCC(H) null in ``--out``."""
    split, method = task
    a = _STATE["a"]
    t0 = time.perf_counter()
    res = _cv(a, split, [method])
    if method == "gene_dml" and res.models:
        _write_csv(hpg_source(res), a.out / f"{split}_hpg_source.csv", index=False)
        null = permutation_null(a, split, res)
        if null is not None:
            _write_csv(null, a.out / f"{split}_pcch_null.csv")
    return split, method, time.perf_counter() - t0


def hpg_source(res):
    """Where the clean protocol took each fold's 50 HPG genes from (Gene-DML's fold models)."""
    import pandas as pd

    rows = []
    for (_, f), m in sorted(res.models.items(), key=lambda kv: kv[0][1]):
        fi = m.fit_info_
        hpg = fi.get("hpg") or []
        rows.append(
            {
                "fold": f,
                "test": res.params["folds"][f]["test_group"],
                "train": "+".join(fi.get("train_sections", [])),
                "hpg_from": "+".join(fi.get("val_sections", [])) + f" [{fi.get('val_level')}]",
                "n_val": fi.get("n_val"),
                "n_genes": len(m.genes_),
                "best_epoch": fi.get("best_epoch"),
                "epochs_run": fi.get("epochs_run"),
                "hpg_first_6": ",".join(hpg[:6]),
            }
        )
    return pd.DataFrame(rows)


def permutation_null(a, split: str, res):
    """PCC(H) with the 50 genes picked on the scored section: Gene-DML's predictions vs shuffled ones."""
    import numpy as np
    import pandas as pd

    import genedml as gd
    from genedml._keys import Keys

    if a.n_perm <= 0:
        return None
    sdata = _sdata(split)
    sec = gd.io.get_table(sdata).obs[Keys.section].astype(str).to_numpy()
    frames = []
    for (_, f), model in sorted(res.models.items(), key=lambda kv: kv[0][1]):
        test = sorted(res.scores.loc[res.scores["fold"] == f, "section"].unique())
        rows = np.flatnonzero(np.isin(sec, test))
        pred = model.predict(sdata, sections=test, progress=False)
        truth = gd.pp.normalize(sdata, genes=model.genes_, recipe="paper", smooth=True, inplace=False)[rows]
        df = gd.metrics.permutation_null_pcc_h(truth, pred, sec[rows], k=50, n_perm=a.n_perm, seed=a.seed)
        df.insert(0, "fold", f)
        frames.append(df)
    return pd.concat(frames) if frames else None


# ------------------------------------------------------------------------------------------------ report


def table(summary, rows, digits: int = 3):
    """Paper layout: one row per method, ``mean ± std`` over folds."""
    import pandas as pd

    out = {}
    present = set(summary.index.get_level_values(0))
    for m in rows:
        if m not in present:
            continue
        df = summary.loc[m]
        label = "gene_dml (full)" if m == "gene_dml" else m
        out[label] = {
            v: f"{df.loc[k, 'mean']:.{digits}f} ± {df.loc[k, 'std']:.{digits}f}"
            for k, v in METRICS.items()
            if k in df.index
        }
    return pd.DataFrame(out).T


def verdict(summary, baselines: list[str], ablations: list[str]) -> list[str]:
    def get(m, k):
        try:
            return float(summary.loc[(m, k), "mean"])
        except KeyError:
            return float("nan")

    lines = []
    for rows, what in ((baselines, "baseline"), (ablations, "ablation row")):
        if not rows:
            continue
        for k in ("pcc_a", "pcc_h"):
            g = get("gene_dml", k)
            lost = [m for m in rows if not get(m, k) < g]  # NaN (e.g. the mean predictor's PCC) counts as beaten
            lost = [m for m in lost if get(m, k) == get(m, k)]
            ok = "yes" if not lost else "NO — " + ", ".join(f"{m} {get(m, k):.3f}" for m in lost)
            lines.append(f"Gene-DML {METRICS[k]} {g:.3f} beats every {what}: {ok}")
    return lines


def report_split(a, split: str, log) -> list[str]:
    import pandas as pd

    # every (method, fold) is on disk now: this pass only reads them back
    sdata = read_her2st(a.data, SPLITS[split][1])
    res = _cv(a, split, a.all_methods, sdata=sdata)
    summary, scores = res.summary, res.scores
    t_methods = table(summary, a.method_list)
    t_abl = table(summary, ["gene_dml", *a.ablation_list])
    _write_csv(t_methods, a.out / f"{split}_methods.csv")
    _write_csv(t_abl, a.out / f"{split}_ablations.csv")
    _write_csv(summary, a.out / f"{split}_summary.csv")
    _write_csv(scores, a.out / f"{split}_scores.csv", index=False)
    desc = SPLITS[split][2]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        log(f"\n=== {desc}: methods (mean ± std over folds) ===\n{t_methods.to_string()}")
        log(f"\n=== {desc}: ablations ===\n{t_abl.to_string()}")
        per = scores.pivot_table(index="method", columns="test_group", values=["pcc_a", "pcc_h"], aggfunc="mean")
        log(f"\nper test group (mean over its sections):\n{per.round(3).to_string()}")
        src = a.out / f"{split}_hpg_source.csv"
        if src.is_file():
            log(f"\nclean protocol: Gene-DML's HPG genes come from its inner validation split, never the test:\n"
                f"{pd.read_csv(src).to_string(index=False)}")  # fmt: skip
        null = a.out / f"{split}_pcch_null.csv"
        if null.is_file():
            df = pd.read_csv(null, index_col=0)
            cols = [c for c in ("fold", "n_spots", "observed", "null_mean", "null_q95", "p_value") if c in df]
            log(f"\nPCC(H) if the 50 genes were picked on the scored section itself (the released code's practice) "
                f"vs {a.n_perm} within-section shuffles of Gene-DML's predictions (= selection bias alone):\n"
                f"{df[cols].round(3).to_string()}")  # fmt: skip
    v = verdict(summary, [m for m in a.method_list if m != "gene_dml"], a.ablation_list)
    for line in v:
        log(f"[{split}] {line}")
    return v


def embed_task() -> float:
    """Compute (or find cached) the shared features of every section once, before any frozen-feature task."""
    import genedml as gd

    a = _STATE["a"]
    t0 = time.perf_counter()
    sdata = read_her2st(a.data)
    gd.tl.embed(sdata, encoder=a.encoder, pretrained=a.pretrained, target_px=a.target_px, target_um=a.target_um_)
    return time.perf_counter() - t0


def run_all(a, log) -> None:
    """The task queue. ST-Net needs no features: its tasks start while the features are being computed."""
    import multiprocessing as mp

    frozen = [m for m in a.all_methods if m != "stnet"]
    first = [(s, m) for s in a.split_list for m in a.all_methods if m == "stnet"]
    rest = [(s, m) for s in a.split_list for m in frozen]
    rest.sort(key=lambda t: -COST.get(t[1], 1.0) * (2 if t[0] == "section" else 1))  # longest first
    done = []

    def record(out) -> None:
        done.append(out)
        print(f"  done {out[0]:<8} {out[1]:<20} {out[2]:6.0f} s  ({time.perf_counter() - t0:.0f} s)", flush=True)

    t0 = time.perf_counter()
    if a.jobs > 1:
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(a.jobs, mp_context=ctx, initializer=_init_worker, initargs=(a,)) as ex:
            emb = ex.submit(embed_task) if frozen else None
            pending = {ex.submit(run_task, t) for t in first}
            while emb is not None:
                finished, _ = wait(pending | {emb}, return_when=FIRST_COMPLETED)
                for fut in finished - {emb}:
                    pending.discard(fut)
                    record(fut.result())
                if emb in finished:
                    log(f"features: {emb.result():.0f} s (read_st + gd.tl.embed of {len(SECTIONS)} sections, "
                        "in a worker)")  # fmt: skip
                    emb = None
            pending |= {ex.submit(run_task, t) for t in rest}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    record(fut.result())
    else:  # main() has set this process up as a worker
        if frozen:
            log(f"features: {embed_task():.0f} s (read_st + gd.tl.embed of {len(SECTIONS)} sections)")
        for t in first + rest:
            record(run_task(t))
    log(f"training + prediction: {time.perf_counter() - t0:.0f} s wall for {len(done)} (split, method) tasks on "
        f"{a.jobs} worker(s); task times (s): " + ", ".join(f"{s}/{m} {dt:.0f}" for s, m, dt in done))  # fmt: skip


def study_task(task) -> tuple:
    """One offline-study task in a worker (see `_encoders_study`)."""
    return task, study.run_task(_STATE["a"], task, _cv, _sdata)


def run_study(a, log) -> None:
    """Features of every study encoder, then the (split, encoder, method, seed) queue, headline rows first."""
    t0 = time.perf_counter()
    for enc in a.encoders_:
        log(f"features {enc[0]}: {study.embed_encoder(a, enc):.0f} s (read_st + gd.tl.embed, cached after)")
    queue = study.tasks(a)
    t1 = time.perf_counter()

    def record(task, dt) -> None:
        split, enc, m, seed = task
        print(f"  done {split:<8} {enc[0]:<24} {m:<10} seed {seed}  {dt:6.0f} s  ({time.perf_counter() - t1:.0f} s)",
              flush=True)  # fmt: skip

    if a.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        ctx = mp.get_context("spawn")
        with ProcessPoolExecutor(a.jobs, mp_context=ctx, initializer=_init_worker, initargs=(a,)) as ex:
            for task, dt in ex.map(study_task, queue):
                record(task, dt)
    else:
        for task in queue:
            record(*study_task(task))
    log(f"features {t1 - t0:.0f} s; {len(queue)} study tasks {time.perf_counter() - t1:.0f} s wall")


def report_study(a, log) -> None:
    import pandas as pd

    study._SPLIT_SECTIONS.update({k: v[1] for k, v in SPLITS.items()})
    df = study.study_table(study.collect(a, _cv))
    _write_csv(df, a.out / "study.csv", index=False)
    for split in a.split_list:
        log(f"\n=== {SPLITS[split][2]}: encoders × methods, raw and smoothed predictions ===\n"
            f"{study.format_table(df, split)}")  # fmt: skip
    for line in study.goals(df):
        log(line)
    del pd


def main(argv=None) -> int:
    a = parse_args(argv)
    _prepare(a)
    if a.study:
        if a.methods == parse_args([]).methods:
            a.method_list = ["gene_dml", "ridge", "triplex"]
        a.ablation_list = []
        a.all_methods = list(a.method_list)
        a.encoders_ = study.encoder_list(a)
        if a.report_only and a.no_smooth:
            raise SystemExit("--report-only recognises finished tasks by their smoothed scores: drop --no-smooth")
    _init_worker(a)  # this process runs tasks too when --jobs 1
    from genedml.models import METHODS, GeneDMLConfig

    for m in a.all_methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; known: {list(METHODS)}")
    c = GeneDMLConfig.preset(a.config, **a.overrides)
    if a.no_resume and (a.out / "resume").is_dir():
        import shutil

        shutil.rmtree(a.out / "resume")
    a.out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def log(msg: str) -> None:
        print(msg, flush=True)
        lines.append(msg)

    load0 = os.getloadavg()
    wall0 = time.perf_counter()
    init = "pretrained" if a.stnet_pretrained else "random init"
    st = (f"{a.stnet_backbone} fine-tuned end to end, {init}, ≤{a.stnet_epochs} epochs at lr {a.stnet_lr:g}"
          if "stnet" in a.method_list else "off (--no-stnet)")  # fmt: skip
    for h in (
        f"command: python {' '.join(sys.argv)}",
        f"machine: {platform.node()}, {os.cpu_count()} cores; {a.jobs} worker process(es) × {a.threads} thread(s) "
        f"(torch, OMP/OPENBLAS/MKL); load average at start {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f}",
        f"encoder: {', '.join(e[0] for e in a.encoders_) if a.study else a.encoder}, "
        f"{'pretrained' if a.pretrained else 'RANDOM init (seeded; no weights offline)'}; "
        f"window {a.target_um} µm → {a.target_px} px; target tokens, 5×5 neighbour tiles, global = pooled targets",
        f"Gene-DML: preset {a.config!r}{' + ' + json.dumps(a.overrides) if a.overrides else ''} (dim {c.dim}, "
        f"trunk {c.trunk_dim}, global depth {c.global_depth}, K {c.K}, λ {c.lam}, τ {c.tau}, τ_IG {c.tau_ig})",
        f"training: ≤{a.epochs} epochs, patience {a.patience} on inner-validation PCC(A), Adam lr {a.lr}, batch "
        f"{a.batch_size}, {a.accelerator}; ST-Net: {st}",
        f"genes: {'panel ' + a.panel_ if a.panel_ else f'top {a.n_genes} by mean on the training fold'}; targets "
        "'paper' recipe (log10(1 + x·median/total)) with 3×3 smoothing; protocol 'clean'",
    ):
        log(h)
    if a.study:
        log(f"study: methods {a.method_list}, {a.seeds} seed(s) for neural methods from --seed {a.seed}, "
            f"smoothed rows {'off' if a.no_smooth else 'on'}; ridge z-scores its features")  # fmt: skip
        if not a.report_only:
            run_study(a, log)
        report_study(a, log)
        verdicts = {}
    else:
        run_all(a, log)
        verdicts = {s: report_split(a, s, log) for s in a.split_list}
    load1 = os.getloadavg()
    log(f"\nwall time {(time.perf_counter() - wall0) / 60:.1f} min; load average at end {load1[0]:.1f} {load1[1]:.1f} "
        f"{load1[2]:.1f}")  # fmt: skip
    (a.out / "report.txt").write_text("\n".join(lines) + "\n")
    (a.out / "verdict.json").write_text(json.dumps(verdicts, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
