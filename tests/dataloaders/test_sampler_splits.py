import numpy as np
import pytest

from genedml.dataloaders import (
    SectionBatchSampler,
    SpotData,
    group_kfold,
    inner_validation_split,
    leave_one_group_out,
)


def _section(n_per=(10, 7, 5)):
    return np.concatenate([np.full(n, i) for i, n in enumerate(n_per)])


def test_sampler_covers_every_spot_once_per_epoch():
    sec = _section()
    s = SectionBatchSampler(sec, batch_size=4, shuffle=True, seed=1)
    rows = np.concatenate([np.array(b) for b in s])
    assert sorted(rows.tolist()) == list(range(len(sec)))
    s.set_epoch(1)
    rows2 = np.concatenate([np.array(b) for b in s])
    assert not np.array_equal(rows, rows2)  # reshuffled per epoch


def test_sampler_bounds_sections_per_batch():
    sec = _section()
    s = SectionBatchSampler(sec, batch_size=6, sections_per_batch=1, seed=0)
    for b in s:
        assert len(np.unique(sec[b])) == 1
    s2 = SectionBatchSampler(sec, batch_size=50, sections_per_batch=2, seed=0)
    assert all(len(np.unique(sec[b])) <= 2 for b in s2)


def test_sampler_ddp_shards_are_disjoint_and_equal_length():
    sec = _section((9, 9, 9))
    shards = [list(SectionBatchSampler(sec, batch_size=4, seed=3, rank=r, world_size=2)) for r in (0, 1)]
    assert len(shards[0]) == len(shards[1])
    all_rows = np.concatenate([np.concatenate(s) for s in shards])
    assert set(all_rows.tolist()) == set(range(27))


def test_sampler_bad_args():
    with pytest.raises(ValueError, match="batch_size"):
        SectionBatchSampler(_section(), batch_size=0)
    with pytest.raises(ValueError, match="sections_per_batch"):
        SectionBatchSampler(_section(), batch_size=2, sections_per_batch=0)


def test_leave_one_group_out_and_kfold_have_no_overlap():
    groups = np.array(list("AABBBCCD"))
    folds = leave_one_group_out(groups)
    assert [f[2] for f in folds] == ["A", "B", "C", "D"]
    for tr, te, g in folds:
        assert set(groups[te]) == {g} and g not in set(groups[tr])
    kf = group_kfold(groups, k=2, seed=0)
    tested = np.concatenate([te for _, te, _ in kf])
    assert sorted(tested.tolist()) == list(range(len(groups)))
    for tr, te, _ in kf:
        assert not set(groups[tr]) & set(groups[te])
    with pytest.raises(ValueError, match="`k`"):
        group_kfold(groups, k=5)


def test_inner_validation_levels():
    # many patients: whole patients (round(0.2 · 5) = 1)
    pats = np.repeat(list("PQRST"), 2)
    tr, va, level = inner_validation_split(pats, np.arange(10).astype(str), seed=0)
    assert level == "patient" and len(set(pats[va])) == 1 and not set(pats[tr]) & set(pats[va])
    # few patients with several sections: a section of every patient, never all of one patient's sections
    pats, secs = np.array(list("PPPPQQ")), np.array(list("aabbcd"))
    tr, va, level = inner_validation_split(pats, secs, seed=0)
    assert level == "section" and set(pats[va]) == {"P", "Q"} and set(pats[tr]) == {"P", "Q"}
    assert not set(secs[tr]) & set(secs[va])
    # one section: a random share of spots without coordinates (the documented last resort)
    tr, va, level = inner_validation_split(np.array(["P"] * 10), np.array(["a"] * 10), seed=0, val_fraction=0.3)
    assert level == "spot" and len(va) == 3 and not set(tr) & set(va)


def test_inner_validation_keeps_both_patients_of_a_two_patient_cohort():
    """The shared HER2ST layout: one patient with one section (B4), one with four (C2–C5). Every seed trains on
    both patients (the old rule trained on B4 alone or on C alone) and validates on both."""
    rng = np.random.default_rng(0)
    sizes = {"B4": 280, "C2": 170, "C3": 180, "C4": 190, "C5": 190}
    secs = np.concatenate([[s] * n for s, n in sizes.items()])
    pats = np.array([s[0] for s in secs])
    coords = np.concatenate([np.stack([rng.permutation(n) // 20, rng.permutation(n) % 20], 1) for n in sizes.values()])
    b4 = secs == "B4"
    side = 17
    coords[b4] = np.stack(np.divmod(np.arange(b4.sum()), side), 1)  # a contiguous grid
    for seed in range(6):
        tr, va, level = inner_validation_split(pats, secs, seed=seed, coords=coords)
        assert level == "section+block"
        assert set(pats[tr]) == {"B", "C"} and set(pats[va]) == {"B", "C"}
        held_c = set(secs[va]) - {"B4"}
        assert len(held_c) == 1 and not held_c & set(secs[tr])  # one whole C section
        vb = va[secs[va] == "B4"]
        assert abs(len(vb) - 0.2 * b4.sum()) <= 1
        # the block is contiguous (its spots lie within a disc) and a one-step buffer separates it from training
        c_val = coords[vb]
        tb = tr[secs[tr] == "B4"]
        gap = np.abs(coords[tb][:, None, :] - c_val[None, :, :])
        assert not ((gap[..., 0] <= 1) & (gap[..., 1] <= 1)).any()
        assert len(tr) + len(va) < len(secs)  # the buffer is in neither set
        spread = np.ptp(c_val, axis=0)
        assert spread.max() <= 2 * np.sqrt(len(vb)) + 2


def test_inner_validation_errors():
    with pytest.raises(ValueError, match="coords"):
        inner_validation_split(np.array(list("PP")), np.array(list("ab")), coords=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="val_fraction"):
        inner_validation_split(np.array(list("PP")), np.array(list("ab")), val_fraction=1.0)


def _data(n_per=(5, 4), T=3, D=6, G=2, variants=False):
    rng = np.random.default_rng(0)
    sec = _section(n_per)
    n = len(sec)
    tgt = rng.normal(size=(8, n, T, D) if variants else (n, T, D)).astype(np.float16)
    pos = np.concatenate([np.stack([np.arange(k), np.zeros(k)], 1) for k in n_per]).astype(int)
    return SpotData.dense(
        target=tgt,
        neighbor=rng.normal(size=(n, 25, D)).astype(np.float32),
        neighbor_mask=np.ones((n, 25), bool),
        global_feats=rng.normal(size=(n, D)).astype(np.float32),
        pos=pos,
        section=sec,
        section_names=["a", "b"],
        y=rng.normal(size=(n, G)).astype(np.float32),
    )


def test_batch_gathers_whole_sections_for_the_global_encoder():
    d = _data()
    b = d.batch([0, 6, 7])
    assert len(b.section_feats) == 2
    assert b.section_feats[0].shape == (5, 6) and b.section_feats[1].shape == (4, 6)
    assert b.section_of.tolist() == [0, 1, 1] and b.spot_of.tolist() == [0, 1, 2]
    np.testing.assert_allclose(b.section_feats[1][b.spot_of[1]].numpy(), d.global_feats[6])
    b1 = d.batch([7])
    assert len(b1.section_feats) == 1 and b1.section_of.tolist() == [0]


def test_batch_variants_and_subset():
    d = _data(variants=True)
    b = d.batch([1, 2], variants=np.array([0, 3]))
    np.testing.assert_allclose(b.target[1].numpy(), d.target_variants[3][2].astype(np.float32))
    sub = d.subset(np.array([5, 6, 7, 8]))
    assert sub.section_names == ["b"] and len(sub) == 4 and sub.n_variants == 8 and len(sub.target_variants[7]) == 4
    np.testing.assert_allclose(sub.batch([1], variants=np.array([7])).target[0].numpy(), d.target_variants[7][6])


def test_batch_gathers_shared_tiles_through_the_index():
    """A tile stored once serves every spot that points to it; masked tiles are zero."""
    from genedml.features import Rows

    tiles = Rows([np.arange(6, dtype=np.float32).reshape(3, 2), np.full((2, 2), 9, np.float32)])  # 5 tiles
    d = SpotData(
        target=None,
        tiles=tiles,
        global_index=np.array([0, 1, 2]),
        neighbor_index=np.array([[0, 3, -1], [3, 4, 1], [4, -1, -1]]),
        pos=np.zeros((3, 2), int),
        section=np.zeros(3, int),
        section_names=["s"],
    )
    b = d.batch([2, 1])
    np.testing.assert_array_equal(b.neighbor_mask.numpy(), [[True, False, False], [True, True, True]])
    np.testing.assert_array_equal(b.neighbor[1].numpy(), [[9, 9], [9, 9], [2, 3]])
    assert (b.neighbor[0, 1:] == 0).all()
    np.testing.assert_array_equal(d.neighbor_mean(chunk=2)[0], [4.5, 5.0])
    np.testing.assert_array_equal(d.subset(np.array([2])).global_feats, [[4, 5]])


def test_spotdata_rejects_bad_input():
    d = _data()
    with pytest.raises(ValueError, match="NaN"):
        SpotData(**{**{k: v for k, v in d.__dict__.items() if not k.startswith("_")}, "y": np.full_like(d.y, np.nan)})
    bad = {k: v for k, v in d.__dict__.items() if not k.startswith("_")}
    bad["pos"] = bad["pos"][:-1]
    with pytest.raises(ValueError, match="disagree"):
        SpotData(**bad)
