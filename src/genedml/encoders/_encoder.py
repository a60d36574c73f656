"""The frozen image encoder: a timm model behind one small interface (tokens, pooled feature, data config)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._logging import logger
from .._settings import settings
from ._registry import EncoderSpec, get_spec, list_encoders
from ._weights import (
    WeightsUnavailableError,
    file_sha256,
    hub_has_cached_weights,
    hub_is_offline,
    hub_repo_of,
    load_state_dict_file,
    missing_weights_message,
    normalize_state_dict,
    state_dict_sha256,
)

__all__ = ["Encoder", "create_encoder", "resolve_device"]

_INTERP = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest", "area": "area"}
_WARNED_RANDOM: set[str] = set()  # encoders whose random-weights warning was logged in this process


class Encoder(nn.Module):
    """A frozen timm model (``num_classes=0``) with the interface genedml's branches need.

    Build it with :func:`create_encoder`. Always in eval mode with ``requires_grad=False``; ``train()`` keeps it so.

    Parameters
    ----------
    model
        The timm model.
    identity
        Short id used in keys and cache entries (registry name, timm name or ``hf-hub:`` id).
    weights_hash
        ``sha256`` of the weights file, of the state dict for random weights, or ``"timm:<source>"``.
    spec
        The spec it was built from.
    """

    def __init__(self, model: nn.Module, *, identity: str, weights_hash: str, spec: EncoderSpec) -> None:
        super().__init__()
        import timm.data

        self.model = model
        self.identity = identity
        self.weights_hash = weights_hash
        self.spec = spec
        cfg = timm.data.resolve_data_config({}, model=model)
        self._data_config = {
            "input_size": tuple(int(v) for v in cfg["input_size"]),
            "mean": tuple(float(v) for v in cfg["mean"]),
            "std": tuple(float(v) for v in cfg["std"]),
            "interpolation": str(cfg.get("interpolation", "bilinear")),
            "crop_pct": float(cfg.get("crop_pct", 1.0)),
        }
        pcfg = getattr(model, "pretrained_cfg", None) or {}
        self._fixed = bool(pcfg.get("fixed_input_size", False)) and not getattr(model, "dynamic_img_size", False)
        self._n_tokens: dict[tuple[int, int], int] = {}
        # a pre-logits head that widens the features (MobileNetV3's conv_head) would break the shared width D
        self._head_pools = getattr(model, "head_hidden_size", None) in (None, int(model.num_features))
        self.register_buffer("_mean", torch.tensor(self._data_config["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self._data_config["std"]).view(1, 3, 1, 1), persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    # ------------------------------------------------------------------ properties
    @property
    def num_features(self) -> int:
        """Feature width D of tokens and pooled output."""
        return int(self.model.num_features)

    @property
    def num_prefix_tokens(self) -> int:
        """Class/register tokens before the patch tokens (0 for CNNs)."""
        return int(getattr(self.model, "num_prefix_tokens", 0) or 0)

    @property
    def data_config(self) -> dict[str, Any]:
        """``input_size`` (C, H, W), ``mean``, ``std``, ``interpolation``, ``crop_pct`` (timm pretrained config)."""
        return dict(self._data_config)

    @property
    def fixed_input_size(self) -> tuple[int, int] | None:
        """``(H, W)`` the model requires, or ``None`` when it accepts any size (CNNs, ViTs with dynamic size)."""
        return tuple(self._data_config["input_size"][1:]) if self._fixed else None

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self._mean.device

    def input_px(self, window_px: int) -> int:
        """Side in pixels fed to the model for a window of ``window_px``: the window's own size unless fixed."""
        fixed = self.fixed_input_size
        return int(window_px) if fixed is None else int(fixed[0])

    def train(self, mode: bool = True) -> Encoder:
        """Keep the encoder in eval mode (it is frozen)."""
        return super().train(False)

    # ------------------------------------------------------------------ compute
    def prepare(self, x: torch.Tensor, *, size: int | None = None) -> torch.Tensor:
        """``uint8`` images ``(B, 3, h, w)`` → normalised float on the encoder's device at ``size`` (default: kept)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"`x` must be shaped (B, 3, H, W), got {tuple(x.shape)}.")
        x = x.to(self.device)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        size = self.input_px(x.shape[-1]) if size is None else int(size)
        if x.shape[-2:] != (size, size):
            mode = _INTERP.get(self._data_config["interpolation"], "bilinear")
            aa = mode in ("bilinear", "bicubic")
            x = torch.nn.functional.interpolate(x, size=(size, size), mode=mode, antialias=aa, align_corners=False)
            if mode == "bicubic":
                x = x.clamp_(0.0, 1.0)
        return (x - self._mean) / self._std

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    @staticmethod
    def _as_tokens(feats: torch.Tensor) -> torch.Tensor:
        if feats.ndim == 4:  # CNN map (B, D, H, W) → positions row-major
            return feats.flatten(2).transpose(1, 2)
        if feats.ndim != 3:
            raise RuntimeError(f"unsupported forward_features output shape {tuple(feats.shape)}.")
        return feats

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens ``(B, T, D)``: ViT prefix + patch tokens after the final norm; CNN map positions row-major."""
        return self._as_tokens(self._features(x))

    def _pool(self, feats: torch.Tensor) -> torch.Tensor:
        if self._head_pools:
            return self.model.forward_head(feats, pre_logits=True)
        pool = getattr(self.model, "global_pool", None)
        out = pool(feats) if isinstance(pool, nn.Module) else feats.mean(dim=tuple(range(2, feats.ndim)))
        return out.flatten(1)

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled feature ``(B, D)``: ``forward_head(forward_features(x), pre_logits=True)``.

        When a model's pre-logits head changes the width (MobileNetV3's ``conv_head``), its global pooling of the
        feature map is used instead, so that tokens and pooled features share ``D = num_features``.
        """
        return self._pool(self._features(x))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens and pooled feature from one pass."""
        feats = self._features(x)
        return self._as_tokens(feats), self._pool(feats)

    def n_tokens(self, input_size: int | tuple[int, int]) -> int:
        """Number of target tokens T for an input of ``input_size`` pixels (side or ``(H, W)``)."""
        hw = (int(input_size), int(input_size)) if isinstance(input_size, int) else tuple(map(int, input_size))
        if hw not in self._n_tokens:
            with torch.no_grad():
                self._n_tokens[hw] = int(self.forward_tokens(torch.zeros(1, 3, *hw, device=self.device)).shape[1])
        return self._n_tokens[hw]

    def describe(self) -> dict[str, Any]:
        """Provenance: identity, timm name, weights hash, width, data config."""
        return {
            "identity": self.identity,
            "timm_name": self.spec.timm_name,
            "architecture": type(self.model).__name__,
            "weights_hash": self.weights_hash,
            "num_features": self.num_features,
            "num_prefix_tokens": self.num_prefix_tokens,
            "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in self._data_config.items()},
        }

    def extra_repr(self) -> str:
        return f"identity={self.identity!r}, num_features={self.num_features}, weights={self.weights_hash[:16]}"


# ---------------------------------------------------------------------------------------------- factory


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` → ``gd.settings.device``; ``"auto"`` → CUDA when available, else CPU."""
    dev = settings.device if device is None else device
    if isinstance(dev, torch.device):
        return dev
    if dev == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(dev)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"`device` must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}.") from err


def resolve_spec(name_or_spec: str | EncoderSpec) -> EncoderSpec:
    import timm

    if isinstance(name_or_spec, EncoderSpec):
        return name_or_spec
    if not isinstance(name_or_spec, str) or not name_or_spec:
        raise ValueError(f"`encoder` must be a registry name, timm name or 'hf-hub:' id, got {name_or_spec!r}.")
    spec = get_spec(name_or_spec)
    if spec is not None:
        return spec
    if name_or_spec.startswith("hf-hub:") or timm.is_model(name_or_spec.split(".")[0]):
        return EncoderSpec(name=name_or_spec, timm_name=name_or_spec)
    raise ValueError(
        f"`encoder`={name_or_spec!r} is not a registered encoder ({sorted(list_encoders())}), a timm model name "
        "(see `timm.list_models()`) or an 'hf-hub:org/repo' id."
    )


def _kwargs(spec: EncoderSpec) -> dict[str, Any]:
    out = {}
    for key, value in spec.kwargs.items():
        if isinstance(value, str) and value.startswith("obj:"):
            module, _, attr = value.removeprefix("obj:").rpartition(".")
            value = getattr(importlib.import_module(module), attr)
        out[key] = value
    return out


def build_architecture(spec: EncoderSpec) -> nn.Module:
    """Randomly initialised (seeded, so reproducible) model of the spec's architecture."""
    import timm

    arch = spec.architecture
    if arch.startswith("hf-hub:"):
        repo = arch.removeprefix("hf-hub:")
        if hub_is_offline() and not _hub_config_cached(repo):
            raise WeightsUnavailableError(
                f"encoder {spec.name!r}: the architecture of {arch!r} is defined by its Hub config, which is not "
                "cached and HF_HUB_OFFLINE is set. Register the encoder with `arch=<timm architecture>` "
                "(`gd.encoders.register_encoder`) or run once online."
            )
    overlay = dict(spec.cfg_overlay) or None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return timm.create_model(arch, pretrained=False, num_classes=0, pretrained_cfg_overlay=overlay, **_kwargs(spec))


def _hub_config_cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, "config.json"), str)


def _load_file(model: nn.Module, spec: EncoderSpec, path: Path) -> None:
    raw = load_state_dict_file(path)
    keys = set(model.state_dict())
    sd = normalize_state_dict(raw, checkpoint_format=spec.checkpoint_format, model_keys=keys)
    missing, unexpected = sorted(keys - set(sd)), sorted(set(sd) - keys)
    if missing or unexpected:
        raise ValueError(
            f"`weights`={str(path)!r} does not match encoder {spec.name!r} ({spec.architecture}): "
            f"{len(missing)} missing key(s) {missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}. "
            "Check the encoder name or the checkpoint format."
        )
    model.load_state_dict(sd, strict=True)


HUB_PROBE_TIMEOUT_S = 3.0


def hub_unreachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face Hub cannot be reached (name lookup + TCP connect, ``timeout`` s in all), or ``None``."""
    import socket
    import threading
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    result: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(None)
        except OSError as err:
            result.append(f"{type(err).__name__}: {err}")

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    t.start()
    t.join(timeout)
    if not result:
        return f"the Hugging Face Hub ({host}) did not answer within {timeout:.0f} s (offline?)."
    if result[0] is None:
        return None
    return f"the Hugging Face Hub ({host}) is unreachable ({result[0]}): this machine looks offline."


def _from_pretrained(spec: EncoderSpec) -> tuple[nn.Module, str]:
    import timm

    if spec.checkpoint_format == "ciga":
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(spec.weights_url or "none").name
        if not cached.is_file():
            reason = f"no local copy at {cached}."
            raise WeightsUnavailableError(
                missing_weights_message(spec.name, repo=None, url=spec.weights_url, reason=reason)
            )
        model = build_architecture(spec)
        _load_file(model, spec, cached)
        return model, file_sha256(cached)
    cfg = timm.get_pretrained_cfg(spec.timm_name) if not spec.timm_name.startswith("hf-hub:") else None
    cfg_dict = cfg.to_dict() if cfg is not None else None
    repo = hub_repo_of(cfg_dict, spec.timm_name)
    if repo is None and not (cfg_dict and (cfg_dict.get("url") or cfg_dict.get("file"))):
        reason = f"timm has no pretrained weights for {spec.timm_name!r}."
        raise WeightsUnavailableError(missing_weights_message(spec.name, repo=None, url=None, reason=reason))
    if repo is not None and not hub_has_cached_weights(repo):
        if hub_is_offline():
            reason = f"HF_HUB_OFFLINE is set and {repo!r} is not in the local Hugging Face cache."
        else:  # one short probe instead of huggingface_hub's ~50 s of retries on a machine without internet
            reason = hub_unreachable()
        if reason is not None:
            raise WeightsUnavailableError(
                missing_weights_message(spec.name, repo=repo, url=spec.weights_url, reason=reason)
            )
    try:
        model = timm.create_model(spec.timm_name, pretrained=True, num_classes=0, **_kwargs(spec))
    except Exception as err:
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        msg = missing_weights_message(spec.name, repo=repo, url=spec.weights_url, reason=reason)
        raise WeightsUnavailableError(msg) from err
    return model, f"timm:{repo or spec.timm_name}"


def create_encoder(
    name_or_spec: str | EncoderSpec,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
) -> Encoder:
    """Build a frozen encoder from the registry, any timm model name or an ``hf-hub:`` id.

    Parameters
    ----------
    name_or_spec
        Registry name (:func:`~genedml.encoders.list_encoders`: ``"uni"``, ``"uni2-h"``, ``"resnet18"``,
        ``"resnet50"``, ``"ciga-resnet18"``, ``"test_vit"``, ``"test_resnet"``), a timm model name, an
        ``"hf-hub:org/repo"`` id or an :class:`~genedml.encoders.EncoderSpec`.
    pretrained
        Load pretrained weights (Hugging Face Hub, token from ``HF_TOKEN``; cached under ``HF_HOME``). ``False``
        gives seeded random weights and logs a warning: the features then carry no learned information.
    weights
        Local weights file (``.pth``, ``.pt``, ``.bin``, ``.ckpt``, ``.safetensors``; plain or Lightning-style
        state dict; the Ciga format for ``"ciga-resnet18"``). Overrides ``pretrained``.
    device
        ``None`` follows ``gd.settings.device``.

    Returns
    -------
    The frozen encoder, in eval mode on ``device``. ``"morphology"`` gives a
    :class:`~genedml.encoders.MorphologyEncoder` (handcrafted features, no weights) and ``"a+b"`` (e.g.
    ``"morphology+resnet18"``) a :class:`~genedml.encoders.ConcatEncoder` of the named parts; ``pretrained`` and
    ``weights`` then apply to the one part that has weights.

    Raises
    ------
    WeightsUnavailableError
        Weights are needed but cannot be obtained (offline, gated, not cached); the message says how to provide
        them.

    Examples
    --------
    >>> import torch
    >>> from genedml.encoders import create_encoder
    >>> enc = create_encoder("test_resnet", pretrained=False, device="cpu")
    >>> enc.forward_pooled(torch.zeros(2, 3, 64, 64)).shape
    torch.Size([2, 96])
    """
    if isinstance(name_or_spec, str) and "+" in name_or_spec:
        return _create_combined(name_or_spec, pretrained=pretrained, weights=weights, device=device)
    spec = resolve_spec(name_or_spec)
    if spec.timm_name.startswith("genedml:"):
        return _create_builtin(spec, pretrained=pretrained, weights=weights, device=device)
    if not isinstance(pretrained, bool):
        raise ValueError(f"`pretrained` must be a bool, got {pretrained!r}.")
    dev = resolve_device(device)
    if weights is not None:
        path = Path(weights).expanduser()
        model = build_architecture(spec)
        _load_file(model, spec, path)
        weights_hash = file_sha256(path)
    elif pretrained:
        model, weights_hash = _from_pretrained(spec)
    else:
        if spec.name not in _WARNED_RANDOM:  # once per encoder and process, not at every setup/predict
            _WARNED_RANDOM.add(spec.name)
            logger.warning(
                "encoder %r uses random weights (`pretrained=False`): its features carry no learned information.",
                spec.name,
            )
        model = build_architecture(spec)
        weights_hash = state_dict_sha256(model.state_dict())
    return Encoder(model, identity=spec.name, weights_hash=weights_hash, spec=spec).to(dev)


def _create_builtin(spec: EncoderSpec, *, pretrained: bool, weights, device) -> nn.Module:
    """Encoders genedml computes itself (``timm_name`` ``"genedml:<kind>"``)."""
    from ._feature_encoders import MorphologyEncoder

    if spec.timm_name != "genedml:morphology":
        raise ValueError(f"`encoder`={spec.name!r}: unknown built-in kind {spec.timm_name!r}.")
    if weights is not None:
        raise ValueError(f"`weights` was given but encoder {spec.name!r} has no weights (handcrafted features).")
    if not isinstance(pretrained, bool):
        raise ValueError(f"`pretrained` must be a bool, got {pretrained!r}.")
    enc = MorphologyEncoder(**spec.kwargs)
    enc.identity = spec.name
    return enc.to(resolve_device(device))


def _create_combined(name: str, *, pretrained: bool, weights, device) -> nn.Module:
    """``"a+b+…"`` → the parts' features concatenated; ``weights`` go to the one part that has weights."""
    from ._feature_encoders import ConcatEncoder, MorphologyEncoder

    names = name.split("+")
    if any(not n for n in names) or len(set(names)) != len(names):
        raise ValueError(
            f"`encoder`={name!r}: a combination is 'a+b' with distinct, non-empty encoder names "
            "(e.g. 'morphology+resnet18')."
        )
    specs = [resolve_spec(n) for n in names]
    learned = [s.name for s in specs if not s.timm_name.startswith("genedml:")]
    if weights is not None and len(learned) != 1:
        raise ValueError(
            f"`weights` of `encoder`={name!r} is ambiguous: it applies to the one part with weights, and this "
            f"combination has {len(learned)} ({learned})."
        )
    parts = [create_encoder(s, pretrained=pretrained, weights=weights if s.name in learned else None, device=device)
             for s in specs]  # fmt: skip
    if sum(isinstance(p, MorphologyEncoder) for p in parts) > 1:
        raise ValueError(f"`encoder`={name!r} names the morphology encoder twice.")
    return ConcatEncoder(parts).to(resolve_device(device))
