"""Named encoder presets: a name → timm architecture, keyword arguments and where its weights come from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["EncoderSpec", "get_spec", "list_encoders", "register_encoder"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderSpec:
    """How to build one encoder.

    Parameters
    ----------
    name
        Registry name; also the encoder's identity in keys and cache entries.
    timm_name
        timm architecture, timm model name (``"resnet18.a1_in1k"``) or ``"hf-hub:org/repo"``.
    kwargs
        Extra keyword arguments for :func:`timm.create_model`. A string value ``"obj:module.attr"`` is
        resolved to that object when the model is built (e.g. ``"obj:torch.nn.SiLU"``).
    arch
        timm architecture used when the weights come from a local file instead of ``timm_name``'s source (needed
        when ``timm_name`` is an ``hf-hub:`` id); ``None`` means ``timm_name``.
    cfg_overlay
        Pretrained-config fields (``mean``, ``std``, ``input_size`` …) applied when building from ``arch``.
    checkpoint_format
        ``"timm"`` (keys as in timm) or ``"ciga"`` (Lightning checkpoint of Ciga et al.'s self-supervised ResNet).
    weights_url
        Where to download the weights by hand when they are not on the Hugging Face Hub.
    doc
        One line shown by :func:`list_encoders`.
    """

    name: str
    timm_name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    arch: str | None = None
    cfg_overlay: dict[str, Any] = field(default_factory=dict)
    checkpoint_format: str = "timm"
    weights_url: str | None = None
    doc: str = ""

    @property
    def architecture(self) -> str:
        """Timm architecture built when loading weights from a file."""
        return self.arch or self.timm_name


_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(
    name: str,
    timm_name: str,
    *,
    arch: str | None = None,
    cfg_overlay: dict[str, Any] | None = None,
    checkpoint_format: str = "timm",
    weights_url: str | None = None,
    doc: str = "",
    overwrite: bool = False,
    **kwargs: Any,
) -> EncoderSpec:
    """Register an encoder preset under ``name``.

    Parameters
    ----------
    name
        New registry name (letters, digits, ``-``, ``_``, ``.``).
    timm_name
        timm model name or ``"hf-hub:org/repo"``.
    arch
        timm architecture for local weight files when ``timm_name`` is an ``hf-hub:`` id.
    cfg_overlay
        Pretrained-config overrides (``mean``, ``std``, ``input_size``, ``interpolation``).
    checkpoint_format
        ``"timm"`` or ``"ciga"``.
    weights_url
        Manual download location shown in errors.
    doc
        One-line description.
    overwrite
        Replace an existing entry of the same name.
    **kwargs
        Passed to :func:`timm.create_model`.

    Returns
    -------
    The registered spec.

    Examples
    --------
    >>> from genedml.encoders import register_encoder
    >>> spec = register_encoder("my_vit", "vit_small_patch16_224", dynamic_img_size=True, overwrite=True)
    >>> spec.timm_name
    'vit_small_patch16_224'
    """
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        raise ValueError(f"`name` must be a non-empty string of letters, digits, '.', '_' or '-', got {name!r}.")
    if not isinstance(timm_name, str) or not timm_name:
        raise ValueError(f"`timm_name` must be a timm model name or 'hf-hub:org/repo', got {timm_name!r}.")
    if checkpoint_format not in ("timm", "ciga"):
        raise ValueError(f"`checkpoint_format` must be 'timm' or 'ciga', got {checkpoint_format!r}.")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"`name`={name!r} is already registered; pass `overwrite=True` to replace it.")
    spec = EncoderSpec(
        name=name,
        timm_name=timm_name,
        kwargs=dict(kwargs),
        arch=arch,
        cfg_overlay=dict(cfg_overlay or {}),
        checkpoint_format=checkpoint_format,
        weights_url=weights_url,
        doc=doc,
    )
    _REGISTRY[name] = spec
    return spec


def list_encoders() -> dict[str, str]:
    """Registered encoder names with their timm source and description.

    Any other timm model name and any ``hf-hub:`` id also work with :func:`~genedml.encoders.create_encoder`.

    Returns
    -------
    ``{name: "timm_name — description"}``, sorted by name.

    Examples
    --------
    >>> from genedml.encoders import list_encoders
    >>> "uni" in list_encoders()
    True
    """
    return {k: f"{s.timm_name} — {s.doc}" if s.doc else s.timm_name for k, s in sorted(_REGISTRY.items())}


def get_spec(name: str) -> EncoderSpec | None:
    """The registered spec of ``name`` or ``None``."""
    return _REGISTRY.get(name)


def _builtin() -> None:
    imagenet = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    register_encoder(
        "uni",
        "hf-hub:MahmoodLab/UNI",
        arch="vit_large_patch16_224",
        cfg_overlay={**imagenet, "input_size": (3, 224, 224), "interpolation": "bicubic"},
        init_values=1e-5,
        dynamic_img_size=True,
        doc="UNI ViT-L/16 (gated; the paper's encoder, 1024-d)",
    )
    register_encoder(
        "uni2-h",
        "hf-hub:MahmoodLab/UNI2-h",
        arch="vit_giant_patch14_224",
        cfg_overlay={**imagenet, "input_size": (3, 224, 224), "interpolation": "bicubic"},
        img_size=224,
        patch_size=14,
        depth=24,
        num_heads=24,
        init_values=1e-5,
        embed_dim=1536,
        mlp_ratio=2.66667 * 2,
        no_embed_class=True,
        mlp_layer="obj:timm.layers.SwiGLUPacked",
        act_layer="obj:torch.nn.SiLU",
        reg_tokens=8,
        dynamic_img_size=True,
        doc="UNI2-h ViT-H/14 with registers (gated, 1536-d)",
    )
    register_encoder("resnet18", "resnet18.a1_in1k", doc="ImageNet ResNet18 (512-d)")
    register_encoder("resnet50", "resnet50.a1_in1k", doc="ImageNet ResNet50 (2048-d)")
    register_encoder(
        "ciga-resnet18",
        "resnet18",
        cfg_overlay={**imagenet, "input_size": (3, 224, 224)},
        checkpoint_format="ciga",
        weights_url=(
            "https://github.com/ozanciga/self-supervised-histopathology/releases/download/tenpercent/"
            "tenpercent_resnet18.ckpt"
        ),
        doc="Ciga et al. self-supervised histopathology ResNet18 (TRIPLEX's backbone, 512-d)",
    )
    register_encoder(
        "morphology",
        "genedml:morphology",
        doc="handcrafted colour/stain/texture/nuclei features (63-d, no weights; tokens = 2×2 sub-tiles)",
    )
    register_encoder("test_vit", "test_vit", dynamic_img_size=True, doc="timm's tiny test ViT (tests only)")
    register_encoder("test_resnet", "test_resnet", doc="timm's tiny test ResNet (tests only)")


_builtin()
