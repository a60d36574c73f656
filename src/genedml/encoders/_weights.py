"""Encoder weights: local files, checkpoint key conversion, content hashes and clear errors when weights are missing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .._utils import file_sha256

__all__ = [
    "WeightsUnavailableError",
    "convert_ciga_state_dict",
    "convert_hint",
    "file_sha256",
    "hub_repo_of",
    "load_state_dict_file",
    "missing_weights_message",
    "normalize_state_dict",
    "state_dict_sha256",
]

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights cannot be obtained here; the message says how to provide them."""


def state_dict_sha256(state_dict: dict[str, Any]) -> str:
    """Hex sha256 over the names, shapes, dtypes and bytes of a state dict, in key order."""
    import torch

    h = hashlib.sha256()
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        if t.numel():
            h.update(t.view(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def convert_hint(path: str | os.PathLike) -> str:
    """A short snippet that re-saves a trusted torch checkpoint as ``.safetensors`` (tensors only)."""
    p = Path(path)
    out = p.with_suffix(".safetensors").name
    return (
        "If you trust the file, convert it once to safetensors (tensors only, no code) and pass the new file:\n"
        "    import torch, safetensors.torch\n"
        f"    ck = torch.load({p.name!r}, weights_only=False)  # runs the file's code: trusted files only\n"
        "    sd = ck.get('state_dict', ck) if isinstance(ck, dict) else ck.state_dict()\n"
        "    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items() if hasattr(v, 'contiguous')}, "
        f"{out!r})"
    )


def load_state_dict_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``.safetensors`` file, or a ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt`` torch file, into a dict on the CPU.

    Nothing in the file is ever executed: torch files are read with ``torch.load(weights_only=True)`` (tensors and
    plain containers only), and a file that needs more (arbitrary pickled objects, as some Lightning checkpoints
    hold) is refused with a ``ValueError`` that shows how to convert it to safetensors.
    """
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"`weights`={str(path)!r} is not a file.")
    if p.suffix not in WEIGHT_SUFFIXES:
        raise ValueError(
            f"`weights`={str(path)!r}: expected a file ending in one of {WEIGHT_SUFFIXES} (.safetensors preferred)."
        )
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise ValueError(
                f"`weights`={str(path)!r} is not a valid safetensors file (truncated, corrupted or another format): "
                f"{err}"
            ) from None
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure of the safe loader means: refuse, never unpickle fully
        raise ValueError(
            f"`weights`={str(path)!r} cannot be read safely: it is not a plain tensor checkpoint ({_reason(err)}). "
            "genedml never unpickles arbitrary objects from a weights file, since that can run code.\n"
            + convert_hint(p)
        ) from None


def _reason(err: Exception) -> str:
    """One clean line on why the safe loader refused a file (the pickled global it met, when that is the cause)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it holds a pickled object, {found.group(1)}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[0][:200]}" if lines else type(err).__name__


def _unwrap(obj: Any) -> dict[str, Any]:
    """The tensor dict inside common checkpoint containers (``state_dict``, ``model``, ``module``)."""
    for key in ("state_dict", "model", "module", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            return _unwrap(obj[key])
    if not isinstance(obj, dict):
        raise ValueError(f"`weights`: expected a state dict (mapping of tensors), got {type(obj).__name__}.")
    return obj


def convert_ciga_state_dict(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Keys of Ciga et al.'s self-supervised ResNet checkpoint → timm ResNet keys (projection head dropped).

    The checkpoint is a Lightning dict whose ``state_dict`` keys read ``model.resnet.<torchvision key>``; the
    ``fc`` entries are the self-supervised projection head, unused for features.
    """
    sd = _unwrap(checkpoint)
    out: dict[str, Any] = {}
    for key, value in sd.items():
        name = key
        for prefix in ("module.", "model.", "resnet."):
            name = name.removeprefix(prefix)
        if name.startswith("fc.") or name == "fc":
            continue
        out[name] = value
    if not out:
        raise ValueError(
            "`weights`: no ResNet parameters found in the Ciga checkpoint (expected keys 'model.resnet.*')."
        )
    return out


def normalize_state_dict(obj: dict[str, Any], *, checkpoint_format: str, model_keys: set[str]) -> dict[str, Any]:
    """Unwrap a checkpoint, convert its keys to the model's and drop classifier heads absent from the model."""
    sd = convert_ciga_state_dict(obj) if checkpoint_format == "ciga" else _unwrap(obj)
    sd = {k: v for k, v in sd.items() if hasattr(v, "shape")}
    for prefix in ("module.", "model.", "backbone.", "encoder."):
        if sd and not (set(sd) & model_keys) and all(k.startswith(prefix) for k in sd):
            sd = {k.removeprefix(prefix): v for k, v in sd.items()}
    head = ("fc.", "head.", "classifier.", "head.fc.")
    return {k: v for k, v in sd.items() if k in model_keys or not k.startswith(head)}


def hub_repo_of(pretrained_cfg: dict[str, Any] | None, timm_name: str) -> str | None:
    """The Hugging Face repository holding a model's pretrained weights, or ``None``."""
    if timm_name.startswith("hf-hub:"):
        return timm_name.removeprefix("hf-hub:").split("@")[0]
    if pretrained_cfg and pretrained_cfg.get("hf_hub_id"):
        return str(pretrained_cfg["hf_hub_id"]).split("@")[0]
    return None


def hub_is_offline() -> bool:
    """Whether huggingface_hub is in offline mode (``HF_HUB_OFFLINE=1``)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    if value.upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - huggingface_hub ships with timm
        return False


def hub_has_cached_weights(repo: str) -> bool:
    """Whether a weights file of ``repo`` is already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return True
    return False


def missing_weights_message(name: str, *, repo: str | None, url: str | None, reason: str) -> str:
    """How to provide weights that could not be loaded (file path, token, cache)."""
    lines = [
        f"Pretrained weights for encoder {name!r} are not available: {reason}",
        "Provide them in one of these ways:",
    ]
    lines.append(
        "  * a local file: `weights='/path/to/model.safetensors'` (.safetensors, or a .pth/.bin/.ckpt holding tensors "
        "only);"
    )
    if repo is not None:
        lines.append(
            f"  * the Hugging Face Hub repository {repo!r}: accept its terms if it is gated, set the access token in "
            "the environment (`HF_TOKEN=hf_...`), unset `HF_HUB_OFFLINE`, and run once with internet access; the "
            "file is then cached (HF_HOME, default ~/.cache/huggingface) and works offline afterwards;"
        )
    if url is not None:
        lines.append(f"  * download {url} and pass its path as `weights=`;")
    lines.append("  * or `pretrained=False` for randomly initialised weights (features then carry no information).")
    return "\n".join(lines)
