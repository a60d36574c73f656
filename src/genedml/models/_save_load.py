"""One self-describing checkpoint file per model (weights, configs, genes, recipe, encoder, version)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from .._utils import atomic_path

__all__ = ["FORMAT", "read_checkpoint", "state_hash", "write_checkpoint"]

FORMAT = "genedml-model/1"


def state_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over parameter names and bytes (identifies trained weights in provenance)."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def write_checkpoint(path: str | Path, payload: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write atomically; an existing file is replaced only with ``overwrite=True``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"`path`={str(path)!r} exists; pass overwrite=True to replace it.")
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **payload}, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read and check the format tag (safe loading: tensors and plain containers only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path`={str(path)!r}: no such checkpoint file.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"`path`={str(path)!r} is not a readable genedml checkpoint: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"`path`={str(path)!r} is not a genedml checkpoint (format {FORMAT!r} expected).")
    return payload
