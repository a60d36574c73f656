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
    tr, va, level = inner_validation_split(np.array(list("PPQQ")), np.array(list("abcd")), seed=0)
    assert level == "patient" and len(set(np.array(list("PPQQ"))[va])) == 1
    tr, va, level = inner_validation_split(np.array(list("PPPP")), np.array(list("aabb")), seed=0)
    assert level == "section" and not set(np.array(list("aabb"))[tr]) & set(np.array(list("aabb"))[va])
    tr, va, level = inner_validation_split(np.array(["P"] * 10), np.array(["a"] * 10), seed=0, val_fraction=0.3)
    assert level == "spot" and len(va) == 3 and not set(tr) & set(va)


def _data(n_per=(5, 4), T=3, D=6, G=2, variants=False):
    rng = np.random.default_rng(0)
    sec = _section(n_per)
    n = len(sec)
    tgt = rng.normal(size=(8, n, T, D) if variants else (n, T, D)).astype(np.float16)
    pos = np.concatenate([np.stack([np.arange(k), np.zeros(k)], 1) for k in n_per]).astype(int)
    return SpotData(
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
    np.testing.assert_allclose(b.target[1].numpy(), d.target[3, 2].astype(np.float32))
    sub = d.subset(np.array([5, 6, 7, 8]))
    assert sub.section_names == ["b"] and len(sub) == 4 and sub.target.shape[:2] == (8, 4)


def test_spotdata_rejects_bad_input():
    d = _data()
    with pytest.raises(ValueError, match="NaN"):
        SpotData(**{**{k: v for k, v in d.__dict__.items() if not k.startswith("_")}, "y": np.full_like(d.y, np.nan)})
    bad = {k: v for k, v in d.__dict__.items() if not k.startswith("_")}
    bad["pos"] = bad["pos"][:-1]
    with pytest.raises(ValueError, match="disagree"):
        SpotData(**bad)
