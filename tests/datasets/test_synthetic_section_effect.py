"""``synthetic(section_effect=, section_stain=)``: per-section expression shifts and staining, default unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import genedml as gd

KW = {"preset": "tiny", "n_sections": 3, "n_patients": 1, "seed": 4}


def _counts(sdata):
    X = sdata.tables["table"].X
    return X.toarray() if sp.issparse(X) else np.asarray(X)


def _image(sdata, section="S1"):
    return np.asarray(sdata.images[f"{section}_hne"].data)


@pytest.fixture(scope="module")
def plain():
    return gd.datasets.synthetic(**KW)


@pytest.fixture(scope="module")
def shifted():
    return gd.datasets.synthetic(**KW, section_effect=1.0)


def test_zero_is_the_default_output():
    tiny = gd.datasets.synthetic(preset="tiny", seed=0)  # not the shared fixture: other tests add columns to it
    same = gd.datasets.synthetic(preset="tiny", seed=0, section_effect=0.0, section_stain=0)
    a, b = tiny.tables["table"], same.tables["table"]
    assert np.array_equal(_counts(tiny), _counts(same))
    for key in a.obsm:
        assert np.array_equal(a.obsm[key], b.obsm[key])
    assert a.obs.equals(b.obs)
    for s in gd.io.sections(tiny):
        assert np.array_equal(_image(tiny, s), _image(same, s))
    truth = b.uns["genedml"]["synthetic"]
    assert set(truth) == set(a.uns["genedml"]["synthetic"])
    assert "section_effect" not in truth and "section_stain" not in truth
    assert truth["formula"] == a.uns["genedml"]["synthetic"]["formula"]


def test_shift_shape_and_seeded_determinism(shifted):
    truth = shifted.tables["table"].uns["genedml"]["synthetic"]
    delta = truth["section_effect"]
    assert delta.shape == (3, shifted.tables["table"].n_vars) and truth["section_effect_sd"] == 1.0
    assert "section_effect[section]" in truth["formula"]
    again = gd.datasets.synthetic(**KW, section_effect=1.0)
    assert np.array_equal(_counts(again), _counts(shifted))
    assert np.array_equal(again.tables["table"].uns["genedml"]["synthetic"]["section_effect"], delta)
    other = gd.datasets.synthetic(**{**KW, "seed": 5}, section_effect=1.0)
    assert not np.allclose(other.tables["table"].uns["genedml"]["synthetic"]["section_effect"], delta)


def test_shift_is_in_the_counts_with_the_requested_sd(plain, shifted):
    """Per section and gene, log(mean counts with the effect / without it) recovers the drawn shift, whose s.d. is
    the requested one; the image-predictable truth and the images are untouched."""
    table = shifted.tables["table"]
    delta = table.uns["genedml"]["synthetic"]["section_effect"]
    sec = table.obs["section"].astype(str).to_numpy()
    with_, without = _counts(shifted).astype(float), _counts(plain).astype(float)
    est, true = [], []
    for i, s in enumerate(gd.io.sections(shifted)):
        m = sec == s
        a, b = with_[m].mean(axis=0), without[m].mean(axis=0)
        ok = (a > 3) & (b > 3)  # well-measured genes
        est.append(np.log(a[ok] / b[ok]))
        true.append(delta[i][ok])
    est, true = np.concatenate(est), np.concatenate(true)
    assert len(est) > 60
    assert np.corrcoef(est, true)[0, 1] > 0.9
    assert 0.75 < est.std() < 1.25  # about the requested s.d. (1.0)
    assert np.array_equal(table.obsm["synthetic_logmu"], plain.tables["table"].obsm["synthetic_logmu"])
    assert np.array_equal(_image(shifted), _image(plain))


def test_section_stain_changes_the_image_only(plain):
    stained = gd.datasets.synthetic(**KW, section_stain=0.3)
    factors = stained.tables["table"].uns["genedml"]["synthetic"]["section_stain"]
    assert factors.shape == (3, 2) and np.all(factors > 0) and not np.allclose(factors, 1.0)
    assert np.array_equal(_counts(stained), _counts(plain))
    assert stained.tables["table"].obs.equals(plain.tables["table"].obs)
    # with this seed S2 has both factors > 1: more stain, a darker image (lower mean RGB) than without them
    assert factors[1].min() > 1.1
    assert _image(stained, "S2").astype(float).mean() < _image(plain, "S2").astype(float).mean() - 2
    for s in gd.io.sections(plain):
        assert not np.array_equal(_image(stained, s), _image(plain, s))


@pytest.mark.parametrize(
    ("kw", "msg"),
    [
        ({"section_effect": -0.1}, "section_effect"),
        ({"section_effect": "big"}, "section_effect"),
        ({"section_effect": 5.0}, "section_effect"),
        ({"section_stain": True}, "section_stain"),
        ({"section_stain": 2.0}, "section_stain"),
    ],
)
def test_bad_values_are_named(kw, msg):
    with pytest.raises(ValueError, match=msg):
        gd.datasets.synthetic(preset="tiny", **kw)
