"""Shape and dtype checks of the network inputs; messages name the tensor and the expected shape."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["check_inputs", "check_rows", "check_section_tokens", "check_sections"]


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_tensor(name: str, t: object, ndim: int, expected: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape {expected}, got {type(t).__name__}.")
    if t.dim() != ndim:
        raise ValueError(f"`{name}` must have shape {expected}, got {_shape(t)}.")
    return t


def _check_float(name: str, t: torch.Tensor, expected: str) -> None:
    if not t.dtype.is_floating_point:
        raise ValueError(f"`{name}` ({expected}) must be a floating-point tensor, got dtype {t.dtype}.")


def _check_index(name: str, t: object, batch: int) -> torch.Tensor:
    t = _check_tensor(name, t, 1, f"({batch},)")
    if t.shape[0] != batch or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"`{name}` must be an integer tensor of shape ({batch},), got {_shape(t)} {t.dtype}.")
    return t


def _check_spots(
    target: torch.Tensor, neighbor: torch.Tensor, neighbor_mask: torch.Tensor, in_dim: int, n_neighbors: int
) -> int:
    _check_tensor("target", target, 3, f"(B, T, {in_dim})")
    batch = target.shape[0]
    if target.shape[2] != in_dim or target.shape[1] < 1:
        raise ValueError(f"`target` must have shape (B, T ≥ 1, {in_dim}), got {_shape(target)}.")
    _check_float("target", target, f"(B, T, {in_dim})")
    expected = f"({batch}, {n_neighbors}, {in_dim})"
    _check_tensor("neighbor", neighbor, 3, expected)
    if _shape(neighbor) != (batch, n_neighbors, in_dim):
        raise ValueError(f"`neighbor` must have shape {expected}, got {_shape(neighbor)}.")
    _check_float("neighbor", neighbor, expected)
    _check_tensor("neighbor_mask", neighbor_mask, 2, f"({batch}, {n_neighbors})")
    if _shape(neighbor_mask) != (batch, n_neighbors) or neighbor_mask.dtype != torch.bool:
        raise ValueError(
            f"`neighbor_mask` must be a bool tensor of shape ({batch}, {n_neighbors}) (True = valid tile), "
            f"got {_shape(neighbor_mask)} {neighbor_mask.dtype}."
        )
    return batch


def check_sections(section_feats: Sequence[torch.Tensor], section_pos: Sequence[torch.Tensor], in_dim: int) -> None:
    for name, value in (("section_feats", section_feats), ("section_pos", section_pos)):
        if isinstance(value, torch.Tensor) or not isinstance(value, Sequence):
            raise TypeError(f"`{name}` must be a list of tensors (one per section), got {type(value).__name__}.")
    if len(section_feats) != len(section_pos) or not section_feats:
        raise ValueError(
            "`section_feats` and `section_pos` must be non-empty lists of equal length, got "
            f"{len(section_feats)} and {len(section_pos)}."
        )
    for s, (feats, pos) in enumerate(zip(section_feats, section_pos)):
        _check_tensor(f"section_feats[{s}]", feats, 2, f"(N_s, {in_dim})")
        if feats.shape[1] != in_dim or feats.shape[0] < 1:
            raise ValueError(f"`section_feats[{s}]` must have shape (N_s ≥ 1, {in_dim}), got {_shape(feats)}.")
        _check_float(f"section_feats[{s}]", feats, f"(N_s, {in_dim})")
        _check_tensor(f"section_pos[{s}]", pos, 2, f"({feats.shape[0]}, 2)")
        if _shape(pos) != (feats.shape[0], 2):
            raise ValueError(f"`section_pos[{s}]` must have shape ({feats.shape[0]}, 2), got {_shape(pos)}.")


def check_rows(section_of: object, spot_of: object, sizes: Sequence[int], batch: int) -> None:
    """Check that ``section_of`` / ``spot_of`` index existing sections and rows."""
    section_of = _check_index("section_of", section_of, batch)
    spot_of = _check_index("spot_of", spot_of, batch)
    if batch == 0:
        return
    n_sections = len(sizes)
    if int(section_of.min()) < 0 or int(section_of.max()) >= n_sections:
        raise ValueError(
            f"`section_of` must index the {n_sections} given section(s), got values outside [0, {n_sections})."
        )
    limits = torch.as_tensor(list(sizes), device=section_of.device)[section_of.long()]
    bad = (spot_of < 0) | (spot_of >= limits)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"`spot_of[{i}]`={int(spot_of[i])} is outside section {int(section_of[i])}, "
            f"which has {int(limits[i])} spots."
        )


def check_inputs(
    target: torch.Tensor,
    neighbor: torch.Tensor,
    neighbor_mask: torch.Tensor,
    y: torch.Tensor | None,
    *,
    in_dim: int,
    n_neighbors: int,
    n_genes: int,
) -> int:
    """Validate the per-spot inputs; return the batch size."""
    batch = _check_spots(target, neighbor, neighbor_mask, in_dim, n_neighbors)
    if y is not None:
        _check_tensor("y", y, 2, f"({batch}, {n_genes})")
        if _shape(y) != (batch, n_genes):
            raise ValueError(f"`y` must have shape ({batch}, {n_genes}), got {_shape(y)}.")
        _check_float("y", y, f"({batch}, {n_genes})")
    return batch


def check_section_tokens(section_tokens: Sequence[torch.Tensor], width: int) -> None:
    """Check precomputed global-encoder outputs: a non-empty list of ``(N_s, width)`` tensors."""
    if isinstance(section_tokens, torch.Tensor) or not isinstance(section_tokens, Sequence) or not section_tokens:
        raise TypeError("`section_tokens` must be a non-empty list of tensors (the output of `encode_sections`).")
    for s, tokens in enumerate(section_tokens):
        _check_tensor(f"section_tokens[{s}]", tokens, 2, f"(N_s, {width})")
        if tokens.shape[1] != width:
            raise ValueError(f"`section_tokens[{s}]` must have shape (N_s, {width}), got {_shape(tokens)}.")
