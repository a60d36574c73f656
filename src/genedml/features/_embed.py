"""``gd.tl.embed``: frozen encoder features of every spot at three scales, in the feature store; ``load_features``."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .._docs import inject_docs
from .._keys import Keys
from .._logging import logger
from .._settings import settings
from .._utils import resolve_progress
from .._validators import assert_keys_in, assert_one_of, assert_positive_int
from ._cache import FeatureCache, hash_array, hash_key
from ._embed_run import RunContext, SectionTask, run_section
from ._embed_write import FeatureWriter, embed_params, table_rows
from ._images import SectionImage, open_source
from ._windows import SectionGeometry, WindowSpec, check_spots_inside, section_geometry, warn_padding

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["SCALES", "embed", "load_features"]

SCALES = ("target", "neighbor", "global")
N_DIHEDRAL = 8


@inject_docs()
def embed(
    sdata: SpatialData,
    *,
    encoder: str | Any = "resnet18",
    scales: Sequence[str] | str = SCALES,
    weights: str | os.PathLike | None = None,
    pretrained: bool = True,
    target_px: int = 224,
    target_um: float | None = None,
    target_mpp: float | None = None,
    dihedral: bool = False,
    batch_size: int = 64,
    device: str | None = None,
    amp: bool | None = None,
    num_workers: int | None = None,
    cache: bool = True,
    progress: bool | None = None,
    table_key: str | None = None,
    sections: Sequence[str] | None = None,
) -> None:
    """Frozen encoder features of every spot at the target, neighbour and global scales.

    Windows follow method.md §1.3 (see :func:`genedml.features.spot_windows`): the target window is ``target_px``
    pixels at native full resolution centred on the spot (or ``target_um`` µm resampled to ``target_px``
    pixels); the neighbour region is a 5 × 5 grid of tiles of that size, row-major, a tile not entirely inside
    the image masked and zero. Each target window is encoded once for both its tokens and its pooled feature;
    neighbour tiles are encoded once per distinct pixel origin. Results are cached under ``gd.settings.cachedir``
    by a hash of everything that changes them (encoder and weights, window geometry and µm/px, image
    fingerprint, spot centres, augmentation variant): a repeated call runs no forward pass, and an interrupted
    call resumes from its finished parts.

    Parameters
    ----------
    {sdata}
    encoder
        Registry name, timm model name, ``hf-hub:`` id (see :func:`genedml.encoders.list_encoders`) or an
        already built :class:`genedml.encoders.Encoder` (then ``weights``, ``pretrained`` and ``device`` are
        ignored).
    scales
        Any of ``"target"`` (all tokens of the target window), ``"neighbor"`` (pooled tiles + mask) and
        ``"global"`` (pooled target window).
    weights
        Local weights file for the encoder.
    pretrained
        Load pretrained weights; ``False`` gives random weights (a warning is logged).
    target_px
        Window side in pixels fed to the encoder.
    target_um
        Physical window side in µm (resampled); ``None`` with ``target_mpp=None`` keeps native resolution.
    target_mpp
        Window resolution in µm/px (e.g. ``0.5``: 224 px cover 112 µm).
    dihedral
        Also compute the 8 flip/rotate variants of the target tokens (cache only; read them with
        :func:`genedml.features.load_features`). Needs ``"target"`` in ``scales`` and ``cache=True``.
    batch_size
        Windows per forward pass.
    device
        ``None`` follows ``gd.settings.device``.
    amp
        Mixed precision (bf16, else fp16); ``None`` = on for CUDA. Only used on CUDA.
    num_workers
        Threads that decode the next section and cut windows in the background while the encoder runs; ``0`` does
        everything in the calling thread. ``None``: ``gd.settings.num_workers`` when set, else 1 on CUDA and 0 on
        the CPU (where background threads compete with the encoder's own threads).
    cache
        Read and write the on-disk cache.
    {progress}
    {table_key}
    {sections}

    Returns
    -------
    Nothing; writes to the table (``enc`` = the encoder's identity):

    * ``obsm[Keys.features(enc, "global")]``: float32 ``(n, D)``;
    * ``obsm[Keys.features(enc, "neighbor")]``: float32 ``(n, 25, D)`` and ``… + "_mask"``: bool ``(n, 25)``;
    * ``obsm[Keys.features(enc, "target")]``: float16 ``(n, T, D)``;
    * ``uns["genedml"]["features"][enc]``: parameters, D, T, encoder provenance, per-section field of view in µm
      and cache keys.

    Rows of sections not embedded hold NaN (mask ``False``).

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> gd.tl.embed(sdata, encoder="test_resnet", pretrained=False, target_px=32, scales=["global"])
    >>> sdata.tables["table"].obsm["genedml_test_resnet_global"].shape[1]
    96
    """
    from .._data_model import get_table

    opts = _validate_options(scales, dihedral, batch_size, amp, num_workers, cache, pretrained)
    spec = WindowSpec.resolve(target_px=target_px, target_um=target_um, target_mpp=target_mpp)
    table = get_table(sdata, table_key=table_key)
    secs = _resolve_sections(sdata, sections, table_key)
    geos = {s: _section_input(sdata, s, spec, table_key) for s in secs}
    enc = _get_encoder(encoder, weights=weights, pretrained=pretrained, device=device)
    opts["num_workers"] = _workers(opts["num_workers"], enc.device)
    amp_dtype = _amp_dtype(opts["amp"], enc.device)
    store = FeatureCache(settings.cachedir, enabled=opts["cache"])
    variants = N_DIHEDRAL if opts["dihedral"] else 1

    def plan(s: str) -> SectionTask:
        return _make_task(store, enc, spec, s, *geos[s], opts["scales"], variants, amp_dtype)

    params = embed_params(opts, spec, enc, amp_dtype, weights, pretrained)
    out = FeatureWriter(table, enc, params, opts["scales"], store)
    from ._embed_run import count_windows

    # the bar's total before any work: every window of every section (shrinks when a section is found cached)
    counts = [count_windows(geos[s][2], scales=opts["scales"], variants=variants) for s in secs]
    _run(secs, plan, enc, store, opts, amp_dtype, variants, progress, out, counts)
    out.finish()


# ----------------------------------------------------------------------------------------------- validation


def _validate_options(scales, dihedral, batch_size, amp, num_workers, cache, pretrained) -> dict[str, Any]:
    scales = (scales,) if isinstance(scales, str) else tuple(scales)
    if not scales:
        raise ValueError(f"`scales` must name at least one of {list(SCALES)}.")
    for s in scales:
        assert_one_of(s, SCALES, name="scales")
    scales = tuple(s for s in SCALES if s in scales)
    for name, val in (("dihedral", dihedral), ("cache", cache), ("pretrained", pretrained)):
        if not isinstance(val, bool):
            raise ValueError(f"`{name}` must be a bool, got {val!r}.")
    if amp is not None and not isinstance(amp, bool):
        raise ValueError(f"`amp` must be None or a bool, got {amp!r}.")
    assert_positive_int(batch_size, name="batch_size")
    if num_workers is not None and (
        isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
    ):
        raise ValueError(f"`num_workers` must be None or a non-negative int, got {num_workers!r}.")
    if dihedral and ("target" not in scales or not cache):
        raise ValueError("`dihedral=True` needs 'target' in `scales` and `cache=True` (variants live in the cache).")
    return {"scales": scales, "dihedral": dihedral, "batch_size": int(batch_size), "amp": amp, "cache": cache,
            "num_workers": num_workers}  # fmt: skip


def _resolve_sections(sdata: SpatialData, sections: Sequence[str] | None, table_key: str | None) -> list[str]:
    from .._data_model import sections as all_sections

    avail = all_sections(sdata, table_key=table_key)
    if sections is None:
        return avail
    chosen = [sections] if isinstance(sections, str) else list(dict.fromkeys(sections))
    if not chosen:
        raise ValueError("`sections` is empty: pass None for all sections.")
    assert_keys_in(chosen, avail, name="sections", where="the table's sections")
    return chosen


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
    geo = section_geometry(image, spec, xy, mpp_full=mpp, section=section)
    warn_padding(geo, stacklevel=5)
    return image, xy, geo


def _get_encoder(encoder, *, weights, pretrained, device):
    if hasattr(encoder, "forward_tokens") and hasattr(encoder, "weights_hash"):
        return encoder
    if not isinstance(encoder, str):
        raise ValueError(f"`encoder` must be an encoder name or a genedml Encoder, got {type(encoder).__name__}.")
    from ..encoders import create_encoder

    return create_encoder(encoder, pretrained=pretrained, weights=weights, device=device)


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
    names = [s for s in ("global", "neighbor") if s in scales]
    if "target" in scales:
        names += [f"target/{v}" for v in range(variants)]
    return names


def _make_task(store, enc, spec, section, image, xy, geo, scales, variants, amp_dtype) -> SectionTask:
    fp = image.known_fingerprint()
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
    }
    keys = {name: hash_key({**base, "entry": name}) for name in _entry_names(scales, variants)}
    loaded: dict[str, dict] = {}
    for name, key in keys.items():
        if name.startswith("target/") and name != "target/0":
            if store.has(key):
                loaded[name] = {}
            continue
        arrays = store.load(key)
        if arrays is not None:
            loaded[name] = arrays
    logger.info("section %r: %d of %d feature entries cached.", section, len(loaded), len(keys))
    if len(loaded) == len(keys):
        source = None
    elif source is None:
        source = open_source(geo.level)  # decoded here, in the planning thread, while the previous section computes
    return SectionTask(section, geo, keys, base, source=source, loaded=loaded)


def _inmemory_limit() -> int:
    from . import _images

    return _images.INMEMORY_MAX_BYTES  # read at call time (benchmarks lower it to force lazy reading)


def _run(secs, plan, enc, store, opts, amp_dtype, variants, progress, out: FeatureWriter, counts) -> None:
    """Run the sections in order; with workers, the next section is planned (decoded) while one computes."""
    from concurrent.futures import ThreadPoolExecutor

    from .._utils import tqdm_class
    from . import _embed_run

    # delay: a run served from the cache finishes before the bar would show, so it prints nothing
    bar = tqdm_class()(
        total=sum(counts), unit="win", desc=f"embed {enc.identity}", disable=not resolve_progress(progress), delay=0.5
    )
    ctx = RunContext(enc, store, opts["batch_size"], opts["num_workers"], amp_dtype, bar, _embed_run.CHUNK_WINDOWS)
    with bar, ThreadPoolExecutor(max_workers=1, thread_name_prefix="genedml-plan") as pool:
        prefetch = opts["num_workers"] > 0
        nxt = pool.submit(plan, secs[0]) if prefetch else None
        for i, sec in enumerate(secs):
            t0 = time.perf_counter()
            task = nxt.result() if prefetch else plan(sec)
            ctx.stats["wait_s"] += time.perf_counter() - t0
            if prefetch and i + 1 < len(secs):
                nxt = pool.submit(plan, secs[i + 1])
            before = ctx.stats["windows"]
            out.add(task, run_section(ctx, task, scales=opts["scales"], variants=variants))
            encoded = ctx.stats["windows"] - before
            if encoded != counts[i]:  # entries or parts found in the cache: that work is not to be done
                bar.total -= counts[i] - encoded
                bar.refresh()
            task.loaded.clear()  # the section's arrays now live in the writer only
    st = ctx.stats
    logger.info(
        "embed %s: %d windows encoded; encoder %.1f s, waiting for pixels %.1f s.",
        enc.identity, st["windows"], st["encode_s"], st["wait_s"],
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------- loading


def load_features(
    sdata: SpatialData, *, encoder: str | Any, scale: str, variant: int = 0, table_key: str | None = None
) -> np.ndarray:
    """Features written by :func:`genedml.tl.embed`, including the dihedral variants kept in the cache.

    Parameters
    ----------
    {sdata}
    encoder
        Encoder identity used in :func:`~genedml.tl.embed` (e.g. ``"uni"``) or the encoder object.
    scale
        ``"target"``, ``"neighbor"`` or ``"global"``.
    variant
        Dihedral variant 0–7 of the target tokens: rotation by ``90° · (v mod 4)`` then a left–right flip when
        ``v ≥ 4``; ``0`` (identity) is what ``obsm`` holds.
    {table_key}

    Returns
    -------
    ``(n_obs, …)`` array in table order (float16 tokens, float32 pooled / neighbour features).

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
    ident = encoder if isinstance(encoder, str) else getattr(encoder, "identity", None)
    records = table.uns.get(Keys.uns, {}).get("features", {})
    if ident not in records:
        raise KeyError(f"`encoder`={ident!r} has no features in this table (have {sorted(records)}): run gd.tl.embed.")
    assert_one_of(scale, SCALES, name="scale")
    rec = records[ident]
    if scale not in list(rec["params"]["scales"]):
        raise KeyError(f"`scale`={scale!r} was not embedded for {ident!r} (scales {list(rec['params']['scales'])}).")
    if isinstance(variant, bool) or not isinstance(variant, int | np.integer) or not 0 <= variant < N_DIHEDRAL:
        raise ValueError(f"`variant` must be an int in 0..7, got {variant!r}.")
    if variant == 0:
        return np.asarray(table.obsm[Keys.features(ident, scale)])
    if scale != "target" or not bool(rec["params"]["dihedral"]):
        raise ValueError("`variant` > 0 exists only for scale='target' embedded with `dihedral=True`.")
    return _load_variant(table, rec, variant)


def _load_variant(table, rec: dict, variant: int) -> np.ndarray:
    store = FeatureCache(rec.get("cachedir", settings.cachedir))
    out = np.full((table.n_obs, int(rec["T"]), int(rec["D"])), np.nan, np.float16)
    for sec, info in rec["sections"].items():
        key = {str(k): str(v) for k, v in info["cache_keys"]}[f"target/{variant}"]
        arrays = store.load(key)
        if arrays is None:
            raise FileNotFoundError(
                f"dihedral variant {variant} of section {sec!r} is not in the feature cache {store.root} "
                "(cleared or moved?): run gd.tl.embed(..., dihedral=True) again."
            )
        out[table_rows(table, sec)] = arrays["tokens"]
    return out
