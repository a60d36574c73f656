"""Catalogue: training — divergence, bad `TrainConfig` / `GeneDMLConfig` values, K above the batch size, calls out
of order.

Every case states its exact outcome: the error type and that the message names the user's argument, and that the
model is left untrained (diverged runs) or the input object unchanged (settings refused before any work).
"""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
from _rel_helpers import FIT_KW

torch = pytest.importorskip("torch")

SHARED = dict(encoder="test_resnet", pretrained=False, target_px=32)


@pytest.fixture(scope="module")
def _data():
    import genedml as gd

    return gd.datasets.synthetic(preset="tiny", seed=0)


@pytest.fixture
def sdata(_data):
    from spatialdata import deepcopy

    return deepcopy(_data)


def _snapshot(sdata) -> dict:
    t = sdata.tables["table"]
    return {
        "obsm": sorted(t.obsm),
        "layers": sorted(t.layers),
        "uns": sorted(t.uns.get("genedml", {})),
        "var": sorted(t.var.columns),
        "X": t.X.copy(),
    }


def _unchanged(sdata, snap) -> bool:
    now = _snapshot(sdata)
    same_x = (now.pop("X") != snap["X"]).nnz == 0 if hasattr(snap["X"], "nnz") else np.array_equal(now["X"], snap["X"])
    return same_x and now == {k: v for k, v in snap.items() if k != "X"}


def _method(name: str, **tc):
    from genedml.models import make_method

    extra = {"backbone": "test_resnet"} if name == "stnet" else {}
    train = {"max_epochs": 3, "batch_size": 32, "patience": None, **tc}
    return make_method(name, train_config=train, config="cpu", **SHARED, **extra)


# ------------------------------------------------------------------------------------------------------- divergence
DIVERGE = {"lr": 1e30, "gradient_clip_val": None}


@pytest.mark.parametrize("name", ["gene_dml", "triplex", "no_instance_level", "stnet"])
def test_diverged_training_raises_and_leaves_the_model_untrained(sdata, name):
    import genedml as gd
    from genedml.models import TrainingDivergedError

    model = _method(name, **DIVERGE).setup(sdata, n_top_genes=5, progress=False)
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    with pytest.raises(TrainingDivergedError, match=r"diverged at epoch \d+: .*non-finite.*Lower `lr` \(now 1e\+30"):
        model.train(progress=False)
    assert not model.is_trained_ and not model.is_ready()
    after = model.net.state_dict()
    assert all(torch.equal(before[k], after[k].cpu()) for k in before)  # weights as before `train`
    snap = _snapshot(sdata)
    with pytest.raises(ValueError, match="`model` is not trained"):
        gd.tl.predict(sdata, model)
    assert _unchanged(sdata, snap)


def test_bleep_with_a_huge_lr_stays_finite(sdata):
    """Allowed: BLEEP's projections are L2-normalised and it predicts by retrieval, so its output cannot overflow."""
    model = _method("bleep", **DIVERGE).setup(sdata, n_top_genes=5, progress=False).train(progress=False)
    assert model.is_trained_ and np.isfinite(model.predict(sdata)).all()


@pytest.mark.parametrize("lr", [1e2, 1e4, 1e8])
def test_fit_with_a_huge_lr_raises_instead_of_returning_nan_predictions(sdata, lr):
    """The reported case: default clipping, a huge `lr`; formerly `is_trained_` was True and predictions NaN."""
    import genedml as gd
    from genedml.models import TrainingDivergedError

    with pytest.raises(TrainingDivergedError, match=rf"epoch \d+.*`lr` \(now {re.escape(f'{lr:g}')}"):
        gd.tl.fit(sdata, pretrained=False, **{**FIT_KW, "max_epochs": 3}, lr=lr)


@pytest.mark.parametrize("where", ["targets", "features"])
def test_non_finite_training_data_is_reported_as_divergence(sdata, where):
    from genedml.models import TrainingDivergedError

    model = _method("gene_dml").setup(sdata, n_top_genes=5, progress=False)
    if where == "targets":
        model._train_data.y[:, 0] = np.nan
    else:
        data = model._train_data  # the store is read-only: swap in a poisoned in-memory tile table
        data.tiles = np.full(data.tiles.shape, np.inf, np.float32)
    with pytest.raises(TrainingDivergedError, match="check the targets and features for NaN/inf"):
        model.train(progress=False)
    assert not model.is_trained_


def test_retrain_after_divergence_with_a_lower_lr_works(sdata):
    from genedml.models import TrainingDivergedError

    model = _method("gene_dml", **DIVERGE).setup(sdata, n_top_genes=5, progress=False)
    with pytest.raises(TrainingDivergedError):
        model.train(progress=False)
    model.train_config.lr = 1e-3
    model.train(progress=False)
    assert model.is_trained_
    assert np.isfinite(model.predict(sdata)).all()


def _fake(loss, *, weight=1.0, epoch=0):
    trainer = SimpleNamespace(current_epoch=epoch)
    module = torch.nn.Linear(1, 1)
    with torch.no_grad():
        module.weight.fill_(weight)
    return trainer, module, {"loss": torch.tensor(loss)}


@pytest.mark.parametrize(
    ("losses", "weight", "fp16", "raises"),
    [
        ([0.5, 0.4], 1.0, False, False),
        ([0.5, math.nan], 1.0, False, True),
        ([0.5, math.inf], 1.0, False, True),
        ([0.5, 0.4], math.nan, False, True),
        ([math.inf] * 10 + [0.5], 1.0, True, False),
        ([math.inf] * 11, 1.0, True, True),
        ([0.5], math.inf, True, True),
    ],
    ids=["finite", "nan-loss", "inf-loss", "nan-weights", "fp16-skipped-steps", "fp16-too-many", "fp16-inf-weights"],
)
def test_divergence_check_rules(losses, weight, fp16, raises):
    from genedml.models import TrainConfig, TrainingDivergedError
    from genedml.models.train import DivergenceCheck

    check = DivergenceCheck(TrainConfig(lr=0.1), fp16=fp16)
    outcome = None
    for i, loss in enumerate(losses):
        trainer, module, out = _fake(loss, weight=weight, epoch=2)
        try:
            check.on_train_batch_end(trainer, module, out, None, i)
        except TrainingDivergedError as err:
            outcome = str(err)
            break
    assert (outcome is not None) == raises
    if raises:
        assert "epoch 3" in outcome and "`lr` (now 0.1; try 0.01)" in outcome


# ------------------------------------------------------------------------------------------- bad TrainConfig values
BAD_TRAIN = [
    ("lr", 0),
    ("lr", -1e-3),
    ("lr", math.nan),
    ("lr", math.inf),
    ("lr", "1e-3"),
    ("lr", True),
    ("gamma", 0.0),
    ("gamma", math.nan),
    ("weight_decay", -0.1),
    ("weight_decay", math.inf),
    ("gradient_clip_val", 0.0),
    ("gradient_clip_val", -1.0),
    ("gradient_clip_val", math.nan),
    ("max_epochs", 0),
    ("max_epochs", 2.5),
    ("max_epochs", True),
    ("batch_size", 0),
    ("batch_size", "32"),
    ("min_epochs", 0),
    ("step_size", 0),
    ("patience", 0),
    ("patience", 2.5),
    ("sections_per_batch", 0),
    ("val_fraction", 0.0),
    ("val_fraction", 1.0),
    ("val_fraction", math.nan),
    ("seed", -1),
    ("seed", 1.5),
    ("augment", "yes"),
    ("protocol", "dirty"),
    ("log_every_n_steps", 0),
    ("extra_trainer_kwargs", ["fast_dev_run"]),
]


@pytest.mark.parametrize(("field", "value"), BAD_TRAIN, ids=[f"{f}={v!r}" for f, v in BAD_TRAIN])
def test_bad_train_config_value_names_the_field(field, value):
    from genedml.models import TrainConfig

    with pytest.raises(ValueError, match=rf"`{field}` must"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize(
    ("field", "value"), [("lr", -1.0), ("max_epochs", 0), ("batch_size", "32"), ("seed", -1), ("lr", math.inf)]
)
def test_fit_refuses_bad_train_settings_before_touching_the_data(sdata, field, value):
    import genedml as gd

    snap = _snapshot(sdata)
    with pytest.raises(ValueError, match=rf"`{field}` must"):
        gd.tl.fit(sdata, pretrained=False, **{**FIT_KW, field: value})
    assert _unchanged(sdata, snap)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"learning_rate": 1e-3}, r"unknown keyword argument\(s\) 'learning_rate'"),
        ({"train_config": "fast"}, r"`train_config` must be a TrainConfig or a dict"),
    ],
    ids=["unknown-key", "not-a-dict"],
)
def test_fit_refuses_unknown_train_settings(sdata, kwargs, pattern):
    import genedml as gd

    snap = _snapshot(sdata)
    with pytest.raises(ValueError, match=pattern):
        gd.tl.fit(sdata, pretrained=False, **{**FIT_KW, **kwargs})
    assert _unchanged(sdata, snap)


# ------------------------------------------------------------------------------------------ bad GeneDMLConfig values
BAD_CONFIG = [
    ({"K": 0}, "K"),
    ({"dim": 0}, "dim"),
    ({"dim": -8}, "dim"),
    ({"tau": 0.0}, "tau"),
    ({"lam": -1.0}, "lam"),
    ({"head_dropout": 1.0}, "head_dropout"),
    ({"fusion_heads": 3}, "fusion_heads"),
    ({"peg_kernel_size": 4}, "peg_kernel_size"),
    ({"instance_level": "yes"}, "instance_level"),
    ({"bimodal_contrastive": True}, "bimodal_contrastive"),
]


@pytest.mark.parametrize(("override", "field"), BAD_CONFIG, ids=[f for _, f in BAD_CONFIG])
def test_bad_model_config_names_the_field_before_touching_the_data(sdata, override, field):
    import genedml as gd

    snap = _snapshot(sdata)
    with pytest.raises(ValueError, match=rf"`{field}"):
        gd.tl.fit(sdata, pretrained=False, **{**FIT_KW, "config": {"preset": "cpu", **override}})
    assert _unchanged(sdata, snap)


@pytest.mark.parametrize(
    ("config", "error", "pattern"),
    [("no-such-preset", ValueError, "no-such-preset"), (3, TypeError, "`config` must be")],
    ids=["unknown-preset", "wrong-type"],
)
def test_bad_config_argument_is_a_clear_error(sdata, config, error, pattern):
    import genedml as gd

    snap = _snapshot(sdata)
    with pytest.raises(error, match=pattern):
        gd.tl.fit(sdata, pretrained=False, **{**FIT_KW, "config": config})
    assert _unchanged(sdata, snap)


def test_k_above_the_batch_size_names_both_arguments(sdata):
    import genedml as gd

    with pytest.raises(ValueError, match=r"`K`=64 .*exceed the batch size 8.*lower `K` or raise `batch_size`"):
        gd.tl.fit(sdata, pretrained=False, **{**FIT_KW, "batch_size": 8, "config": {"preset": "cpu", "K": 64}})


# --------------------------------------------------------------------------------------------- calls out of order
def test_train_before_setup_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r"call `setup\(sdata, ...\)` before `train\(\)`"):
        _method("gene_dml").train()


def test_predict_with_an_untrained_model_leaves_the_data(sdata):
    import genedml as gd

    model = _method("gene_dml").setup(sdata, n_top_genes=5, progress=False)  # set up, never trained
    snap = _snapshot(sdata)
    with pytest.raises(ValueError, match="`model` is not trained or loaded"):
        gd.tl.predict(sdata, model)
    assert _unchanged(sdata, snap)
    with pytest.raises(RuntimeError, match="the model is not trained"):
        model.predict(sdata)


def test_paper_protocol_without_validation_sections_is_refused(sdata):
    with pytest.raises(ValueError, match=r"protocol='paper'.*pass `val_sections`"):
        _method("gene_dml", protocol="paper").setup(sdata, n_top_genes=5, progress=False)


def test_same_seed_gives_the_same_model(sdata):
    """Allowed and promised: a finite run is reproducible bit for bit on the CPU."""
    import genedml as gd

    a = gd.tl.fit(sdata, pretrained=False, **FIT_KW)
    b = gd.tl.fit(sdata, pretrained=False, **FIT_KW)
    assert a.model_hash == b.model_hash
    assert all(np.isfinite(r["train_loss"]) for r in a.history_)
