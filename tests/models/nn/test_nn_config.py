from __future__ import annotations

import dataclasses
import json

import pytest

from genedml.models._config import GeneDMLConfig


def test_defaults_are_the_her2st_paper_values():
    cfg = GeneDMLConfig()
    assert cfg == GeneDMLConfig.preset("her2st")
    assert (cfg.K, cfg.tau, cfg.tau_ig, cfg.lam, cfg.kmeans_iters) == (18, 0.07, 0.07, 0.8, 10)
    assert (cfg.dim, cfg.fusion_depth, cfg.fusion_heads, cfg.fusion_mlp_dim, cfg.head_hidden) == (
        512,
        1,
        1,
        1024,
        (1536, 512),
    )
    assert cfg.instance_level and cfg.global_scale and cfg.instance_group and cfg.feature_grouping
    assert not cfg.normalize_instances and not cfg.bimodal_contrastive
    assert cfg.trunk_dim is None and cfg.n_neighbors == 25


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("her2st", (4, 4, 4096, 0.3, 5, 8, 4096, 0.3, 18)),
        ("stnet", (4, 8, 4096, 0.3, 3, 8, 2048, 0.1, 90)),
        ("skinst", (4, 16, 1024, 0.3, 2, 16, 1024, 0.1, 25)),
    ],
)
def test_dataset_presets_follow_the_released_configs(name, expected):
    cfg = GeneDMLConfig.preset(name)
    got = (
        cfg.neighbor_depth,
        cfg.neighbor_heads,
        cfg.neighbor_mlp_dim,
        cfg.neighbor_dropout,
        cfg.global_depth,
        cfg.global_heads,
        cfg.global_mlp_dim,
        cfg.global_dropout,
        cfg.K,
    )
    assert got == expected


def test_cpu_preset_is_small_and_overridable():
    cfg = GeneDMLConfig.preset("cpu")
    assert cfg.dim <= 128 and cfg.neighbor_depth <= 2 and cfg.global_depth <= 2 and cfg.K == 8
    assert GeneDMLConfig.preset("cpu", K=4).K == 4
    # no dropout masks inside the transformers on a CPU (issue 12: ~1/6 of a step); the head keeps its dropout
    assert cfg.neighbor_dropout == cfg.global_dropout == cfg.fusion_dropout == 0.0 and cfg.head_dropout > 0


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"`name` must be one of.*her2st.*skinst"):
        GeneDMLConfig.preset("visium")


def test_round_trip_through_json():
    cfg = GeneDMLConfig.preset("stnet", global_scale=False, trunk_dim=256, head_hidden=(64, 32))
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["head_hidden"] == [64, 32]
    back = GeneDMLConfig.from_dict(data)
    assert back == cfg and back.head_hidden == (64, 32)


def test_from_dict_rejects_unknown_keys_and_lists_valid_ones():
    data = {**GeneDMLConfig().to_dict(), "lambda": 1.0, "temperature": 0.1}
    with pytest.raises(ValueError, match=r"unknown GeneDMLConfig key\(s\) \['lambda', 'temperature'\].*'lam'"):
        GeneDMLConfig.from_dict(data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"K": 0}, "`K` must be a positive integer"),
        ({"K": 2.5}, "`K` must be a positive integer"),
        ({"kmeans_iters": 0}, "`kmeans_iters` must be a positive integer"),
        ({"tau": 0.0}, r"`tau` must lie in \(0.0, inf\)"),
        ({"tau_ig": -0.1}, r"`tau_ig` must lie in \(0.0, inf\)"),
        ({"lam": -1.0}, r"`lam` must lie in \[0.0, inf\]"),
        ({"neighbor_dropout": 1.0}, r"`neighbor_dropout` must lie in \[0, 1\)"),
        ({"head_dropout": -0.1}, "`head_dropout` must lie in"),
        ({"instance_group": 1}, "`instance_group` must be True or False"),
        ({"head_hidden": (16, 0)}, r"`head_hidden\[1\]` must be a positive integer"),
        ({"peg_kernel_size": 4}, "`peg_kernel_size` must be odd"),
        ({"fusion_heads": 3}, "`fusion_heads`=3 must divide `dim`=512"),
        ({"trunk_dim": 100, "global_heads": 8}, "must divide `trunk_dim`=100"),
        ({"trunk_dim": 0}, "`trunk_dim` must be a positive integer"),
        ({"bimodal_contrastive": True}, "`bimodal_contrastive=True` is the plain-bimodal variant"),
    ],
)
def test_bad_values_raise_naming_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        GeneDMLConfig(**change)


def test_validate_catches_later_mutation():
    cfg = GeneDMLConfig()
    cfg.K = 0
    with pytest.raises(ValueError, match="`K`"):
        cfg.validate()


def test_bimodal_is_valid_with_both_pathways_off():
    cfg = GeneDMLConfig(instance_level=False, instance_group=False, bimodal_contrastive=True)
    assert cfg.uses_gene_encoder and cfg.inst_scales == ()


@pytest.mark.parametrize(
    ("instance_level", "global_scale", "scales"),
    [
        (True, True, ("local", "neighbor", "global")),
        (True, False, ("local", "neighbor")),
        (False, True, ()),
        (False, False, ()),
    ],
)
def test_inst_scales_follow_the_switches(instance_level, global_scale, scales):
    cfg = GeneDMLConfig(instance_level=instance_level, global_scale=global_scale)
    assert cfg.inst_scales == scales


def test_plain_baseline_needs_no_gene_encoder():
    cfg = GeneDMLConfig(instance_level=False, instance_group=False)
    assert not cfg.uses_gene_encoder
    assert dataclasses.replace(cfg, instance_group=True).uses_gene_encoder
