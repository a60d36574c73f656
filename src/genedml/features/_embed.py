"""``gd.tl.embed``: frozen encoder features of every spot at three scales, in the feature store; ``load_features``."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._data_model import select_sections
from .._docs import inject_docs
from .._keys import Keys
from .._logging import logger
from .._records import plain
from .._settings import settings
from .._utils import resolve_progress
from .._validators import assert_one_of
from ._cache import FeatureCache, hash_array, hash_key
from ._embed_run import RunContext, SectionTask, run_section
from ._embed_write import embed_params, feature_record, section_record, table_rows, write_reference
from ._images import SectionImage, open_source
from ._spec import FeatureSpec, resolve_feature_spec
from ._store import FeatureSet
from ._windows import SectionGeometry, WindowSpec, bin_lattice, check_spots_inside, section_geometry, warn_padding

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["SCALES", "compute_features", "embed", "load_features", "open_features"]

SCALES = ("target", "neighbor", "global")
N_DIHEDRAL = 8


@inject_docs()
def embed(
    sdata: SpatialData, *, features: FeatureSpec | str | None = None, key_added: str | None = None, **kwargs: Any
) -> None:
    """Frozen encoder features of every spot at the target, neighbour and global scales, in the feature store.

    Windows follow method.md §1.3 (see :func:`genedml.features.spot_windows`): the target window is ``target_px``
    pixels at native full resolution centred on the spot (or ``target_um`` µm resampled to ``target_px``
    pixels); the neighbour region is a 5 × 5 grid of tiles of that size, row-major, a tile not entirely inside
    the image masked and zero. Each target window is encoded once for both its tokens and its pooled feature;
    neighbour tiles are encoded once per distinct pixel origin. Results are cached under ``gd.settings.cachedir``
    by a hash of everything that changes them (encoder and weights, window geometry and µm/px, image
    fingerprint, spot centres, augmentation variant): a repeated call runs no forward pass, and an interrupted
    call resumes from its finished parts.

    The features never enter the table: they live in the feature store under ``gd.settings.cachedir`` (per section:
    the pooled target windows, each *distinct* neighbour tile once with a spots × 25 index, and the target tokens),
    memory-mapped and gathered per batch by the models. The table gets only a small reference in ``uns``.

    Parameters
    ----------
    {sdata}
    features
        The features' recipe: a :class:`~genedml.features.FeatureSpec` (encoder, weights, window geometry, neighbour
        grid, dihedral variants, storage precision) or an encoder name; ``None``: ``FeatureSpec()``.
    scales
        Any of ``"target"`` (all tokens of the target window), ``"neighbor"`` (pooled tiles + mask) and
        ``"global"`` (pooled target window).
    amp
        Mixed precision (bf16, else fp16); ``None`` = on for CUDA. Only used on CUDA.
    num_workers
        Threads that cut windows in the background while the encoder runs (and then the next section is decoded in
        the background too); ``0`` does everything in the calling thread. ``None``: on CUDA one cutting thread and
        background decoding; on the CPU windows are cut in the calling thread (or by ``gd.settings.num_workers``
        threads when set), and the next section is decoded in the background only when torch leaves a CPU core
        free (a decoding thread on a busy core slows the encoder down by as much as it saves).
    cache
        Reuse and keep the features in the store under ``gd.settings.cachedir``; ``False`` computes them afresh into a
        temporary store deleted when Python exits.
    {progress}
    {table_key}
    {sections}
    key_added
        Key of the reference in ``uns["genedml"]["features"]``; ``None``: the encoder's identity (what
        :func:`~genedml.features.load_features` and :func:`~genedml.features.open_features` look up by default).
    **shorthands
        Fields of :class:`~genedml.features.FeatureSpec` (``encoder``, ``pretrained``, ``weights``, ``target_px``,
        ``target_um``, ``target_mpp``, ``dihedral``, ``neighbor_grid``, ``dtype``, ``batch_size``, ``device``),
        overriding those of ``features``. ``encoder`` may also be a built :class:`genedml.encoders.Encoder` (then
        ``weights``, ``pretrained`` and ``device`` are its own).

    Returns
    -------
    Nothing; writes only ``uns["genedml"]["features"][key_added]`` (default: the encoder's identity): parameters,
    ``D``, ``T``, encoder provenance, the store folder, and per section the field of view in µm and the store entry
    keys. Read the features with :func:`genedml.features.load_features`.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> gd.tl.embed(sdata, encoder="test_resnet", pretrained=False, target_px=32, scales=["global"])
    >>> gd.features.load_features(sdata, encoder="test_resnet", scale="global").shape[1]
    96
    """
    from .._data_model import get_table

    if key_added is not None and (not isinstance(key_added, str) or not key_added):
        raise ValueError(f"`key_added` must be a non-empty string or None, got {key_added!r}.")
    fs = compute_features(sdata, features=features, **kwargs)
    table = get_table(sdata, table_key=kwargs.get("table_key"))
    write_reference(table, fs.record, key=fs.identity if key_added is None else key_added)


def compute_features(
    sdata: SpatialData,
    *,
    features: FeatureSpec | str | None = None,
    scales: Sequence[str] | str = SCALES,
    amp: bool | None = None,
    num_workers: int | None = None,
    cache: bool = True,
    progress: bool | None = None,
    table_key: str | None = None,
    sections: Sequence[str] | None = None,
    **shorthands: Any,
) -> FeatureSet:
    """:func:`embed` without writing to the table: returns the :class:`FeatureSet` (memory-mapped store entries).

    The parameters are those of :func:`embed`. The models call this: fitting or predicting leaves the user's table
    untouched.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> fs = gd.features.compute_features(sdata, encoder="test_resnet", pretrained=False, target_px=32)
    >>> fs.dim, "features" in sdata.tables["table"].uns.get("genedml", {})
    (96, False)
    """
    fspec, enc = resolve_feature_spec(features, shorthands)
    opts = _validate_options(scales, fspec.dihedral, amp, num_workers, cache, fspec.dtype)
    spec = WindowSpec.resolve(
        target_px=fspec.target_px, target_um=fspec.target_um, target_mpp=fspec.target_mpp,
        neighbor_grid=fspec.neighbor_grid,
    )  # fmt: skip
    opts["batch_size"] = fspec.batch_size
    secs = select_sections(sdata, sections, table_key=table_key)
    geos = {s: _section_input(sdata, s, spec, table_key) for s in secs}
    if enc is None:
        enc = _get_encoder(fspec.encoder, weights=fspec.weights, pretrained=fspec.pretrained, device=fspec.device)
    opts["prefetch"] = _prefetch(opts["num_workers"], enc.device)
    opts["num_workers"] = _workers(opts["num_workers"], enc.device)
    amp_dtype = _amp_dtype(opts["amp"], enc.device)
    store = FeatureCache(settings.cachedir if opts["cache"] else _scratch_store())
    variants = N_DIHEDRAL if opts["dihedral"] else 1

    def plan(s: str) -> SectionTask:
        return _make_task(store, enc, spec, s, *geos[s], opts, variants, amp_dtype)

    from ._embed_run import count_windows

    # the bar's total before any work: every window of every section (shrinks when a section is found cached)
    counts = [count_windows(geos[s][2], scales=opts["scales"], variants=variants) for s in secs]
    entries, records = _run(secs, plan, enc, store, opts, amp_dtype, variants, progress, counts)
    params = embed_params(opts, spec, enc, amp_dtype, fspec.weights, fspec.pretrained)
    record = feature_record(enc, params, opts["scales"], store, records)
    tok = next((e["target/0"]["tokens"] for e in entries.values() if "target/0" in e), None)
    if tok is not None:
        record["T"] = int(tok.shape[1])
    return FeatureSet(enc.identity, record, entries)


def _scratch_store() -> str:
    """A fresh folder for ``cache=False`` features, removed when Python exits."""
    import atexit
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="genedml-features-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


# ----------------------------------------------------------------------------------------------- validation


def _validate_options(scales, dihedral, amp, num_workers, cache, dtype) -> dict[str, Any]:
    scales = (scales,) if isinstance(scales, str) else tuple(scales)
    if not scales:
        raise ValueError(f"`scales` must name at least one of {list(SCALES)}.")
    for s in scales:
        assert_one_of(s, SCALES, name="scales")
    scales = tuple(s for s in SCALES if s in scales)
    assert_one_of(dtype, ("float32", "float16"), name="dtype")
    if not isinstance(cache, bool):
        raise ValueError(f"`cache` must be a bool, got {cache!r}.")
    if amp is not None and not isinstance(amp, bool):
        raise ValueError(f"`amp` must be None or a bool, got {amp!r}.")
    if num_workers is not None and (
        isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
    ):
        raise ValueError(f"`num_workers` must be None or a non-negative int, got {num_workers!r}.")
    if dihedral and "target" not in scales:
        raise ValueError("`dihedral=True` needs 'target' in `scales`.")
    return {"scales": scales, "dihedral": dihedral, "amp": amp, "cache": cache, "num_workers": num_workers,
            "dtype": dtype}  # fmt: skip


def _section_input(
    sdata, section: str, spec: WindowSpec, table_key
) -> tuple[SectionImage, np.ndarray, SectionGeometry]:
    from .._data_model import pixel_size, spot_centers

    image = SectionImage.from_sdata(sdata, section)
    try:
        mpp = pixel_size(sdata, section)
    except ValueError as err:
        raise ValueError(f"section {section!r}: the pixel size (µm/px) is unknown. {err}") from None
    xy = spot_centers(sdata, section, table_key=table_key)
    check_spots_inside(image, xy, section=section)
    lattice = bin_lattice(sdata, section, table_key=table_key)  # Visium HD bins: neighbour tiles follow the bins
    geo = section_geometry(image, spec, xy, mpp_full=mpp, section=section, lattice=lattice)
    warn_padding(geo, stacklevel=5)
    return image, xy, geo


def _get_encoder(encoder, *, weights, pretrained, device):
    if hasattr(encoder, "forward_tokens") and hasattr(encoder, "weights_hash"):
        return encoder
    if not isinstance(encoder, str):
        raise ValueError(f"`encoder` must be an encoder name or a genedml Encoder, got {type(encoder).__name__}.")
    from ..encoders import create_encoder

    return create_encoder(encoder, pretrained=pretrained, weights=weights, device=device)


def _prefetch(num_workers: int | None, device) -> bool:
    """Decode the next section in a background thread? Always on CUDA; on the CPU only when a core is left over.

    On the CPU the decoding thread takes its core from the encoder's threads. Measured on 2 cores
    (benchmarks/bench_store.py, HER2ST): with one torch thread it hides the decoding (ResNet18: 101 % of the raw
    encoder throughput against 94 % without it); with two torch threads it oversubscribes the cores, and running
    torch one thread short while a section decodes was slower still (ResNet18: 75 % against 86 % without).
    """
    if num_workers is not None:
        return num_workers > 0
    if device.type == "cuda":
        return True
    import torch

    return torch.get_num_threads() < _cpu_count()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _workers(num_workers: int | None, device) -> int:
    """Background threads: on a GPU the CPU is free to cut windows; on the CPU extra threads fight the encoder's."""
    if num_workers is not None:
        return num_workers
    if settings.num_workers > 0:
        return settings.num_workers
    return 1 if device.type == "cuda" else 0


def _amp_dtype(amp: bool | None, device):
    import torch

    if device.type != "cuda":
        if amp:
            warnings.warn("`amp=True` is ignored on the CPU (autocast is slower there).", UserWarning, stacklevel=3)
        return None
    if amp is False:
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


# ----------------------------------------------------------------------------------------------- planning


def _entry_names(scales: tuple[str, ...], variants: int) -> list[str]:
    names = ["global"] if ("global" in scales or "neighbor" in scales) else []
    names += ["neighbor"] if "neighbor" in scales else []
    if "target" in scales:
        names += [f"target/{v}" for v in range(variants)]
    return names


def _make_task(store, enc, spec, section, image, xy, geo, opts, variants, amp_dtype) -> SectionTask:
    scales = opts["scales"]
    fp = image.file_fingerprint() or image.known_fingerprint()
    source = None
    if fp is None and geo.level.index == 0 and geo.level.nbytes <= _inmemory_limit():
        source = open_source(geo.level)  # decode once: fingerprint from it, and cut from it on a miss
        fp = image.fingerprint(finest=source.array)
    elif fp is None:
        fp = image.fingerprint()
    base = {
        "encoder": enc.identity,
        "weights": enc.weights_hash,
        "input_px": enc.input_px(spec.out_px),
        "amp": str(amp_dtype),
        "window": {**spec.to_dict(), **geo.to_dict()},
        "image": fp,
        "centers": hash_array(np.asarray(xy, dtype=np.float64)),
        "store_dtype": opts["dtype"],
    }
    keys = {name: hash_key({**base, "entry": name}) for name in _entry_names(scales, variants)}
    loaded: dict[str, dict] = {}
    for name, key in keys.items():
        arrays = store.load(key)  # memory maps: nothing is read yet
        if arrays is not None:
            loaded[name] = arrays
    logger.info("section %r: %d of %d feature entries in the store.", section, len(loaded), len(keys))
    if len(loaded) == len(keys):
        source = None
    elif source is None:
        source = open_source(geo.level)  # decoded here, in the planning thread, while the previous section computes
    return SectionTask(section, geo, keys, base, source=source, loaded=loaded, store_dtype=np.dtype(opts["dtype"]))


def _inmemory_limit() -> int:
    from . import _images

    return _images.INMEMORY_MAX_BYTES  # read at call time (benchmarks lower it to force lazy reading)


def _run(secs, plan, enc, store, opts, amp_dtype, variants, progress, counts) -> tuple[dict, dict]:
    """Run the sections in order; with workers, the next section is planned (decoded) while one computes."""
    from concurrent.futures import ThreadPoolExecutor

    from .._utils import tqdm_class
    from . import _embed_run

    # delay: a run served from the cache finishes before the bar would show, so it prints nothing
    bar = tqdm_class()(
        total=sum(counts), unit="win", desc=f"embed {enc.identity}", disable=not resolve_progress(progress), delay=0.5
    )
    ctx = RunContext(enc, store, opts["batch_size"], opts["num_workers"], amp_dtype, bar, _embed_run.CHUNK_WINDOWS)
    entries: dict[str, dict] = {}
    records: dict[str, dict] = {}
    with bar, ThreadPoolExecutor(max_workers=1, thread_name_prefix="genedml-plan") as pool:
        prefetch = opts["prefetch"]
        nxt = pool.submit(plan, secs[0]) if prefetch else None
        for i, sec in enumerate(secs):
            t0 = time.perf_counter()
            task = nxt.result() if prefetch else plan(sec)
            ctx.stats["wait_s"] += time.perf_counter() - t0
            if prefetch and i + 1 < len(secs):
                nxt = pool.submit(plan, secs[i + 1])
            before = ctx.stats["windows"]
            entries[sec] = run_section(ctx, task, scales=opts["scales"], variants=variants)
            records[sec] = section_record(task)
            encoded = ctx.stats["windows"] - before
            if encoded != counts[i]:  # entries or parts found in the cache: that work is not to be done
                bar.total -= counts[i] - encoded
                bar.refresh()
            task.loaded.clear()
    st = ctx.stats
    logger.info(
        "embed %s: %d windows encoded; encoder %.1f s, waiting for pixels %.1f s.",
        enc.identity, st["windows"], st["encode_s"], st["wait_s"],
    )  # fmt: skip
    return entries, records


# ----------------------------------------------------------------------------------------------- loading


@inject_docs()
def load_features(
    sdata: SpatialData, *, encoder: str | Any, scale: str, variant: int = 0, table_key: str | None = None
) -> np.ndarray:
    """The features of :func:`genedml.tl.embed` as one dense array in table order, read from the feature store.

    This materialises the array in memory (the ``neighbor`` scale as ``(n_obs, 25, D)``, although the store keeps each
    distinct tile once): for inspection and export. The models never call it; they gather rows per batch.

    Parameters
    ----------
    {sdata}
    encoder
        Encoder identity used in :func:`~genedml.tl.embed` (e.g. ``"uni"``) or the encoder object.
    scale
        ``"target"`` (float16 ``(n, T, D)``), ``"neighbor"`` (float32 ``(n, 25, D)``, zero where masked) or
        ``"global"`` (float32 ``(n, D)``).
    variant
        Dihedral variant 0–7 of the target tokens: rotation by ``90° · (v mod 4)`` then a left–right flip when
        ``v ≥ 4``; ``0`` is the unaugmented window.
    {table_key}

    Returns
    -------
    ``(n_obs, …)`` array in table order; rows of sections that were not embedded hold NaN.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> gd.tl.embed(sdata, encoder="test_vit", pretrained=False, target_px=32, scales="target", dihedral=True)
    >>> gd.features.load_features(sdata, encoder="test_vit", scale="target", variant=3).shape[1:]
    (5, 64)
    """
    from .._data_model import get_table

    table = get_table(sdata, table_key=table_key)
    assert_one_of(scale, SCALES, name="scale")
    if isinstance(variant, bool) or not isinstance(variant, int | np.integer) or not 0 <= variant < N_DIHEDRAL:
        raise ValueError(f"`variant` must be an int in 0..7, got {variant!r}.")
    fs = open_features(sdata, encoder=encoder, table_key=table_key)
    rec = fs.record
    if scale not in list(rec["params"]["scales"]):
        raise KeyError(
            f"`scale`={scale!r} was not embedded for {fs.identity!r} (scales {list(rec['params']['scales'])})."
        )
    if variant and (scale != "target" or not bool(rec["params"]["dihedral"])):
        raise ValueError("`variant` > 0 exists only for scale='target' embedded with `dihedral=True`.")
    out = None
    for sec in fs.sections:
        arr = fs.dense(sec, scale, variant=variant)
        if out is None:
            out = np.full((table.n_obs, *arr.shape[1:]), np.nan, arr.dtype)
        out[table_rows(table, sec)] = arr
    return out


@inject_docs()
def open_features(sdata: SpatialData, *, encoder: str | Any, table_key: str | None = None) -> FeatureSet:
    """The :class:`FeatureSet` that :func:`genedml.tl.embed` recorded in the table, opened from the store.

    Parameters
    ----------
    {sdata}
    encoder
        Key of the reference in ``uns["genedml"]["features"]``: the encoder's identity (e.g. ``"uni"``) unless
        :func:`~genedml.tl.embed` was given ``key_added``; or the encoder object.
    {table_key}

    Returns
    -------
    The sections' store entries, memory-mapped (nothing is read until rows are gathered).

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> gd.tl.embed(sdata, encoder="test_resnet", pretrained=False, target_px=32)
    >>> fs = gd.features.open_features(sdata, encoder="test_resnet")
    >>> fs.sections, fs.nbytes("neighbor") < fs.nbytes("global") * 25
    (['S1', 'S2'], True)
    """
    from ..io import get_table

    table = get_table(sdata, table_key=table_key)
    ident = encoder if isinstance(encoder, str) else getattr(encoder, "identity", None)
    records = table.uns.get(Keys.uns, {}).get("features", {})
    if ident not in records:
        raise KeyError(f"`encoder`={ident!r} has no features in this table (have {sorted(records)}): run gd.tl.embed.")
    rec = plain(dict(records[ident]))
    if "store" not in rec:
        raise ValueError(
            f"the features of {ident!r} in this table were written by an older genedml (arrays in `obsm`), which this "
            "version does not read: run gd.tl.embed again (the store recomputes them once)."
        )
    store = FeatureCache(rec["store"])
    entries = {}
    for sec, info in rec["sections"].items():
        entries[sec] = {}
        for name, key in info["entries"]:
            arrays = store.load(str(key))
            if arrays is None:
                raise FileNotFoundError(
                    f"the feature store {str(store.root)!r} lacks entry {name!r} of section {sec!r} (cleared or "
                    "moved?): run gd.tl.embed again."
                )
            entries[sec][str(name)] = arrays
    return FeatureSet(ident, rec, entries)
