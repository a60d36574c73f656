"""Reader for the legacy Spatial Transcriptomics layout (HER2ST, STNet, cSCC): :func:`read_st`."""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from genedml._keys import Keys
from genedml._logging import logger
from genedml._validators import assert_in_range, assert_keys_in, assert_one_of

from .._data_model import get_table
from ._geometry import fit_grid, pixel_size_problems
from ._model import SectionData, build_sdata, integer_counts, validate
from ._tiff import is_tiff, tiff_level_array, tiff_levels

if TYPE_CHECKING:
    import dask.array as da
    from spatialdata import SpatialData

__all__ = ["read_st"]

SAMPLE_COLUMNS = ("section", "patient", "counts", "spots", "image")
SPOT_COLUMNS = ("x", "y", "pixel_x", "pixel_y")
_FILE_COLUMNS = ("counts", "spots", "image")
_SPOT_ID = re.compile(r"^(\d+)x(\d+)$")
_PIL_LOCK = threading.Lock()
_STRIP = 512  # rows copied at a time out of a decoded Pillow image


def read_st(
    samples: pd.DataFrame | Sequence[Mapping[str, Any]] | str | os.PathLike,
    *,
    base_dir: str | os.PathLike | None = None,
    sections: Sequence[str] | None = None,
    pixel_size: float | Mapping[str, float] | None = None,
    spot_diameter_um: float = 100.0,
    pitch_um: float = 200.0,
    only_selected: bool = True,
    join: str = "inner",
    duplicate_genes: str = "error",
) -> SpatialData:
    """Read sections in the legacy Spatial Transcriptomics layout (HER2ST, STNet, cSCC) into one SpatialData.

    Each section has three files: a count matrix ``.tsv[.gz]`` (rows = spots named ``"{x}x{y}"`` by their array
    position, columns = genes, first header cell empty, raw integer counts), a spot file ``.tsv`` (columns ``x``,
    ``y``, ``pixel_x``, ``pixel_y`` and ``selected``, optionally ``new_x``, ``new_y``; ``pixel_x``/``pixel_y`` are
    the spot centre in pixels of the image, origin top-left) and an H&E image (JPEG, PNG or TIFF). Spots are the
    inner join of spot-file rows and count rows on the ``"{x}x{y}"`` id: count rows without a spot in the spot
    file and selected spots without a count row are dropped with a WARNING on the ``"genedml"`` logger (how many
    and a few ids); count rows of unselected spots are dropped with an INFO message. ``obs["array_row"]`` is the
    array ``y`` and ``obs["array_col"]`` the array ``x``; ``obs["barcode"]`` is the ``"{x}x{y}"`` id. Input files
    are only read. Counts are parsed as 64-bit numbers and refused beyond the table's ``int32``.

    Images are not decoded here: only their header is read, and the pixels are a dask array decoded on first
    access. Memory cost of a decode:

    * JPEG/PNG: the **whole** image is decoded on the first access of any pixel, ~3 bytes/px kept (~275 MB for a
      92 Mpx HER2ST image); each separate ``.compute()`` decodes again, so ``.persist()`` or compute once per
      section before cutting many patches. Complete RGB JPEGs are decoded by libjpeg-turbo (imagecodecs) straight
      into that array (0.15 s for a HER2ST image, 4-5x faster than Pillow); other files, and JPEGs that do not end
      in an end-of-image marker (truncated ones), go through Pillow, ~4 bytes/px more while decoding.
    * TIFF (tifffile): truly chunked; a read touches only the TIFF tiles/strips it covers.

    Images above Pillow's decompression-bomb limit (HER2ST's JPEGs: ~92 Mpx) are opened without a warning: the
    limit is lifted only for the ``Image.open`` call, under a lock, and restored right after.

    Parameters
    ----------
    samples
        One row per section with columns ``section``, ``patient``, ``counts``, ``spots`` and ``image`` (file
        paths): a :class:`~pandas.DataFrame`, a list of dicts, or a path to a CSV/TSV (``.tsv``/``.txt``: tabs)
        table.
    base_dir
        Folder that relative paths in ``samples`` are relative to; default: the table's folder when ``samples``
        is a path, else the working directory.
    sections
        Names of the sections (values of the ``section`` column) to read; ``None`` reads all.
    pixel_size
        Micrometres per image pixel: one number for all sections or a mapping section → number. ``None`` (or a
        section missing from the mapping) estimates it from the spot file: ``pitch_um`` over the pixels per array
        unit fitted by least squares (``pixel_x`` on ``new_x``, or ``x`` without it; likewise for y).
        ``uns["genedml"]["sections"][s]["pixel_size_source"]`` records ``"given"`` or ``"estimated"``. A given
        pixel size is checked against the spot grid: more than 15% off the grid's gives a ``UserWarning``, more
        than 2× off a ``ValueError``. Spot files whose ``pixel_x``/``pixel_y`` follow the array ``y``/``x`` (swapped
        columns) are refused.
    spot_diameter_um
        Spot diameter in µm (ST 1k array: 100).
    pitch_um
        Centre-to-centre distance of neighbouring spots in µm (ST 1k array: 200).
    only_selected
        Drop spots with ``selected == 0`` (not under tissue).
    join
        ``"inner"`` keeps genes measured in every section, ``"outer"`` all genes (absent ones count 0).
    duplicate_genes
        A gene name that heads more than one column of a count matrix: ``"error"`` (default) refuses the file,
        ``"sum"`` merges the columns by summing their counts (logged at INFO).

    Returns
    -------
    SpatialData in genedml's data model (see :func:`genedml.io.validate`): per section ``s`` an image
    ``f"{s}_hne"``, spots ``f"{s}_spots"``, rows in ``tables["table"]`` with raw counts in ``X`` and
    ``layers["counts"]``.

    Examples
    --------
    >>> import genedml as gd
    >>> samples = [
    ...     {
    ...         "section": "B4",
    ...         "patient": "B",
    ...         "counts": "data/ST-cnts/B4.tsv.gz",
    ...         "spots": "data/ST-spotfiles/B4_selection.tsv",
    ...         "image": "data/ST-imgs/B/B4/BT10737_D2_HE.jpg",
    ...     }
    ... ]
    >>> sdata = gd.io.read_st(samples, base_dir="her2st")  # doctest: +SKIP
    """
    table = _samples_table(samples, base_dir)
    if sections is not None:
        sections = [sections] if isinstance(sections, str) else list(sections)
        assert_keys_in(sections, list(table["section"]), name="sections", where="the `samples` table's sections")
        table = table.set_index("section", drop=False).loc[sections].reset_index(drop=True)
    assert_in_range(spot_diameter_um, name="spot_diameter_um", low=0, inclusive=False)
    assert_in_range(pitch_um, name="pitch_um", low=0, inclusive=False)
    assert_one_of(join, ("inner", "outer"), name="join")
    assert_one_of(duplicate_genes, ("error", "sum"), name="duplicate_genes")
    sizes = _pixel_sizes(pixel_size, list(table["section"]))
    secs, notes = [], {}
    for row in table.itertuples(index=False):
        sec, note = _read_section(
            row,
            pixel_size=sizes.get(row.section),
            spot_diameter_um=float(spot_diameter_um),
            pitch_um=float(pitch_um),
            only_selected=only_selected,
            duplicate_genes=duplicate_genes,
        )
        secs.append(sec)
        notes[row.section] = note
    sdata = build_sdata(secs, join=join)
    for name, note in notes.items():
        get_table(sdata).uns[Keys.uns]["sections"][name].update(note)
    with warnings.catch_warnings():  # the grid was checked per file above, with the file named: no second warning
        warnings.filterwarnings("ignore", message=r"section .* disagrees with the spot grid", category=UserWarning)
        validate(sdata)
    return sdata


# --------------------------------------------------------------------------------------------------- samples


def _samples_table(samples: Any, base_dir: str | os.PathLike | None) -> pd.DataFrame:
    if isinstance(samples, str | os.PathLike):
        path = Path(samples)
        if not path.is_file():
            raise FileNotFoundError(f"`samples`: table {str(path)!r} does not exist.")
        sep = "\t" if path.suffix.lower() in (".tsv", ".txt", ".tab") else ","
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        root = Path(base_dir) if base_dir is not None else path.parent
    elif isinstance(samples, pd.DataFrame):
        df, root = samples.copy(), Path(base_dir) if base_dir is not None else Path.cwd()
    elif isinstance(samples, Sequence) and all(isinstance(r, Mapping) for r in samples):
        df, root = pd.DataFrame(list(samples)), Path(base_dir) if base_dir is not None else Path.cwd()
    else:
        raise TypeError(
            "`samples` must be a DataFrame, a list of dicts or a path to a CSV/TSV table, "
            f"got {type(samples).__name__}."
        )
    if df.empty:
        raise ValueError("`samples` has no rows: at least one section is needed.")
    unknown = [c for c in df.columns if c not in SAMPLE_COLUMNS]
    missing = [c for c in SAMPLE_COLUMNS if c not in df.columns]
    if unknown or missing:
        raise ValueError(
            f"`samples` must have exactly the columns {list(SAMPLE_COLUMNS)}; unknown: {unknown}, missing: {missing}."
        )
    nulls = df.columns[df.isna().any()].tolist()
    if nulls:
        raise ValueError(f"`samples`: missing values in column(s) {nulls}.")
    df = df[list(SAMPLE_COLUMNS)].astype(str)
    empty = df.columns[(df.apply(lambda c: c.str.strip()) == "").any()].tolist()
    if empty:
        raise ValueError(f"`samples`: empty cells in column(s) {empty}.")
    dup = df["section"][df["section"].duplicated()].unique().tolist()
    if dup:
        raise ValueError(f"`samples`: section names must be unique, duplicated: {dup}.")
    for col in _FILE_COLUMNS:
        df[col] = [root / p for p in df[col]]
    return df


def _pixel_sizes(pixel_size: Any, names: list[str]) -> dict[str, float]:
    if pixel_size is None:
        return {}
    if isinstance(pixel_size, Mapping):
        assert_keys_in(list(pixel_size), names, name="pixel_size", where="the sections read")
        out = dict(pixel_size)
    else:
        out = dict.fromkeys(names, pixel_size)
    for name, v in out.items():
        assert_in_range(v, name=f"pixel_size[{name!r}]", low=0, inclusive=False)
    return {k: float(v) for k, v in out.items()}


# --------------------------------------------------------------------------------------------------- one section


def _read_section(
    row: Any,
    *,
    pixel_size: float | None,
    spot_diameter_um: float,
    pitch_um: float,
    only_selected: bool,
    duplicate_genes: str = "error",
) -> tuple[SectionData, dict]:
    for col in _FILE_COLUMNS:
        p = getattr(row, col)
        if not p.is_file():
            raise FileNotFoundError(
                f"`samples`: the {col!r} file of section {row.section!r} does not exist: {str(p)!r}."
            )
    counts = _read_counts(row.counts, duplicate_genes=duplicate_genes)
    spots_all = _read_spots(row.spots, only_selected=only_selected)
    spots = spots_all[spots_all["selected"] == 1] if only_selected else spots_all
    counts, spots = _join(counts, spots, row, unselected=spots_all.index.difference(spots.index))
    _check_grid(spots_all, row, pixel_size=pixel_size, pitch_um=pitch_um)
    note: dict[str, Any] = {"reader": "read_st"}
    if pixel_size is None:
        pixel_size, px_x, px_y = _estimate_pixel_size(spots_all, pitch_um=pitch_um, name=str(row.spots))
        note.update(pixel_size_source="estimated", px_per_array_unit_x=px_x, px_per_array_unit_y=px_y)
        logger.info(
            f"read_st: section {row.section!r}: estimated {pixel_size:.4f} µm/px ({px_x:.1f}, {px_y:.1f} px/unit)."
        )
    else:
        note["pixel_size_source"] = "given"
    image, (h, w) = lazy_image(row.image, where=f"`samples`: the 'image' file of section {row.section!r}")
    _check_inside(spots, h, w, row)
    sec = SectionData(
        name=str(row.section),
        patient=str(row.patient),
        image=image,
        pixel_size=pixel_size,
        xy=spots[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64),
        array_row=spots["y"].to_numpy(dtype=np.int64),
        array_col=spots["x"].to_numpy(dtype=np.int64),
        counts=integer_counts(counts.to_numpy(), name="samples", where=str(row.counts)),
        genes=list(counts.columns),
        barcodes=list(counts.index),
        spot_diameter_um=spot_diameter_um,
        pitch_um=pitch_um,
        technology="st",
    )
    return sec, note


def _read_counts(path: Path, *, duplicate_genes: str = "error") -> pd.DataFrame:
    try:
        df = pd.read_csv(path, sep="\t", index_col=0, low_memory=False)  # one pass: ~30% faster on 15k columns
        header = pd.read_csv(path, sep="\t", header=None, nrows=1, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"`samples`: cannot parse the count matrix {str(path)!r} as TSV ({e}).") from None
    where = f"count matrix {str(path)!r}"
    names = header.iloc[0].tolist()[1:]  # pandas renames a repeated column "G" to "G.1": take the raw header
    if len(names) != df.shape[1]:
        raise ValueError(f"`samples`: the header of the {where} has {len(names)} gene(s) but rows have {df.shape[1]}.")
    df.columns = pd.Index(names)
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise ValueError(f"`samples`: the {where} is empty (expected spots × genes).")
    ids = df.index.astype(str)
    bad = [i for i in ids if not _SPOT_ID.match(i)]
    if bad:
        raise ValueError(f"`samples`: {len(bad)} row id(s) of the {where} are not '{{x}}x{{y}}' (e.g. {bad[:3]}).")
    if ids.duplicated().any():
        raise ValueError(f"`samples`: duplicated spot ids in the {where}: {ids[ids.duplicated()][:3].tolist()}.")
    kinds = np.array([t.kind for t in df.dtypes])  # per-column dtype kinds: fast on 15k columns
    non_numeric = df.columns[~np.isin(kinds, ["i", "u", "f"])].tolist()
    if non_numeric:
        raise ValueError(f"`samples`: the {where} must hold numeric counts; non-numeric column(s): {non_numeric[:5]}.")
    df.index = ids
    return _duplicate_genes(df, where=where, how=duplicate_genes)


def _duplicate_genes(df: pd.DataFrame, *, where: str, how: str) -> pd.DataFrame:
    dup = df.columns[df.columns.duplicated()].unique().tolist()
    if not dup:
        return df
    if how == "error":
        raise ValueError(
            f"`samples`: {len(dup)} gene name(s) head more than one column of the {where} (e.g. {dup[:5]}); pass "
            "duplicate_genes='sum' to merge them by summing their counts."
        )
    first = ~df.columns.duplicated()
    out = df.loc[:, first].copy()
    for g in dup:
        out[g] = df.loc[:, df.columns == g].sum(axis=1)
    logger.info(f"read_st: merged (summed) {len(dup)} duplicated gene column(s) of the {where}: {dup[:5]}.")
    return out


def _read_spots(path: Path, *, only_selected: bool) -> pd.DataFrame:
    where = f"spot file {str(path)!r}"
    try:
        df = pd.read_csv(path, sep="\t")
        if df.shape[1] == 1 and "," in str(df.columns[0]):
            df = pd.read_csv(path, sep=",")
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as e:
        raise ValueError(f"`samples`: cannot parse the {where} ({e}).") from None
    need = list(SPOT_COLUMNS) + (["selected"] if only_selected else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        hint = " (or pass only_selected=False)" if missing == ["selected"] else ""
        raise ValueError(
            f"`samples`: the {where} lacks column(s) {missing}; expected {need} (+ optional new_x, new_y), "
            f"got {list(df.columns)}{hint}."
        )
    if "selected" not in df:
        df["selected"] = 1
    for col in ("x", "y", *[c for c in ("pixel_x", "pixel_y", "new_x", "new_y", "selected") if c in df]):
        vals = pd.to_numeric(df[col], errors="coerce")
        if vals.isna().any() or not np.isfinite(vals).all():
            raise ValueError(f"`samples`: column {col!r} of the {where} holds missing or non-numeric values.")
        df[col] = vals
    for col in ("x", "y", "selected"):
        if not (df[col] == np.round(df[col])).all():
            raise ValueError(f"`samples`: column {col!r} of the {where} must hold integers.")
        df[col] = df[col].astype(np.int64)
    df.index = pd.Index(df["x"].astype(str) + "x" + df["y"].astype(str))
    if df.index.duplicated().any():
        raise ValueError(
            f"`samples`: duplicated (x, y) positions in the {where}: {df.index[df.index.duplicated()][:3].tolist()}."
        )
    return df


def _join(
    counts: pd.DataFrame, spots: pd.DataFrame, row: Any, *, unselected: pd.Index | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    both = counts.index.intersection(spots.index, sort=False)
    if len(both) == 0:
        raise ValueError(
            f"`samples`: section {row.section!r}: no spot id of the count matrix {str(row.counts)!r} "
            f"(e.g. {counts.index[:3].tolist()}) matches an (x, y) of the spot file {str(row.spots)!r} "
            f"(e.g. {spots.index[:3].tolist()}): ids must be '{{x}}x{{y}}'."
        )
    extra = counts.index.difference(both, sort=False)
    unsel = extra.intersection(unselected if unselected is not None else pd.Index([]), sort=False)
    orphan = extra.difference(unsel, sort=False)
    no_counts = spots.index.difference(both, sort=False)
    logger.info(f"read_st: section {row.section!r}: {len(both)} spots; {len(unsel)} unselected count row(s) dropped.")
    if len(orphan) or len(no_counts):  # file names only: the message travels in notebooks and logs
        parts = []
        if len(orphan):
            parts.append(
                f"dropped {len(orphan)} of {len(counts)} row(s) of the count matrix {Path(str(row.counts)).name!r} "
                f"that have no spot in the spot file (e.g. {orphan[:3].tolist()})"
            )
        if len(no_counts):
            parts.append(
                f"dropped {len(no_counts)} of {len(spots)} spot(s) of {Path(str(row.spots)).name!r} without a count "
                f"row (e.g. {no_counts[:3].tolist()})"
            )
        logger.warning(f"read_st: section {row.section!r}: kept {len(both)} spots; " + "; ".join(parts) + ".")
    return counts.loc[both], spots.loc[both]


def _check_grid(spots: pd.DataFrame, row: Any, *, pixel_size: float | None, pitch_um: float) -> None:
    """Refuse swapped pixel_x/pixel_y and a given pixel size that the spot grid contradicts (warn when off)."""
    xy = spots[["pixel_x", "pixel_y"]].to_numpy(dtype=np.float64)
    where = f"`samples`: section {row.section!r} (spot file {str(row.spots)!r})"
    ay, ax = spots["y"].to_numpy(), spots["x"].to_numpy()
    fit = fit_grid(xy, ay, ax)
    if fit is not None and fit.swapped:  # judged with or without a pixel size: the estimate would be garbage
        error, _ = pixel_size_problems(1.0, xy, ay, ax, pitch_um=pitch_um, lattice="square", where=where)
        raise ValueError(error)
    if pixel_size is None:
        return
    error, warning = pixel_size_problems(pixel_size, xy, ay, ax, pitch_um=pitch_um, lattice="square", where=where)
    if error:
        raise ValueError(error)
    if warning:
        warnings.warn(warning, UserWarning, stacklevel=4)


def _check_inside(spots: pd.DataFrame, h: int, w: int, row: Any) -> None:
    x, y = spots["pixel_x"].to_numpy(), spots["pixel_y"].to_numpy()
    bad = (x < 0) | (y < 0) | (x >= w) | (y >= h)
    if bad.any():
        raise ValueError(
            f"`samples`: section {row.section!r}: {int(bad.sum())} spot centre(s) of {str(row.spots)!r} lie "
            f"outside the {w}×{h} px image {str(row.image)!r} (e.g. {spots.index[bad][:3].tolist()}); pixel_x/pixel_y "
            "must be pixels of that image."
        )


def _estimate_pixel_size(
    spots: pd.DataFrame, *, pitch_um: float = 200.0, name: str = "spots"
) -> tuple[float, float, float]:
    """Micrometres per pixel from a spot file: ``pitch_um`` over the fitted pixels per array unit.

    Fits ``pixel_x`` against the array ``x`` (``new_x`` when present: the spot-detection corrected position) and
    ``pixel_y`` against ``y`` by least squares; the pixels per array unit are the mean of the two absolute slopes
    (HER2ST: ~290 px per 200 µm → ~0.69 µm/px).

    Returns
    -------
    ``(µm/px, px per unit in x, px per unit in y)``.
    """
    px = []
    for ax in ("x", "y"):
        col = f"new_{ax}" if f"new_{ax}" in spots else ax
        a = spots[col].to_numpy(dtype=np.float64)
        p = spots[f"pixel_{ax}"].to_numpy(dtype=np.float64)
        if np.unique(a).size < 2:
            raise ValueError(
                f"`pixel_size`: cannot estimate it from {name!r}: fewer than 2 distinct array {ax} positions; "
                "pass pixel_size= (µm/px)."
            )
        slope, _ = np.polyfit(a, p, 1)
        px.append(abs(float(slope)))
    if min(px) <= 0 or abs(px[0] - px[1]) > 0.05 * max(px):
        raise ValueError(
            f"`pixel_size`: the spot grid of {name!r} gives {px[0]:.2f} px per array unit in x but {px[1]:.2f} in y; "
            "pass pixel_size= (µm/px)."
        )
    per_unit = 0.5 * (px[0] + px[1])
    return pitch_um / per_unit, px[0], px[1]


# --------------------------------------------------------------------------------------------------- images


@contextmanager
def _pillow_open(path: str | os.PathLike) -> Iterator[Any]:
    """``PIL.Image.open`` without the decompression-bomb limit, restored (under a lock) once the header is read."""
    from PIL import Image

    with _PIL_LOCK:
        old = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = old
    try:
        yield im
    finally:
        im.close()


def _decode_jpeg(path: str, shape: tuple[int, int]) -> np.ndarray | None:
    """Decode a complete RGB JPEG with libjpeg-turbo into a new ``(y, x, 3)`` array; ``None`` when not applicable.

    Pillow decodes into its own 4-byte-per-pixel buffer and packs that again into 3 bytes (0.7 s for a HER2ST
    image); imagecodecs writes the pixels once (0.15 s). libjpeg fills a truncated stream with grey without an
    error, so a file must end in the end-of-image marker (``FF D9``) to take this path: anything else (other
    formats, grayscale/CMYK, trailing data, truncation) goes to Pillow, whose checks then apply.
    """
    try:
        import imagecodecs
    except ImportError:  # pragma: no cover - a dependency of tiffslide
        return None
    with open(path, "rb") as fh:
        if fh.read(3) != b"\xff\xd8\xff":  # not a JPEG: Pillow reads it
            return None
        data = b"\xff\xd8\xff" + fh.read()
    if data[-2:] != b"\xff\xd9":
        return None
    h, w = shape
    out = np.empty((h, w, 3), dtype=np.uint8)
    try:
        imagecodecs.jpeg8_decode(data, out=out)
    except Exception:  # a shape/colour space this path does not handle, or a decoder error: Pillow decides
        return None
    return out


def _decode_pillow(path: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode a whole JPEG/PNG into a ``(y, x, 3)`` ``uint8`` array (copied in strips to bound the peak)."""
    fast = _decode_jpeg(path, shape)
    if fast is not None:
        return fast
    h, w = shape
    try:
        with _pillow_open(path) as im:
            if im.size != (w, h):
                raise ValueError(f"image {path!r} changed on disk: now {im.size[0]}×{im.size[1]} px, read as {w}×{h}.")
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            rgb.load()
            out = np.empty((h, w, 3), dtype=np.uint8)
            for y0 in range(0, h, _STRIP):
                y1 = min(h, y0 + _STRIP)
                out[y0:y1] = np.frombuffer(rgb.crop((0, y0, w, y1)).tobytes(), np.uint8).reshape(y1 - y0, w, 3)
    except OSError as e:
        raise ValueError(f"cannot decode image {path!r}: corrupt or truncated ({e}).") from None
    return out


def lazy_image(path: str | os.PathLike, *, where: str = "`image`") -> tuple[da.Array, tuple[int, int]]:
    """Header-only open of an RGB image; return a lazy ``(y, x, 3)`` or ``(3, y, x)`` dask array and ``(h, w)``.

    TIFF (by signature) → level 0 through :func:`~genedml.io._tiff.tiff_level_array`, chunked. Anything else →
    Pillow: one dask block decoded in full on first access. ``where`` starts error messages.
    """
    import dask
    import dask.array as da

    path = Path(path)
    if is_tiff(path):
        lvl = tiff_levels(path, where=where)[0]
        return tiff_level_array(path, lvl), (lvl.height, lvl.width)
    from PIL import UnidentifiedImageError

    try:
        with _pillow_open(path) as im:
            (w, h), mode = im.size, im.mode
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"{where} {str(path)!r} is not a readable image ({e}).") from None
    if mode not in ("RGB", "RGBA", "L", "P", "CMYK", "YCbCr"):
        raise ValueError(f"{where} {str(path)!r} must be an 8-bit RGB image, got Pillow mode {mode!r}.")
    block = dask.delayed(_decode_pillow, pure=True)(os.fspath(path.resolve()), (h, w))
    return da.from_delayed(block, shape=(h, w, 3), dtype=np.uint8), (h, w)
