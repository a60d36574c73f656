from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import genedml as gd
from genedml.datasets import _synthetic as syn

REGIONS = ["tumour", "stroma", "immune", "fat"]


def _table(sdata):
    return sdata.tables["table"]


def _dense(X):
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _normalised(table):
    X = _dense(table.X).astype(float)
    return np.log1p(X / np.maximum(X.sum(1, keepdims=True), 1) * 1e4)


def _image(sdata, section):
    return np.asarray(sdata.images[f"{section}_hne"].data.compute())


def _spot_rgb(sdata, section):
    """Mean RGB inside each spot of a section (table order)."""
    img = _image(sdata, section).astype(float)
    xy = gd.io.spot_centers(sdata, section)
    r = float(sdata.shapes[f"{section}_spots"]["radius"].iloc[0])
    k = int(np.ceil(r))
    dy, dx = np.mgrid[-k : k + 1, -k : k + 1]
    out = []
    for x, y in np.rint(xy).astype(int):
        patch = img[:, y - k : y + k + 1, x - k : x + k + 1]
        disk = (dy**2 + dx**2 <= r**2)[: patch.shape[1], : patch.shape[2]]
        out.append(patch[:, disk].mean(axis=1))
    return np.array(out)


@pytest.fixture(scope="module")
def tiny4_rgb(tiny4):
    return {s: _spot_rgb(tiny4, s) for s in gd.io.sections(tiny4)}


# ------------------------------------------------------------------------------------------------ structure


def test_tiny_preset_follows_the_data_model(tiny):
    gd.io.validate(tiny)
    table = _table(tiny)
    assert gd.io.sections(tiny) == ["S1", "S2"]
    assert list(table.obs["patient"].cat.categories) == ["P1", "P2"]
    assert table.n_vars == 50
    per_section = table.obs.groupby("section", observed=True).size()
    assert per_section.between(30, 60).all(), per_section.to_dict()
    for s in ("S1", "S2"):
        img = tiny.images[f"{s}_hne"].data
        assert img.dtype == np.uint8 and img.shape[0] == 3 and max(img.shape[1:]) <= 1000
        assert gd.io.pixel_size(tiny, s) == pytest.approx(2.0)
    X = _dense(table.X)
    assert np.issubdtype(X.dtype, np.integer) and X.min() >= 0 and X.sum() > 0
    assert "region" in table.obs and set(table.obs["region"]) == {"S1_spots", "S2_spots"}  # spatialdata's key


def test_truth_is_recorded(tiny):
    table = _table(tiny)
    obs = table.obs
    truth = table.uns["genedml"]["synthetic"]
    assert list(truth["regions"]) == REGIONS and truth["seed"] == 0 and truth["preset"] == "tiny"
    assert list(obs["tissue_region"].cat.categories) == REGIONS
    fractions = obs[[f"{r}_fraction" for r in REGIONS]].to_numpy()
    np.testing.assert_allclose(fractions.sum(1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(REGIONS)[fractions.argmax(1)], obs["tissue_region"].astype(str))
    assert (obs["tissue_fraction"] >= 0.5).all()
    assert table.obsm["synthetic_logmu"].shape == (table.n_obs, table.n_vars)
    assert truth["region_effects"].shape == (table.n_vars, 4) and truth["latent_loadings"].shape[0] == table.n_vars
    # the recorded map reproduces the recorded expected log-mean exactly
    z = (obs[list(truth["covariates"])].to_numpy() - truth["covariate_center"]) / truth["covariate_scale"]
    logmu = truth["baseline"] + fractions @ truth["region_effects"].T + z @ truth["covariate_coef"].T
    np.testing.assert_allclose(table.obsm["synthetic_logmu"], logmu, rtol=1e-4, atol=1e-4)


def test_marker_genes_come_first_then_generic_names():
    table = _table(gd.datasets.synthetic(preset="tiny", n_sections=1, n_patients=1, n_genes=120))
    names = list(table.var_names)
    assert names[:4] == ["ERBB2", "CD74", "COL1A1", "ADIPOQ"]
    assert {"GNAS", "FASN", "KRT19", "IGKC", "PTPRC"} <= set(names)
    assert names[-1] == f"GENE_{sum(n.startswith('GENE_') for n in names):04d}"
    roles = set(table.var["synthetic_role"])
    assert {"tumour", "stroma", "immune", "fat", "housekeeping"} <= roles and roles & {"strong", "weak", "noise"}


def test_uns_and_obsm_survive_h5ad_round_trip(tiny, tmp_path):
    import anndata as ad

    path = tmp_path / "t.h5ad"
    _table(tiny).write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(
        back.uns["genedml"]["synthetic"]["region_effects"], _table(tiny).uns["genedml"]["synthetic"]["region_effects"]
    )
    np.testing.assert_array_equal(back.obsm["synthetic_logmu"], _table(tiny).obsm["synthetic_logmu"])


# ------------------------------------------------------------------------------------------------ determinism


def test_same_seed_same_object_and_different_seed_differs(tiny):
    again = gd.datasets.synthetic(preset="tiny", seed=0)
    other = gd.datasets.synthetic(preset="tiny", seed=1)
    for s in ("S1", "S2"):
        assert _image(again, s).tobytes() == _image(tiny, s).tobytes()
        assert _image(other, s).tobytes() != _image(tiny, s).tobytes()
    assert (_table(again).X != _table(tiny).X).nnz == 0
    np.testing.assert_array_equal(_table(again).obsm["spatial"], _table(tiny).obsm["spatial"])
    assert _table(other).n_obs != _table(tiny).n_obs or (_table(other).X != _table(tiny).X).nnz > 0


def test_toy_is_the_tiny_preset(tiny):
    toy = gd.datasets.toy()
    assert (_table(toy).X != _table(tiny).X).nnz == 0
    assert _image(toy, "S1").tobytes() == _image(tiny, "S1").tobytes()


def test_lazy_image_equals_eager_image(tiny):
    lazy = gd.datasets.synthetic(preset="tiny", seed=0, lazy=True)
    for s in ("S1", "S2"):
        data = lazy.images[f"{s}_hne"].data
        assert len(data.chunks[1]) > 1 or len(data.chunks[2]) > 1 or max(data.shape) <= syn._BLOCK
        assert _image(lazy, s).tobytes() == _image(tiny, s).tobytes()
    assert (_table(lazy).X != _table(tiny).X).nnz == 0


# ------------------------------------------------------------------------------------------------ sizes


def test_explicit_arguments_override_the_preset():
    sdata = gd.datasets.synthetic(preset="tiny", n_sections=3, n_patients=1, n_genes=20, spots_per_side=6, seed=2)
    table = _table(sdata)
    assert gd.io.sections(sdata) == ["S1", "S2", "S3"] and set(table.obs["patient"]) == {"P1"}
    assert table.n_vars == 20
    assert table.obs.groupby("section", observed=True).size().max() <= 36
    big = gd.datasets.synthetic(preset="tiny", n_sections=1, n_patients=1, spots_per_side=12, seed=2)
    small = gd.datasets.synthetic(preset="tiny", n_sections=1, n_patients=1, spots_per_side=7, seed=2)
    assert _table(big).n_obs > 2 * _table(small).n_obs
    assert big.images["S1_hne"].data.shape[1] > small.images["S1_hne"].data.shape[1]
    fine = gd.datasets.synthetic(preset="tiny", n_sections=1, n_patients=1, spots_per_side=7, pixel_size=4.0, seed=2)
    assert fine.images["S1_hne"].data.shape[1] == pytest.approx(small.images["S1_hne"].data.shape[1] / 2, abs=1)


def test_patients_split_sections_in_runs(tiny4):
    obs = _table(tiny4).obs.drop_duplicates("section")
    assert dict(zip(obs["section"].astype(str), obs["patient"].astype(str))) == {
        "S1": "P1",
        "S2": "P1",
        "S3": "P2",
        "S4": "P2",
    }


# ------------------------------------------------------------------------------------------------ geometry


def test_st_grid_geometry(tiny):
    table = _table(tiny)
    sec = table.obs["section"] == "S1"
    rows, cols = table.obs.loc[sec, "array_row"].to_numpy(), table.obs.loc[sec, "array_col"].to_numpy()
    xy = table.obsm["spatial"][sec.to_numpy()]
    pitch_px = 200.0 / 2.0
    np.testing.assert_allclose(xy[:, 0] - xy[:, 0].min(), (cols - cols.min()) * pitch_px)
    np.testing.assert_allclose(xy[:, 1] - xy[:, 1].min(), (rows - rows.min()) * pitch_px)
    assert tiny.shapes["S1_spots"]["radius"].iloc[0] == pytest.approx(50.0 / 2.0)
    meta = table.uns["genedml"]["sections"]["S1"]
    assert (meta["pitch_um"], meta["spot_diameter_um"], meta["technology"]) == (200.0, 100.0, "st")


def test_visium_grid_geometry():
    sdata = gd.datasets.synthetic(preset="tiny", grid="visium", n_sections=1, n_patients=1, pixel_size=2.5)
    gd.io.validate(sdata)
    table = _table(sdata)
    rows, cols = table.obs["array_row"].to_numpy(), table.obs["array_col"].to_numpy()
    xy = table.obsm["spatial"]
    assert ((rows % 2) == (cols % 2)).all()  # array_col steps by 2, odd rows on odd columns
    ps, pitch = 2.5, 100.0
    x0, y0 = xy[:, 0] - cols * pitch / 2 / ps, xy[:, 1] - rows * pitch * np.sqrt(3) / 2 / ps
    np.testing.assert_allclose(x0, x0[0]) and np.testing.assert_allclose(y0, y0[0])
    d = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1)) + np.eye(len(xy)) * 1e9
    np.testing.assert_allclose(d.min(1), pitch / ps, rtol=1e-6)  # six neighbours at one pitch
    assert sdata.shapes["S1_spots"]["radius"].iloc[0] == pytest.approx(27.5 / ps)
    meta = table.uns["genedml"]["sections"]["S1"]
    assert (meta["pitch_um"], meta["spot_diameter_um"], meta["technology"]) == (100.0, 55.0, "visium")
    assert table.n_obs > 3 * 50  # a Visium grid over the tiny area holds ~4x the ST spots


# ------------------------------------------------------------------------------------------------ biology


def test_marker_genes_follow_regions(tiny4):
    table = _table(tiny4)
    norm = _normalised(table)
    region = table.obs["tissue_region"].astype(str).to_numpy()

    def mean(gene, reg):
        return norm[region == reg, list(table.var_names).index(gene)].mean()

    assert mean("ERBB2", "tumour") > mean("ERBB2", "stroma") + 0.5
    assert mean("COL1A1", "stroma") > mean("COL1A1", "tumour") + 0.5
    assert mean("CD74", "immune") > mean("CD74", "stroma") + 0.5
    assert mean("ADIPOQ", "fat") > mean("ADIPOQ", "tumour") + 1.0
    effects = table.uns["genedml"]["synthetic"]["region_effects"]
    assert effects[list(table.var_names).index("ERBB2")].argmax() == REGIONS.index("tumour")


def test_counts_correlate_with_recorded_means(tiny4):
    from scipy.stats import spearmanr

    table = _table(tiny4)
    norm, logmu = _normalised(table), table.obsm["synthetic_logmu"]
    varied = np.flatnonzero(logmu.std(0) > 0.5)
    assert len(varied) >= 10
    rho = np.array([spearmanr(norm[:, j], logmu[:, j])[0] for j in varied])
    assert np.median(rho) > 0.6
    noise = np.flatnonzero(table.var["synthetic_role"].to_numpy() == "noise")
    assert np.allclose(logmu[:, noise].std(0), 0)  # pure-noise genes have no image-predictable part


def test_image_colours_follow_regions(tiny4, tiny4_rgb):
    table = _table(tiny4)
    rgb = np.concatenate([tiny4_rgb[s] for s in gd.io.sections(tiny4)])
    region = table.obs["tissue_region"].astype(str).to_numpy()
    lum = rgb.mean(1)
    # tumour nests and lymphoid aggregates (nuclei-dense, purple) are darker than stroma; fat is near white
    assert lum[region == "tumour"].mean() < lum[region == "stroma"].mean() - 15
    assert lum[region == "immune"].mean() < lum[region == "stroma"].mean() - 15
    assert lum[region == "fat"].mean() > lum[region == "stroma"].mean() + 15
    # haematoxylin makes tumour bluer relative to red than eosin-rich stroma
    ratio = rgb[:, 2] / rgb[:, 0]
    assert ratio[region == "tumour"].mean() > ratio[region == "stroma"].mean()
    nuclei = table.obs["nuclei_density"].to_numpy()
    assert np.corrcoef(nuclei, lum)[0, 1] < -0.5


def test_background_is_near_white_and_stroma_is_pink(tiny):
    img = _image(tiny, "S1").astype(float)
    corner = img[:, :20, :20].reshape(3, -1).mean(1)
    assert corner.min() > 215
    rgb = _spot_rgb(tiny, "S1")[_table(tiny).obs.query("section == 'S1'")["tissue_region"].astype(str) == "stroma"]
    r, g, b = rgb.mean(0)
    assert r > g + 30 and b > g  # pink/magenta: green absorbed by eosin


def test_regions_are_spatially_coherent(tiny4):
    obs = _table(tiny4).obs
    same = []
    for _, grp in obs.groupby("section", observed=True):
        pos = {(r, c): reg for r, c, reg in zip(grp["array_row"], grp["array_col"], grp["tissue_region"].astype(str))}
        for (r, c), reg in pos.items():
            nbrs = [pos[k] for k in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)) if k in pos]
            same += [n == reg for n in nbrs]
    freq = obs["tissue_region"].value_counts(normalize=True).to_numpy()
    assert np.mean(same) > (freq**2).sum() + 0.15  # far above what independent labels would give


def test_stain_differs_between_patients_more_than_within(tiny4, tiny4_rgb):
    table = _table(tiny4)
    means = {}
    for s in gd.io.sections(tiny4):
        stroma = (table.obs.query("section == @s")["tissue_region"] == "stroma").to_numpy()
        means[s] = tiny4_rgb[s][stroma].mean(0)
    within = np.abs(means["S1"] - means["S2"]).sum() + np.abs(means["S3"] - means["S4"]).sum()
    between = np.abs(means["S1"] - means["S3"]).sum() + np.abs(means["S2"] - means["S4"]).sum()
    assert between > within


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"preset": "huge"}, "`preset`"),
        ({"grid": "hex"}, "`grid`"),
        ({"n_sections": 0}, "`n_sections`"),
        ({"n_genes": -1}, "`n_genes`"),
        ({"n_genes": 2.5}, "`n_genes`"),
        ({"n_sections": 1, "n_patients": 2}, "`n_patients`"),
        ({"spots_per_side": 2}, "`spots_per_side`"),
        ({"pixel_size": 0}, "`pixel_size`"),
        ({"seed": -1}, "`seed`"),
        ({"seed": True}, "`seed`"),
        ({"lazy": "yes"}, "`lazy`"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gd.datasets.synthetic(**{"preset": "tiny", **kwargs})


def test_eager_rendering_of_a_huge_image_is_refused():
    with pytest.raises(ValueError, match="lazy=True"):
        gd.datasets.synthetic(preset="large", lazy=False)
