"""Every method by name: the baselines, Gene-DML, TRIPLEX-style fusion and the ablation rows of Table 3.

The one place that builds (`make_method`) and loads (`load_method`) a method from its name: `gd.tl.fit`,
`gd.tl.cross_validate`, `EnsembleModel.load` and the command line all go through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._base import SpotModel
from ._config import GeneDMLConfig, as_config
from ._model import GeneDML
from .baselines import BLEEPBaseline, MeanBaseline, RidgeBaseline, STNetBaseline

if TYPE_CHECKING:
    from spatialdata import SpatialData

__all__ = ["ABLATIONS", "BASELINES", "METHODS", "load_method", "make_method", "triplex_config"]

BASELINES: dict[str, type[SpotModel]] = {
    "mean": MeanBaseline,
    "ridge": RidgeBaseline,
    "bleep": BLEEPBaseline,
    "stnet": STNetBaseline,
}
"""Baseline classes by name."""

ABLATIONS: dict[str, dict[str, bool]] = {
    "full": {},
    "no_instance_level": {"instance_level": False},
    "no_global_scale": {"global_scale": False},
    "no_instance_group": {"instance_group": False},
    "no_feature_grouping": {"feature_grouping": False},
    "plain": {"instance_level": False, "instance_group": False, "bimodal_contrastive": True},
}
"""`GeneDMLConfig` overrides of the Table 3 rows (supplementary, skinST): the full model, each pathway or
component removed, and the "plain bimodal" row with both pathways off and one image–gene contrastive term (our
reading of the row that equals BLEEP's numbers; see method.md §6)."""

_TRIPLEX = {"instance_level": False, "instance_group": False, "bimodal_contrastive": False}

METHODS: tuple[str, ...] = (*BASELINES, "gene_dml", "triplex", *ABLATIONS)
"""Every name `make_method` accepts."""


def triplex_config(base: GeneDMLConfig | str | dict | None = "cpu") -> GeneDMLConfig:
    """Gene-DML's network trained by the regression loss alone: TRIPLEX-style multi-resolution fusion.

    Both discrimination pathways are off (no ``L_inst``, no ``L_IG``, no contrastive term), so the three-scale
    fusion network learns from ``L_reg`` only. It differs from TRIPLEX itself (cross-attention fusion with the
    global token as query, per-branch heads and distillation, a fine-tuned ResNet18 target encoder): the
    comparison isolates the DML pathways on the same architecture and features.

    Parameters
    ----------
    base
        The configuration the switches are applied to: a `GeneDMLConfig`, a preset name (``"cpu"``, ``"her2st"``,
        ``"stnet"``, ``"skinst"``), a dict of fields, or ``None`` for the paper defaults.

    Returns
    -------
    A validated configuration.

    Examples
    --------
    >>> from genedml.models import triplex_config
    >>> cfg = triplex_config("cpu")
    >>> cfg.instance_level, cfg.instance_group, cfg.dim
    (False, False, 128)
    """
    return _with(base, _TRIPLEX, name="base")


def _with(base, overrides: dict[str, Any], *, name: str) -> GeneDMLConfig:
    return GeneDMLConfig.from_dict({**as_config(base, name=name).to_dict(), **overrides})


def make_method(name: str, **kwargs: Any) -> SpotModel:
    """Build any method of the benchmark by name, with shared keyword arguments.

    Parameters
    ----------
    name
        A baseline (``"mean"``, ``"ridge"``, ``"bleep"``, ``"stnet"``), ``"gene_dml"``, ``"triplex"`` (Gene-DML's
        network with both pathways off, see `triplex_config`) or an ablation row of `ABLATIONS` (``"full"``,
        ``"no_instance_level"``, ``"no_global_scale"``, ``"no_instance_group"``, ``"no_feature_grouping"``,
        ``"plain"``).
    **kwargs
        Constructor arguments: ``train_config``, the features' recipe (``features``, a
        `genedml.features.FeatureSpec`, or its fields: ``encoder``, ``pretrained``, ``weights``, ``target_px``,
        ``dihedral`` …) and ``config`` are accepted by every method. ``config`` is the Gene-DML
        configuration the variant's switches are applied to (default the paper's); the baselines ignore it, as they
        ignore ``dihedral``. The baselines also take their own options (e.g. ``alpha="cv"`` for ridge).

    Returns
    -------
    An untrained model: call ``setup(sdata, ...)`` then ``train()``.

    Examples
    --------
    >>> from genedml.models import make_method
    >>> make_method("ridge", alpha="cv", encoder="test_resnet", pretrained=False)
    RidgeBaseline(encoder='test_resnet', genes=?, trained=False)
    >>> make_method("no_instance_group", config="cpu", encoder="test_resnet").config.instance_group
    False
    """
    if not isinstance(name, str) or name not in METHODS:
        raise ValueError(f"`name` must be one of {list(METHODS)}, got {name!r}.")
    base = kwargs.pop("config", None)
    if name in BASELINES:
        return BASELINES[name](**kwargs)
    overrides = _TRIPLEX if name == "triplex" else ABLATIONS.get(name, {})
    return GeneDML(_with(base, overrides, name="config"), **kwargs)


def load_method(
    path: str | Path,
    *,
    weights: str | Path | None = None,
    sdata: SpatialData | None = None,
    table_key: str | None = None,
) -> SpotModel:
    """Load a checkpoint of any method (the file says which) written by its ``save``.

    Parameters
    ----------
    path
        Checkpoint file (its checksum is verified).
    weights
        The encoder's local weights file, when the model was trained with one (its sha256 is checked).
    sdata, table_key
        Optional data to check the model against (genes, encoder).

    Returns
    -------
    The trained model.
    """
    from ._save_load import read_checkpoint

    method = read_checkpoint(path).get("method")
    if method is None:
        return GeneDML.load(path, weights=weights, sdata=sdata, table_key=table_key)
    if method not in BASELINES:
        raise ValueError(f"`path`={str(path)!r} holds an unknown method {method!r} (known: {list(BASELINES)}).")
    return BASELINES[method].load(path, weights=weights, sdata=sdata, table_key=table_key)
