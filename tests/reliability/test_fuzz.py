"""Fuzzing the legacy-ST reader: random truncations, shuffled columns and rows, wrong types, NaNs, duplicated rows
and columns of the count matrix and the spot file.

Every mutated layout must either be refused with a clear error (a ``ValueError`` whose message names the user's
argument or the data model) or read into a valid object that holds exactly what the files say (every count and
spot centre checked against an independent parse of the mutated files) — never a crash from deep inside
(``IndexError``, ``KeyError``, ``TypeError`` …), never a silent change. Hypothesis runs derandomised (a fixed
sequence of examples) with a bounded number of examples, so the test is reproducible and takes seconds.
"""

from __future__ import annotations

import csv
import io
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _rel_data import write_st
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import genedml as gd

TOKENS = ["", "nan", "NaN", "inf", "-inf", "-1", "abc", "1e40", "2.5", "4294967303", "3e9", " ", "0x1F", "TRUE", "7"]
FILES = ("counts", "spots")
KINDS = ("truncate", "token", "shuffle_columns", "shuffle_rows", "duplicate_row", "duplicate_column", "drop_column")
KINDS += ("drop_rows",)
CLEAR = ("`samples`", "`pixel_size`", "genedml's data model")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz") / "st"
    row = write_st(root, "S1")
    return root, row


def _lines(p: Path) -> list[str]:
    return p.read_text().splitlines(keepends=True)


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text), delimiter="\t"))


def _write_cells(p: Path, rows: list[list[str]]) -> None:
    p.write_text("".join("\t".join(r) + "\n" for r in rows))


def _apply(op, paths: dict[str, Path]) -> None:
    kind, which, a, b, c = op
    p = paths[which]
    if kind == "truncate":
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * a / 1000)])
        return
    rows = _cells(p.read_text())
    if len(rows) < 2 or not rows[0]:
        return
    width = len(rows[0])
    if kind == "token":
        r = 1 + a % (len(rows) - 1)
        j = b % max(1, len(rows[r]))
        if rows[r]:
            rows[r][j] = TOKENS[c % len(TOKENS)]
    elif kind == "shuffle_columns":
        perm = np.random.default_rng(a).permutation(width)
        if which == "counts":  # the first (row id) column stays first: the layout says so
            perm = np.r_[0, 1 + np.random.default_rng(a).permutation(width - 1)]
        rows = [[r[i] for i in perm if i < len(r)] for r in rows]
    elif kind == "shuffle_rows":
        body = rows[1:]
        rows = [rows[0]] + [body[i] for i in np.random.default_rng(a).permutation(len(body))]
    elif kind == "duplicate_row":
        r = 1 + a % (len(rows) - 1)
        rows.insert(1 + b % (len(rows) - 1), list(rows[r]))
    elif kind == "duplicate_column":
        j = 1 + a % max(1, width - 1)
        rows = [[*r, r[j]] if j < len(r) else r for r in rows]
    elif kind == "drop_column":
        j = a % width
        rows = [r[:j] + r[j + 1 :] for r in rows]
    elif kind == "drop_rows":
        keep = np.random.default_rng(a).random(len(rows) - 1) > (b % 100) / 100
        rows = [rows[0]] + [r for r, k in zip(rows[1:], keep) if k]
    _write_cells(p, rows)


OPS = st.tuples(
    st.sampled_from(KINDS),
    st.sampled_from(FILES),
    st.integers(0, 999),
    st.integers(0, 999),
    st.integers(0, 999),
)


def _check_faithful(sdata, paths: dict[str, Path]) -> None:
    """The object holds exactly what the mutated files say."""
    counts = _cells(paths["counts"].read_text())
    header = counts[0][1:]
    by_id = {r[0]: r[1:] for r in counts[1:] if r}
    spots = pd.read_csv(paths["spots"], sep="\t")
    spots.index = spots["x"].astype(int).astype(str) + "x" + spots["y"].astype(int).astype(str)
    t = gd.io.get_table(sdata)
    X = t.X.toarray()
    genes = list(t.var_names)
    assert sorted(genes) == sorted(header)  # no gene renamed, lost or invented
    col = {g: header.index(g) for g in genes}
    for i, bc in enumerate(t.obs["barcode"].astype(str)):
        row = by_id[bc]
        got = X[i]
        want = np.array([float(row[col[g]]) for g in genes])
        np.testing.assert_array_equal(got, want)
        assert bool(spots.loc[bc, "selected"] == 1)
    xy = gd.io.spot_centers(sdata, "S1")
    ref = spots.loc[t.obs["barcode"].astype(str), ["pixel_x", "pixel_y"]].to_numpy(dtype=float)
    np.testing.assert_allclose(xy, ref)


@settings(
    max_examples=70,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(OPS, min_size=1, max_size=3))
def test_read_st_fuzz(template, ops):
    root, row = template
    with tempfile.TemporaryDirectory() as d:
        work = Path(d) / "st"
        shutil.copytree(root, work)
        paths = {k: work / row[k] for k in FILES}
        for op in ops:
            _apply(op, paths)
        before = {k: p.read_bytes() for k, p in paths.items()}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # documented pixel-size warnings are allowed here
                sdata = gd.io.read_st(pd.DataFrame([row]), base_dir=work)
        except ValueError as e:  # includes gd.io.ValidationError
            msg = str(e)
            assert any(c in msg for c in CLEAR), f"unclear error for {ops}: {msg!r}"
        else:
            _check_faithful(sdata, paths)
        assert {k: p.read_bytes() for k, p in paths.items()} == before  # inputs are only read


def test_fuzz_mutations_are_not_all_refused(template):
    """The fuzz must exercise both outcomes: a shuffled layout reads, a NaN count is refused."""
    root, row = template
    with tempfile.TemporaryDirectory() as d:
        work = Path(d) / "st"
        shutil.copytree(root, work)
        paths = {k: work / row[k] for k in FILES}
        _apply(("shuffle_columns", "spots", 3, 0, 0), paths)
        _apply(("shuffle_rows", "counts", 4, 0, 0), paths)
        _check_faithful(gd.io.read_st(pd.DataFrame([row]), base_dir=work), paths)
        _apply(("token", "counts", 5, 2, 1), paths)  # "nan"
        with pytest.raises(ValueError, match=r"`samples`: counts in .* hold NaN"):
            gd.io.read_st(pd.DataFrame([row]), base_dir=work)
