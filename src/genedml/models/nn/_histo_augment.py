"""Batched, histology-safe augmentations for self-supervised training: tensors in, tensors out.

Every transform draws its parameters per image and runs on the batch at once (on the GPU when the batch is there):
random resized crop, the eight dihedral symmetries, stain jitter in HED space (colour deconvolution of Ruifrok and
Johnston, the matrices of :func:`skimage.color.rgb2hed`), a small brightness/contrast jitter and Gaussian blur.
Nothing here inverts colours, converts to grayscale or shifts hue outside the stains: a white background stays
light and haematoxylin stays blue-purple.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["HistoAugment", "HistoAugmentConfig", "hed_to_rgb", "rgb_to_hed"]

_EPS = 1e-6
_LOG_ADJUST = float(np.log(_EPS))  # skimage.color scales optical densities by -log(1e-6)


def _hed_matrices() -> tuple[torch.Tensor, torch.Tensor]:
    from skimage.color import hed_from_rgb, rgb_from_hed

    return torch.as_tensor(hed_from_rgb, dtype=torch.float32), torch.as_tensor(rgb_from_hed, dtype=torch.float32)


def rgb_to_hed(x: torch.Tensor, hed_from_rgb: torch.Tensor, *, clip: bool = True) -> torch.Tensor:
    """RGB in ``[0, 1]`` ``(B, 3, H, W)`` → HED stain concentrations, as :func:`skimage.color.rgb2hed`.

    ``clip=False`` keeps negative concentrations (colours outside the stain cone), so that :func:`hed_to_rgb`
    inverts it exactly; the stain jitter works on that.
    """
    od = torch.log(x.clamp_min(_EPS)) / _LOG_ADJUST
    hed = torch.einsum("bchw,cd->bdhw", od, hed_from_rgb.to(x))
    return hed.clamp_min(0.0) if clip else hed


def hed_to_rgb(hed: torch.Tensor, rgb_from_hed: torch.Tensor) -> torch.Tensor:
    """HED stain concentrations → RGB in ``[0, 1]``, as :func:`skimage.color.hed2rgb`."""
    log_rgb = -torch.einsum("bchw,cd->bdhw", hed * -_LOG_ADJUST, rgb_from_hed.to(hed))
    return torch.exp(log_rgb).clamp(0.0, 1.0)


@dataclass(frozen=True)
class HistoAugmentConfig:
    """Strength of each augmentation.

    Parameters
    ----------
    crop_scale
        Area fraction of the random resized crop (the crop is resampled back to the tile size).
    crop_ratio
        Aspect-ratio range of the crop.
    hed_scale
        Stain jitter: each HED channel is multiplied by ``1 + U(-hed_scale, hed_scale)`` …
    hed_shift
        … and shifted by ``U(-hed_shift, hed_shift)`` (skimage's HED units; 0.005 darkens white by at most ~7 %).
    brightness
        Multiplicative brightness jitter ``1 + U(-b, b)``.
    contrast
        Contrast jitter around each image's mean, ``1 + U(-c, c)``.
    blur_p
        Probability of a Gaussian blur.
    blur_sigma
        Blur sigma range in output pixels.
    """

    crop_scale: tuple[float, float] = (0.5, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hed_scale: float = 0.05
    hed_shift: float = 0.005
    brightness: float = 0.1
    contrast: float = 0.1
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 1.0)

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"`crop_scale` must satisfy 0 < low <= high <= 1, got {self.crop_scale}.")
        if not 0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"`crop_ratio` must be an increasing pair of positive numbers, got {self.crop_ratio}.")
        for name in ("hed_scale", "hed_shift", "brightness", "contrast"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be in [0, 1), got {getattr(self, name)}.")
        if not 0 <= self.blur_p <= 1 or not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"`blur_p` must be in [0, 1] and `blur_sigma` increasing and positive: {self}.")

    def to_dict(self) -> dict:
        """Plain dict for hyper-parameters and provenance."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class HistoAugment(nn.Module):
    """Random view of a batch of tiles ``(B, 3, H, W)`` in ``[0, 1]`` (same size out); no parameters to learn.

    Parameters
    ----------
    config
        Augmentation strengths; default :class:`HistoAugmentConfig`.
    """

    def __init__(self, config: HistoAugmentConfig | None = None) -> None:
        super().__init__()
        self.config = config or HistoAugmentConfig()
        h, r = _hed_matrices()
        self.register_buffer("hed_from_rgb", h, persistent=False)
        self.register_buffer("rgb_from_hed", r, persistent=False)

    @staticmethod
    def _uniform(n: int, lo: float, hi: float, like: torch.Tensor) -> torch.Tensor:
        return torch.rand(n, device=like.device, dtype=like.dtype) * (hi - lo) + lo

    def resized_crop(self, x: torch.Tensor) -> torch.Tensor:
        """Random crop of ``crop_scale`` area and ``crop_ratio`` aspect, resampled to the input size (bilinear)."""
        B = x.shape[0]
        c = self.config
        area = self._uniform(B, *c.crop_scale, x)
        log_r = self._uniform(B, float(np.log(c.crop_ratio[0])), float(np.log(c.crop_ratio[1])), x)
        ratio = torch.exp(log_r)
        sw = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width / tile width
        sh = torch.sqrt(area / ratio).clamp(max=1.0)
        tx = (torch.rand_like(sw) * 2 - 1) * (1 - sw)  # centre in normalised coordinates, crop stays inside
        ty = (torch.rand_like(sh) * 2 - 1) * (1 - sh)
        theta = torch.zeros(B, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sw, tx, sh, ty
        grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    @staticmethod
    def dihedral(x: torch.Tensor) -> torch.Tensor:
        """One of the eight flips/90° rotations per image (square tiles)."""
        B = x.shape[0]
        bits = torch.randint(0, 2, (3, B, 1, 1, 1), device=x.device).bool()
        x = torch.where(bits[0], x.flip(-1), x)
        x = torch.where(bits[1], x.flip(-2), x)
        return torch.where(bits[2], x.transpose(-1, -2), x)

    def stain_jitter(self, x: torch.Tensor) -> torch.Tensor:
        """Scale and shift each of the haematoxylin, eosin and DAB concentrations (Tellez et al. 2018)."""
        c = self.config
        if c.hed_scale == 0 and c.hed_shift == 0:
            return x
        B = x.shape[0]
        hed = rgb_to_hed(x, self.hed_from_rgb, clip=False)
        alpha = 1 + (torch.rand(B, 3, 1, 1, device=x.device, dtype=x.dtype) * 2 - 1) * c.hed_scale
        beta = (torch.rand(B, 3, 1, 1, device=x.device, dtype=x.dtype) * 2 - 1) * c.hed_shift
        return hed_to_rgb(hed * alpha + beta, self.rgb_from_hed)

    def brightness_contrast(self, x: torch.Tensor) -> torch.Tensor:
        """Small multiplicative brightness and contrast changes, clipped to ``[0, 1]``."""
        c = self.config
        B = x.shape[0]
        b = 1 + (torch.rand(B, 1, 1, 1, device=x.device, dtype=x.dtype) * 2 - 1) * c.brightness
        k = 1 + (torch.rand(B, 1, 1, 1, device=x.device, dtype=x.dtype) * 2 - 1) * c.contrast
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return ((x - mean) * k + mean).mul(b).clamp(0.0, 1.0)

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian blur with probability ``blur_p`` and a per-image sigma (separable, reflect padding)."""
        c = self.config
        B, C, H, W = x.shape
        sigma = self._uniform(B, *c.blur_sigma, x)
        radius = max(1, int(np.ceil(3 * c.blur_sigma[1])))
        radius = min(radius, (min(H, W) - 1) // 2)
        t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
        k = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
        k = k / k.sum(dim=1, keepdim=True)
        off = torch.rand(B, device=x.device) >= c.blur_p
        k[off] = 0.0
        k[off, radius] = 1.0  # identity kernel: no blur
        kk = k.repeat_interleave(C, dim=0)  # (B*C, K)
        y = torch.nn.functional.pad(x.reshape(1, B * C, H, W), (radius, radius, radius, radius), mode="reflect")
        y = torch.nn.functional.conv2d(y, kk[:, None, None, :], groups=B * C)
        y = torch.nn.functional.conv2d(y, kk[:, None, :, None], groups=B * C)
        return y.reshape(B, C, H, W)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One augmented view of ``x`` (``(B, 3, H, W)`` float in ``[0, 1]``)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"`x` must be shaped (B, 3, H, W), got {tuple(x.shape)}.")
        with torch.autocast(device_type=x.device.type, enabled=False):  # log/exp of the stain space in float32
            x = self.resized_crop(x.float())
            x = self.dihedral(x)
            x = self.stain_jitter(x)
            x = self.brightness_contrast(x)
            return self.blur(x).clamp(0.0, 1.0)
