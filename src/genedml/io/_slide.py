"""``gd.io.read_slide``: a whole-slide image file (H&E only) as genedml's data model, read lazily.

Backends
--------
``"tiffslide"`` (the default) is a pure-Python wheel on top of tifffile: no system library to install, the same
decoders genedml already uses for TIFFs, and it opens local paths as well as fsspec URLs (``s3://``, ``https://``…).
By tiffslide's own compatibility table it fully supports Aperio ``.svs``, Leica ``.scn`` and generic pyramidal TIFF
(OME-TIFF included; genedml reads the OME physical sizes itself) and opens Hamamatsu ``.ndpi`` with partial vendor
metadata (the pixel size then comes from the resolution tags) and Philips TIFF; Ventana ``.bif`` opens but its
overlapping tiles are not composited (a warning says to use OpenSlide). ``"openslide"`` (optional:
``pip install openslide-python openslide-bin``) wraps the OpenSlide C library and adds what tiffslide cannot read:
MIRAX ``.mrxs``, Hamamatsu ``.vms``/``.vmu``, Sakura ``.svslide``, DICOM WSI and correct Ventana tiles.

Pixels are never decoded at read time: every pyramid level becomes a dask array whose chunks (whole TIFF tiles,
about ``chunk_size``² pixels) are read on demand, each opening the slide, reading only the tiles it covers and
closing it, so the image holds no open file handle (safe to pickle to dask workers and forked data loaders).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._data_model import section_transforms
from .._keys import Keys
from .._logging import logger
from .._validators import assert_in_range, assert_one_of, assert_positive_int

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["read_slide"]

_BACKENDS = ("tiffslide", "openslide")
_MPP_RANGE = (0.01, 50.0)  # µm/px a microscope slide can have; outside it a resolution tag is a placeholder (72 dpi…)
_MISMATCH = 0.05  # relative disagreement between `pixel_size` and the file that gives a warning
_OME_UNITS = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}
_NAME_OK = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class _SlideInfo:
    """What the header of a slide says: levels, tiles, pixel size and its source, vendor."""

    levels: tuple[tuple[int, int], ...]  # (height, width), finest first
    tiles: tuple[tuple[int, int], ...]  # (tile height, tile width) per level
    mpp: tuple[float, float] | None  # (x, y) µm/px of level 0
    mpp_source: str
    vendor: str
    objective_power: float | None
    series: int = 0  # tiffslide: the TIFF series holding the pyramid
    composed: bool = False  # tiffslide: levels composed of several located series (Leica SCN)


# --------------------------------------------------------------------------------------------------- read_slide


def read_slide(
    path: str | os.PathLike,
    *,
    pixel_size: float | None = None,
    section: str | None = None,
    patient: str | None = None,
    backend: str = "tiffslide",
    chunk_size: int = 4096,
) -> SpatialData:
    """Read a whole-slide H&E image (``.svs``, ``.ndpi``, pyramidal/OME-TIFF, …) as one H&E-only section.

    The slide's pyramid becomes a multiscale image (``scale0`` = the finest level), read lazily tile by tile: the
    slide is never decoded as a whole. The section has no spots yet: lay them with `gd.pp.spot_grid` (which finds the
    tissue on a low-resolution level), then predict with `gd.tl.predict`.

    Parameters
    ----------
    path
        The slide file (for ``backend="tiffslide"`` also an fsspec URL).
    pixel_size
        Micrometres per pixel of the finest level. Default: the file's (vendor metadata such as Aperio's ``MPP``,
        OME ``PhysicalSizeX``/``Y``, else the TIFF ``XResolution``/``YResolution`` tags with their unit). Needed
        when the file has none. When it differs from the file's by more than 5 %, a warning says so and the given
        value is used.
    section
        Section name (element ``f"{section}_hne"``); default: the file name without extension(s), with characters
        other than letters, digits, ``_`` and ``-`` replaced by ``_``.
    patient
        Patient label, kept for `gd.pp.spot_grid` (``obs["patient"]``); default: the section name.
    backend
        ``"tiffslide"`` (pure Python, TIFF-based formats) or ``"openslide"`` (needs ``openslide-python`` and
        ``openslide-bin``; adds MIRAX and other non-TIFF formats). See the module notes in the docs.
    chunk_size
        Pixels per side of a dask chunk, rounded to whole tiles of the file.

    Returns
    -------
    A SpatialData with ``images[f"{section}_hne"]`` (RGB ``uint8``, ``(c, y, x)``, one scale per pyramid level,
    transformations to the section's pixel frame ``section`` and to micrometres ``f"{section}_um"``) and
    ``attrs["genedml"]["slides"][section]``: ``path``, ``backend``, ``vendor``, ``pixel_size``,
    ``pixel_size_source``, ``objective_power``, ``patient`` and the ``levels`` (height, width).

    Examples
    --------
    A tiled TIFF with its resolution in pixels per centimetre (0.5 µm/px), then a spot grid on its tissue:

    >>> import tempfile
    >>> import numpy as np, tifffile
    >>> import genedml as gd
    >>> he = np.full((1024, 1024, 3), 235, np.uint8)
    >>> he[200:800, 200:800] = (170, 70, 160)
    >>> path = f"{tempfile.mkdtemp()}/slide.tif"
    >>> tifffile.imwrite(path, he, tile=(256, 256), resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    >>> sdata = gd.io.read_slide(path, patient="P1")
    >>> sdata.attrs["genedml"]["slides"]["slide"]["pixel_size"]
    0.5
    >>> gd.pp.spot_grid(sdata, image_key="slide_hne", pitch_um=100, diameter_um=55)
    >>> sdata["table"].obs[["section", "patient"]].drop_duplicates().to_numpy().tolist()
    [['slide', 'P1']]

    A real slide, then prediction with a trained model:

    >>> sdata = gd.io.read_slide("TCGA-A2-A0CM.svs")  # doctest: +SKIP
    >>> gd.pp.spot_grid(sdata, image_key="TCGA-A2-A0CM_hne", model=model)  # doctest: +SKIP
    >>> gd.tl.predict(sdata, model)  # doctest: +SKIP
    """
    from spatialdata import SpatialData

    assert_one_of(backend, _BACKENDS, name="backend")
    assert_positive_int(chunk_size, name="chunk_size")
    if pixel_size is not None:
        assert_in_range(pixel_size, name="pixel_size", low=0, inclusive=False)
        if not np.isfinite(pixel_size):
            raise ValueError(f"`pixel_size` must be a finite number of µm per pixel, got {pixel_size!r}.")
    src = _source(path, backend)
    name = _section_name(section, src)
    info = _open_info(src, backend)
    mpp, source = _resolve_pixel_size(info, pixel_size, src)
    donor = str(patient) if patient is not None else name
    image = _pyramid(src, backend, info, section_transforms(name, mpp), chunk_size)
    attrs = {
        Keys.uns: {
            "slides": {
                name: {
                    "path": src,
                    "backend": backend,
                    "vendor": info.vendor,
                    "pixel_size": mpp,
                    "pixel_size_source": source,
                    "objective_power": info.objective_power,
                    "patient": donor,
                    "levels": [list(hw) for hw in info.levels],
                }
            }
        }
    }
    logger.info(
        "read_slide: %s (%s, %d levels, %d×%d px, %.4g µm/px from %s)",
        name,
        info.vendor,
        len(info.levels),
        info.levels[0][1],
        info.levels[0][0],
        mpp,
        source,
    )
    return SpatialData(images={Keys.image(name): image}, attrs=attrs)


# --------------------------------------------------------------------------------------------------- arguments


def _source(path, backend: str) -> str:
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(text, str):
        raise TypeError(f"`path` must be a file path or URL string, got {type(path).__name__}.")
    if "://" in text and not text.startswith("file://"):
        if backend != "tiffslide":
            raise ValueError(f"`path`={text!r}: URLs are read by backend='tiffslide' only; download the file first.")
        return text
    local = Path(text.removeprefix("file://")).expanduser()
    if not local.is_file():
        raise FileNotFoundError(f"`path`: slide file {text!r} does not exist.")
    return os.fspath(local.resolve())


def _section_name(section: str | None, src: str) -> str:
    if section is not None:
        if not isinstance(section, str) or not _NAME_OK.match(section):
            raise ValueError(
                f"`section`={section!r}: use letters, digits, '_' and '-' only (it names the spatialdata elements)."
            )
        return section
    stem = src.rstrip("/").rsplit("/", 1)[-1]
    stem = stem.split(".")[0] or stem  # "a.ome.tif" → "a"
    return re.sub(r"[^A-Za-z0-9_-]", "_", stem) or "slide"


# --------------------------------------------------------------------------------------------------- headers


def _open_info(src: str, backend: str) -> _SlideInfo:
    return _tiffslide_info(src) if backend == "tiffslide" else _openslide_info(src)


def _open_tiffslide(src: str):
    from tiffslide import TiffSlide

    with warnings.catch_warnings():  # "hamamatsu-format metadata parsing only partially implemented!" and the like
        warnings.filterwarnings("ignore", message=r".*metadata parsing.*", category=UserWarning)
        slide = TiffSlide(src)
        try:
            _ = slide.properties
        except BaseException:
            slide.close()
            raise
    return slide


def _tiffslide_info(src: str) -> _SlideInfo:
    try:
        slide = _open_tiffslide(src)
    except Exception as e:  # TiffFileError, NotImplementedError (unsupported axes), fsspec errors
        raise ValueError(
            f"`path`: tiffslide cannot read {src!r} as a slide ({type(e).__name__}: {e}). MIRAX and other non-TIFF "
            "formats need backend='openslide'."
        ) from None
    with slide:
        props = slide.properties
        axes = props.get("tiffslide.series-axes")
        try:
            grp = slide.zarr_group
        except Exception as e:  # tiffslide/tifffile/zarr cannot map the image to a zarr store
            raise ValueError(f"`path`: tiffslide cannot read the image of {src!r} ({type(e).__name__}: {e}).") from None
        z0 = grp["0"] if "0" in grp else grp
        if axes != "YXS" or z0.shape[-1] not in (3, 4) or np.dtype(z0.dtype) != np.uint8:
            raise ValueError(
                f"`path`: {src!r} must hold an RGB (or RGBA) uint8 H&E image; its main image has axes {axes!r}, "
                f"shape {tuple(z0.shape)}, dtype {z0.dtype}."
            )
        levels = tuple((int(h), int(w)) for w, h in slide.level_dimensions)
        tiles = tuple(
            (
                int(props.get(f"tiffslide.level[{i}].tile-height") or 0) or min(256, levels[i][0]),
                int(props.get(f"tiffslide.level[{i}].tile-width") or 0) or min(256, levels[i][1]),
            )
            for i in range(len(levels))
        )
        mpp, source = _tiffslide_mpp(slide, props)
        power = props.get("tiffslide.objective-power")
        vendor = str(props.get("tiffslide.vendor") or slide.detect_format(src) or "generic-tiff")
    if vendor == "ventana":
        warnings.warn(
            f"`path`: {src!r} is a Ventana slide; tiffslide does not composite its overlapping tiles, so seams may "
            "show. backend='openslide' reads it correctly.",
            UserWarning,
            stacklevel=4,
        )
    series = int(props.get("tiffslide.series-index") or 0)
    composed = bool(props.get("tiffslide.series-composition"))
    return _SlideInfo(levels, tiles, mpp, source, vendor, _float_or_none(power), series, composed)


def _tiffslide_mpp(slide, props: dict) -> tuple[tuple[float, float] | None, str]:
    tf = slide.ts_tifffile
    if getattr(tf, "is_ome", False) and tf.ome_metadata:
        ome = _ome_mpp(tf.ome_metadata)
        if ome is not None:
            return ome, "OME PhysicalSizeX/PhysicalSizeY"
    mx, my = _float_or_none(props.get("tiffslide.mpp-x")), _float_or_none(props.get("tiffslide.mpp-y"))
    if mx is None or my is None:
        return None, "none"
    if "tiff.XResolution" in props:
        return (mx, my), f"TIFF XResolution/YResolution tags (unit {props.get('tiff.ResolutionUnit')})"
    return (mx, my), f"{props.get('tiffslide.vendor') or 'vendor'} metadata (tiffslide.mpp-x/-y)"


def _ome_mpp(xml: str) -> tuple[float, float] | None:
    import tifffile

    try:
        images = tifffile.xml2dict(xml)["OME"]["Image"]
        pixels = (images[0] if isinstance(images, list) else images)["Pixels"]
    except (KeyError, TypeError, IndexError, ValueError):
        return None
    out = []
    for ax in ("X", "Y"):
        size = _float_or_none(pixels.get(f"PhysicalSize{ax}"))
        factor = _OME_UNITS.get(str(pixels.get(f"PhysicalSize{ax}Unit", "µm")))
        if size is None or factor is None:
            return None
        out.append(size * factor)
    return out[0], out[1]


def _import_openslide():
    try:
        import openslide
    except ImportError as e:  # the module or its C library is missing
        raise ImportError(
            "backend='openslide' needs OpenSlide: `pip install openslide-python openslide-bin` "
            f"(importing it failed: {e})."
        ) from None
    return openslide


def _openslide_info(src: str) -> _SlideInfo:
    openslide = _import_openslide()
    try:
        slide = openslide.OpenSlide(src)
    except Exception as e:  # OpenSlideUnsupportedFormatError, OpenSlideError
        raise ValueError(f"`path`: OpenSlide cannot read {src!r} ({type(e).__name__}: {e}).") from None
    with slide:
        props = dict(slide.properties)
        levels = tuple((int(h), int(w)) for w, h in slide.level_dimensions)
        tiles = tuple(
            (
                int(props.get(f"openslide.level[{i}].tile-height", 0)) or min(256, levels[i][0]),
                int(props.get(f"openslide.level[{i}].tile-width", 0)) or min(256, levels[i][1]),
            )
            for i in range(len(levels))
        )
    mx, my = _float_or_none(props.get("openslide.mpp-x")), _float_or_none(props.get("openslide.mpp-y"))
    mpp, source = ((mx, my), "openslide.mpp-x/-y") if mx is not None and my is not None else (None, "none")
    desc = str(props.get("tiff.ImageDescription", ""))
    if mpp is None and "<OME" in desc[:1000]:  # OpenSlide reads OME-TIFF as generic TIFF, without its sizes
        mpp, source = _ome_mpp(desc), "OME PhysicalSizeX/PhysicalSizeY"
        source = source if mpp is not None else "none"
    vendor = str(props.get("openslide.vendor") or "unknown")
    return _SlideInfo(levels, tiles, mpp, source, vendor, _float_or_none(props.get("openslide.objective-power")))


def _float_or_none(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) and f > 0 else None


def _resolve_pixel_size(info: _SlideInfo, given: float | None, src: str) -> tuple[float, str]:
    """The µm/px to use and where it came from (see `read_slide`'s ``pixel_size``)."""
    problem = None
    file_mpp = None
    if info.mpp is None:
        problem = "the file records no pixel size"
    else:
        mx, my = info.mpp
        if not np.isclose(mx, my, rtol=0.01):
            raise ValueError(
                f"`path`: {src!r} has anisotropic pixels ({mx:.6g} × {my:.6g} µm, from {info.mpp_source}); genedml "
                "needs square pixels. Resample the slide."
            )
        file_mpp = 0.5 * (mx + my)
        if not _MPP_RANGE[0] <= file_mpp <= _MPP_RANGE[1]:
            problem = (
                f"the file says {file_mpp:.6g} µm/px (from {info.mpp_source}), which is no microscope pixel size "
                "(a placeholder resolution such as 72 dpi?)"
            )
            file_mpp = None
    if given is None:
        if file_mpp is None:
            raise ValueError(
                f"`path`: {src!r}: {problem}. Pass `pixel_size` (µm per pixel of the finest level, e.g. 0.25 at 40×, "
                "0.5 at 20×)."
            )
        return float(file_mpp), info.mpp_source
    if file_mpp is not None and abs(given - file_mpp) > _MISMATCH * file_mpp:
        warnings.warn(
            f"`pixel_size`={given:.6g} µm/px differs by {abs(given - file_mpp) / file_mpp:.0%} from the file's "
            f"{file_mpp:.6g} µm/px ({info.mpp_source}); using the given `pixel_size`.",
            UserWarning,
            stacklevel=3,
        )
    return float(given), "pixel_size argument"


# --------------------------------------------------------------------------------------------------- pixels


def _block_chunks(size: int, tile: int, target: int) -> tuple[int, ...]:
    step = min(size, max(1, tile) * max(1, target // max(1, tile)))
    return tuple(min(step, size - i) for i in range(0, size, step))


def _read_block(src: str, backend: str, level: int, where: tuple, block_info=None) -> np.ndarray:
    """One ``(c, y, x)`` block of a level: opens the slide, reads the tiles under the block, closes it.

    ``where`` is ``(series, composed)`` for tiffslide (the pyramid's TIFF series; whether tiffslide composes the
    level from several series) and ``(downsample,)`` for OpenSlide. tiffslide's metadata parser (which may warn)
    is not run here: blocks are read in worker threads, where ``warnings.catch_warnings`` is not safe.
    """
    (c0, c1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
    try:
        if backend == "tiffslide":
            import zarr
            from tiffslide import TiffSlide

            with TiffSlide(src) as slide:
                series, composed = where
                if composed:  # Leica SCN: tiffslide's store places the located series (no warning in its parser)
                    z = slide.zarr_group[str(level)]
                else:
                    z = zarr.open_array(slide.ts_tifffile.series[series].aszarr(level=level), mode="r")
                rgba = np.asarray(z[y0:y1, x0:x1])
        else:
            openslide = _import_openslide()
            with openslide.OpenSlide(src) as slide:
                loc = (int(round(x0 * where[0])), int(round(y0 * where[0])))
                rgba = np.asarray(slide.read_region(loc, level, (x1 - x0, y1 - y0)))
    except Exception as e:  # a decode failure deep in the backend: say which file and where
        raise ValueError(f"cannot read slide {src!r} (level {level}, rows {y0}:{y1}, cols {x0}:{x1}): {e}") from e
    return _to_rgb(rgba).transpose(2, 0, 1)[c0:c1]


def _to_rgb(a: np.ndarray) -> np.ndarray:
    """``(h, w, 3|4)`` → RGB ``uint8``; transparent pixels (outside a scanned region) become white."""
    if a.shape[-1] == 3:
        return np.ascontiguousarray(a, dtype=np.uint8)
    alpha = a[..., 3:4].astype(np.float32) / 255.0
    rgb = a[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _level_array(src: str, backend: str, info: _SlideInfo, level: int, chunk_size: int):
    import dask.array as da
    from dask.base import tokenize

    h, w = info.levels[level]
    th, tw = info.tiles[level]
    chunks = ((3,), _block_chunks(h, th, chunk_size), _block_chunks(w, tw, chunk_size))
    stamp = os.stat(src).st_mtime_ns if os.path.isfile(src) else None
    downsample = 0.5 * (info.levels[0][0] / h + info.levels[0][1] / w)
    where = (info.series, info.composed) if backend == "tiffslide" else (downsample,)
    token = tokenize(src, stamp, backend, level, info.levels, chunks)
    return da.map_blocks(
        _read_block,
        src,
        backend,
        level,
        where,
        chunks=chunks,
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), dtype=np.uint8),
        name=f"genedml-slide-{token}",
    )


def _pyramid(src: str, backend: str, info: _SlideInfo, transformations: dict, chunk_size: int):
    """Multiscale image element (``scale0`` … ``scaleN``), one scale per pyramid level of the slide."""
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import set_transformation
    from xarray import DataArray, Dataset, DataTree

    h0, w0 = info.levels[0]
    nodes = {}
    for i, (h, w) in enumerate(info.levels):
        coords = {"c": ["r", "g", "b"], "y": (np.arange(h) + 0.5) * (h0 / h), "x": (np.arange(w) + 0.5) * (w0 / w)}
        arr = _level_array(src, backend, info, i, chunk_size)
        nodes[f"scale{i}"] = Dataset({"image": DataArray(arr, dims=("c", "y", "x"), coords=coords, name="image")})
    tree = DataTree.from_dict(nodes)
    set_transformation(tree, transformations, set_all=True)
    Image2DModel().validate(tree)
    return tree
