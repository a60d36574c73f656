"""``gd.tl.fit``: select genes, build targets and features, and train a Gene-DML model on a SpatialData."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._utils import resolve_progress
from ._recipes import route_shorthands

if TYPE_CHECKING:
    from spatialdata import SpatialData

    from ..models import GeneDML

__all__ = ["fit"]


def fit(
    sdata: SpatialData,
    *,
    features: Any = None,
    targets: Any = None,
    config: Any = None,
    train_config: Any = None,
    sections: list[str] | None = None,
    val_sections: list[str] | None = None,
    table_key: str | None = None,
    progress: bool | None = None,
    **shorthands: Any,
) -> GeneDML:
    """Fit a Gene-DML model: genes → targets → windows and stored features → Lightning training.

    Steps: gene selection (top ``n_top_genes`` by mean raw count over training spots, as TRIPLEX; or a panel or a gene
    list), the normalisation recipe with 3×3 grid smoothing, target/neighbour/global windows embedded by a frozen
    encoder (kept in the feature store), then training with early stopping on an inner validation split of the
    training data (``protocol="clean"``: whole patients in cohorts of ≥ 5, otherwise sections or spatial blocks of
    every patient; `genedml.dataloaders.inner_validation_split`, `genedml.models.TrainConfig`).

    Parameters
    ----------
    sdata
        Training data in genedml's data model with raw counts.
    features
        The features' recipe: `genedml.features.FeatureSpec` (encoder, weights, window geometry, neighbour grid,
        dihedral augmentation, storage precision) or an encoder name; ``None``: ``FeatureSpec()``.
    targets
        The targets' recipe: `genedml.pp.TargetSpec` (genes / ``n_top_genes`` / panel, normalisation, smoothing);
        ``None``: ``TargetSpec()``.
    config
        `GeneDMLConfig`, preset name (``"her2st"``, ``"stnet"``, ``"skinst"``, ``"cpu"``) or dict; ``None`` = paper
        defaults.
    train_config
        `TrainConfig` or dict of its fields.
    sections, val_sections
        Training sections and explicit validation sections.
    table_key
        Spot table.
    progress
        Progress bars.
    **shorthands
        Single fields of the recipes, for short calls: `FeatureSpec` fields (``encoder="uni"``, ``target_um=112``
        …; ``embed_batch_size`` is its ``batch_size``), `TargetSpec` fields (``n_top_genes=50`` …) and `TrainConfig`
        fields (``max_epochs=50``, ``batch_size`` …). They override ``features``, ``targets`` and ``train_config``.

    Returns
    -------
    The trained `genedml.models.GeneDML`, holding its genes, targets recipe and feature provenance. Nothing is
    written into ``sdata``.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> spec = gd.features.FeatureSpec("test_resnet", pretrained=False, target_px=32)
    >>> model = gd.tl.fit(sdata, features=spec, targets=gd.pp.TargetSpec(n_top_genes=20), config="cpu",
    ...                   max_epochs=1, batch_size=32)
    >>> len(model.genes_), model.feature_spec == spec
    (20, True)
    """
    from ..models import TrainConfig, make_method

    rec = route_shorthands(shorthands, features=features, targets=targets, where="gd.tl.fit")
    tc = train_config
    if isinstance(tc, TrainConfig):
        tc = tc.to_dict()
    if tc is not None and not isinstance(tc, dict):
        raise ValueError(f"`train_config` must be a TrainConfig or a dict of its fields, got {type(tc).__name__}.")
    tc = {**(tc or {}), **rec.train}
    model = make_method("gene_dml", config=config, train_config=TrainConfig.from_dict(tc), features=rec.features)
    model.setup(
        sdata,
        **rec.targets.setup_kwargs(),
        sections=sections,
        val_sections=val_sections,
        table_key=table_key,
        progress=progress,
    )
    return model.train(progress=resolve_progress(progress))
