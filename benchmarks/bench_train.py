"""Training benchmark of Gene-DML on cached features of the real HER2ST sections (issue 4, item 7).

Measures, in one run, and prints one table:

1. **Data-path overhead.** Throughput (spots/s) of the full training step through the real path — the
   ``SpotDataModule`` loader (section-bounded sampler, gather collate) → ``GeneDMLPlan.training_step`` (forward, every
   loss term, logging) → backward → gradient clipping → Adam step, run by ``lightning.Trainer.fit`` — against the
   pure module (``GeneDMLNet`` forward + ``GeneDMLLoss`` + backward + clipping + Adam step) on preloaded tensors of
   the same batches. The two are **paired step by step**: after every Lightning step a callback runs the pure step
   on the preloaded batch of the same index with a copy of the network, so both see the same machine load (this
   machine is shared). Warm-up epochs are dropped; the overhead is ``Σ t_lightning / Σ t_pure − 1`` over the timed
   epochs (target ≤ 20 %), with the per-epoch ratios shown.
2. **Time per epoch and peak RSS** on the real sections: training on patient C (C2–C5), validation on B4, as
   ``GeneDML.train`` runs it (validation included in the epoch time and reported separately).
3. **Global-encoder cost as sections per batch grow** (1, 2, 3, 5): a batch of ``--batch-size`` spots drawn from
   ``k`` sections makes the global encoder run over *all* spots of each of those sections; forward + backward time
   of the global encoder alone and of the whole step.

Features come from a frozen encoder with **random weights** by default (``pretrained=False``): nothing can be
downloaded here and the timings do not depend on the weight values. The encoder and its window are options, so the
same script runs a pretrained encoder (e.g. ``--encoder uni --pretrained --target-um none --target-px 224``) on a GPU.

    python benchmarks/bench_train.py                           # cpu preset, resnet18 (random) at 56 px / 112 µm
    python benchmarks/bench_train.py --config her2st --epochs 4  # the paper's HER2ST sizes (slow on CPUs)
    python benchmarks/bench_train.py --accelerator gpu --precision 16-mixed   # on a GPU machine (AMP)
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

from _common import HER2ST, read_her2st, set_threads


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", type=Path, default=HER2ST, help="HER2ST folder (default: ../shared/data/her2st)")
    p.add_argument("--encoder", default="resnet18", help="frozen encoder (registry/timm name; default resnet18)")
    p.add_argument("--pretrained", action="store_true", help="pretrained encoder weights (default: random init)")
    p.add_argument("--target-px", type=int, default=56, help="encoder input side in px (default 56)")
    p.add_argument("--target-um", default="112", help="window side in µm, resampled; 'none' = native px (default 112)")
    p.add_argument("--config", default="cpu", help="GeneDMLConfig preset: cpu (default), her2st, stnet, skinst")
    p.add_argument("--batch-size", type=int, default=256, help="spots per batch (default 256)")
    p.add_argument("--epochs", type=int, default=12, help="Lightning epochs, incl. warm-up (default 12)")
    p.add_argument("--warmup", type=int, default=1, help="epochs dropped from the statistics (default 1)")
    p.add_argument("--sections-per-batch", default="1,2,3,5", help="global-encoder sweep (default 1,2,3,5)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per sweep point (default 7)")
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (default 1, see the thread check)")
    p.add_argument("--thread-check", default="1,2", help="thread counts compared on the pure step ('' to skip)")
    p.add_argument("--accelerator", default="cpu", help="cpu (default) or gpu")
    p.add_argument("--precision", default=None, help="Lightning precision (default: 32-true on CPU, 16-mixed GPU)")
    p.add_argument("--cache-dir", type=Path, default=None, help="feature cache (default: gd.settings.cachedir)")
    p.add_argument("--seed", type=int, default=2021)
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------ helpers


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RSSMonitor:
    """Highest current RSS seen while the block runs (polled every 20 ms)."""

    def __enter__(self):
        self.start, self.peak, self._stop = _rss_mb(), _rss_mb(), threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())


def _union(a, b):
    """One `SpotData` over the spots of two (disjoint) `SpotData`."""
    import numpy as np

    from genedml.dataloaders import SpotData

    names = sorted(set(a.section_names) | set(b.section_names))
    code = lambda d: np.searchsorted(names, np.asarray(d.section_names)[d.section])  # noqa: E731
    cat = lambda f: np.concatenate([getattr(a, f), getattr(b, f)])  # noqa: E731
    return SpotData.dense(
        target=cat("target"),
        neighbor=cat("neighbor"),
        neighbor_mask=cat("neighbor_mask"),
        global_feats=cat("global_feats"),
        pos=cat("pos"),
        section=np.concatenate([code(a), code(b)]),
        section_names=names,
        y=cat("y"),
    )


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PureStep:
    """The module alone: forward, loss, backward, clipping, Adam step on preloaded (device) batches."""

    def __init__(self, net, loss, tc, device, amp: bool) -> None:
        import torch

        self.net = copy.deepcopy(net).to(device).train()
        self.loss = loss
        self.tc = tc
        self.device = device
        self.amp = amp
        self.opt = torch.optim.Adam(self.net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda") if amp else None
        self.gen = torch.Generator().manual_seed(tc.seed)

    def step(self, b) -> None:
        import torch

        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            out = self.net(**b.inputs(), y=b.y)
            lo = self.loss(out, b.y, generator=self.gen).loss
        if self.scaler is not None:
            self.scaler.scale(lo).backward()
            self.scaler.unscale_(self.opt)
        else:
            lo.backward()
        if self.tc.gradient_clip_val is not None:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.tc.gradient_clip_val)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()

    def epoch(self, batches) -> float:
        import torch

        with torch.enable_grad():
            _sync(self.device)
            t0 = time.perf_counter()
            for b in batches:
                self.step(b)
            _sync(self.device)
            return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------ parts


def setup_model(a, sdata):
    """`GeneDML.setup` on patient C (train) with B4 as validation; returns the model and its setup time."""
    from genedml.models import GeneDML

    tc = {
        "batch_size": a.batch_size,
        "max_epochs": a.epochs,
        "patience": None,
        "accelerator": a.accelerator,
        "devices": 1,
        "precision": a.precision,
        "seed": a.seed,
    }
    target_um = None if str(a.target_um).lower() == "none" else float(a.target_um)
    model = GeneDML(
        a.config, tc, encoder=a.encoder, pretrained=a.pretrained, target_px=a.target_px, target_um=target_um
    )
    t0 = time.perf_counter()
    model.setup(sdata, panel="her2st", val_sections=["B4"], progress=False)
    return model, time.perf_counter() - t0


def bench_paths(a, model):
    """Lightning fit (real data path) with a paired pure-module step after every training step."""
    import lightning as L
    import torch

    from genedml.models.nn import GeneDMLLoss
    from genedml.models.train import GeneDMLPlan, SpotDataModule, build_trainer
    from genedml.models.train._trainer import HistoryCallback

    tc = model.train_config
    L.seed_everything(tc.seed, verbose=False)
    plan = GeneDMLPlan(copy.deepcopy(model.net), GeneDMLLoss(model.config), tc)
    dm = SpotDataModule(model._train_data, model._val_data, tc)
    device = torch.device("cuda" if a.accelerator in ("gpu", "cuda") else "cpu")
    amp = device.type == "cuda" and (tc.precision or "16-mixed").startswith("16")
    # the very batches of an epoch of the real loader, preloaded on the device once
    batches = [b.to(device) for b in dm.train_dataloader()]
    pure = PureStep(model.net, GeneDMLLoss(model.config), tc, device, amp)
    rec = {"train": [], "val": [], "pure": [], "n_spots": sum(len(b.rows) for b in batches), "steps": len(batches)}

    class Timer(L.Callback):
        """Pairs every Lightning step with a pure step on the same machine load.

        Lightning's share of a step runs from the previous mark (epoch start, or the end of the previous paired
        pure step) to ``on_train_batch_end`` — loader fetch and collate, transfer, ``training_step``, backward,
        clipping, Adam step, logging; then the pure step on the preloaded batch of the same index is timed. The
        rest of the epoch (validation, checkpoint, scheduler) runs from the last mark to ``on_train_epoch_end``.
        """

        def on_train_epoch_start(self, trainer, pl_module):
            self.lit, self.pure = 0.0, 0.0
            _sync(device)
            self.mark = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            _sync(device)
            self.lit += time.perf_counter() - self.mark
            self.pure += pure.epoch(batches[batch_idx % len(batches) : batch_idx % len(batches) + 1])
            self.mark = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            _sync(device)
            rec["val"].append(time.perf_counter() - self.mark)
            rec["train"].append(self.lit)
            rec["pure"].append(self.pure)

    with RSSMonitor() as mon:
        t0 = time.perf_counter()
        trainer, _ = build_trainer(tc, has_val=True, progress=False, ckpt_dir=a.tmp, history=HistoryCallback())
        trainer.callbacks.append(Timer())
        trainer.fit(plan, datamodule=dm)
        rec["fit_s"] = time.perf_counter() - t0
    rec["rss_start"], rec["rss_peak"] = mon.start, mon.peak
    return rec


def bench_global(a, model, full):
    """Global encoder alone vs whole step, batches drawn from k sections."""
    import numpy as np
    import torch

    from genedml.models.nn import GeneDMLLoss

    device = torch.device("cuda" if a.accelerator in ("gpu", "cuda") else "cpu")
    amp = device.type == "cuda" and (model.train_config.precision or "16-mixed").startswith("16")
    pure = PureStep(model.net, GeneDMLLoss(model.config), model.train_config, device, amp)
    net = pure.net
    rng = np.random.default_rng(a.seed)
    order = [full.section_names.index(s) for s in ("C2", "B4", "C3", "C4", "C5")]
    points = []
    for k in [int(v) for v in a.sections_per_batch.split(",")]:
        if k > len(order):
            continue
        pool = np.flatnonzero(np.isin(full.section, order[:k]))
        rows = np.sort(rng.choice(pool, size=min(a.batch_size, len(pool)), replace=False))
        b = full.batch(rows).to(device)
        points.append({"k": k, "codes": order[:k], "b": b, "global": [], "step": []})

    def one(pt) -> None:
        b = pt["b"]
        with torch.enable_grad():
            net.zero_grad(set_to_none=True)
            _sync(device)
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                toks = net.encode_sections(b.section_feats, b.section_pos)
                s = sum(t.float().pow(2).mean() for t in toks)
            s.backward()
            _sync(device)
            t1 = time.perf_counter()
            pure.step(b)
            _sync(device)
            t2 = time.perf_counter()
        pt["global"].append(t1 - t0)
        pt["step"].append(t2 - t1)

    for pt in points:  # warm-up
        one(pt)
        pt["global"].clear()
        pt["step"].clear()
    for _ in range(a.repeats):  # round robin: load drift hits every k alike
        for pt in points:
            one(pt)
    return [
        {
            "k": pt["k"],
            "sections": "+".join(full.section_names[c] for c in pt["codes"]),
            "batch": len(pt["b"].rows),
            "global_tokens": sum(len(f) for f in pt["b"].section_feats),
            "global_ms": 1000 * statistics.median(pt["global"]),
            "global_min_ms": 1000 * min(pt["global"]),
            "step_ms": 1000 * statistics.median(pt["step"]),
            "step_min_ms": 1000 * min(pt["step"]),
        }
        for pt in points
    ]


def bench_threads(a, model, full) -> list[tuple[int, float]]:
    """The pure step on one all-section batch at each thread count, round robin (a loaded machine punishes
    OpenMP threads that wait for each other far more than it slows a single thread)."""
    import numpy as np
    import torch

    from genedml.models.nn import GeneDMLLoss

    counts = [int(v) for v in a.thread_check.split(",") if v]
    if not counts or a.accelerator != "cpu":
        return []
    pure = PureStep(model.net, GeneDMLLoss(model.config), model.train_config, torch.device("cpu"), False)
    rows = np.sort(np.random.default_rng(a.seed).choice(len(full), size=min(a.batch_size, len(full)), replace=False))
    b = full.batch(rows)
    times: dict[int, list[float]] = {n: [] for n in counts}
    before = torch.get_num_threads()
    try:
        for r in range(a.repeats + 1):
            for n in counts:
                torch.set_num_threads(n)
                dt = pure.epoch([b])
                if r:
                    times[n].append(dt)
    finally:
        torch.set_num_threads(before)
    return [(n, 1000 * statistics.median(v)) for n, v in times.items()]


# ------------------------------------------------------------------------------------------------ report


def report(a, info, rec, sweep, threads) -> None:
    w = a.warmup
    tr, va, pu = rec["train"][w:], rec["val"][w:], rec["pure"][w:]
    if not tr:
        raise SystemExit(f"--epochs {a.epochs} leaves no epoch after --warmup {w}.")
    n = rec["n_spots"]
    ratios = [t / p - 1 for t, p in zip(tr, pu)]
    med_tr, med_pu = statistics.median(tr), statistics.median(pu)
    ov = sum(tr) / sum(pu) - 1
    lines = [
        ("machine", f"{platform.node()}, {os.cpu_count()} cores, load avg {info['load_before']} → "
                    f"{info['load_after']}"),
        ("threads", f"torch {info['torch_threads']}, OMP/OPENBLAS/MKL {os.environ['OMP_NUM_THREADS']}"),
        ("versions", f"python {platform.python_version()}, torch {info['torch']}, lightning {info['lightning']}"),
        ("device / precision", f"{a.accelerator} / {info['precision']}"),
        ("encoder", f"{a.encoder}, {'pretrained' if a.pretrained else 'RANDOM init (offline)'}, "
                    f"{a.target_px} px / {a.target_um} µm window, D = {info['D']}, T = {info['T']} tokens"),
        ("config", f"preset {a.config!r}: dim {info['dim']}, trunk {info['trunk']}, K {info['K']}; "
                   f"{info['n_params']:,} trainable parameters"),
        ("data", f"HER2ST: train {info['train']} ({n} spots/epoch after drop_last), val {info['val']} "
                 f"({info['n_val']} spots), {info['genes']} genes; batch {a.batch_size}, {rec['steps']} steps/epoch"),
        ("setup (read+features+targets)", f"{info['read_s']:.1f} s read_st + {info['setup_s']:.1f} s setup"),
        ("", ""),
        ("1. throughput, full step", f"{n * len(tr) / sum(tr):,.0f} spots/s  (Lightning path; median train part of an "
                                     f"epoch {med_tr:.2f} s, {len(tr)} epochs after {w} warm-up)"),
        ("   pure module (paired)", f"{n * len(pu) / sum(pu):,.0f} spots/s  (same batches preloaded; median "
                                   f"{med_pu:.2f} s per epoch)"),
        ("   data-path overhead", f"{100 * ov:+.1f} %  [per epoch: " + ", ".join(f"{100 * r:+.0f}" for r in ratios)
                                  + "]  target ≤ 20 %"),
        ("2. time per epoch", f"{med_tr + statistics.median(va):.2f} s (train {med_tr:.2f} s + validation/checkpoint "
                              f"{statistics.median(va):.2f} s); fit() {rec['fit_s'] - sum(rec['pure']):.1f} s for "
                              f"{a.epochs} epochs (paired pure steps excluded)"),
        ("   RSS", f"{info['rss']['imports']:,.0f} MB after imports, {info['rss']['read']:,.0f} after read_st, "
                   f"{info['rss']['setup']:,.0f} after setup, {rec['rss_start']:,.0f} at fit start, "
                   f"{rec['rss_peak']:,.0f} peak during fit (+{rec['rss_peak'] - rec['rss_start']:,.0f})"),
        ("", f"process peak {info['peak_rss']:,.0f} MB (setup decodes each section JPEG once to fingerprint the "
             "feature cache)"),
    ]  # fmt: skip
    lines.append(
        (
            "3. sections/batch sweep",
            f"batch {a.batch_size} spots from k sections; global encoder fwd+bwd alone vs whole step "
            f"(median of {a.repeats})",
        )
    )
    for r in sweep:
        lines.append(
            (
                f"   k = {r['k']} ({r['sections']})",
                f"{r['global_tokens']:>5} global tokens: global {r['global_ms']:6.0f} ms "
                f"(min {r['global_min_ms']:.0f}), "
                f"step {r['step_ms']:6.0f} ms (min {r['step_min_ms']:.0f}); global = "
                f"{100 * r['global_ms'] / r['step_ms']:.0f} % of step; "
                f"{1000 * r['batch'] / r['step_ms']:,.0f} spots/s",
            )
        )
    if threads:
        lines.append(
            (
                "4. threads (pure step, all sections)",
                ", ".join(f"{n} thread(s) {ms:.0f} ms" for n, ms in threads) + f" (median of {a.repeats})",
            )
        )
    width = max(len(k) for k, _ in lines)
    print("\nGene-DML training benchmark (benchmarks/bench_train.py)")
    print("-" * 100)
    for k, v in lines:
        print(f"{k:<{width}}  {v}")
    print("-" * 100)


def main(argv=None) -> int:
    a = parse_args(argv)
    threads = set_threads(a.threads)
    import tempfile
    import warnings

    import lightning
    import torch

    torch.set_num_threads(threads)
    import genedml as gd

    gd.settings.progress_bar = False
    if a.cache_dir is not None:
        gd.settings.cachedir = a.cache_dir
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
    rss = {"imports": _rss_mb()}
    wall0 = time.perf_counter()
    t0 = time.perf_counter()
    sdata = read_her2st(a.data)
    read_s = time.perf_counter() - t0
    rss["read"] = _rss_mb()
    model, setup_s = setup_model(a, sdata)
    rss["setup"] = _rss_mb()
    full = _union(model._train_data, model._val_data)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        a.tmp = tmp
        rec = bench_paths(a, model)
    sweep = bench_global(a, model, full)
    threads_check = bench_threads(a, model, full)
    enc = model.encoder_info_
    info = {
        "load_before": load_before,
        "load_after": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "precision": model.train_config.precision or ("16-mixed" if a.accelerator != "cpu" else "32-true"),
        "D": enc["dim"],
        "T": model._train_data.target.shape[-2],
        "dim": model.config.dim,
        "trunk": model.config.trunk_dim or enc["dim"],
        "K": model.config.K,
        "n_params": sum(p.numel() for p in model.net.parameters() if p.requires_grad),
        "train": "+".join(model.fit_info_["train_sections"]),
        "val": "+".join(model.fit_info_["val_sections"]),
        "n_val": model.fit_info_["n_val"],
        "genes": len(model.genes_),
        "read_s": read_s,
        "setup_s": setup_s,
        "peak_rss": _peak_rss_mb(),
        "rss": rss,
    }
    report(a, info, rec, sweep, threads_check)
    print(f"wall time {time.perf_counter() - wall0:.0f} s; command: python {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
