"""Sub-commands of ``genedml``. Every step goes through the public API.

Before any work a command checks its whole input: options, the YAML config (sections, keys, value types), that
input files exist and that no output would be overwritten without ``--overwrite``. Outputs are written atomically
(a temporary sibling renamed into place), so a failed or interrupted run never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["main"]

DOCS = "see the 'Command line' page of the documentation for the YAML schema and example configs"
EXIT_USAGE = 2  # bad option, config, input path or an output that exists (argparse uses 2 too)
EXIT_FAILURE = 1  # the work itself failed (e.g. out of memory, disk full)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Help that states every option's default (or that it is required)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if action.required:
            return f"{text} (required)"
        if action.default not in (None, False):
            return f"{text} (default: %(default)s)"
        return text


def _out(msg: str) -> None:
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


def save_fig(fig, path: Path) -> None:
    """Write a figure atomically."""
    from .._utils import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")


def save_csv(df, path: Path) -> None:
    """Write a table atomically."""
    from .._utils import atomic_path

    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp)


def check_outputs(option: str, paths: list[Path], *, overwrite: bool) -> None:
    """Refuse, before any work, outputs that exist (without ``--overwrite``) or that cannot be created."""
    for p in paths:
        for parent in p.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise FileExistsError(f"`{option}`: cannot write {str(p)!r}: {str(parent)!r} is not a folder.")
                break
    existing = [str(p) for p in paths if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise FileExistsError(
            f"`{option}`: {', '.join(repr(e) for e in existing)} already exist(s); pass --overwrite to replace "
            "(or choose another output)."
        )


def check_input(option: str, path: str | None, *, kind: str = "file or folder") -> None:
    """An input path given on the command line must exist."""
    if path is not None and not Path(path).exists():
        raise FileNotFoundError(f"`{option}`={path!r}: no such {kind}.")


def _progress(args: argparse.Namespace) -> bool | None:
    return False if getattr(args, "no_progress", False) else None


# --------------------------------------------------------------------------------------------- commands


def _demo(args: argparse.Namespace) -> int:
    from ._demo import DEMO_OUTPUTS, run_demo

    out = Path(args.out)
    check_outputs("--out", [out / n for n in DEMO_OUTPUTS], overwrite=args.overwrite)
    if args.epochs < 1:
        raise ValueError(f"`--epochs` must be ≥ 1, got {args.epochs}.")
    return run_demo(
        out, preset=args.preset, encoder=args.encoder, epochs=args.epochs, seed=args.seed, progress=_progress(args)
    )


def _fit(args: argparse.Namespace) -> int:
    import pandas as pd

    import genedml as gd

    from ._config import load_config, load_data

    cfg = load_config(args.config)
    out = Path(args.out or cfg.get("output") or "genedml-out")
    check_outputs("--out", [out / "model.pt", out / "history.csv"], overwrite=args.overwrite)
    sdata = load_data(cfg)
    kw = {"progress": _progress(args), **(cfg.get("fit") or {})}
    model = gd.tl.fit(sdata, **kw)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.pt", overwrite=True)  # checked above; atomic
    save_csv(pd.DataFrame(model.history_), out / "history.csv")
    _out(f"trained {model!r}; wrote {out / 'model.pt'} and {out / 'history.csv'}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import genedml as gd

    from ._config import load_config, load_data

    cfg = load_config(args.config) if args.config else {}
    check_input("--model", args.model, kind="file")
    check_input("--data", args.data, kind=".zarr store")
    check_outputs("--out", [Path(args.out)], overwrite=args.overwrite)
    model = gd.models.load_method(args.model)
    sdata = gd.io.read_zarr(args.data) if args.data else load_data(cfg)
    kw = {"progress": _progress(args), **(cfg.get("predict") or {})}
    gd.tl.predict(sdata, model, **kw)
    gd.io.write_zarr(sdata, args.out, overwrite=args.overwrite)
    _out(f"predicted {len(model.genes_)} genes; wrote {args.out}")
    return 0


def _slide_list(args: argparse.Namespace) -> list[str]:
    """The slides named on the command line, then those of ``--slides-from`` (one a line; ``#`` comments)."""
    slides = list(args.slides)
    if args.slides_from:
        check_input("--slides-from", args.slides_from, kind="file")
        for line in Path(args.slides_from).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                slides.append(line)
    if not slides:
        raise ValueError("no slides: name slide files, or a list of them with --slides-from.")
    return slides


def _predict_slides(args: argparse.Namespace) -> int:
    import genedml as gd

    slides = _slide_list(args)
    check_input("--model", args.model)
    kw = {k: getattr(args, k) for k in ("pixel_size", "backend", "pitch_um", "diameter_um", "grid")}
    kw |= {k: getattr(args, k) for k in ("min_tissue_fraction", "key_added", "threads_per_worker", "overwrite")}
    manifest = gd.tl.predict_slides(
        slides,
        args.model,
        out_dir=args.out,
        scheduler=args.scheduler,
        n_workers=args.n_workers,
        progress=_progress(args),
        **kw,
    )
    shown = manifest.assign(slide=[Path(p).name for p in manifest["slide"]])
    _out(shown[["slide", "status", "n_spots", "seconds", "error"]].to_string(index=False))
    counts = manifest["status"].value_counts()
    summary = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("done", "skipped", "failed"))
    _out(f"{summary}; wrote {Path(args.out) / 'manifest.csv'}")
    return EXIT_FAILURE if counts.get("failed", 0) else 0


def _evaluate(args: argparse.Namespace) -> int:
    import genedml as gd

    from ._config import load_config

    cfg = load_config(args.config) if args.config else {}
    check_input("--data", args.data, kind=".zarr store")
    if args.out:
        check_outputs("--out", [Path(args.out)], overwrite=args.overwrite)
    sdata = gd.io.read_zarr(args.data)
    scores = gd.tl.evaluate(sdata, **(cfg.get("evaluate") or {}))
    if args.out:
        save_csv(scores, Path(args.out))
    _out(scores.round(4).to_string())
    return 0


def _cv(args: argparse.Namespace) -> int:
    import genedml as gd

    from ._config import load_config, load_data

    cfg = load_config(args.config)
    out = Path(args.out or cfg.get("output") or "genedml-cv")
    check_outputs("--out", [out / "scores.csv", out / "summary.csv"], overwrite=args.overwrite)
    sdata = load_data(cfg)
    kw = {"resume_dir": out / "folds", "progress": _progress(args), **(cfg.get("cv") or {})}
    res = gd.tl.cross_validate(sdata, **kw)
    save_csv(res.scores, out / "scores.csv")
    save_csv(res.summary, out / "summary.csv")
    _out(res.table().to_string())
    return 0


def _cache(args: argparse.Namespace) -> int:
    import genedml as gd

    if args.clear:
        freed = gd.settings.clear_cache()
        _out(f"cleared the feature store {gd.settings.cachedir} ({freed / 1e6:.1f} MB freed)")
        return 0
    info = gd.settings.cache_info()
    _out(
        f"feature store: {info['path']}\nentries: {info['entries']}\nunfinished parts: {info['parts']}\n"
        f"stale: {info['stale']} (older genedml versions or killed runs; never read)\n"
        f"size: {info['bytes'] / 1e6:.1f} MB"
    )
    _out("clear it with `genedml cache --clear` (or gd.settings.clear_cache()); move it with GENEDML_CACHEDIR")
    return 0


# ----------------------------------------------------------------------------------------------- parser


def _sub(sub, name: str, func, help: str, epilog: str, *, progress: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=_Formatter, allow_abbrev=False)
    p.set_defaults(func=func)
    if progress:
        p.add_argument("--no-progress", action="store_true", help="no progress bars or progress lines")
    return p


REQUIRED = {"required": True}


def _options(parser: argparse.ArgumentParser, **options: str | tuple[str, dict]) -> None:
    """Add ``--name`` options in order: ``name=help`` (default ``None``) or ``name=(help, add_argument kwargs)``.

    ``overwrite`` is a flag (``store_true``).
    """
    for name, spec in options.items():
        text, kwargs = (spec, {}) if isinstance(spec, str) else spec
        if name == "overwrite":
            kwargs = {"action": "store_true", **kwargs}
        parser.add_argument(f"--{name}", help=text, **kwargs)


def _commands(demo_fit: dict) -> list[tuple]:
    """``(name, function, summary, epilog, progress option, options)`` of every sub-command but ``cache``."""
    return [
        (
            "demo", _demo, "read → fit → predict → evaluate → save on built-in synthetic data (offline, ~1 min)",
            "Three patients: one trains, one validates (early stopping and the genes shown), one is the untouched "
            "test set shown in truth_vs_prediction.png.\nExample: genedml demo --out demo/",
            True,
            {
                "out": ("output folder", {"default": "demo"}),
                "overwrite": "replace the outputs of an earlier demo in --out",
                "preset": ("synthetic dataset size", {"default": "small", "choices": ["tiny", "small"]}),
                "encoder": ("'morphology' (no weights) or a timm name", {"default": demo_fit["encoder"]}),
                "epochs": ("maximum training epochs", {"type": int, "default": demo_fit["max_epochs"]}),
                "seed": ("seed of the synthetic data", {"type": int, "default": 0}),
            },
        ),
        (
            "fit", _fit, "fit a model from a YAML config (sections: data, fit, output)",
            "Writes OUT/model.pt and OUT/history.csv.\n"
            f"Example: genedml fit --config run.yaml --out run/\nYAML: {DOCS}.",
            True,
            {
                "config": ("YAML run configuration", REQUIRED),
                "out": "output folder (default: the config's 'output', else genedml-out)",
                "overwrite": "replace model.pt / history.csv if they exist",
            },
        ),
        (
            "predict", _predict, "predict with a saved model and write a .zarr (sections: data, predict)",
            "Example: genedml predict --model run/model.pt --config run.yaml --out pred.zarr\n"
            f"Without --data the config's data section is read. YAML: {DOCS}.",
            True,
            {
                "model": ("model file written by `genedml fit` (model.pt) or by any method's `save`", REQUIRED),
                "data": ".zarr input (default: the config's data section)",
                "config": "YAML run configuration (data, predict)",
                "out": ("output .zarr store", REQUIRED),
                "overwrite": "replace --out if it exists",
            },
        ),
        (
            "predict-slides", _predict_slides,
            "predict many slide files in parallel (Dask), resumably: one OUT/<slide>.zarr each, OUT/manifest.csv",
            "Per slide: read the file, find the tissue, lay the model's spot grid, predict. Slides done earlier with "
            "the same model and options are skipped; a failed slide is reported and the others go on (exit status "
            "1 when any failed).\n"
            "Example: genedml predict-slides --model run/model.pt --out cohort/ --n-workers 4 slides/*.svs\n"
            "On a cluster: genedml predict-slides --model run/model.pt --out cohort/ --scheduler tcp://HOST:8786 "
            "--slides-from slides.txt",
            True,
            {
                "model": ("model file written by `genedml fit` (or an ensemble's folder)", REQUIRED),
                "out": ("output folder: one .zarr per slide and manifest.csv", REQUIRED),
                "slides-from": "text file listing slide files, one a line (after any given as arguments)",
                "pixel-size": ("µm per pixel of the slides' finest level, when the files record none", {"type": float}),
                "backend": ("slide reader", {"default": "tiffslide", "choices": ["tiffslide", "openslide"]}),
                "pitch-um": ("spot pitch in µm (default: the model's)", {"type": float}),
                "diameter-um": ("spot diameter in µm (default: the model's)", {"type": float}),
                "grid": (
                    "spot lattice (default: 'bins' for a model trained on bins, else 'st')",
                    {"default": None, "choices": ["st", "hex", "bins"]},
                ),
                "min-tissue-fraction": ("keep a spot with this much tissue", {"type": float, "default": 0.5}),
                "key-added": ("layer of the predictions", {"default": "predicted"}),
                "scheduler": "'sync' (this process, no Dask) or a Dask scheduler address (default: a local cluster)",
                "n-workers": ("worker processes of the local cluster (default: one per core)", {"type": int}),
                "threads-per-worker": ("threads of each local worker", {"type": int, "default": 1}),
                "overwrite": "recompute outputs in --out that were made with another model or options",
            },
        ),
        (
            "evaluate", _evaluate, "score the predictions in a .zarr, section by section (section: evaluate)",
            f"Example: genedml evaluate --data pred.zarr --out scores.csv\nYAML: {DOCS}.",
            False,
            {
                "data": (".zarr store with predictions (from `genedml predict`)", REQUIRED),
                "config": "YAML run configuration (evaluate)",
                "out": "CSV of per-section scores (default: print only)",
                "overwrite": "replace --out if it exists",
            },
        ),
        (
            "cv", _cv, "grouped cross-validation from a YAML config (sections: data, cv, output)",
            "Writes OUT/scores.csv and OUT/summary.csv; finished folds are kept in OUT/folds/ and resumed.\n"
            f"Example: genedml cv --config cv.yaml --out cv/\nYAML: {DOCS}.",
            True,
            {
                "config": ("YAML run configuration", REQUIRED),
                "out": "output folder (default: the config's 'output', else genedml-cv)",
                "overwrite": "replace scores.csv / summary.csv (folds are resumed)",
            },
        ),
    ]  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    from .._version import __version__
    from ._demo import DEMO_FIT

    p = argparse.ArgumentParser(
        prog="genedml",
        description="Predict spatial gene expression from H&E histology (Gene-DML).",
        epilog=f"Run `genedml COMMAND --help` for a command's options; {DOCS}.",
        formatter_class=_Formatter,
        allow_abbrev=False,
    )
    p.add_argument("--version", action="version", version=f"genedml {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, func, summary, epilog, progress, options in _commands(DEMO_FIT):
        cmd = _sub(sub, name, func, summary, epilog, progress=progress)
        if name == "predict-slides":
            cmd.add_argument("slides", nargs="*", metavar="SLIDE", help="slide files (.svs, .ndpi, .tif, …)")
        _options(cmd, **options)
    k = _sub(
        sub, "cache", _cache, "show or clear the on-disk feature cache of gd.tl.embed",
        "The cache lives in gd.settings.cachedir (environment variable GENEDML_CACHEDIR).", progress=False,
    )  # fmt: skip
    g = k.add_mutually_exclusive_group()
    g.add_argument("--info", action="store_true", help="print its folder, entries and size (the default)")
    g.add_argument("--clear", action="store_true", help="delete every cached feature file")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genedml`` command."""
    import os

    os.environ.setdefault("MPLBACKEND", "Agg")
    args = _parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError, TypeError, FileNotFoundError, FileExistsError) as e:
        return _error(args.command, e, EXIT_USAGE)
    except KeyboardInterrupt:
        sys.stderr.write(f"genedml {args.command}: interrupted; no output was half-written.\n")
        return 130
    except (RuntimeError, OSError, MemoryError) as e:
        encoders = sys.modules.get("genedml.encoders")  # imported only by the commands that need torch
        if encoders is not None and isinstance(e, encoders.WeightsUnavailableError):
            return _error(args.command, e, EXIT_USAGE)
        return _error(args.command, e, EXIT_FAILURE, prefix=f"failed: {type(e).__name__}: ")


def _error(command: str, e: BaseException, code: int, *, prefix: str = "error: ") -> int:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e  # KeyError's str() adds quotes
    sys.stderr.write(f"genedml {command}: {prefix}{msg}\n")
    return code
