"""One registry builds and loads every method; every method, and an ensemble of them, is a `Predictor`."""

from __future__ import annotations

import pytest

import genedml as gd
from genedml.models import (
    BASELINES,
    METHODS,
    EnsembleModel,
    GeneDML,
    Predictor,
    RidgeBaseline,
    load_method,
    make_method,
)

SHARED = {"encoder": "test_resnet", "pretrained": False, "target_px": 32}


@pytest.fixture(scope="module")
def ridges():
    """Two ridge models of different penalties on the tiny synthetic data (closed form: fast)."""
    sdata = gd.datasets.synthetic(preset="tiny")
    models = [
        make_method("ridge", alpha=a, **SHARED).setup(sdata, n_top_genes=8, progress=False).train() for a in (1.0, 50.0)
    ]
    return sdata, models


def test_every_method_is_a_predictor_before_training_too():
    for name in METHODS:
        model = make_method(name, config="cpu", **SHARED)
        # untrained: `model_hash` would raise, yet the check only looks members up (it never runs them)
        assert isinstance(model, Predictor), name
        assert not model.is_ready(), name
    for other in (None, "model.pt", object(), {"genes_": ["A"]}):
        assert not isinstance(other, Predictor)


def test_an_ensemble_is_a_predictor_of_predictors(ridges, tmp_path):
    sdata, models = ridges
    ens = EnsembleModel(models)
    assert isinstance(ens, Predictor) and ens.is_ready()
    assert ens.genes_ == models[0].genes_ and ens.geometry_ == models[0].geometry_
    with pytest.raises(TypeError, match=r"`models\[1\]` is a object, not a fitted genedml model"):
        EnsembleModel([models[0], object()])
    ens.save(tmp_path / "ens")
    again = EnsembleModel.load(tmp_path / "ens", sdata=sdata)
    assert again.model_hash == ens.model_hash
    # gd.tl.EnsembleModel is the same class (resolved on use: `import genedml` stays torch-free)
    assert gd.tl.EnsembleModel is EnsembleModel


def test_predict_refuses_what_is_not_a_predictor(ridges):
    sdata, _ = ridges
    with pytest.raises(ValueError, match=r"not trained or loaded \(a dict, not a genedml.models.Predictor\)"):
        gd.tl.predict(sdata, {"genes_": ["A"], "net": True})
    untrained = RidgeBaseline(**SHARED)
    with pytest.raises(ValueError, match=r"`model` is not trained or loaded: use"):
        gd.tl.predict(sdata, untrained)


def test_load_method_reads_any_method_and_classes_refuse_the_others(ridges, tmp_path):
    _, (model, _) = ridges
    path = model.save(tmp_path / "ridge.pt")
    loaded = load_method(path)
    assert type(loaded) is RidgeBaseline and loaded.model_hash == model.model_hash
    with pytest.raises(ValueError, match=r"holds a 'ridge' model, not 'gene_dml': use its class or .*load_method"):
        GeneDML.load(path)
    with pytest.raises(ValueError, match=r"holds a 'ridge' model, not 'mean'"):
        BASELINES["mean"].load(path)


def test_fit_builds_gene_dml_through_the_registry(monkeypatch):
    """`gd.tl.fit` goes through `make_method`: one place builds every method."""
    import genedml.models

    seen = {}

    class Built(Exception):
        pass

    def spy(name, **kwargs):
        seen.update(kwargs, name=name)
        raise Built

    monkeypatch.setattr(genedml.models, "make_method", spy)
    sdata = gd.datasets.synthetic(preset="tiny")
    with pytest.raises(Built):
        gd.tl.fit(sdata, config="cpu", max_epochs=3, **SHARED)
    assert seen["name"] == "gene_dml" and seen["config"] == "cpu" and seen["features"].encoder == "test_resnet"
    assert seen["train_config"].max_epochs == 3 and seen["features"].target_px == 32
