"""``gd.tl.predict_slides``: predict a cohort of whole-slide files in parallel on Dask distributed, resumably."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._keys import Keys
from .._logging import logger
from .._utils import resolve_progress
from .._validators import assert_in_range, assert_one_of, assert_positive_int

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

    from ..models import Predictor

__all__ = ["predict_slides"]

MANIFEST = "manifest.csv"
#: manifest columns: the first six are the result; the rest decide whether a later call may skip the slide
COLUMNS = ("slide", "status", "output", "n_spots", "seconds", "error")
RESUME_COLUMNS = ("model_hash", "options", "slide_size", "slide_mtime_ns", "sha256", "finished")
_NAME = re.compile(r"[^A-Za-z0-9_-]")


def predict_slides(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    model: Predictor | str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    pixel_size: float | None = None,
    backend: str = "tiffslide",
    pitch_um: float | None = None,
    diameter_um: float | None = None,
    grid: str | None = None,
    min_tissue_fraction: float = 0.5,
    key_added: str = Keys.predicted,
    weights: str | os.PathLike | None = None,
    scheduler: str | Client | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    overwrite: bool = False,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Predict expression on many H&E-only slide files in parallel, one Dask task per slide, resumably.

    Per slide: `gd.io.read_slide` → `gd.pp.spot_grid` (tissue detection; spot geometry from the model unless
    given) → prediction into ``out_dir/<slide stem>.zarr``, a SpatialData store holding the spot shapes and the
    table with ``layers[key_added]`` and its provenance (not the image; the slide is recorded in the table's
    ``uns["genedml"]["slide"]``: path, size, modification time, sha256, section, model hash and options). Each store
    is written beside its final path and renamed into place once complete.

    The slides run on Dask distributed: a `distributed.LocalCluster` of ``n_workers`` processes by default, or the
    cluster behind ``scheduler`` (an address such as ``"tcp://head:8786"`` or a `distributed.Client`, e.g. of a
    dask-jobqueue ``SLURMCluster``; the slide files, ``out_dir`` and the model file must then be reachable from the
    workers at the same paths). The model is saved once into ``out_dir`` and every worker loads it once. Each worker
    sets torch's threads to its own thread count and predicts on its GPU when it has one; on a `LocalCluster` over
    several GPUs, worker ``i`` takes GPU ``i % n_gpus``. See the "Cohorts" page of the documentation.

    Resuming: ``out_dir/manifest.csv`` is rewritten atomically after each slide. A slide whose store exists and
    whose manifest row says done (or skipped) with the same model hash, options, slide size and modification time
    is not recomputed but reported as ``"skipped"``. A slide that fails (unreadable file, no tissue, …) is
    reported as ``"failed"`` with the error's type and message, and the other slides go on. Rows of slides from
    earlier calls that this call does not name stay in the file.

    Predictions are identical (bit for bit) whatever the number of workers or the scheduler, given the same
    device and torch threads per slide.

    Parameters
    ----------
    paths
        Slide files (one path or a list); their stems (file names without extensions, as `gd.io.read_slide` names
        the section) must be distinct.
    model
        A trained model (`genedml.models.GeneDML`, a baseline or an `EnsembleModel`), or the file (folder for an
        ensemble) its ``save`` wrote.
    out_dir
        Output folder (created when missing).
    pixel_size, backend
        Passed to `gd.io.read_slide` for every slide (``pixel_size``: µm/px when the files record none).
    pitch_um, diameter_um, grid, min_tissue_fraction
        Passed to `gd.pp.spot_grid` (default geometry: the model's training geometry; ``grid=None``: ``"bins"``
        for a model trained on bins, else ``"st"``).
    key_added
        Layer of the predictions in each output table.
    weights
        The encoder's local weights file, for a model trained with one (see `gd.tl.predict`); default: the one the
        model was given. The workers must reach it at this path.
    scheduler
        ``None``: a new `LocalCluster` (closed at the end); ``"sync"``: one slide after the other in this process,
        no Dask, with one torch thread like a default worker (so its predictions equal the cluster's to the bit);
        an address string or a `distributed.Client`: that cluster (left running).
    n_workers
        Worker processes of the `LocalCluster` (default: as many as the CPU cores allow at
        ``threads_per_worker`` each, at most one per slide to do). Only with ``scheduler=None``.
    threads_per_worker
        Threads (and torch threads) of each `LocalCluster` worker; a worker predicts one slide at a time. Only
        with ``scheduler=None``.
    overwrite
        Recompute and replace outputs that exist in ``out_dir`` but are not recorded as done with this model and
        these options (without it they raise, before any work). Outputs recorded as done are skipped either way.
    progress
        A progress bar over the slides.

    Returns
    -------
    The manifest of the slides of this call, in the order given: ``slide`` (absolute path), ``status``
    (``"done"``, ``"skipped"`` or ``"failed"``), ``output`` (the store's path), ``n_spots``, ``seconds``,
    ``error`` (``""`` unless failed), then ``model_hash``, ``options`` (a hash of the options), ``slide_size``,
    ``slide_mtime_ns``, ``sha256`` and ``finished`` (UTC time), which decide resuming.

    Examples
    --------
    Two small slides (tiled TIFFs at 2 µm/px) and a tiny model, one slide after the other in this process:

    >>> import tempfile
    >>> import numpy as np, tifffile
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> model = gd.tl.fit(sdata, n_top_genes=5, encoder="test_resnet", pretrained=False, max_epochs=1, config="cpu")
    >>> folder = tempfile.mkdtemp()
    >>> he = np.full((480, 480, 3), 242, np.uint8)  # a pale slide with a square of tissue
    >>> he[80:400, 80:400] = sdata.images["S1_hne"].data.compute().transpose(1, 2, 0)[300:620, 300:620]
    >>> tiff = dict(tile=(256, 256), resolution=(5e3, 5e3), resolutionunit="CENTIMETER")  # 2 µm/px
    >>> for name in ("a", "b"):
    ...     tifffile.imwrite(f"{folder}/{name}.tif", he, **tiff)
    >>> paths = [f"{folder}/a.tif", f"{folder}/b.tif"]
    >>> manifest = gd.tl.predict_slides(paths, model, out_dir=f"{folder}/out", scheduler="sync", progress=False)
    >>> manifest["status"].tolist()
    ['done', 'done']
    >>> import spatialdata
    >>> pred = spatialdata.read_zarr(f"{folder}/out/a.zarr")  # spot shapes and the table, no image
    >>> pred["table"].layers["predicted"].shape == (manifest["n_spots"][0], 5)
    True

    A second call skips the slides already done:

    >>> gd.tl.predict_slides(paths, model, out_dir=f"{folder}/out", scheduler="sync", progress=False)["status"].tolist()
    ['skipped', 'skipped']

    On a local cluster of two worker processes, or on a cluster from dask-jobqueue:

    >>> gd.tl.predict_slides(paths, model, out_dir="out", n_workers=2)  # doctest: +SKIP
    >>> from dask_jobqueue import SLURMCluster  # doctest: +SKIP
    >>> from distributed import Client  # doctest: +SKIP
    >>> cluster = SLURMCluster(cores=8, processes=1, memory="32GB")  # doctest: +SKIP
    >>> cluster.scale(jobs=10)  # doctest: +SKIP
    >>> gd.tl.predict_slides(paths, model, out_dir="/shared/out", scheduler=Client(cluster))  # doctest: +SKIP
    """
    slides = _check_paths(paths)
    out = _check_out_dir(out_dir)
    opts = _check_options(pixel_size, backend, pitch_um, diameter_um, grid, min_tissue_fraction, key_added)
    _check_scheduler(scheduler, n_workers, threads_per_worker)
    weights_s = None if weights is None else os.fspath(Path(weights).expanduser().resolve())
    model_obj, model_source = _resolve_model(model, weights_s)
    if weights_s is None and model_source is None:  # a model given its local weights file earlier: workers need it
        local = getattr(getattr(model_obj, "encoder", None), "weights", None)
        weights_s = os.fspath(Path(local).resolve()) if local and Path(local).is_file() else None
    model_hash = str(model_obj.model_hash)
    fingerprint = _fingerprint(opts)
    outputs = {s: out / f"{_stem(s)}.zarr" for s in slides}
    previous = _read_manifest(out / MANIFEST)
    done = {s for s in slides if _is_done(previous.get(s), outputs[s], s, model_hash, fingerprint)}
    stale = [str(outputs[s]) for s in slides if s not in done and outputs[s].exists()]
    if stale and not overwrite:
        raise FileExistsError(
            f"`out_dir`: {len(stale)} output(s) exist but are not recorded as done with this model and these options "
            f"(e.g. {stale[0]!r}); pass overwrite=True to recompute them, or choose another `out_dir`."
        )
    out.mkdir(parents=True, exist_ok=True)
    if model_source is None:  # a model object: saved once into out_dir, loaded once by every worker
        model_source = _save_model(model_obj, out)
    rows = dict(previous)
    for s in slides:
        if s in done:
            rows[s] = {**previous[s], "status": "skipped", "seconds": 0.0}
    todo = [s for s in slides if s not in done]
    logger.info("predict_slides: %d slide(s), %d to do, %d done before", len(slides), len(todo), len(done))
    if todo:
        base = {"model_hash": model_hash, "options": fingerprint}
        args = (model_source, model_hash, opts, weights_s)
        _run(todo, outputs, args, base, rows, out, scheduler, n_workers, threads_per_worker, progress)
    else:
        _write_manifest(rows, out / MANIFEST)
    return _frame([rows[s] for s in slides])


# --------------------------------------------------------------------------------------------------- checks


def _check_paths(paths) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not isinstance(paths, Sequence) and not hasattr(paths, "__iter__"):
        raise TypeError(f"`paths` must be a list of slide files, got {type(paths).__name__}.")
    paths = list(paths)
    if not paths:
        raise ValueError("`paths` is empty: give at least one slide file.")
    bad = [p for p in paths if not isinstance(p, (str, os.PathLike))]
    if bad:
        raise TypeError(f"`paths` must hold file paths, got {type(bad[0]).__name__} ({bad[0]!r}).")
    slides = [os.fspath(Path(p).expanduser().resolve()) for p in paths]
    missing = [os.fspath(p) for p, s in zip(paths, slides, strict=True) if not Path(s).is_file()]
    if missing:
        raise FileNotFoundError(
            f"`paths`: {len(missing)} slide file(s) do not exist or are not files: {missing[:5]}"
            f"{' …' if len(missing) > 5 else ''}."
        )
    seen: dict[str, str] = {}
    for s in slides:
        stem = _stem(s)
        if stem in seen:
            what = "is given twice" if seen[stem] == s else f"and {seen[stem]!r} have the same stem {stem!r}"
            raise ValueError(f"`paths`: {s!r} {what}; outputs are named by stem (out_dir/<stem>.zarr).")
        seen[stem] = s
    return slides


def _stem(path: str) -> str:
    """Output and section name of a slide: its file name without extension(s), as `gd.io.read_slide` names it."""
    name = Path(path).name
    return _NAME.sub("_", name.split(".")[0] or name) or "slide"


def _check_out_dir(out_dir) -> Path:
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"`out_dir` must be a folder path, got {type(out_dir).__name__}.")
    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"`out_dir`={os.fspath(out_dir)!r} exists and is not a folder.")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise FileExistsError(f"`out_dir`={os.fspath(out_dir)!r}: {str(parent)!r} is not a folder.")
            break
    return out


def _check_options(pixel_size, backend, pitch_um, diameter_um, grid, min_tissue_fraction, key_added) -> dict:
    if pixel_size is not None:
        assert_in_range(pixel_size, name="pixel_size", low=0, inclusive=False)
    assert_one_of(backend, ("tiffslide", "openslide"), name="backend")
    for name, v in (("pitch_um", pitch_um), ("diameter_um", diameter_um)):
        if v is not None:
            assert_in_range(v, name=name, low=0, inclusive=False)
    if grid is not None:
        assert_one_of(grid, ("st", "hex", "bins"), name="grid")
    assert_in_range(min_tissue_fraction, name="min_tissue_fraction", low=0.0, high=1.0)
    if not isinstance(key_added, str) or not key_added:
        raise ValueError(f"`key_added` must be a non-empty string, got {key_added!r}.")
    num = {"pixel_size": pixel_size, "pitch_um": pitch_um, "diameter_um": diameter_um}
    opts = {k: None if v is None else float(v) for k, v in num.items()}
    return (
        opts
        | {"backend": backend, "grid": grid, "min_tissue_fraction": float(min_tissue_fraction)}
        | {"key_added": key_added}
    )


def _check_scheduler(scheduler, n_workers, threads_per_worker) -> None:
    if scheduler is not None and not isinstance(scheduler, str):
        from distributed import Client

        if not isinstance(scheduler, Client):
            raise TypeError(
                "`scheduler` must be None (a new LocalCluster), 'sync', a scheduler address string or a "
                f"distributed.Client, got {type(scheduler).__name__}."
            )
    if isinstance(scheduler, str) and not scheduler.strip():
        raise ValueError("`scheduler` is an empty string: pass None, 'sync' or an address such as 'tcp://host:8786'.")
    if n_workers is not None:
        assert_positive_int(n_workers, name="n_workers")
        if scheduler is not None:
            raise ValueError(
                f"`n_workers`={n_workers} applies to the LocalCluster that predict_slides starts (scheduler=None); "
                "size an existing cluster yourself."
            )
    assert_positive_int(threads_per_worker, name="threads_per_worker")
    if threads_per_worker != 1 and scheduler is not None:
        raise ValueError(
            f"`threads_per_worker`={threads_per_worker} applies to the LocalCluster that predict_slides starts "
            "(scheduler=None); an existing cluster's workers keep their own threads."
        )


def _resolve_model(model, weights: str | None) -> tuple[Any, str | None]:
    """The model object (to check and hash) and its file when ``model`` was one (``None``: save it)."""
    from ..models import Predictor

    if isinstance(model, (str, os.PathLike)):
        path = Path(model).expanduser().resolve()
        if not path.exists():
            raise FileNotFoundError(f"`model`={os.fspath(model)!r}: no such model file (or ensemble folder).")
        from ..models import EnsembleModel, load_method
        from ._slides_worker import _MODELS

        obj = EnsembleModel.load(path, weights=weights) if path.is_dir() else load_method(path, weights=weights)
        _MODELS[(os.fspath(path), str(obj.model_hash))] = obj  # the "sync" path reuses it
        return obj, os.fspath(path)
    if not isinstance(model, Predictor) or not model.is_ready():
        what = "" if isinstance(model, Predictor) else f" (a {type(model).__name__})"
        raise ValueError(
            f"`model` must be a trained genedml model or the path of a saved one{what}: use gd.tl.fit(...) or "
            "GeneDML.load(path)."
        )
    if weights is not None:
        model.set_weights(weights)
    return model, None


def _save_model(model, out: Path) -> str:
    """Save ``model`` into ``out_dir/.genedml-model-<hash>`` once (kept for resumed calls and the workers)."""
    from ._slides_worker import _MODELS

    out.mkdir(parents=True, exist_ok=True)
    is_ensemble = hasattr(model, "models")
    path = out / f".genedml-model-{model.model_hash}{'' if is_ensemble else '.pt'}"
    if not path.exists():
        model.save(path)
    _MODELS[(os.fspath(path), str(model.model_hash))] = model  # the "sync" path uses the object itself
    return os.fspath(path)


def _fingerprint(opts: dict) -> str:
    return hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------- manifest


def _read_manifest(path: Path) -> dict[str, dict]:
    """Rows of an earlier manifest by slide (empty when there is none)."""
    import pandas as pd

    if not path.is_file():
        return {}
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as e:
        msg = f"`out_dir`: cannot read the manifest {str(path)!r} ({e}); move it away to start afresh."
        raise ValueError(msg) from None
    missing = [c for c in (*COLUMNS, *RESUME_COLUMNS) if c not in df.columns]
    if missing:
        raise ValueError(f"`out_dir`: the manifest {str(path)!r} lacks the column(s) {missing}; is it genedml's?")
    return {r["slide"]: dict(r) for r in df.to_dict("records")}


def _is_done(row: dict | None, output: Path, slide: str, model_hash: str, fingerprint: str) -> bool:
    if row is None or row["status"] not in ("done", "skipped") or not output.is_dir():
        return False
    st = os.stat(slide)
    same = (row["model_hash"], row["options"]) == (model_hash, fingerprint)
    return same and (str(row["slide_size"]), str(row["slide_mtime_ns"])) == (str(st.st_size), str(st.st_mtime_ns))


def _write_manifest(rows: dict[str, dict], path: Path) -> None:
    from .._utils import atomic_path

    with atomic_path(path, suffix=".csv") as tmp:
        _frame(list(rows.values())).to_csv(tmp, index=False)


def _frame(rows: list[dict]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows, columns=[*COLUMNS, *RESUME_COLUMNS])
    df["n_spots"] = pd.to_numeric(df["n_spots"]).astype("int64")
    df["seconds"] = pd.to_numeric(df["seconds"]).astype("float64")
    return df


def _record(slide: str, output: Path, result: dict, base: dict) -> dict:
    from datetime import UTC, datetime

    st = os.stat(slide) if os.path.exists(slide) else None
    return {
        "slide": slide,
        "status": result["status"],
        "output": os.fspath(output),
        "n_spots": int(result.get("n_spots", 0)),
        "seconds": float(result.get("seconds", 0.0)),
        "error": result.get("error", ""),
        **base,
        "slide_size": "" if st is None else str(st.st_size),
        "slide_mtime_ns": "" if st is None else str(st.st_mtime_ns),
        "sha256": result.get("sha256", ""),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------------------- running


def _run(todo, outputs, args, base, rows, out, scheduler, n_workers, threads, progress) -> None:
    """Run the slides of ``todo``; after each, record it in ``rows`` and rewrite the manifest."""
    from .._utils import tqdm_class

    bar = tqdm_class()(total=len(todo), desc="predict_slides", unit="slide", disable=not resolve_progress(progress))

    def finish(slide: str, result: dict) -> None:
        rows[slide] = _record(slide, outputs[slide], result, base)
        _write_manifest(rows, out / MANIFEST)
        if result["status"] == "failed":
            logger.warning("predict_slides: %s failed: %s", slide, result["error"])
        bar.update(1)

    try:
        if isinstance(scheduler, str) and scheduler == "sync":
            import torch

            from ._slides_worker import run_slide

            before = torch.get_num_threads()
            torch.set_num_threads(threads)  # as on a worker: the same threads give the same floating-point sums
            try:
                for s in todo:
                    finish(s, run_slide(s, os.fspath(outputs[s]), *args[:3], weights=args[3]))
            finally:
                torch.set_num_threads(before)
        else:
            _run_distributed(todo, outputs, args, finish, scheduler, n_workers, threads)
    finally:
        bar.close()


def _run_distributed(todo, outputs, args, finish, scheduler, n_workers, threads) -> None:
    from distributed import Client, LocalCluster, as_completed

    from .._settings import settings
    from ._slides_worker import WorkerSetup, run_slide

    own = scheduler is None
    if own:
        n = n_workers or max(1, min(len(todo), (os.cpu_count() or 1) // threads))
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=threads, processes=True, dashboard_address="127.0.0.1:0", silence_logs=40
        )  # the dashboard on a free local port, never on other interfaces
        client = Client(cluster, set_as_default=False)
        logger.info("predict_slides: %d worker(s); dashboard %s", n, client.dashboard_link)
        plugin = WorkerSetup(cachedir=os.fspath(settings.cachedir), device=settings.device, pin_gpus=True)
    else:
        cluster = None
        client = scheduler if isinstance(scheduler, Client) else Client(scheduler, set_as_default=False)
        plugin = WorkerSetup(cachedir=None, device=None, pin_gpus=False)  # the workers' own settings
    t0 = time.perf_counter()
    futures: dict = {}
    try:
        client.register_plugin(plugin)
        model_source, model_hash, opts, weights = args
        futures = {
            client.submit(
                run_slide, s, os.fspath(outputs[s]), model_source, model_hash, opts, weights=weights,
                key=f"genedml-slide-{_stem(s)}-{secrets.token_hex(4)}",
            ): s
            for s in todo
        }  # fmt: skip
        for fut in as_completed(futures, loop=client.loop):
            slide = futures[fut]
            try:
                result = fut.result()
            except Exception as e:  # the worker died (KilledWorker), the task was cancelled, …
                result = {"status": "failed", "error": f"{type(e).__name__}: {e}", "n_spots": 0}
                result["seconds"] = round(time.perf_counter() - t0, 3)
            finish(slide, result)
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:  # interrupted: nothing keeps running on the cluster (finished slides are in the manifest)
            client.cancel(pending)
        if own:
            client.close()
            cluster.close()
        elif not isinstance(scheduler, Client):
            client.close()
