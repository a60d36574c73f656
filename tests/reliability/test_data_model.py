"""Reliability catalogue of `gd.io.validate`: duplicate ids, scales, pixel sizes, missing elements, bad counts.

Each case breaks one thing of a valid object and asserts the exact outcome (a `ValidationError` naming the section
and the problem, or the documented `UserWarning`, or "allowed"), and that `validate` itself changed nothing.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _rel_data import snapshot

import genedml as gd
from genedml.io import SectionData, ValidationError, build_sdata

MPP = 5.0  # µm/px of the grid below: 200 µm pitch over 40 px per array unit


def _section(name="S1", *, technology="st", mpp=MPP, grid="square", seed=0):
    rng = np.random.default_rng(seed)
    if grid == "square":
        rr, cc = np.meshgrid(np.arange(5), np.arange(6), indexing="ij")
        rr, cc = rr.ravel(), cc.ravel()
        xy = np.column_stack([30 + 40.0 * cc, 30 + 40.0 * rr])
        pitch = 200.0
    else:  # Visium: columns step 2 with odd rows offset; 50 µm per column unit, 86.6 µm per row at 100 µm pitch
        rr, cc = np.meshgrid(np.arange(5), np.arange(0, 12, 2), indexing="ij")
        rr, cc = rr.ravel(), (cc + (np.arange(5)[:, None] % 2)).ravel()
        xy = np.column_stack([30 + (50.0 / MPP) * cc, 30 + (100 * np.sqrt(3) / 2 / MPP) * rr])
        pitch = 100.0
    n = len(xy)
    return SectionData(
        name=name,
        patient="P" + name,
        image=rng.integers(0, 256, (300, 300, 3), dtype=np.uint8),
        pixel_size=mpp,
        xy=xy,
        array_row=rr,
        array_col=cc,
        counts=rng.poisson(2, (n, 4)),
        genes=["a", "b", "c", "d"],
        barcodes=[f"{c}x{r}" for r, c in zip(rr, cc)],
        spot_diameter_um=100.0 if grid == "square" else 55.0,
        pitch_um=pitch,
        technology=technology,
    )


@pytest.fixture
def sdata():
    return build_sdata([_section("S1"), _section("S2", seed=1)])


def _table(s):
    return s.tables["table"]


def _set_obs(col, fn):
    def f(s):
        obs = _table(s).obs
        obs[col] = fn(obs[col].to_numpy().copy())

    return f


def _dup_first(a):
    a[1] = a[0]
    return a


def _set_um(section, factor):
    def f(s):
        from spatialdata.transformations import Scale, get_transformation, set_transformation

        el = s.images[f"{section}_hne"]
        tfs = get_transformation(el, get_all=True)
        tfs[f"{section}_um"] = Scale([MPP * factor, MPP * factor], axes=("y", "x"))
        set_transformation(el, tfs, set_all=True)

    return f


def _drop_um(kind, section="S1"):
    def f(s):
        from spatialdata.transformations import get_transformation, set_transformation

        el = getattr(s, kind)[f"{section}_hne" if kind == "images" else f"{section}_spots"]
        tfs = get_transformation(el, get_all=True)
        del tfs[f"{section}_um"]
        set_transformation(el, tfs, set_all=True)

    return f


def _anisotropic(s):
    from spatialdata.transformations import Scale, get_transformation, set_transformation

    el = s.shapes["S1_spots"]
    tfs = get_transformation(el, get_all=True)
    tfs["S1_um"] = Scale([MPP, 2 * MPP], axes=("y", "x"))
    set_transformation(el, tfs, set_all=True)


def _counts(fn, which="X"):
    def f(s):
        t = _table(s)
        X = t.X.toarray().astype(np.float64) if which == "X" else t.layers["counts"].toarray().astype(np.float64)
        X = fn(X)
        if which == "X":
            t.X = X
        else:
            t.layers["counts"] = X

    return f


def _pt(r, c, v):
    def f(X):
        X[r, c] = v
        return X

    return f


def _rebuild(**kw):
    """Replace the data by a rebuild with one section changed."""

    def f(s):
        new = build_sdata([_section("S1", **kw), _section("S2", seed=1)])
        for k in list(s.images):
            del s.images[k]
        for k in list(s.shapes):
            del s.shapes[k]
        del s.tables["table"]
        for k, v in new.images.items():
            s.images[k] = v
        for k, v in new.shapes.items():
            s.shapes[k] = v
        s.tables["table"] = new.tables["table"]

    return f


def _swap_xy(s):
    g = s.shapes["S1_spots"]
    import geopandas as gpd
    from shapely.geometry import Point

    s.shapes["S1_spots"] = s.shapes["S1_spots"].assign(geometry=gpd.GeoSeries([Point(p.y, p.x) for p in g.geometry]))


def _del(kind, key):
    def f(s):
        del getattr(s, kind)[key]

    return f


def _radius(v):
    def f(s):
        s.shapes["S1_spots"]["radius"] = v

    return f


def _move_spot(s):
    from shapely.geometry import Point

    g = s.shapes["S1_spots"].geometry.copy()
    g.iloc[3] = Point(5000.0, 10.0)
    s.shapes["S1_spots"].geometry = g


PROBLEMS = {
    "duplicate_spot_id": (
        _set_obs("spot_id", _dup_first),
        r"section 'S1': obs\['spot_id'\] repeats spot id\(s\) \[0\]",
    ),
    "unknown_spot_id": (_set_obs("spot_id", lambda a: a + 1000), r"obs\['spot_id'\] holds ids missing from 'S1_spots'"),
    "image_um_scale_disagrees": (
        _set_um("S1", 2.0),
        r"image 'S1_hne' is 10 µm/px but the spots 'S1_spots' are 5 µm/px",
    ),
    "image_um_scale_slightly_off": (_set_um("S1", 1.01), r"image 'S1_hne' is 5.05 µm/px but the spots"),
    "image_without_um": (_drop_um("images"), r"image 'S1_hne' has no transformation to the coordinate system 'S1_um'"),
    "spots_without_um": (_drop_um("shapes"), r"shapes 'S1_spots' has no transformation to the coordinate system"),
    "anisotropic_pixels": (_anisotropic, r"anisotropic pixels"),
    "pixel_size_3x_off_grid": (_rebuild(mpp=15.0), r"section 'S1': `pixel size`=15 µm/px disagrees .* more than 2×"),
    "pixel_size_4x_small": (_rebuild(mpp=1.25), r"`pixel size`=1.25 µm/px disagrees .*\(0.25×\)"),
    "visium_pixel_size_3x_off": (
        _rebuild(grid="hex", technology="visium", mpp=15.0),
        r"section 'S1': `pixel size`=15 µm/px .*hex lattice.* more than 2×",
    ),
    "swapped_xy": (_swap_xy, r"section 'S1': the spot centres' x follows array_row .* look swapped"),
    "no_image": (_del("images", "S1_hne"), r"section 'S1': no image element 'S1_hne'"),
    "no_spots": (_del("shapes", "S1_spots"), r"section 'S1': no shapes element 'S1_spots'"),
    "zero_radius": (_radius(0.0), r"'S1_spots' must be circles with a positive 'radius'"),
    "nan_radius": (_radius(np.nan), r"'S1_spots' must be circles with a positive 'radius'"),
    "spot_outside_image": (_move_spot, r"section 'S1': 1 spot centre\(s\) lie outside the 300×300 px image"),
    "negative_count": (_counts(_pt(0, 0, -1)), r"table.X holds negative values"),
    "fractional_count": (_counts(_pt(0, 0, 0.5)), r"table.X holds non-integer or non-finite values"),
    "nan_count": (_counts(_pt(0, 0, np.nan)), r"table.X holds non-integer or non-finite values"),
    "inf_layer_count": (_counts(_pt(0, 0, np.inf), "counts"), r"table.layers\['counts'\] holds non-integer"),
    "no_counts_layer": (lambda s: _table(s).layers.pop("counts"), r"table.layers\['counts'\] is missing"),
    "region_mismatch": (
        _set_obs("region", lambda a: np.where(a == "S1_spots", "S2_spots", a)),
        r"section 'S1': table rows annotate \['S2_spots'\] instead of 'S1_spots'",
    ),
}


@pytest.mark.parametrize("case", list(PROBLEMS))
def test_validate_reports(sdata, case):
    mutate, match = PROBLEMS[case]
    mutate(sdata)
    before = snapshot(sdata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.raises(ValidationError, match=match):
            gd.io.validate(sdata)
    assert snapshot(sdata) == before


FATAL = {
    "no_table": (lambda s: s.tables.pop("table"), r"`table_key`='table' is not in `sdata.tables`"),
    "no_section_column": (
        lambda s: _table(s).obs.pop("section"),
        r"table.obs lacks required column\(s\) \['section'\]",
    ),
    "no_array_row": (lambda s: _table(s).obs.pop("array_row"), r"lacks required column\(s\) \['array_row'\]"),
    "no_patient": (lambda s: _table(s).obs.pop("patient"), r"lacks required column\(s\) \['patient'\]"),
}


@pytest.mark.parametrize("case", list(FATAL))
def test_validate_refuses_broken_tables(sdata, case):
    mutate, match = FATAL[case]
    mutate(sdata)
    with pytest.raises(ValidationError, match=match):
        gd.io.validate(sdata)


def test_validate_lists_every_problem(sdata):
    _set_obs("spot_id", _dup_first)(sdata)
    _counts(_pt(0, 0, -1))(sdata)
    with pytest.raises(ValidationError) as e:
        gd.io.validate(sdata)
    assert "repeats spot id(s)" in str(e.value) and "negative values" in str(e.value)


@pytest.mark.parametrize(
    ("kw", "ratio"),
    [({"mpp": 6.0}, "1.20×"), ({"mpp": 4.0}, "0.80×"), ({"grid": "hex", "technology": "visium", "mpp": 6.5}, "1.30×")],
)
def test_pixel_size_somewhat_off_is_a_warning(kw, ratio):
    sdata = build_sdata([_section("S1", **kw)])
    with pytest.warns(UserWarning, match=rf"section 'S1': `pixel size`=.* disagrees .*\({ratio}\), beyond the 15%"):
        gd.io.validate(sdata)


ALLOWED = {
    "square_st": {},
    "visium_hex": {"grid": "hex", "technology": "visium"},
    "pixel_size_10pct_off": {"mpp": 5.5},
    "other_technology_not_judged": {"grid": "hex", "technology": "visium_hd", "mpp": 15.0},
    "unknown_technology_not_judged": {"technology": "unknown", "mpp": 15.0},
}


@pytest.mark.parametrize("case", list(ALLOWED))
def test_valid_objects_pass_silently(case):
    sdata = build_sdata([_section("S1", **ALLOWED[case])])
    before = snapshot(sdata)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gd.io.validate(sdata)
    assert snapshot(sdata) == before


def test_visium_image_turned_by_90_degrees_is_judged_turned():
    """Space Ranger accepts images in any orientation: Visium columns may run along y. Not "swapped"; the pixel
    size is judged on the turned grid."""
    sec = _section("S1", grid="hex", technology="visium")
    sec.xy = sec.xy[:, ::-1].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gd.io.validate(build_sdata([sec]))
    sec.pixel_size = 15.0
    with pytest.raises(ValidationError, match=r"`pixel size`=15 µm/px disagrees .* more than 2×"):
        gd.io.validate(build_sdata([sec]))


def test_arbitrary_array_positions_are_not_judged():
    """Grids whose array positions do not explain the centres (hand-built sections, H&E-only grids) are allowed:
    the check needs a fit with R² ≥ 0.95 to say anything."""
    sec = _section("S1")
    sec.array_row = np.random.default_rng(0).permutation(sec.array_row)
    sdata = build_sdata([sec])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gd.io.validate(sdata)


def test_he_only_section_needs_no_counts(sdata):
    _table(sdata).layers.pop("counts")
    gd.io.validate(sdata, require_counts=False)


@pytest.mark.parametrize("preset", ["tiny"])
@pytest.mark.parametrize("grid", ["st", "visium"])
def test_synthetic_data_is_valid(preset, grid):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        gd.io.validate(gd.datasets.synthetic(preset=preset, grid=grid))


def test_build_sdata_refuses_duplicate_section_names():
    with pytest.raises(ValueError, match=r"section names must be unique"):
        build_sdata([_section("S1"), _section("S1")])


def test_duplicate_barcodes_within_a_section_are_reported():
    sec = _section("S1")
    sec.barcodes = ["same"] * len(sec.xy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # anndata's own "obs names not unique"
        sdata = build_sdata([sec])
    with pytest.raises(ValidationError, match=r"table.obs_names repeat \['S1_same'\]"):
        gd.io.validate(sdata)
