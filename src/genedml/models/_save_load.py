"""One self-describing checkpoint file per model (weights, configs, genes, recipe, encoder, version).

Every file carries a ``checksum``: sha256 over all its tensors (names, shapes, dtypes, bytes) and all its other
entries. :func:`read_checkpoint` recomputes it and refuses a file whose content changed after it was written
(flipped bits, a partial copy, an edit), so a damaged model never loads silently.
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path
from typing import Any

import torch

from .._logging import logger
from .._utils import atomic_path

__all__ = ["FORMAT", "CheckpointError", "payload_checksum", "read_checkpoint", "state_hash", "write_checkpoint"]

FORMAT = "genedml-model/1"


class CheckpointError(ValueError):
    """A model file is unreadable, of another format, or damaged (its checksum does not match its content)."""


def state_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over parameter names and bytes (identifies trained weights in provenance)."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        t = state_dict[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


def payload_checksum(payload: dict[str, Any]) -> str:
    """sha256 of a checkpoint's whole content except the ``checksum`` entry itself (tensors and plain values)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in payload.items() if k != "checksum"})
    return h.hexdigest()


def _feed(h, obj: Any) -> None:
    if isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=str):
            h.update(f"{k!s}:".encode())
            _feed(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, list | tuple):
        h.update(b"[")
        for v in obj:
            _feed(h, v)
        h.update(b"]")
    elif torch.is_tensor(obj):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{tuple(t.shape)}{t.dtype}|".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, float):
        h.update(("nan" if math.isnan(obj) else float.hex(obj)).encode())
    else:
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def write_checkpoint(path: str | Path, payload: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write atomically (with a content checksum); an existing file is replaced only with ``overwrite=True``.

    A failed write leaves no file and an existing file untouched; its error names ``path``, not a temporary file.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"`path`={str(path)!r} is a folder; give a file name such as 'model.pt'.")
    if path.exists() and not overwrite:
        raise FileExistsError(f"`path`={str(path)!r} exists; pass overwrite=True to replace it.")
    full = {"format": FORMAT, **payload}
    full["checksum"] = payload_checksum(full)
    buf = io.BytesIO()
    torch.save(full, buf)
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(buf.getvalue())
    except OSError as err:
        raise OSError(
            err.errno, f"`path`={str(path)!r}: the model could not be written ({err.strerror or err})"
        ) from None
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read safely (tensors and plain containers only), check the format tag and verify the checksum.

    Raises
    ------
    FileNotFoundError
        ``path`` is not a file.
    CheckpointError
        The file is not a genedml checkpoint, is truncated, or its content does not match its checksum.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path`={str(path)!r}: no such checkpoint file.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, random bytes: never unpickled beyond tensors
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"`path`={str(path)!r} is not a readable genedml checkpoint (truncated, corrupted or another format): "
            f"{first}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"`path`={str(path)!r} is not a genedml checkpoint (format {FORMAT!r} expected).")
    _verify(path, payload)
    return payload


def _verify(path: Path, payload: dict[str, Any]) -> None:
    damaged = (
        f"`path`={str(path)!r} is damaged: its content does not match the checksum written with it (bytes changed "
        "after saving: a faulty copy or disk, or an edit). Use an intact copy of the file."
    )
    stored = payload.get("checksum")
    if stored is not None:
        if not isinstance(stored, str) or payload_checksum(payload) != stored:
            raise CheckpointError(damaged)
        return
    state = payload.get("state_dict", payload.get("state"))
    if isinstance(state, dict) and isinstance(payload.get("model_hash"), str):
        try:
            ok = state_hash(state) == payload["model_hash"]
        except (AttributeError, TypeError, RuntimeError):
            ok = False
        if not ok:
            raise CheckpointError(damaged)
        logger.warning(
            "%s has no content checksum (written by an older genedml): only its weights could be verified.", path.name
        )
        return
    raise CheckpointError(f"`path`={str(path)!r} has neither a checksum nor a model hash: it cannot be verified.")
