"""Reliability catalogue of the readers: truncated, missing, shuffled, duplicated and wrongly typed inputs.

Every case states its exact outcome: the error type and a message that names the user's argument (``samples``,
``pixel_size`` …) and the file, or the documented warning, or a valid object ("allowed", compared with the clean
read). No case may change an input file.
"""

from __future__ import annotations

import gzip
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
from _rel_data import GRID_MPP, sha256_tree, write_st

import genedml as gd


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "st"
    return root, pd.DataFrame([write_st(root, "S1")])


def _path(root, samples, col):
    return root / samples.loc[0, col]


def _edit_tsv(root, samples, col, fn):
    p = _path(root, samples, col)
    df = pd.read_csv(p, sep="\t", index_col=0 if col == "counts" else None)
    df = fn(df)
    df.to_csv(p, sep="\t", index=col == "counts")


def _read(root, samples, **kw):
    return gd.io.read_st(samples, base_dir=root, **kw)


# ------------------------------------------------------------------------------------------ mutations → errors


def _rm(col):
    return lambda root, s: _path(root, s, col).unlink()


def _truncate(col, keep=0.5):
    def f(root, s):
        p = _path(root, s, col)
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * keep)])

    return f


def _text(col, text):
    return lambda root, s: _path(root, s, col).write_text(text)


def _counts(fn):
    return lambda root, s: _edit_tsv(root, s, "counts", fn)


def _spots(fn):
    return lambda root, s: _edit_tsv(root, s, "spots", fn)


def _set(df, r, c, v):
    df = df.astype(object)
    df.iloc[r, c] = v
    return df


def _dup_gene(df):
    return df.rename(columns={"G1": "G0"})


def _swap_pixels(df):
    return df.rename(columns={"pixel_x": "pixel_y", "pixel_y": "pixel_x"})


def _gz_truncated(root, s):
    p = _path(root, s, "counts")
    gz = p.with_suffix(".tsv.gz")
    gz.write_bytes(gzip.compress(p.read_bytes())[:-40])
    s.loc[0, "counts"] = str(gz.relative_to(root))


ERRORS = {
    # case: (mutation, read kwargs, error type, message regex)
    "counts_missing": (_rm("counts"), {}, FileNotFoundError, r"`samples`: the 'counts' file of section 'S1'"),
    "spots_missing": (_rm("spots"), {}, FileNotFoundError, r"`samples`: the 'spots' file of section 'S1'"),
    "image_missing": (_rm("image"), {}, FileNotFoundError, r"`samples`: the 'image' file of section 'S1'"),
    "counts_empty": (_text("counts", ""), {}, ValueError, r"`samples`: cannot parse the count matrix"),
    "counts_header_only": (_text("counts", "\tG0\tG1\n"), {}, ValueError, r"count matrix .* is empty"),
    "counts_truncated_gzip": (_gz_truncated, {}, ValueError, r"`samples`: cannot parse the count matrix"),
    "counts_not_text": (
        lambda r, s: _path(r, s, "counts").write_bytes(bytes(range(256)) * 4),
        {},
        ValueError,
        r"`samples`: (cannot parse the count matrix|.* row id\(s\) of the count matrix)",
    ),
    "counts_non_numeric": (
        _counts(lambda d: _set(d, 3, 2, "many")),
        {},
        ValueError,
        r"non-numeric column\(s\): \['G2'\]",
    ),
    "counts_nan": (_counts(lambda d: _set(d, 3, 2, np.nan)), {}, ValueError, r"hold NaN or infinite values"),
    "counts_fraction": (_counts(lambda d: _set(d, 3, 2, 2.5)), {}, ValueError, r"are not integers"),
    "counts_negative": (_counts(lambda d: _set(d, 3, 2, -4)), {}, ValueError, r"hold negative values"),
    "counts_2pow32_plus_7": (_counts(lambda d: _set(d, 3, 2, 2**32 + 7)), {}, ValueError, r"reach 4294967303.*int32"),
    "counts_3e9": (_counts(lambda d: _set(d, 3, 2, 3e9)), {}, ValueError, r"reach 3000000000.*beyond the int32"),
    "counts_2pow64": (_counts(lambda d: _set(d, 3, 2, 2**64 + 1)), {}, ValueError, r"`samples`"),
    "counts_duplicated_gene": (_counts(_dup_gene), {}, ValueError, r"1 gene name\(s\) head more .*\['G0'\].*'sum'"),
    "counts_duplicated_row": (
        _counts(lambda d: pd.concat([d, d.iloc[[4]]])),
        {},
        ValueError,
        r"duplicated spot ids in the count matrix",
    ),
    "counts_bad_row_id": (
        _counts(lambda d: d.rename(index={d.index[0]: "spot-1"})),
        {},
        ValueError,
        r"1 row id\(s\) of the count matrix .* are not '\{x\}x\{y\}' \(e.g. \['spot-1'\]\)",
    ),
    "counts_ragged_header": (
        lambda r, s: _path(r, s, "counts").write_text("\tG0\tG1\n2x2\t1\t2\t3\n"),
        {},
        ValueError,
        r"`samples`",
    ),
    "no_spot_joins": (
        _counts(lambda d: d.set_axis([f"{i + 50}x{i + 50}" for i in range(len(d))])),
        {},
        ValueError,
        r"no spot id of the count matrix .* matches an \(x, y\) of the spot file",
    ),
    "spots_empty": (_text("spots", ""), {}, ValueError, r"`samples`: cannot parse the spot file"),
    "spots_no_pixel_x": (
        _spots(lambda d: d.drop(columns="pixel_x")),
        {},
        ValueError,
        r"lacks column\(s\) \['pixel_x'\]",
    ),
    "spots_no_selected": (
        _spots(lambda d: d.drop(columns="selected")),
        {},
        ValueError,
        r"lacks column\(s\) \['selected'\].*only_selected=False",
    ),
    "spots_text_in_x": (
        _spots(lambda d: _set(d, 2, 0, "two")),
        {},
        ValueError,
        r"column 'x' .* missing or non-numeric",
    ),
    "spots_nan_pixel": (_spots(lambda d: _set(d, 2, 5, np.nan)), {}, ValueError, r"column 'pixel_x' .* missing"),
    "spots_inf_pixel": (_spots(lambda d: _set(d, 2, 5, np.inf)), {}, ValueError, r"column 'pixel_x' .* missing"),
    "spots_fractional_x": (_spots(lambda d: _set(d, 2, 0, 2.5)), {}, ValueError, r"column 'x' .* must hold integers"),
    "spots_duplicated_row": (
        _spots(lambda d: pd.concat([d, d.iloc[[3]]])),
        {},
        ValueError,
        r"duplicated \(x, y\) positions in the spot file",
    ),
    "spots_swapped_pixel_columns": (_spots(_swap_pixels), {}, ValueError, r"pixel x/y columns look swapped"),
    "spots_outside_image": (
        _spots(lambda d: _set(d, 2, 5, 5000.0)),
        {"pixel_size": GRID_MPP},
        ValueError,
        r"1 spot centre\(s\) .* lie outside the 420×360 px image",
    ),
    "image_truncated_header": (
        lambda r, s: _path(r, s, "image").write_bytes(b"\x89PNG\r\n"),
        {},
        ValueError,
        r"'image' file of section 'S1'.*not a readable",
    ),
    "image_not_image": (_text("image", "hello"), {}, ValueError, r"'image' file of section 'S1'.*not a readable image"),
    "pixel_size_10x_off": (
        lambda r, s: None,
        {"pixel_size": 50.0},
        ValueError,
        r"`pixel_size`=50 µm/px disagrees .*10.00×",
    ),
    "pixel_size_2_5x_off": (
        lambda r, s: None,
        {"pixel_size": 2.0},
        ValueError,
        r"`pixel_size`=2 µm/px .* more than 2×",
    ),
    "pixel_size_negative": (lambda r, s: None, {"pixel_size": -5.0}, ValueError, r"`pixel_size\['S1'\]` must lie in"),
    "pixel_size_zero": (lambda r, s: None, {"pixel_size": 0}, ValueError, r"`pixel_size\['S1'\]` must lie in"),
    "pixel_size_nan": (lambda r, s: None, {"pixel_size": float("nan")}, ValueError, r"`pixel_size\['S1'\]` must be a"),
    "pixel_size_string": (lambda r, s: None, {"pixel_size": "5"}, ValueError, r"`pixel_size\['S1'\]` must be a number"),
    "pixel_size_bool": (lambda r, s: None, {"pixel_size": True}, ValueError, r"`pixel_size\['S1'\]` must be a number"),
    "pixel_size_unknown_section": (lambda r, s: None, {"pixel_size": {"S9": 5.0}}, KeyError, r"`pixel_size`: 1 key"),
    "sections_unknown": (lambda r, s: None, {"sections": ["S9"]}, KeyError, r"`sections`: 1 key\(s\) not found"),
    "join_bogus": (lambda r, s: None, {"join": "left"}, ValueError, r"`join` must be one of"),
    "duplicate_genes_bogus": (
        lambda r, s: None,
        {"duplicate_genes": "first"},
        ValueError,
        r"`duplicate_genes` must be",
    ),
    "pitch_zero": (lambda r, s: None, {"pitch_um": 0.0}, ValueError, r"`pitch_um` must lie in"),
    "diameter_negative": (lambda r, s: None, {"spot_diameter_um": -1.0}, ValueError, r"`spot_diameter_um` must lie"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_st_reader_refuses(layout, case):
    root, samples = layout
    mutate, kw, err, match = ERRORS[case]
    mutate(root, samples)
    before = sha256_tree(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a refused input is an error, not an error plus warnings
        with pytest.raises(err, match=match):
            _read(root, samples, **kw)
    assert sha256_tree(root) == before


SAMPLE_ERRORS = {
    "int": (lambda root, s: 7, TypeError, r"`samples` must be a DataFrame, a list of dicts or a path"),
    "list_of_str": (lambda root, s: ["a", "b"], TypeError, r"`samples` must be a DataFrame"),
    "empty": (lambda root, s: s.iloc[:0], ValueError, r"`samples` has no rows"),
    "missing_column": (lambda root, s: s.drop(columns="image"), ValueError, r"missing: \['image'\]"),
    "extra_column": (lambda root, s: s.assign(notes="x"), ValueError, r"unknown: \['notes'\]"),
    "duplicated_section": (lambda root, s: pd.concat([s, s]), ValueError, r"must be unique, duplicated: \['S1'\]"),
    "empty_cell": (lambda root, s: s.assign(patient=" "), ValueError, r"empty cells in column\(s\) \['patient'\]"),
    "missing_value": (lambda root, s: s.assign(patient=None), ValueError, r"missing values in column\(s\)"),
    "missing_file": (lambda root, s: root / "nope.csv", FileNotFoundError, r"`samples`: table .* does not exist"),
}


@pytest.mark.parametrize("case", list(SAMPLE_ERRORS))
def test_samples_table_refused(layout, case):
    root, samples = layout
    make, err, match = SAMPLE_ERRORS[case]
    with pytest.raises(err, match=match):
        _read(root, make(root, samples))


# ------------------------------------------------------------------------------------------ allowed, warned


def _table(sdata):
    t = gd.io.get_table(sdata)
    df = pd.DataFrame(t.X.toarray(), index=t.obs["barcode"].astype(str), columns=list(t.var_names))
    return df.sort_index()[sorted(df.columns)]


def _shuffle_rows(df):
    return df.sample(frac=1.0, random_state=1)


def _shuffle_cols(df):
    return df[list(np.random.default_rng(2).permutation(df.columns))]


ALLOWED = {
    # the same data in another order reads to the same table (joined on spot ids, genes by name)
    "counts_rows_shuffled": _counts(_shuffle_rows),
    "counts_columns_shuffled": _counts(_shuffle_cols),
    "spots_rows_shuffled": _spots(_shuffle_rows),
    "spots_columns_shuffled": _spots(_shuffle_cols),
    "counts_gzipped": lambda r, s: None,
}


@pytest.mark.parametrize("case", list(ALLOWED))
def test_st_reader_same_data_in_another_order(layout, tmp_path, case):
    root, samples = layout
    clean = _table(_read(root, samples))
    if case == "counts_gzipped":
        p = _path(root, samples, "counts")
        gz = p.with_suffix(".tsv.gz")
        gz.write_bytes(gzip.compress(p.read_bytes()))
        samples.loc[0, "counts"] = str(gz.relative_to(root))
    else:
        ALLOWED[case](root, samples)
    before = sha256_tree(root)
    got = _table(_read(root, samples))
    pd.testing.assert_frame_equal(got, clean, check_dtype=False)
    assert sha256_tree(root) == before


def test_duplicate_genes_merged_on_request(layout):
    root, samples = layout
    raw = pd.read_csv(_path(root, samples, "counts"), sep="\t", index_col=0)
    _edit_tsv(root, samples, "counts", _dup_gene)
    got = _table(_read(root, samples, duplicate_genes="sum"))
    assert "G0.1" not in got.columns and "G1" not in got.columns
    np.testing.assert_array_equal(got["G0"], (raw["G0"] + raw["G1"]).loc[got.index])


def test_pixel_size_slightly_off_warns(layout):
    root, samples = layout
    with pytest.warns(UserWarning, match=r"`pixel_size`=6 µm/px disagrees .*1.20×\), beyond the 15% tolerance"):
        sdata = _read(root, samples, pixel_size=6.0)
    assert gd.io.pixel_size(sdata, "S1") == 6.0  # kept: the user may know better, but was told


@pytest.mark.parametrize("mpp", [GRID_MPP, 5.5, 4.5])
def test_pixel_size_within_tolerance_is_silent(layout, mpp):
    root, samples = layout
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sdata = _read(root, samples, pixel_size=mpp)
    assert gd.io.pixel_size(sdata, "S1") == mpp


def test_estimated_pixel_size_matches_grid(layout):
    root, samples = layout
    sdata = _read(root, samples)
    assert gd.io.pixel_size(sdata, "S1") == pytest.approx(GRID_MPP, rel=1e-3)


@pytest.mark.parametrize("drop", ["counts", "spots"])
def test_half_the_spots_failing_the_join_is_a_warning_with_ids(layout, drop, caplog):
    root, samples = layout
    if drop == "counts":
        _edit_tsv(root, samples, "counts", lambda d: d.iloc[::2])
    else:
        _edit_tsv(root, samples, "spots", lambda d: d.iloc[::2])
    caplog.set_level(logging.WARNING, logger="genedml")
    logger = logging.getLogger("genedml")
    logger.addHandler(caplog.handler)
    try:
        sdata = _read(root, samples)
    finally:
        logger.removeHandler(caplog.handler)
    warn = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warn) == 1
    if drop == "counts":
        assert "row(s)" not in warn[0] and "dropped 28 of 56 spot(s)" in warn[0]
    else:
        assert "dropped 28 of 56 row(s)" in warn[0] and "spot(s) of" not in warn[0]
    assert str(root) not in warn[0], "file names, not this machine's paths"
    assert "e.g. ['" in warn[0]
    assert gd.io.get_table(sdata).n_obs == 28


def test_truncated_image_body_is_a_clear_error_on_decode(layout):
    root, samples = layout
    p = _path(root, samples, "image")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # header intact: opened lazily, fails when decoded
    sdata = _read(root, samples)
    with pytest.raises(ValueError, match=r"cannot decode image .*corrupt or truncated"):
        sdata.images["S1_hne"].data.compute()


# ------------------------------------------------------------------------------------------ Visium, HEST, zarr


@pytest.fixture
def visium(tmp_path):
    from _io_data import make_visium_dir

    return make_visium_dir(tmp_path)


def _json_edit(path, **changes):
    import json

    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))


VISIUM_ERRORS = {
    "no_counts": (
        lambda r: (r / "filtered_feature_bc_matrix.h5").unlink(),
        FileNotFoundError,
        r"`path`: no '\(<id>_\)filtered_feature_bc_matrix.h5'",
    ),
    "no_positions": (
        lambda r: (r / "spatial" / "tissue_positions.csv").unlink(),
        FileNotFoundError,
        r"`path`: neither of \['tissue_positions.csv'",
    ),
    "no_scalefactors": (
        lambda r: (r / "spatial" / "scalefactors_json.json").unlink(),
        FileNotFoundError,
        r"`path`: 'scalefactors_json.json' is missing",
    ),
    "scalefactors_not_json": (
        lambda r: (r / "spatial" / "scalefactors_json.json").write_text("{oops"),
        ValueError,
        r"`path`: .*scalefactors_json.json' is not valid JSON",
    ),
    "scalefactors_a_list": (
        lambda r: (r / "spatial" / "scalefactors_json.json").write_text("[1, 2]"),
        ValueError,
        r"`path`: .*scalefactors_json.json' must hold a JSON object",
    ),
    "spot_diameter_zero": (
        lambda r: _json_edit(r / "spatial" / "scalefactors_json.json", spot_diameter_fullres=0),
        ValueError,
        r"spot_diameter_fullres",
    ),
    "spot_diameter_text": (
        lambda r: _json_edit(r / "spatial" / "scalefactors_json.json", spot_diameter_fullres="big"),
        ValueError,
        r"spot_diameter_fullres",
    ),
    "spot_diameter_5x_off": (
        lambda r: _json_edit(r / "spatial" / "scalefactors_json.json", spot_diameter_fullres=100.0),
        gd.io.ValidationError,
        r"disagrees with the spot grid.*more than 2× off",
    ),
}


@pytest.mark.parametrize("case", list(VISIUM_ERRORS))
def test_visium_reader_refuses(visium, case):
    mutate, err, match = VISIUM_ERRORS[case]
    mutate(visium)
    before = sha256_tree(visium)
    with pytest.raises(err, match=match):
        gd.io.read_visium(visium, section="V1", patient="P1")
    assert sha256_tree(visium) == before


def test_visium_pixel_size_slightly_off_warns(visium):
    _json_edit(visium / "spatial" / "scalefactors_json.json", spot_diameter_fullres=26.0)  # 2.1 µm/px vs ~2.75
    with pytest.warns(UserWarning, match=r"section 'V1': `pixel size`=2.115 µm/px disagrees .*hex lattice"):
        gd.io.read_visium(visium, section="V1", patient="P1")


@pytest.fixture
def hest(tmp_path):
    from _io_data import make_hest_files, make_hest_image

    return make_hest_files(tmp_path, make_hest_image(), "pages")


def _hest_meta(files, **changes):
    _json_edit(files["metadata"], **changes)


HEST_ERRORS = {
    "no_h5ad": (lambda f: f["h5ad"].unlink(), FileNotFoundError, r"`h5ad`: file .*TENX00.h5ad' does not exist"),
    "no_image": (lambda f: f["image"].unlink(), FileNotFoundError, r"`image`: file .*TENX00.tif' does not exist"),
    "image_not_tiff": (
        lambda f: f["image"].write_text("not a tiff"),
        ValueError,
        r"`image`: cannot read the TIFF .*TENX00.tif",
    ),
    "meta_not_json": (lambda f: f["metadata"].write_text("{"), ValueError, r"`metadata`: .*TENX00.json' is not valid"),
    "pixel_size_3x_off": (
        lambda f: _hest_meta(f, pixel_size_um_estimated=1.7),
        gd.io.ValidationError,
        r"disagrees with the spot grid.*more than 2× off",
    ),
    "pixel_size_missing": (
        lambda f: _hest_meta(f, pixel_size_um_estimated=None, pixel_size_um_embedded=None),
        ValueError,
        r"`metadata`: .* has no positive 'pixel_size_um_estimated'",
    ),
    "pixel_size_negative": (
        lambda f: _hest_meta(f, pixel_size_um_estimated=-0.5),
        ValueError,
        r"`metadata`: .* has no positive 'pixel_size_um_estimated'",
    ),
}


@pytest.mark.parametrize("case", list(HEST_ERRORS))
def test_hest_reader_refuses(hest, case):
    mutate, err, match = HEST_ERRORS[case]
    mutate(hest)
    root = hest["h5ad"].parents[1]
    before = sha256_tree(root)
    with pytest.raises(err, match=match):
        gd.io.read_hest(hest["h5ad"], hest["image"], hest["metadata"])
    assert sha256_tree(root) == before


ZARR_ERRORS = {
    "missing_path": (lambda p: None, FileNotFoundError, r"`path`=.* does not exist"),
    "not_a_store": (lambda p: (p.mkdir(), (p / "junk.txt").write_text("x")), ValueError, r"`path`=.* is not a zarr"),
    "plain_file": (lambda p: p.write_text("x"), ValueError, r"`path`=.* is not a zarr store"),
}


@pytest.mark.parametrize("case", list(ZARR_ERRORS))
def test_read_zarr_refuses(tmp_path, case):
    mutate, err, match = ZARR_ERRORS[case]
    p = tmp_path / "store.zarr"
    mutate(p)
    with pytest.raises(err, match=match):
        gd.io.read_zarr(p)


def test_write_zarr_never_clobbers(tmp_path):
    sdata = gd.datasets.synthetic(preset="tiny")
    p = tmp_path / "out.zarr"
    p.mkdir()
    (p / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"`path`"):
        gd.io.write_zarr(sdata, p)
    assert (p / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------ real HER2ST files


def _her2st_b4(her2st_dir, tmp_path, spots_fn=None):
    """Samples row of the real section B4; the spot file is copied (and edited) under ``tmp_path`` when asked."""
    spots = her2st_dir / "data" / "ST-spotfiles" / "B4_selection.tsv"
    if spots_fn is not None:
        df = spots_fn(pd.read_csv(spots, sep="\t"))
        spots = tmp_path / "B4_selection.tsv"
        df.to_csv(spots, sep="\t", index=False)
    return pd.DataFrame(
        [
            {
                "section": "B4",
                "patient": "B",
                "counts": str(her2st_dir / "data" / "ST-cnts" / "B4.tsv.gz"),
                "spots": str(spots),
                "image": str(her2st_dir / "data" / "ST-imgs" / "B" / "B4" / "BT10737_D2_HE.jpg"),
            }
        ]
    )


def test_real_her2st_pixel_size_10x_off_is_refused(her2st_dir, tmp_path):
    with pytest.raises(ValueError, match=r"section 'B4' .*`pixel_size`=6.9 µm/px disagrees .* more than 2×"):
        gd.io.read_st(_her2st_b4(her2st_dir, tmp_path), pixel_size=6.9)  # estimated: ~0.69 µm/px


def test_real_her2st_swapped_pixel_columns_are_refused(her2st_dir, tmp_path):
    samples = _her2st_b4(her2st_dir, tmp_path, _swap_pixels)
    with pytest.raises(ValueError, match=r"section 'B4' .*pixel x/y columns look swapped"):
        gd.io.read_st(samples)


def test_real_her2st_reads_with_a_warning_for_the_spot_without_counts(her2st_dir, tmp_path, caplog):
    logger = logging.getLogger("genedml")
    logger.addHandler(caplog.handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            sdata = gd.io.read_st(_her2st_b4(her2st_dir, tmp_path))
    finally:
        logger.removeHandler(caplog.handler)
    warn = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warn) == 1 and "kept 283 spots" in warn[0] and "1 of 284 spot(s)" in warn[0]
    assert gd.io.pixel_size(sdata, "B4") == pytest.approx(0.688, abs=0.002)
