"""Encoders without a timm model: handcrafted morphology features, and concatenations of encoders.

Both have the interface of :class:`~genedml.encoders.Encoder` that the embedding pipeline and the models use
(``prepare``, ``forward`` → tokens and pooled feature, ``n_tokens``, ``input_px``, ``num_features``, ``identity``,
``weights_hash``, ``describe``), so ``encoder="morphology"`` and ``encoder="morphology+resnet18"`` work wherever a
timm encoder name does, and their features are cached like any encoder's.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from ._morphology import FEATURE_NAMES, morphology_features

__all__ = ["MORPHOLOGY_VERSION", "ConcatEncoder", "MorphologyEncoder"]

MORPHOLOGY_VERSION = "genedml-morphology-v1"
"""Part of the morphology encoder's identity hash: bump it when a feature's definition changes (cache reset)."""


class _ArrayEncoder(nn.Module):
    """Shared parts: frozen, eval mode, CPU buffers only."""

    identity: str
    weights_hash: str

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("_anchor", torch.zeros(1), persistent=False)
        super().train(False)

    @property
    def device(self) -> torch.device:
        """Device of the outputs."""
        return self._anchor.device

    @property
    def num_prefix_tokens(self) -> int:
        """No class tokens."""
        return 0

    @property
    def fixed_input_size(self) -> tuple[int, int] | None:
        """Any window size is accepted."""
        return None

    def input_px(self, window_px: int) -> int:
        """The window's own size: features are computed at the window's resolution."""
        return int(window_px)

    def train(self, mode: bool = True) -> _ArrayEncoder:
        """Stay in eval mode (nothing is trainable)."""
        return super().train(False)

    def prepare(self, x: torch.Tensor, *, size: int | None = None) -> torch.Tensor:
        """``uint8`` ``(B, 3, h, w)`` → float in [0, 1] (resized only when ``size`` differs); no normalisation."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"`x` must be shaped (B, 3, H, W), got {tuple(x.shape)}.")
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        if size is not None and tuple(x.shape[-2:]) != (int(size), int(size)):
            x = torch.nn.functional.interpolate(x, size=(int(size), int(size)), mode="bilinear", antialias=True)
            x = x.clamp(0.0, 1.0)
        return x

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``(B, T, D)``."""
        return self(x)[0]

    def forward_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled feature ``(B, D)``."""
        return self(x)[1]


class MorphologyEncoder(_ArrayEncoder):
    """Colour, stain, texture and nuclei statistics of a window (`genedml.encoders._morphology`), no weights.

    The pooled feature describes the whole window; the tokens are the same features of a ``grid × grid`` split of
    the window into sub-tiles, row-major (like a CNN's feature map). Features are computed at the physical scale
    set by :meth:`set_um_per_px` (the embedding pipeline sets it from the window geometry).

    Parameters
    ----------
    grid
        Sub-tiles per side for the target tokens (T = ``grid²``).
    um_per_px
        Initial pixel size in µm (the pipeline overrides it per section).
    n_jobs
        Threads over chunks of a batch (NumPy releases the GIL in most of the work).

    Examples
    --------
    >>> import torch
    >>> from genedml.encoders import create_encoder
    >>> enc = create_encoder("morphology")
    >>> tokens, pooled = enc(enc.prepare(torch.full((2, 3, 32, 32), 200, dtype=torch.uint8)))
    >>> tuple(tokens.shape), tuple(pooled.shape)
    ((2, 4, 63), (2, 63))
    """

    def __init__(self, *, grid: int = 2, um_per_px: float = 1.0, n_jobs: int = 1) -> None:
        super().__init__()
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 1:
            raise ValueError(f"`grid` must be a positive int, got {grid!r}.")
        self.grid = grid
        self.n_jobs = max(1, int(n_jobs))
        self.um_per_px = float(um_per_px)
        self.identity = "morphology"
        self.weights_hash = hashlib.sha256(MORPHOLOGY_VERSION.encode()).hexdigest()
        self.feature_names = FEATURE_NAMES

    @property
    def num_features(self) -> int:
        """Feature width D."""
        return len(FEATURE_NAMES)

    @property
    def data_config(self) -> dict[str, Any]:
        """Pixels in [0, 1], no normalisation."""
        return {"input_size": (3, 0, 0), "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
                "interpolation": "bilinear", "crop_pct": 1.0}  # fmt: skip

    def set_um_per_px(self, um_per_px: float) -> None:
        """Physical pixel size (µm) of the windows that follow."""
        if not um_per_px > 0:
            raise ValueError(f"`um_per_px` must be positive, got {um_per_px!r}.")
        self.um_per_px = float(um_per_px)

    def n_tokens(self, input_size: int | tuple[int, int]) -> int:
        """T = ``grid²`` whatever the input size."""
        return self.grid * self.grid

    def _compute(self, rgb: np.ndarray) -> np.ndarray:
        if self.n_jobs == 1 or len(rgb) < 2 * self.n_jobs:
            return morphology_features(rgb, um_per_px=self.um_per_px)
        from concurrent.futures import ThreadPoolExecutor

        chunks = np.array_split(rgb, self.n_jobs)
        with ThreadPoolExecutor(self.n_jobs) as pool:
            return np.concatenate(list(pool.map(lambda c: morphology_features(c, um_per_px=self.um_per_px), chunks)))

    def forward(self, x: torch.Tensor, *, grid: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``(B, grid², D)`` and pooled ``(B, D)`` of prepared windows ``(B, 3, H, W)`` in [0, 1]."""
        g = self.grid if grid is None else int(grid)
        rgb = x.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        B, H, W, _ = rgb.shape
        pooled = self._compute(rgb)
        h, w = H // g, W // g
        if min(h, w) < 4:
            raise ValueError(f"windows of {H} × {W} px are too small for {g} × {g} morphology sub-tiles (≥ 4 px each).")
        sub = rgb[:, : h * g, : w * g].reshape(B, g, h, g, w, 3).transpose(0, 1, 3, 2, 4, 5).reshape(-1, h, w, 3)
        tokens = self._compute(np.ascontiguousarray(sub)).reshape(B, g * g, -1)
        dev = self.device
        return torch.from_numpy(tokens).to(dev), torch.from_numpy(pooled).to(dev)

    def describe(self) -> dict[str, Any]:
        """Provenance: identity, version hash, width, sub-tile grid, feature names."""
        return {
            "identity": self.identity,
            "timm_name": None,
            "architecture": "MorphologyEncoder",
            "weights_hash": self.weights_hash,
            "num_features": self.num_features,
            "num_prefix_tokens": 0,
            "grid": self.grid,
            "feature_names": list(FEATURE_NAMES),
            "data_config": {"mean": [0.0] * 3, "std": [1.0] * 3},
        }


class ConcatEncoder(_ArrayEncoder):
    """Features of several encoders concatenated: pooled ``(B, ΣD)``, tokens ``(B, T, ΣD)``.

    All parts must give the same number of target tokens at the window size (a morphology part adapts its sub-tile
    grid to a CNN's ``√T × √T`` map). Each part normalises the window its own way.

    Parameters
    ----------
    parts
        Encoders (:class:`~genedml.encoders.Encoder`, :class:`MorphologyEncoder`).

    Examples
    --------
    >>> import torch
    >>> from genedml.encoders import create_encoder
    >>> enc = create_encoder("morphology+test_resnet", pretrained=False)
    >>> enc.num_features
    159
    """

    def __init__(self, parts: list[nn.Module]) -> None:
        super().__init__()
        if len(parts) < 2:
            raise ValueError("a combined encoder needs at least two parts.")
        self.parts = nn.ModuleList(parts)
        self.identity = "+".join(p.identity for p in parts)
        self.weights_hash = hashlib.sha256("|".join(p.weights_hash for p in parts).encode()).hexdigest()

    @property
    def num_features(self) -> int:
        """Sum of the parts' widths."""
        return sum(int(p.num_features) for p in self.parts)

    @property
    def data_config(self) -> dict[str, Any]:
        """Pixels in [0, 1]; each part applies its own normalisation."""
        return {"input_size": (3, 0, 0), "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0),
                "interpolation": "bilinear", "crop_pct": 1.0}  # fmt: skip

    def set_um_per_px(self, um_per_px: float) -> None:
        """Pass the pixel size to the parts that use it."""
        for p in self.parts:
            if hasattr(p, "set_um_per_px"):
                p.set_um_per_px(um_per_px)

    def _grid_tokens(self, side: int) -> tuple[int | None, int]:
        """``(grid of morphology parts, T)`` at an input of ``side`` px; raises when the parts disagree."""
        fixed = {p.identity: p.n_tokens(p.input_px(side)) for p in self.parts if not isinstance(p, MorphologyEncoder)}
        ts = set(fixed.values())
        if len(ts) > 1:
            raise ValueError(
                f"encoder {self.identity!r}: its parts give different numbers of target tokens at {side} px "
                f"({fixed}); combine encoders with the same token count (e.g. two CNNs of the same stride)."
            )
        if not ts:
            grids = {p.grid for p in self.parts}
            if len(grids) > 1:
                raise ValueError(f"encoder {self.identity!r}: morphology parts with different grids {sorted(grids)}.")
            g = grids.pop()
            return g, g * g
        t = ts.pop()
        g = math.isqrt(t)
        has_morph = any(isinstance(p, MorphologyEncoder) for p in self.parts)
        if has_morph and g * g != t:
            raise ValueError(
                f"encoder {self.identity!r}: morphology tokens are a g × g grid of sub-tiles, but {sorted(fixed)} "
                f"give{'s' if len(fixed) == 1 else ''} T = {t} tokens at {side} px (not a square map; ViTs add "
                "class/register tokens). Combine morphology with a CNN, or use the encoders separately."
            )
        return (g if has_morph else None), t

    def n_tokens(self, input_size: int | tuple[int, int]) -> int:
        """Common token count T of the parts (raises when they differ)."""
        side = int(input_size if isinstance(input_size, int) else input_size[0])
        return self._grid_tokens(side)[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens and pooled features of every part, concatenated along D."""
        g, _ = self._grid_tokens(int(x.shape[-1]))
        toks, pools = [], []
        for p in self.parts:
            if isinstance(p, MorphologyEncoder):
                t, q = p(x, grid=g)
            else:
                xp = p.prepare(x, size=p.input_px(int(x.shape[-1])))
                t, q = p(xp)
            toks.append(t.float())
            pools.append(q.float())
        return torch.cat(toks, dim=2), torch.cat(pools, dim=1)

    def describe(self) -> dict[str, Any]:
        """Provenance of every part."""
        return {
            "identity": self.identity,
            "timm_name": None,
            "architecture": "ConcatEncoder",
            "weights_hash": self.weights_hash,
            "num_features": self.num_features,
            "num_prefix_tokens": 0,
            "parts": [p.describe() for p in self.parts],
            "data_config": {"mean": [0.0] * 3, "std": [1.0] * 3},
        }
