"""Coverage of calibrated intervals, section-grouped vs spot-level calibration, HER2ST or synthetic (issue 14).

Leave-one-section-out over the shared HER2ST sections (default B4, C2–C5), ``protocol="clean"``. For each held-out
section ``t`` the other sections ``R`` train two ensembles of ridge models (frozen features,
penalty by grouped inner CV), each calibrated out-of-bag and then used to predict ``t`` with intervals at 80 % and
90 %:

* **section-grouped** (genedml's ``gd.tl.calibrate``): every member trains on all but two sections of ``R`` (six
  members for four sections, three for three; when there are more such subsets than ``--members``, the cyclic
  ones: member ``i`` leaves out sections ``i`` and ``i + 1``, one member per section of ``R``), so each section of
  ``R`` is unseen by several members; the scores
  ``|y − μ| / (σ + β)`` of a section use only those members (``μ``, ``σ``: their mean and spread).
* **spot-level** (the mistake it guards against): every member trains on a random two thirds of the *spots* of
  ``R``; the scores of a spot use the members that did not train on that spot — but they trained on its neighbours
  in the same section, so the residuals look smaller than those on a new section.

Both use the same members count, formula, β and crepes quantile; only which residuals count as "unseen" differs.
``--split`` adds **section-level split conformal**: for each other section ``c``, three spot-bag members train on the
rest of ``R`` and ``gd.tl.calibrate(..., sections=[c])`` calibrates on ``c`` — the same ensemble at calibration and
test (reported as the mean, min and max over ``c``); ``--split-k k`` calibrates on ``k`` sections at a time
(``c`` and the next ``k − 1``), the members training on the others. ``--split`` also adds **spot-level split
conformal**, the textbook mistake with the same ensemble at calibration and test: a random third of the spots of
``R`` is the calibration set, three members train on bags of the other two thirds.
The figures: empirical coverage (share of measured spot × gene values inside their interval) and mean interval
width on ``t``, per section, for both calibrations at both levels. Goal: every section within ±5 points of nominal
with section-grouped calibration.

    python benchmarks/bench_uncertainty.py                             # 3–5 min on 2 loaded cores, one thread
    python benchmarks/bench_uncertainty.py --sections C2,C3,C4,C5      # within patient C only
    python benchmarks/bench_uncertainty.py --sections C2,C3,C4,C5 --split   # plus held-out-section split conformal
    python benchmarks/bench_uncertainty.py --normalize paper           # the paper's target recipe

``--synthetic`` runs the same arms on ``gd.datasets.synthetic`` sections (truth known: 8 sections of 4 patients,
~300 spots and 50 genes each, 2 µm/px), with a per-section, per-gene expression shift (``--section-effect``,
log-mean s.d., default 0.5) and per-section staining (``--section-stain``, default 0.1) that lets a model recognise
a training section from its colour; ``--section-effect 0 --section-stain 0`` is the control. Features: the
weight-free ``morphology`` encoder; every gene of the generator is a target; 7 members in both out-of-bag arms.

    python benchmarks/bench_uncertainty.py --synthetic                 # ~1 min on 2 loaded cores, one thread
    python benchmarks/bench_uncertainty.py --synthetic --split --split-k 3                    # + split arms, ~2 min
    python benchmarks/bench_uncertainty.py --synthetic --split --split-k 3 --section-effect 0 --section-stain 0

Results and their reading: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import platform
import sys
import time
import warnings
from pathlib import Path

from _common import HER2ST, SECTIONS, read_her2st, set_threads

LEVELS = (0.8, 0.9)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=HER2ST, help="HER2ST folder (default: ../shared/data/her2st)")
    p.add_argument(
        "--encoder", default=None, help="frozen encoder (default resnet18, random init; synthetic: morphology)"
    )
    p.add_argument("--pretrained", action="store_true", help="pretrained encoder weights")
    p.add_argument("--target-px", type=int, default=56, help="window side in px (default 56)")
    p.add_argument("--target-um", type=float, default=112.0, help="window side in µm (default 112)")
    p.add_argument(
        "--members",
        type=int,
        default=None,
        help="spot-bag members of the spot-level ensemble (default 6; synthetic: sections - 1)",
    )
    p.add_argument("--spot-fraction", type=float, default=2 / 3, help="share of spots per spot bag (default 2/3)")
    p.add_argument("--normalize", default="log1p_cp10k", help="target recipe: log1p_cp10k (default) or paper")
    p.add_argument("--sections", default=",".join(SECTIONS), help="sections, comma-separated (default all five)")
    p.add_argument("--split", action="store_true", help="add held-out-section split conformal (one per section)")
    p.add_argument(
        "--split-k",
        type=int,
        default=1,
        help="calibration sections per split (default 1; members train on the other ones)",
    )
    p.add_argument("--threads", type=int, default=1, help="threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("synthetic data (--synthetic)")
    g.add_argument("--synthetic", action="store_true", help="gd.datasets.synthetic sections instead of HER2ST")
    g.add_argument("--section-effect", type=float, default=0.5, help="per-section, per-gene log-mean s.d. (0.5)")
    g.add_argument("--section-stain", type=float, default=0.1, help="per-section log stain-intensity s.d. (0.1)")
    g.add_argument("--n-sections", type=int, default=8, help="sections (default 8)")
    g.add_argument("--n-patients", type=int, default=4, help="patients, consecutive sections each (default 4)")
    g.add_argument("--spots-per-side", type=int, default=20, help="ST positions per side (default 20: ~300 spots)")
    g.add_argument("--n-genes", type=int, default=50, help="genes, all of them targets (default 50)")
    a = p.parse_args(argv)
    a.encoder = a.encoder or ("morphology" if a.synthetic else "resnet18")
    a.members = a.members or (a.n_sections - 1 if a.synthetic else 6)
    return a


def _data(a):
    """The sections, their names and the setup arguments of every ridge member (genes, target recipe)."""
    if not a.synthetic:
        return read_her2st(a.data), a.sections.split(","), {"panel": "her2st", "normalize": a.normalize}
    import genedml as gd

    sdata = gd.datasets.synthetic(
        preset="small", n_sections=a.n_sections, n_patients=a.n_patients, n_genes=a.n_genes,
        spots_per_side=a.spots_per_side, pixel_size=a.target_um / a.target_px, seed=a.seed,
        section_effect=a.section_effect, section_stain=a.section_stain,
    )  # fmt: skip
    genes = list(sdata["table"].var_names)
    return sdata, gd.io.sections(sdata), {"genes": genes, "normalize": a.normalize}


def main(argv=None) -> None:
    a = parse_args(argv)
    set_threads(a.threads)
    import pandas as pd
    import torch

    import genedml as gd

    torch.set_num_threads(a.threads)
    gd.settings.progress_bar = False
    logging.getLogger("genedml").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*genes of `panel` are not in the data.*")
    t0 = time.time()
    sdata, sections, kw = _data(a)
    enc = dict(encoder=a.encoder, pretrained=a.pretrained, target_px=a.target_px, target_um=a.target_um)
    rows = []
    for t in sections:
        rest = [s for s in sections if s != t]
        grouped = _grouped(sdata, rest, enc, kw, a.members)
        spot = _spot_level(sdata, rest, enc, kw, a.members, a.spot_fraction, a.seed)
        arms = [("section-grouped", grouped), ("spot-level", spot)]
        if a.split:
            arms += [(f"split:{c}", m) for c, m in _split(sdata, rest, enc, kw, a.spot_fraction, a.seed, a.split_k)]
            arms += [("spot-split", _spot_level(sdata, rest, enc, kw, 3, a.spot_fraction, a.seed, split=True))]
        for name, model in arms:
            for level in LEVELS:
                gd.tl.predict(sdata, model, sections=[t], interval=level, key_added="unc")
                r = gd.tl.evaluate(sdata, layer="unc", sections=[t]).loc[t]
                rows.append(
                    {"section": t, "calibration": name, "level": level, "coverage": r["coverage"],
                     "width": r["interval_width"], "pcc_a": r["pcc_a"]}
                )  # fmt: skip
        print(f"# {t} done at {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    _report(pd.DataFrame(rows), a, time.time() - t0)


def _ridge(sdata, sections, enc, kw, *, table=None):
    from genedml.models import make_method

    m = make_method("ridge", train_config={"protocol": "clean", "seed": 0}, **enc)
    data = sdata if table is None else _with_table(sdata, table)
    return m.setup(data, sections=sections, progress=False, **kw).train(progress=False)


def _with_table(sdata, table):
    from spatialdata import SpatialData

    attrs = table.uns["spatialdata_attrs"]
    col = table.obs[attrs["region_key"]].astype(str)
    table.obs[attrs["region_key"]] = col.astype("category")
    attrs["region"] = sorted(col.unique())  # the regions left in the subset
    return SpatialData(images=dict(sdata.images), shapes=dict(sdata.shapes), tables={"table": table})


def _leave_two_out(rest, n_max):
    """Training sections of each member: all leave-two-out subsets of ``rest``, or, when there are more than
    ``n_max`` of them, the cyclic ones (member ``i`` leaves out sections ``i`` and ``i + 1``), so that every section
    is unseen by exactly two members and the member count stays that of the spot-level arm."""
    combos = list(itertools.combinations(rest, len(rest) - 2))
    if len(combos) <= n_max:
        return combos
    n = len(rest)
    return [tuple(s for j, s in enumerate(rest) if j not in (i, (i + 1) % n)) for i in range(n)]


def _grouped(sdata, rest, enc, kw, n_max):
    """Leave-two-sections-out members, calibrated by gd.tl.calibrate on their unseen sections."""
    import genedml as gd

    members = [_ridge(sdata, list(keep), enc, kw) for keep in _leave_two_out(rest, n_max)]
    return gd.tl.calibrate(sdata, gd.models.EnsembleModel(members), sections=rest, groupby="section")


def _split(sdata, rest, enc, kw, frac, seed, k=1):
    """Split conformal at section level: 3 spot-bag members trained on all but one section c, calibrated on c."""
    import numpy as np

    import genedml as gd

    table = sdata["table"]
    sec = table.obs["section"].astype(str).to_numpy()
    rng = np.random.default_rng(seed)
    for i in range(len(rest)):
        cal = [rest[(i + j) % len(rest)] for j in range(k)]  # section i and the next k - 1 (cyclic)
        train = np.isin(sec, [s for s in rest if s not in cal])
        bags = [train & (rng.random(table.n_obs) < frac) for _ in range(3)]
        members = [_ridge(sdata, sorted(set(sec[b])), enc, kw, table=table[b].copy()) for b in bags]
        yield "+".join(cal), gd.tl.calibrate(sdata, gd.models.EnsembleModel(members), sections=cal)


def _spot_level(sdata, rest, enc, kw, n, frac, seed, *, split=False):
    """Spot-bag members; out-of-bag scores per spot (what a spot-level split does), same formula and quantile.

    ``split``: textbook spot-level split conformal instead — a random ``1 - frac`` of the spots of ``rest`` is the
    calibration set, three members train on bags of ``frac`` of the other spots, and every calibration spot is
    scored by all three (the same ensemble at calibration and test, as in `_split`).
    """
    import numpy as np

    import genedml as gd
    from genedml.tl._uncertainty import _beta, _library

    table = sdata["table"]
    sec = table.obs["section"].astype(str).to_numpy()
    in_rest = np.isin(sec, rest)
    rng = np.random.default_rng(seed)
    proper = in_rest & (rng.random(table.n_obs) < frac) if split else in_rest
    bags = [proper & (rng.random(table.n_obs) < frac) for _ in range(3 if split else n)]
    members = [_ridge(sdata, sorted(set(sec[b])), enc, kw, table=table[b].copy()) for b in bags]
    ens = gd.models.EnsembleModel(members)
    rows = np.flatnonzero(in_rest)
    preds = ens.member_predictions(sdata, sections=rest)  # rows of R in table order
    oob = np.stack([~(proper if split else b)[rows] for b in bags])  # members × spots
    ok = oob.sum(axis=0) >= 2
    norm = ens.normalize_
    truth = gd.pp.normalize(sdata, genes=ens.genes_, recipe=norm["recipe"], smooth=norm["smooth"], inplace=False)
    truth = truth[rows][ok].astype(np.float64)
    w = oob[:, ok][:, :, None].astype(np.float64)
    p = preds[:, ok].astype(np.float64)
    k = w.sum(axis=0)
    mu = (w * p).sum(axis=0) / k
    sd = np.sqrt((w * (p - mu) ** 2).sum(axis=0) / (k - 1))
    beta = _beta(sd)
    cal = {
        "method": f"split-conformal, normalised by ensemble spread (spot-level {'split' if split else 'out-of-bag'}: "
        "optimistic)",
        "library": _library(),
        "groupby": "spot",
        "groups": ["spots of " + ",".join(rest)],
        "sections": list(rest),
        "n_spots": int(ok.sum()),
        "min_members": 2,
        "genes": list(ens.genes_),
        "scores": (np.abs(truth - mu) / (sd + beta)).astype(np.float32),
        "beta": beta.astype(np.float32),
    }
    return gd.models.EnsembleModel(members, calibration=cal)


def _report(df, a, seconds: float) -> None:
    import os

    data = (
        f"synthetic ({a.n_sections} sections of {a.n_patients} patients, section_effect={a.section_effect:g}, "
        f"section_stain={a.section_stain:g}, seed {a.seed})"
        if a.synthetic
        else "HER2ST"
    )
    print(f"## bench_uncertainty: calibrated interval coverage, {data} leave-one-section-out (clean)\n")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, threads {a.threads}, "
          f"load average {load} (at the end); {seconds / 60:.1f} min")  # fmt: skip
    weights = "no weights" if a.encoder == "morphology" else "pretrained" if a.pretrained else "random init"
    print(f"features: {a.encoder} ({weights}), {a.target_um:g} µm → "
          f"{a.target_px} px; ridge, {'all genes' if a.synthetic else 'her2st panel'}, targets {a.normalize}; "
          f"grouped: members leave two of the "
          f"other sections out each; spot-level: "
          f"{a.members} bags of {a.spot_fraction:.2f} of the spots\n")  # fmt: skip
    wide = df.pivot_table(index="section", columns=["calibration", "level"], values=["coverage", "width"])
    lines = ["| held-out section | level | section-grouped coverage | width | spot-level coverage | width |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for level in LEVELS:
        for s in wide.index:
            g = ("section-grouped", level)
            sp = ("spot-level", level)
            lines.append(
                f"| {s} | {level:.0%} | {wide.loc[s, ('coverage', *g)]:.3f} | {wide.loc[s, ('width', *g)]:.3f} | "
                f"{wide.loc[s, ('coverage', *sp)]:.3f} | {wide.loc[s, ('width', *sp)]:.3f} |"
            )
    print("\n".join(lines))
    print()
    split = df[df["calibration"].str.startswith("split:")]
    if len(split):
        agg = split.groupby(["level", "section"])[["coverage", "width"]].agg(["mean", "min", "max"])
        spot = df[df["calibration"] == "spot-split"].set_index(["level", "section"])
        what = (
            "one other section c, calibrated on c"
            if a.split_k == 1
            else f"{a.split_k} other sections, calibrated on them"
        )
        print(f"split conformal, 3 members each: section split (members on all but {what}; mean [min, max] over the "
              "choices) vs spot split (members on 2/3 of the spots, calibrated on the rest):\n")  # fmt: skip
        print("| held-out section | level | section split coverage | width | spot split coverage | width |\n"
              "|---|---|---|---|---|---|")  # fmt: skip
        for (level, s), r in agg.iterrows():
            print(f"| {s} | {level:.0%} | {r[('coverage', 'mean')]:.3f} [{r[('coverage', 'min')]:.3f}, "
                  f"{r[('coverage', 'max')]:.3f}] | {r[('width', 'mean')]:.3f} | "
                  f"{spot.loc[(level, s), 'coverage']:.3f} | {spot.loc[(level, s), 'width']:.3f} |")  # fmt: skip
        print()
    df = df.assign(calibration=df["calibration"].where(~df["calibration"].str.startswith("split:"), "split"))
    df = df.groupby(["section", "calibration", "level"], as_index=False)[["coverage", "width"]].mean()
    for name in ("section-grouped", "spot-level", *(["split", "spot-split"] if len(split) else [])):
        for level in LEVELS:
            cov = df[(df["calibration"] == name) & (df["level"] == level)]["coverage"].to_numpy()
            within = int((abs(cov - level) <= 0.05).sum())
            print(f"{name} {level:.0%}: mean coverage {cov.mean():.3f}, sections within ±5 points {within}/{len(cov)}, "
                  f"worst {cov[abs(cov - level).argmax()]:.3f}")  # fmt: skip
    _paired(df, [("spot-level", "section-grouped")] + ([("spot-split", "split")] if len(split) else []))


def _paired(df, pairs) -> None:
    """Per held-out section, spot-level minus section-level coverage: mean ± standard error over sections."""
    for spot, grouped in pairs:
        for level in LEVELS:
            at = df[df["level"] == level].pivot_table(index="section", columns="calibration", values="coverage")
            d = (at[spot] - at[grouped]).to_numpy()
            se = d.std(ddof=1) / len(d) ** 0.5 if len(d) > 1 else float("nan")
            print(
                f"{spot} − {grouped} {level:.0%}: {d.mean():+.3f} ± {se:.3f} (s.e. over sections), "
                f"lower on {int((d < 0).sum())}/{len(d)} sections"
            )


if __name__ == "__main__":
    main()
