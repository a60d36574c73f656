"""The work of one slide in `gd.tl.predict_slides`, run on a Dask worker (or in this process with ``"sync"``).

A slide is read (`gd.io.read_slide`), gridded (`gd.pp.spot_grid`) and predicted into a new store
(`predict_to_store`) written beside its final path and swapped into place only once complete. The model is loaded
once per worker process and cached by its file and hash; `WorkerSetup` gives each worker its torch threads, its
device (one GPU per worker on a multi-GPU `LocalCluster`) and the caller's feature-store folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from .._keys import Keys

__all__ = ["WorkerSetup", "load_model", "run_slide"]

#: models loaded in this process: ``(file, model hash) -> model`` (a worker loads each model once)
_MODELS: dict[tuple[str, str], Any] = {}
#: one slide at a time per process: a worker's threads serve torch (one model per worker), and building encoders or
#: loading a model is not safe in concurrent threads
_LOCK = threading.Lock()

try:  # a plain class when distributed is missing: only the "sync" path then works
    from distributed.diagnostics.plugin import WorkerPlugin as _PluginBase
except ImportError:  # pragma: no cover - distributed is a dependency
    _PluginBase = object


class WorkerSetup(_PluginBase):
    """Dask worker plugin: torch threads = the worker's threads, device, feature-store folder, dask threads.

    A worker predicts one slide at a time (`run_slide` holds a process-wide lock); its threads are torch's.

    Parameters
    ----------
    cachedir
        Feature store folder for the worker (``None``: the worker's own ``gd.settings.cachedir``).
    device
        ``gd.settings.device`` for the worker (``None``: its own; ``"auto"`` uses its GPU when it has one).
    pin_gpus
        On a worker that sees several GPUs, use GPU ``name % count`` (the workers of a `LocalCluster` are named
        0, 1, …), so each worker holds its model on its own GPU.
    """

    name = "genedml-predict-slides"

    def __init__(self, *, cachedir: str | None, device: str | None, pin_gpus: bool):
        self.cachedir, self.device, self.pin_gpus = cachedir, device, pin_gpus

    def setup(self, worker) -> None:
        """Configure the worker process (runs once per worker, also on workers that join later)."""
        import dask
        import torch

        from .._settings import settings

        threads = max(1, int(worker.state.nthreads))
        torch.set_num_threads(threads)
        dask.config.set({"num_workers": threads})  # a dask compute inside a task: no more threads than the worker
        if self.cachedir is not None:
            settings.cachedir = self.cachedir
        if self.device is not None:
            settings.device = self.device
        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if self.pin_gpus and n_gpus > 1 and settings.device in ("auto", "cuda") and isinstance(worker.name, int):
            settings.device = f"cuda:{worker.name % n_gpus}"
        settings.progress_bar = False


def load_model(source: str, model_hash: str, weights: str | None = None):
    """The model saved at ``source`` (a file, or an ensemble's folder), loaded once per process and checked."""
    key = (source, model_hash)
    if key not in _MODELS:
        from ..models import EnsembleModel, load_method

        path = Path(source)
        model = EnsembleModel.load(path, weights=weights) if path.is_dir() else load_method(path, weights=weights)
        if model.model_hash != model_hash:
            raise ValueError(
                f"the model file {source!r} changed since predict_slides started (hash {model.model_hash}, "
                f"expected {model_hash})."
            )
        _MODELS[key] = model
    return _MODELS[key]


def run_slide(
    slide: str, out: str, model_source: str, model_hash: str, opts: dict, *, weights: str | None = None
) -> dict:
    """Read, grid and predict one slide into the store ``out``; a record for the manifest, never an exception.

    ``opts``: ``pixel_size``, ``backend``, ``pitch_um``, ``diameter_um``, ``grid``, ``min_tissue_fraction``,
    ``key_added``. A failure is returned as ``status="failed"`` with the error's type and message; ``out`` is then
    left as it was.
    """
    import dask

    # a dask compute inside a task would otherwise go through the worker's client: the image's chunks would be
    # scheduled on the cluster, behind this very task (a deadlock on a one-thread worker)
    with _LOCK, dask.config.set(scheduler="threads"):
        return _run_locked(slide, out, model_source, model_hash, opts, weights)


def _run_locked(slide: str, out: str, model_source: str, model_hash: str, opts: dict, weights: str | None) -> dict:
    t0 = time.perf_counter()
    try:
        n_spots, sha = _predict_one(slide, out, model_source, model_hash, opts, weights)
    except Exception as e:  # any failure of this slide is reported; the other slides go on
        msg = str(e).strip().replace("\n", " ")
        rec = {"status": "failed", "n_spots": 0, "error": f"{type(e).__name__}: {msg}", "sha256": ""}
    else:
        rec = {"status": "done", "n_spots": n_spots, "error": "", "sha256": sha}
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    return rec


def _predict_one(
    slide: str, out: str, model_source: str, model_hash: str, opts: dict, weights: str | None
) -> tuple[int, str]:
    from .._utils import file_sha256
    from ..io import read_slide
    from ..pp import spot_grid
    from ._predict_out import predict_to_store

    model = load_model(model_source, model_hash, weights)
    sdata = read_slide(slide, pixel_size=opts["pixel_size"], backend=opts["backend"])
    (section,) = sdata.attrs[Keys.uns]["slides"]
    spot_grid(
        sdata,
        image_key=Keys.image(section),
        model=model,
        pitch_um=opts["pitch_um"],
        diameter_um=opts["diameter_um"],
        grid=opts["grid"],
        min_tissue_fraction=opts["min_tissue_fraction"],
    )
    table = sdata.tables[Keys.table]
    st = os.stat(slide)
    sha = file_sha256(slide)
    record = {"path": slide, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns), "sha256": sha}
    record |= {"section": section, "model_hash": model_hash, "options": {k: _plain(v) for k, v in opts.items()}}
    table.uns.setdefault(Keys.uns, {})["slide"] = record
    final = Path(out)
    tmp = final.with_name(f".{final.name}.partial-{secrets.token_hex(4)}")
    try:
        predict_to_store(sdata, model, tmp, key_added=opts["key_added"], table_key=Keys.table, progress=False)
        _add_slide_record(tmp, Keys.table, record)
        _swap_into_place(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return int(table.n_obs), sha


def _add_slide_record(store: Path, key: str, record: dict) -> None:
    """Put ``record`` into the stored table's ``uns["genedml"]["slide"]`` (the writer keeps only its provenance)."""
    import anndata as ad
    import zarr
    from anndata.io import read_elem, write_elem

    group = zarr.open_group(str(store / "tables" / key), mode="r+")
    uns = dict(read_elem(group["uns"])) if "uns" in group else {}
    if uns.get(Keys.uns, {}).get("slide") == record:
        return
    uns[Keys.uns] = {**dict(uns.get(Keys.uns) or {}), "slide": record}
    with ad.settings.override(auto_shard_zarr_v3=False):  # the tables' unsharded layout, as gd.io.write_zarr
        write_elem(group, "uns", uns)


def _plain(value):
    """``None`` (which a zarr store cannot hold) as ``""``."""
    return "" if value is None else value


def _swap_into_place(new: Path, final: Path) -> None:
    """Rename ``new`` onto ``final``; an older store there is moved aside first and deleted afterwards."""
    if not (final.exists() or final.is_symlink()):
        os.rename(new, final)
        return
    old = final.with_name(f".{final.name}.old-{secrets.token_hex(4)}")
    os.rename(final, old)
    try:
        os.rename(new, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)
