"""`FeatureSpec`: the recipe of the frozen-encoder features, validated once where it is built."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from .._validators import UnknownKeywordError, assert_one_of, assert_positive_int, unknown_keys_error
from ._windows import WindowSpec

__all__ = ["NEIGHBOR_GRIDS", "FeatureSpec", "UnknownKeywordError", "resolve_feature_spec", "unknown_keys_error"]

NEIGHBOR_GRIDS = ("spot", "lattice")


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """How the frozen features of a model are computed (part of the model: prediction recomputes them identically).

    Parameters
    ----------
    encoder
        Registry name (``"uni"``, ``"resnet18"``, ``"morphology"``, ``"morphology+resnet18"`` …), timm model name or
        ``hf-hub:`` id; see :func:`genedml.encoders.list_encoders`.
    pretrained
        Load the encoder's pretrained weights; ``False`` gives random weights (tests, benchmarks).
    weights
        Local weights file for the encoder (``.safetensors`` or a tensors-only torch file).
    target_px
        Window side in pixels fed to the encoder.
    target_um, target_mpp
        Physical window: ``target_um`` µm resampled to ``target_px`` pixels, or ``target_mpp`` µm per pixel;
        both ``None``: ``target_px`` native pixels (the paper's choice).
    dihedral
        Also compute the 8 flip/rotate variants of the target tokens (training augmentation).
    neighbor_grid
        ``"spot"``: each spot's 5 × 5 neighbour tiles are centred on it (method.md §1.3; adjacent spots share a
        tile only when the spot pitch is a whole number of windows). ``"lattice"``: the tiles are snapped to a
        section-wide grid of window-sized tiles (each shifted by at most half a window), so adjacent spots share
        them: about ``pitch² / window²`` distinct tiles per spot instead of up to 25, with as many fewer encoder
        passes and store bytes (a genedml option for large slides and Visium HD bins).
    dtype
        Storage precision of the pooled features and neighbour tiles in the store: ``"float32"`` or ``"float16"``.
    batch_size
        Windows per encoder forward pass (run-time only: not part of the features' identity).
    device
        Encoder device; ``None`` follows ``gd.settings.device`` (run-time only).

    Examples
    --------
    >>> import genedml as gd
    >>> spec = gd.features.FeatureSpec("morphology", target_um=112, target_px=56)
    >>> spec.window_um(2.0), spec.replace(encoder="resnet18").encoder
    (112.0, 'resnet18')
    """

    encoder: str = "resnet18"
    pretrained: bool = True
    weights: str | None = None
    target_px: int = 224
    target_um: float | None = None
    target_mpp: float | None = None
    dihedral: bool = False
    neighbor_grid: str = "spot"
    dtype: str = "float32"
    batch_size: int = 64
    device: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, str) or not self.encoder.strip():
            raise ValueError(f"`encoder` must be a non-empty encoder name, got {self.encoder!r}.")
        for name in ("pretrained", "dihedral"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be a bool, got {getattr(self, name)!r}.")
        if self.weights is not None:
            if not isinstance(self.weights, str | os.PathLike):
                raise ValueError(f"`weights` must be a path to a local weights file or None, got {self.weights!r}.")
            object.__setattr__(self, "weights", os.fspath(self.weights))
        WindowSpec.resolve(target_px=self.target_px, target_um=self.target_um, target_mpp=self.target_mpp)
        assert_one_of(self.neighbor_grid, NEIGHBOR_GRIDS, name="neighbor_grid")
        assert_one_of(self.dtype, ("float32", "float16"), name="dtype")
        assert_positive_int(self.batch_size, name="batch_size")
        if self.device is not None and not isinstance(self.device, str):
            raise ValueError(
                f"`device` must be None or a device string such as 'cpu' or 'cuda:0', got {self.device!r}."
            )

    # -------------------------------------------------------------------------------------------- conveniences
    @property
    def name(self) -> str:
        """The encoder name (alias of ``encoder``)."""
        return self.encoder

    def replace(self, **changes: Any) -> FeatureSpec:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def window_um(self, mpp: float) -> float:
        """Field of view (µm) of a target window on an image of ``mpp`` µm/px."""
        if self.target_um is not None:
            return float(self.target_um)
        if self.target_mpp is not None:
            return float(self.target_px * self.target_mpp)
        return float(self.target_px * mpp)

    def embed_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`genedml.features.compute_features` / :func:`genedml.tl.embed`."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for checkpoints and ``uns``)."""
        return dataclasses.asdict(self)

    def identity_dict(self) -> dict[str, Any]:
        """The fields that decide the features' values (without the run-time ``batch_size`` and ``device``)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("batch_size", "device")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        """Build from :meth:`to_dict` output; unknown keys are an error naming them."""
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown FeatureSpec field(s) {unknown}; known: {sorted(known)}.")
        return cls(**d)

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """Names of the fields (the keyword shorthands ``fit`` and ``cross_validate`` route here)."""
        return tuple(f.name for f in dataclasses.fields(cls))


def resolve_feature_spec(features: FeatureSpec | str | None, shorthands: dict[str, Any]) -> tuple[FeatureSpec, Any]:
    """``features`` (a spec, an encoder name or ``None``) updated by FeatureSpec-field shorthands.

    Returns the spec and, when ``shorthands["encoder"]`` is a built encoder object, that object (else ``None``).
    """
    kw = dict(shorthands)
    enc_obj = None
    if "encoder" in kw and not isinstance(kw["encoder"], str):
        enc_obj = kw.pop("encoder")
        if not (hasattr(enc_obj, "forward_tokens") and hasattr(enc_obj, "identity")):
            raise ValueError(f"`encoder` must be an encoder name or a genedml Encoder, got {type(enc_obj).__name__}.")
        kw["encoder"] = enc_obj.identity
    unknown = sorted(set(kw) - set(FeatureSpec.fields()))
    if unknown:
        raise unknown_keys_error(unknown, list(FeatureSpec.fields()), where="features")
    if features is None:
        base = FeatureSpec()
    elif isinstance(features, str):
        base = FeatureSpec(encoder=features)
    elif isinstance(features, FeatureSpec):
        base = features
    else:
        raise ValueError(f"`features` must be a FeatureSpec, an encoder name or None, got {type(features).__name__}.")
    return (base.replace(**kw) if kw else base), enc_obj
