"""``gd.tl.fit``: select genes, build targets and features, and train a Gene-DML model on a SpatialData."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._utils import resolve_progress

if TYPE_CHECKING:
    from spatialdata import SpatialData

    from ..models import GeneDML

__all__ = ["fit"]


def fit(
    sdata: SpatialData,
    *,
    genes: list[str] | None = None,
    n_genes: int = 250,
    panel: str | None = None,
    normalize: str = "paper",
    smooth: bool = True,
    encoder: str = "resnet18",
    pretrained: bool = True,
    weights: str | None = None,
    target_px: int = 224,
    target_um: float | None = None,
    target_mpp: float | None = None,
    dihedral: bool = False,
    config: Any = None,
    train_config: Any = None,
    sections: list[str] | None = None,
    val_sections: list[str] | None = None,
    table_key: str | None = None,
    progress: bool | None = None,
    **train_kwargs: Any,
) -> GeneDML:
    """Fit a Gene-DML model: genes → targets → windows and cached features → Lightning training.

    Steps: gene selection (top ``n_genes`` by mean raw count over training spots, as TRIPLEX; or ``panel``/``genes``),
    the normalisation recipe with 3×3 grid smoothing, target/neighbour/global windows embedded by a frozen
    ``encoder`` (cached on disk), then training with early stopping on an inner validation split of the training
    data (``protocol="clean"``: whole patients in cohorts of ≥ 5, otherwise sections or spatial blocks of every
    patient; `genedml.dataloaders.inner_validation_split`, `genedml.models.TrainConfig`).

    Parameters
    ----------
    sdata
        Training data in genedml's data model with raw counts.
    genes, n_genes, panel
        Explicit genes; or top-``n_genes`` highly expressed genes; or a named 250-gene panel.
    normalize, smooth
        ``"paper"`` (median library size, log10(1+x)) or ``"log1p_cp10k"``; 3×3 grid smoothing of targets.
    encoder, pretrained, weights
        Frozen image encoder (timm name, registry name such as ``"uni"``, or ``hf-hub:`` id) and its weights.
    target_px, target_um, target_mpp
        Target window size: pixels at native resolution (paper: 224), or µm at a resampled µm/px.
    dihedral
        Cache the 8 flips/rotations of the target tokens and draw one per spot while training (paper augmentation).
    config
        `GeneDMLConfig`, preset name (``"her2st"``, ``"stnet"``, ``"skinst"``, ``"cpu"``) or dict; ``None`` = paper
        defaults.
    train_config
        `TrainConfig` or dict; ``train_kwargs`` override single fields (e.g. ``max_epochs=50``).
    sections, val_sections
        Training sections and explicit validation sections.
    table_key
        Spot table.
    progress
        Progress bars.
    **train_kwargs
        Fields of `TrainConfig`.

    Returns
    -------
    The trained `genedml.models.GeneDML`. ``sdata``'s table gains ``obsm["genedml_target"]``, the feature ``obsm``
    keys and ``uns["genedml"]`` entries ``genes``, ``normalize`` and ``features``.

    Examples
    --------
    >>> import genedml as gd
    >>> sdata = gd.datasets.synthetic(preset="tiny")
    >>> model = gd.tl.fit(sdata, n_genes=20, encoder="test_resnet", pretrained=False, config="cpu",
    ...                   max_epochs=1, batch_size=32)
    """
    from ..models import GeneDML, TrainConfig

    tc = train_config
    if isinstance(tc, TrainConfig):
        tc = tc.to_dict()
    if tc is not None and not isinstance(tc, dict):
        raise ValueError(f"`train_config` must be a TrainConfig or a dict of its fields, got {type(tc).__name__}.")
    tc = {**(tc or {}), **train_kwargs}
    model = GeneDML(
        config,
        TrainConfig.from_dict(tc),
        encoder=encoder,
        pretrained=pretrained,
        weights=weights,
        target_px=target_px,
        target_um=target_um,
        target_mpp=target_mpp,
        dihedral=dihedral,
    )
    model.setup(
        sdata,
        genes=genes,
        n_genes=n_genes,
        panel=panel,
        normalize=normalize,
        smooth=smooth,
        sections=sections,
        val_sections=val_sections,
        table_key=table_key,
        progress=progress,
    )
    return model.train(progress=resolve_progress(progress))
