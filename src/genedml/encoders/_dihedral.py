"""The eight flips/rotations of a square image, shared by the embedding pass and the models' augmentations."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["N_DIHEDRAL", "dihedral"]

N_DIHEDRAL = 8


def dihedral(x: torch.Tensor, k: int, *, channels_last: bool = False) -> torch.Tensor:
    """Variant ``k`` of an image batch: ``k % 4`` quarter turns, then a left–right flip when ``k ≥ 4``.

    Parameters
    ----------
    x
        ``(..., C, H, W)`` images, or ``(..., H, W, C)`` with ``channels_last=True`` (windows as cut).
    k
        Variant in ``0..7``; ``0`` is the identity.
    channels_last
        Where the channel axis is.

    Returns
    -------
    The transformed tensor (a view or a new tensor; ``x`` is not modified).

    Examples
    --------
    >>> import torch
    >>> from genedml.encoders import dihedral
    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> dihedral(x, 4).flatten().tolist()
    [1.0, 0.0, 3.0, 2.0]
    """
    import torch

    if isinstance(k, bool) or not 0 <= int(k) < N_DIHEDRAL:
        raise ValueError(f"`k` must be an int in [0, 7], got {k!r}.")
    h, w = (-3, -2) if channels_last else (-2, -1)
    if k % 4:
        x = torch.rot90(x, int(k) % 4, dims=(h, w))
    if k >= 4:
        x = torch.flip(x, dims=(w,))
    return x
