"""Architecture and loss configuration of the Gene-DML network (stdlib only).

:class:`GeneDMLConfig` holds every width, depth, head count and dropout of the network (method.md §2.3–2.7), the
loss hyper-parameters (§3) and the ablation switches of Table 3. Presets reproduce the released per-dataset
configurations (§2.8); ``"cpu"`` is a narrow variant for tests and laptops.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from genedml._validators import assert_in_range, assert_one_of, assert_positive_int

__all__ = ["GeneDMLConfig", "as_config"]

_INT_FIELDS = (
    "dim",
    "neighbor_grid",
    "neighbor_depth",
    "neighbor_heads",
    "neighbor_mlp_dim",
    "global_depth",
    "global_heads",
    "global_mlp_dim",
    "peg_kernel_size",
    "global_window",
    "global_full_max_spots",
    "fusion_depth",
    "fusion_heads",
    "fusion_mlp_dim",
    "gene_mlp_dim",
    "K",
    "kmeans_iters",
)
# Mirrors genedml.models.nn._global.GLOBAL_ATTENTION_MODES (this module stays stdlib-only: no torch import).
_GLOBAL_ATTENTION = ("auto", "full", "windowed")
_DROPOUT_FIELDS = (
    "neighbor_dropout",
    "global_dropout",
    "fusion_dropout",
    "gene_dropout",
    "gene_ffn_dropout",
    "head_dropout",
)
_BOOL_FIELDS = (
    "instance_level",
    "global_scale",
    "instance_group",
    "feature_grouping",
    "normalize_instances",
    "bimodal_contrastive",
)

# Per-dataset sizes of the released configurations (method.md §2.8); everything else keeps the class defaults.
_PRESETS: dict[str, dict[str, Any]] = {
    "her2st": {
        "neighbor_depth": 4,
        "neighbor_heads": 4,
        "neighbor_mlp_dim": 4096,
        "neighbor_dropout": 0.3,
        "global_depth": 5,
        "global_heads": 8,
        "global_mlp_dim": 4096,
        "global_dropout": 0.3,
        "K": 18,
    },
    "stnet": {
        "neighbor_depth": 4,
        "neighbor_heads": 8,
        "neighbor_mlp_dim": 4096,
        "neighbor_dropout": 0.3,
        "global_depth": 3,
        "global_heads": 8,
        "global_mlp_dim": 2048,
        "global_dropout": 0.1,
        "K": 90,
    },
    "skinst": {
        "neighbor_depth": 4,
        "neighbor_heads": 16,
        "neighbor_mlp_dim": 1024,
        "neighbor_dropout": 0.3,
        "global_depth": 2,
        "global_heads": 16,
        "global_mlp_dim": 1024,
        "global_dropout": 0.1,
        "K": 25,
    },
    "cpu": {
        "dim": 128,
        "trunk_dim": 128,
        "neighbor_depth": 1,
        "neighbor_heads": 2,
        "neighbor_mlp_dim": 256,
        "global_depth": 2,
        "global_heads": 2,
        "global_mlp_dim": 256,
        "fusion_mlp_dim": 256,
        "gene_mlp_dim": 256,
        "head_hidden": (256, 128),
        "K": 8,
        # no dropout inside the transformers: on a CPU it costs ~1/6 of a training step (the random masks of
        # every attention and MLP activation), and early stopping regularises this small network
        "neighbor_dropout": 0.0,
        "global_dropout": 0.0,
        "fusion_dropout": 0.0,
    },
}


@dataclass
class GeneDMLConfig:
    """Configuration of :class:`~genedml.models.nn.GeneDMLNet` and :class:`~genedml.models.nn.GeneDMLLoss`.

    The defaults are the paper's HER2ST model (method.md §2.8, decision D1). The encoder width ``D`` is not part of
    the config: it comes from the image encoder (``in_dim`` of the network).

    Parameters
    ----------
    dim
        Width of the fused tokens, gene embedding and heads (paper: 512).
    trunk_dim
        ``None`` (paper): the neighbour and global encoders run at the encoder width ``D``. An integer ``≠ D``
        inserts one ``Linear(D → trunk_dim)`` before the neighbour and global encoders, and the *same* layer on the
        target tokens so that the projection to ``dim`` stays shared (two stacked linear maps are still one linear
        map on the target path). A documented deviation that makes width-1024 encoders cheap on CPUs.
    neighbor_grid
        Side of the square neighbour window in tiles (paper: 5, i.e. 25 tiles in row-major order).
    neighbor_depth, neighbor_heads, neighbor_mlp_dim, neighbor_dropout
        Layers, attention heads, feed-forward width and dropout of the neighbour encoder (§2.3).
    global_depth, global_heads, global_mlp_dim, global_dropout
        Same for the global encoder (§2.4); the positional-encoding generator sits after the first layer.
    peg_kernel_size
        Side of the depthwise convolution of the positional-encoding generator (odd; paper: 3).
    global_attention
        Attention of the global encoder over a section's spots: ``"full"`` (paper: every spot attends to every
        spot, cost quadratic in spots), ``"windowed"`` (each spot attends to the spots of its ``global_window ×
        global_window`` block of grid cells, blocks shifted by half a window on every second layer; cost linear in
        spots) or ``"auto"`` (default: full up to ``global_full_max_spots`` spots, windowed above). A documented
        deviation for Visium-HD-scale sections; windowed equals full attention when one window covers the section.
    global_window
        Side of an attention window in grid cells (spots or bins) for windowed attention.
    global_full_max_spots
        Largest section (in spots) that ``"auto"`` runs with full attention; every section of the paper's datasets
        (hundreds to a few thousand spots) stays exact.
    fusion_depth, fusion_heads, fusion_mlp_dim, fusion_dropout
        Fusion transformer (§2.5; paper: 1 layer, 1 head, MLP ``2·dim``, dropout 0.1); the extra feed-forward
        block without residual uses the same width and dropout.
    gene_mlp_dim, gene_dropout, gene_ffn_dropout
        Gene encoder (§2.6): feed-forward width, dropout of the residual projection (0.3) and of the final
        feed-forward block (0.1).
    head_hidden, head_dropout
        Hidden widths and dropout of the prediction head (§2.7; paper: ``(1536, 512)``, 0.1).
    K
        Number of k-means groups per modality and batch (paper: 18 HER2ST, 90 STNet, 25 skinST); must not exceed
        the batch size.
    tau
        Temperature of the soft-target contrastive losses (§3.2).
    tau_ig
        Temperature of the instance-group cross-entropy (§3.5).
    lam
        Weight λ of the instance-group loss in ``L = L_inst + L_reg + λ·L_IG``.
    kmeans_iters
        Lloyd iterations of the batch k-means.
    instance_level
        Multi-scale instance-level pathway ``L_inst`` (§3.2).
    global_scale
        Include the global scale ``v_G`` in ``L_inst``. ``False`` is the "w/o global-scale representation" ablation
        as we read it (method.md §12.3): the global branch still feeds the fusion, only its term leaves ``L_inst``,
        which then averages the local and neighbour scales. Ignored when ``instance_level`` is off.
    instance_group
        Cross-level instance-group pathway ``L_IG`` (§3.4–3.5).
    feature_grouping
        Group instances by k-means (§3.4). When off but ``instance_group`` is on ("w/o feature grouping"), every
        instance is its own group: the centroids are the cluster-head embeddings of the batch and the targets are
        the identity, i.e. a hard-target instance-level cross-entropy with temperature ``tau_ig``; ``K`` is then
        unused. Ignored when ``instance_group`` is off.
    normalize_instances
        L2-normalise ``z``, ``g`` and the centroids inside ``L_IG`` (§9.2). ``False`` follows the released code.
    bimodal_contrastive
        The "plain bimodal" variant (§6, a guess): one soft-target image–gene contrastive term between the
        normalised fused embedding ``z`` and ``g``, added to ``L_reg``. Requires both DML pathways off. With both
        pathways off and this ``False``, the model is trained by ``L_reg`` alone (a TRIPLEX-style baseline).
    feature_clip
        Clip the standardised frozen features to ``[-feature_clip, feature_clip]`` before the trunk (``None``: no
        clipping). Features are standardised with the training spots' mean and s.d.; a feature that barely varies
        in training (e.g. the white fraction of the ``morphology`` encoder on one patient's tissue) otherwise turns
        into values of several hundred s.d. on another patient's spots and dominates their prediction. Not in
        the paper (its UNI features are well scaled); 10 s.d. leaves ordinary features untouched.
    """

    dim: int = 512
    trunk_dim: int | None = None
    neighbor_grid: int = 5
    neighbor_depth: int = 4
    neighbor_heads: int = 4
    neighbor_mlp_dim: int = 4096
    neighbor_dropout: float = 0.3
    global_depth: int = 5
    global_heads: int = 8
    global_mlp_dim: int = 4096
    global_dropout: float = 0.3
    peg_kernel_size: int = 3
    global_attention: str = "auto"
    global_window: int = 32
    global_full_max_spots: int = 4096
    fusion_depth: int = 1
    fusion_heads: int = 1
    fusion_mlp_dim: int = 1024
    fusion_dropout: float = 0.1
    gene_mlp_dim: int = 1024
    gene_dropout: float = 0.3
    gene_ffn_dropout: float = 0.1
    head_hidden: tuple[int, ...] = field(default=(1536, 512))
    head_dropout: float = 0.1
    K: int = 18
    tau: float = 0.07
    tau_ig: float = 0.07
    lam: float = 0.8
    kmeans_iters: int = 10
    instance_level: bool = True
    global_scale: bool = True
    instance_group: bool = True
    feature_grouping: bool = True
    normalize_instances: bool = False
    bimodal_contrastive: bool = False
    feature_clip: float | None = 10.0

    PRESETS: ClassVar[tuple[str, ...]] = tuple(_PRESETS)

    def __post_init__(self) -> None:
        if isinstance(self.head_hidden, list):
            self.head_hidden = tuple(self.head_hidden)
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def preset(cls, name: str, **overrides: Any) -> GeneDMLConfig:
        """Return the configuration of a released dataset model, or the small ``"cpu"`` variant.

        Parameters
        ----------
        name
            ``"her2st"``, ``"stnet"``, ``"skinst"`` (method.md §2.8) or ``"cpu"`` (width 128, 1–2 layers, ``K = 8``).
        **overrides
            Fields to change on top of the preset.

        Returns
        -------
        A validated configuration.
        """
        assert_one_of(name, _PRESETS, name="name")
        return cls.from_dict({**_PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneDMLConfig:
        """Build a configuration from :meth:`to_dict` output; unknown keys raise ``ValueError``."""
        if not isinstance(data, dict):
            raise TypeError(f"`data` must be a dict, got {type(data).__name__}.")
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"`data` has unknown GeneDMLConfig key(s) {unknown}; valid keys are {valid}.")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict of every field (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["head_hidden"] = list(self.head_hidden)
        return out

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        for name in _INT_FIELDS:
            assert_positive_int(getattr(self, name), name=name)
        if self.trunk_dim is not None:
            assert_positive_int(self.trunk_dim, name="trunk_dim")
        if self.peg_kernel_size % 2 == 0:
            raise ValueError(f"`peg_kernel_size` must be odd, got {self.peg_kernel_size}.")
        if self.global_attention not in _GLOBAL_ATTENTION:
            raise ValueError(
                f"`global_attention` must be one of {list(_GLOBAL_ATTENTION)}, got {self.global_attention!r}."
            )
        if not isinstance(self.head_hidden, tuple):
            raise ValueError(f"`head_hidden` must be a tuple of positive ints, got {self.head_hidden!r}.")
        for i, width in enumerate(self.head_hidden):
            assert_positive_int(width, name=f"head_hidden[{i}]")
        for name in _DROPOUT_FIELDS:
            assert_in_range(getattr(self, name), name=name, low=0.0, high=1.0)
            if getattr(self, name) == 1.0:
                raise ValueError(f"`{name}` must lie in [0, 1), got 1.0.")
        for name in ("tau", "tau_ig"):
            assert_in_range(getattr(self, name), name=name, low=0.0, inclusive=False)
        assert_in_range(self.lam, name="lam", low=0.0)
        if self.feature_clip is not None:
            assert_in_range(self.feature_clip, name="feature_clip", low=0.0, inclusive=False)
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")
        self._check_heads()
        if self.bimodal_contrastive and (self.instance_level or self.instance_group):
            raise ValueError(
                "`bimodal_contrastive=True` is the plain-bimodal variant: set `instance_level=False` and "
                f"`instance_group=False` (got {self.instance_level}, {self.instance_group})."
            )

    def _check_heads(self) -> None:
        if self.dim % self.fusion_heads:
            raise ValueError(f"`fusion_heads`={self.fusion_heads} must divide `dim`={self.dim}.")
        if self.trunk_dim is None:
            return  # the trunk width is the encoder width, checked by the network
        for name in ("neighbor_heads", "global_heads"):
            if self.trunk_dim % getattr(self, name):
                raise ValueError(f"`{name}`={getattr(self, name)} must divide `trunk_dim`={self.trunk_dim}.")

    # ------------------------------------------------------------------ derived
    @property
    def n_neighbors(self) -> int:
        """Number of neighbour tiles (``neighbor_grid ** 2``)."""
        return self.neighbor_grid**2

    @property
    def uses_gene_encoder(self) -> bool:
        """Whether any loss term needs the gene embedding ``g``."""
        return self.instance_level or self.instance_group or self.bimodal_contrastive

    @property
    def inst_scales(self) -> tuple[str, ...]:
        """Scales entering ``L_inst`` (empty when the instance-level pathway is off)."""
        if not self.instance_level:
            return ()
        return ("local", "neighbor", "global") if self.global_scale else ("local", "neighbor")

    def trunk_width(self, in_dim: int) -> int:
        """Width of the neighbour and global encoders for an encoder of width ``in_dim``."""
        return in_dim if self.trunk_dim is None else self.trunk_dim


def as_config(config: GeneDMLConfig | str | dict | None, *, name: str = "config") -> GeneDMLConfig:
    """``config`` as a `GeneDMLConfig`; errors name the user's argument ``name``.

    ``config`` is a `GeneDMLConfig`, a preset name, a dict of fields (its ``"preset"`` entry picks the base) or
    ``None`` (the paper defaults).
    """
    if config is None:
        return GeneDMLConfig()
    if isinstance(config, GeneDMLConfig):
        return config
    if isinstance(config, str):
        _check_preset(config, name=name)
        return GeneDMLConfig.preset(config)
    if isinstance(config, dict):
        if "preset" in config:
            _check_preset(config["preset"], name=f"{name}['preset']")
            rest = {k: v for k, v in config.items() if k != "preset"}
            _check_config_keys(rest, name=name)
            return GeneDMLConfig.preset(config["preset"], **rest)
        _check_config_keys(config, name=name)
        return GeneDMLConfig.from_dict(config)
    raise TypeError(f"`{name}` must be a GeneDMLConfig, a preset name or a dict, got {type(config).__name__}.")


def _check_preset(value, *, name: str) -> None:
    """The user's argument (``config``) named in the error, not `GeneDMLConfig.preset`'s ``name``."""
    if value not in _PRESETS:
        raise ValueError(
            f"`{name}` must be a GeneDMLConfig, a dict or one of the presets {sorted(_PRESETS)}, got {value!r}."
        )


def _check_config_keys(d: dict, *, name: str) -> None:
    valid = [f.name for f in fields(GeneDMLConfig)]
    unknown = sorted(str(k) for k in d if k not in valid)
    if unknown:
        raise ValueError(f"`{name}` has unknown GeneDMLConfig key(s) {unknown}; valid keys are {valid}.")
