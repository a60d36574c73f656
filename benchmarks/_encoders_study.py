"""bench_her2st's offline study (issue 12): encoders × methods × seeds, each scored raw and with prediction smoothing.

A study task is (split, encoder label, method, seed); its folds are resumable through ``cross_validate``'s
``resume_dir`` (one folder per encoder and seed), and its smoothed scores are stored next to them. Smoothing uses
`genedml.tl`'s ``smooth_predictions`` — the code behind ``gd.tl.predict(..., smooth=True)`` — on the fold models'
predictions of the test sections, and is scored against the same targets and the same validation-chosen HPG genes as
the raw row. The table reports mean ± s.d. over folds (of the seed means) and the s.d. over seeds (of the split means).
"""

from __future__ import annotations

from pathlib import Path

NEURAL = {"gene_dml", "triplex", "bleep", "stnet", "no_instance_level", "no_global_scale", "no_instance_group",
          "no_feature_grouping", "plain"}  # fmt: skip


def encoder_list(a) -> list[tuple[str, str, str | None]]:
    """``[(label, encoder name, weights path or None), ...]`` from ``--encoders`` and ``--ssl-weights``."""
    names = [e for e in a.encoders.split(",") if e]
    ssl = {"ssl-resnet18": "resnet18", "morphology+ssl-resnet18": "morphology+resnet18"}
    w = None
    if a.ssl_weights is not None:
        w = str(Path(a.ssl_weights).expanduser().resolve())
        if not Path(w).is_file():
            raise SystemExit(f"--ssl-weights: no file {w}")
        if not set(names) & set(ssl):  # neither SSL label named: add both
            names += list(ssl)
    elif set(names) & set(ssl):
        raise SystemExit(f"--encoders {sorted(set(names) & set(ssl))} need --ssl-weights")
    return [(n, ssl[n], w) if n in ssl else (n, n, None) for n in names]


def seeds_of(a, method: str) -> list[int]:
    """Neural methods run ``--seeds`` seeds; deterministic ones (ridge, mean) one."""
    n = a.seeds if method in NEURAL else 1
    return [a.seed + i for i in range(n)]


def resume_dir(a, split: str, label: str, seed: int) -> Path:
    return a.out / "resume" / split / label.replace("+", "_plus_") / f"seed{seed}"


def smooth_scores(a, split: str, label: str, method: str, seed: int, res, sdata):
    """Per-section scores of the fold models' predictions smoothed over the spot grid (cached as CSV)."""
    import pandas as pd

    import genedml as gd
    from genedml._keys import Keys
    from genedml.tl._predict import smooth_predictions

    path = resume_dir(a, split, label, seed) / f"{method}.smooth.csv"
    if path.is_file():
        return pd.read_csv(path)
    table = gd.io.get_table(sdata)
    sec = table.obs[Keys.section].astype(str).to_numpy()
    frames = []
    for (m, f), model in sorted(res.models.items(), key=lambda kv: kv[0][1]):
        if m != method:
            continue
        test, rows = _fold_test(res.scores, method, f, sec)
        pred = model.predict(sdata, sections=test, progress=False)
        pred_s, _ = smooth_predictions(table, pred, sections=test, grid="auto")
        hpg = list(model.fit_info_.get("hpg") or [])[:50] or None
        frames.append(_section_scores(sdata, pred_s, sec, rows, model.genes_, hpg, fold=f))
    return _store(frames, path)


def ensemble_scores(a, split: str, label: str, method: str, results: dict, sdata):
    """Per-section scores of the seed ensemble: each fold's models of every seed averaged (raw and smoothed).

    ``results``: seed → that seed's ``cross_validate`` result. The ensemble is `genedml.models.EnsembleModel` over
    the fold's models, as a user builds it from ``gd.tl.fit`` with several seeds. Its HPG genes are the
    validation-chosen ones the seeds agree on most (each seed's top 50 from its own inner validation; most votes,
    then best mean rank), so the test sections choose nothing. Cached as CSV beside the seeds' folders.
    """
    from collections import Counter

    import numpy as np
    import pandas as pd

    import genedml as gd
    from genedml._keys import Keys
    from genedml.models import EnsembleModel
    from genedml.tl._predict import smooth_predictions

    path = resume_dir(a, split, label, 0).with_name("ensemble") / f"{method}.seeds{len(results)}.csv"
    if path.is_file():
        return pd.read_csv(path)
    table = gd.io.get_table(sdata)
    sec = table.obs[Keys.section].astype(str).to_numpy()
    first = next(iter(results.values()))
    folds = sorted(f for m, f in first.models if m == method)
    frames = []
    for f in folds:
        models = [res.models[(method, f)] for res in results.values()]
        test, rows = _fold_test(first.scores, method, f, sec)
        pred = EnsembleModel(models).predict(sdata, sections=test, progress=False)
        votes, ranks = Counter(), {}
        for m in models:
            for i, g in enumerate(list(m.fit_info_.get("hpg") or [])[:50]):
                votes[g] += 1
                ranks.setdefault(g, []).append(i)
        hpg = sorted(votes, key=lambda g: (-votes[g], float(np.mean(ranks[g]))))[:50] or None
        for smoothed in (False, True):
            p = smooth_predictions(table, pred, sections=test, grid="auto")[0] if smoothed else pred
            frames.append(_section_scores(sdata, p, sec, rows, models[0].genes_, hpg, fold=f, smoothed=smoothed))
    return _store(frames, path)


def _fold_test(scores, method: str, fold: int, sec):
    """Test sections of ``fold`` (from its scores) and their rows in the table."""
    import numpy as np

    fold_rows = scores[(scores["method"] == method) & (scores["fold"] == fold)]
    test = sorted(fold_rows["section"].astype(str).unique())
    return test, np.flatnonzero(np.isin(sec, test))


def _section_scores(sdata, pred, sec, rows, genes, hpg, **columns):
    """Per-section scores of ``pred`` (the test ``rows``) against the paper recipe's smoothed targets; ``columns``
    (fold, ...) lead the frame."""
    import genedml as gd

    truth = gd.pp.normalize(sdata, genes=genes, recipe="paper", smooth=True, inplace=False)[rows]
    r = gd.metrics.evaluate_sections(truth, pred, sec[rows], genes=genes, hpg=hpg).per_section
    r = r.reset_index(names="section")
    for i, (name, value) in enumerate(columns.items()):
        r.insert(i, name, value)
    return r


def _store(frames, path: Path):
    """Concatenate ``frames`` and write them to ``path`` atomically (the resume cache); returns the frame."""
    import pandas as pd

    from genedml._utils import atomic_path

    df = pd.concat(frames, ignore_index=True)
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)
    return df


def fold_means(scores):
    """Per-fold means of the score columns over the fold's sections."""
    cols = [c for c in ("mse", "mae", "pcc_a", "pcc_h") if c in scores]
    return scores.groupby("fold")[cols].mean()


def study_table(rows: list[dict]):
    """``rows``: dicts with split, encoder, method, smooth, seed and the per-fold means ``df``. Returns the table."""
    import numpy as np
    import pandas as pd

    out = []
    keys = list(dict.fromkeys((r["split"], r["encoder"], r["method"], r["smooth"]) for r in rows))
    for split, enc, method, smooth in keys:
        sel = [r for r in rows if (r["split"], r["encoder"], r["method"], r["smooth"]) == (split, enc, method, smooth)]
        per_seed = pd.concat([r["df"].assign(seed=r["seed"]) for r in sel])
        by_fold = per_seed.groupby(level=0).mean(numeric_only=True)  # fold → mean over seeds
        by_seed = per_seed.groupby("seed").mean(numeric_only=True)  # seed → mean over folds
        rec = {"split": split, "encoder": enc, "method": method, "smoothed": "yes" if smooth else "no",
               "n_seeds": len(sel), "n_folds": len(by_fold)}  # fmt: skip
        for k in ("pcc_a", "pcc_h", "mse"):
            rec[f"{k}_mean"] = float(by_fold[k].mean())
            rec[f"{k}_sd_folds"] = float(by_fold[k].std(ddof=1)) if len(by_fold) > 1 else np.nan
            rec[f"{k}_sd_seeds"] = float(by_seed[k].std(ddof=1)) if len(by_seed) > 1 else np.nan
        out.append(rec)
    return pd.DataFrame(out)


def format_table(df, split: str) -> str:
    """Markdown table of one split."""
    d = df[df["split"] == split]
    lines = [
        "| encoder | method | smoothed | PCC(A) ± s.d. folds | s.d. seeds | PCC(H) ± s.d. folds | MSE "
        "| seeds × folds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in d.iterrows():
        sds = "–" if r["pcc_a_sd_seeds"] != r["pcc_a_sd_seeds"] else f"{r['pcc_a_sd_seeds']:.3f}"
        lines.append(
            f"| {r['encoder']} | {r['method']} | {r['smoothed']} | {r['pcc_a_mean']:.3f} ± {r['pcc_a_sd_folds']:.3f} "
            f"| {sds} | {r['pcc_h_mean']:.3f} ± {r['pcc_h_sd_folds']:.3f} | {r['mse_mean']:.3f} "
            f"| {r['n_seeds']} × {r['n_folds']} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ running


def tasks(a) -> list[tuple[str, tuple, str, int]]:
    """Every (split, encoder, method, seed), most informative first, so that a run cut short (``--report-only``
    tabulates what finished) still answers the main questions: ridge everywhere (seconds), Gene-DML on the last
    encoder (the combination, expected best) with all its seeds, Gene-DML's first seed on the first encoder (the
    random-CNN reference) and on the others, the others' further seeds (but the reference's), TRIPLEX on the
    combination, then everything else."""
    last = a.encoders_[-1][0]
    out = [
        (split, enc, m, s)
        for split in a.split_list
        for enc in a.encoders_
        for m in a.method_list
        for s in seeds_of(a, m)
    ]

    def tier(t) -> tuple:
        split, enc, m, s = t
        k, best = s - a.seed, enc[0] == last
        first = enc[0] == a.encoders_[0][0]  # the reference (random CNN)
        if m == "ridge":
            rank = 0
        elif m == "gene_dml":
            rank = (1 if k == 0 else 2) if best else ((3 if first else 4) if k == 0 else (7 if first else 4.5))
        elif m == "triplex":
            rank = (5 if best else 6) if k == 0 else 8
        else:
            rank = 9
        return rank, k, a.split_list.index(split)

    out.sort(key=tier)
    return out


def embed_encoder(a, enc) -> float:
    """Features of every section for one study encoder (cached)."""
    import time

    from _common import read_her2st

    import genedml as gd

    t0 = time.perf_counter()
    sdata = read_her2st(a.data)
    _, name, weights = enc
    gd.tl.embed(sdata, encoder=name, pretrained=a.pretrained, weights=weights, target_px=a.target_px,
                target_um=a.target_um_)  # fmt: skip
    return time.perf_counter() - t0


def run_task(a, task, cv, get_sdata) -> float:
    """One study task: cross-validation (resumed fold by fold) and its smoothed scores."""
    import time

    split, enc, method, seed = task
    t0 = time.perf_counter()
    res = cv(a, split, [method], enc=enc, seed=seed)
    if not a.no_smooth:
        smooth_scores(a, split, enc[0], method, seed, res, get_sdata(split))
    return time.perf_counter() - t0


def collect(a, cv) -> list[dict]:
    """Per-fold means of every finished study task (raw and smoothed), read back from the resume folders."""
    from _common import read_her2st

    rows = []
    for split in a.split_list:
        sdata = read_her2st(a.data, _SPLIT_SECTIONS[split])
        for split_, enc, method, seed in tasks(a):
            if split_ != split:
                continue
            if a.report_only and not (resume_dir(a, split, enc[0], seed) / f"{method}.smooth.csv").is_file():
                continue  # unfinished (the smoothed scores are written last): left out, never trained here
            res = cv(a, split, [method], sdata=sdata, enc=enc, seed=seed)
            rows.append({"split": split, "encoder": enc[0], "method": method, "smooth": False, "seed": seed,
                         "df": fold_means(res.scores)})  # fmt: skip
            if not a.no_smooth:
                df = smooth_scores(a, split, enc[0], method, seed, res, sdata)
                rows.append({"split": split, "encoder": enc[0], "method": method, "smooth": True, "seed": seed,
                             "df": fold_means(df)})  # fmt: skip
        rows += _ensemble_rows(a, split, cv, sdata)
    order = {m: i for i, m in enumerate(a.method_list)}
    rows.sort(key=lambda r: (r["split"], [e[0] for e in a.encoders_].index(r["encoder"]),
                             order.get(r["method"], order.get(r["method"].split(" ")[0], 0) + 0.5),
                             r["smooth"]))  # fmt: skip
    return rows


def _ensemble_rows(a, split: str, cv, sdata) -> list[dict]:
    """Seed-ensemble rows (``"<method> ens×N"``) of the neural methods whose every seed finished."""
    rows = []
    if a.no_ensemble:
        return rows
    for enc in a.encoders_:
        for method in a.method_list:
            seeds = seeds_of(a, method)
            if method not in NEURAL or len(seeds) < 2:
                continue
            if not all((resume_dir(a, split, enc[0], s) / f"{method}.smooth.csv").is_file() for s in seeds):
                continue
            results = {s: cv(a, split, [method], sdata=sdata, enc=enc, seed=s) for s in seeds}
            df = ensemble_scores(a, split, enc[0], method, results, sdata)
            for smoothed in (False, True):
                if smoothed and a.no_smooth:
                    continue
                rows.append({"split": split, "encoder": enc[0], "method": f"{method} ens×{len(seeds)}",
                             "smooth": smoothed, "seed": 0,
                             "df": fold_means(df[df["smoothed"] == smoothed])})  # fmt: skip
    return rows


_SPLIT_SECTIONS: dict = {}


def goals(df) -> list[str]:
    """The issue's goals, checked on the table (best encoder = highest Gene-DML PCC(A) over both splits)."""
    lines = []
    g = df[df["method"] == "gene_dml"]
    if g.empty:
        return lines
    best = g.groupby(["encoder", "smoothed"])["pcc_a_mean"].mean().idxmax()
    lines.append(f"best offline Gene-DML configuration: encoder {best[0]}, smoothed {best[1]}")
    for split, target in (("patient", 0.25), ("section", 0.45)):
        row = g[(g["split"] == split) & (g["encoder"] == best[0]) & (g["smoothed"] == best[1])]
        if row.empty:
            continue
        v, sd = float(row["pcc_a_mean"].iloc[0]), float(row["pcc_a_sd_seeds"].iloc[0])
        verdict = "met" if v >= target else f"missed by {target - v:.3f}"
        lines.append(f"[{split}] Gene-DML PCC(A) {v:.3f} (goal ≥ {target}: {verdict}); "
                     f"seed s.d. {sd:.3f} (goal ≤ 0.02: {'met' if sd <= 0.02 else 'missed'})")  # fmt: skip
        e = df[(df["split"] == split) & (df["encoder"] == best[0]) & (df["smoothed"] == best[1])
               & df["method"].str.startswith("gene_dml ens")]  # fmt: skip
        if not e.empty:
            ev = float(e["pcc_a_mean"].iloc[0])
            verdict = "met" if ev >= target else f"missed by {target - ev:.3f}"
            lines.append(
                f"[{split}]   {e['method'].iloc[0]} (seed ensemble) PCC(A) {ev:.3f} (goal ≥ {target}: {verdict})"
            )
        for enc in dict.fromkeys((best[0], "morphology")):
            r = df[(df["split"] == split) & (df["encoder"] == enc) & (df["method"] == "ridge")
                   & (df["smoothed"] == best[1])]  # fmt: skip
            if not r.empty:
                rv = float(r["pcc_a_mean"].iloc[0])
                won = "beaten" if v > rv else "NOT beaten"
                lines.append(f"[{split}]   vs ridge on {enc} (smoothed {best[1]}) {rv:.3f}: {won}")
    return lines
