"""Self-supervised objectives around an image backbone (SimCLR, BYOL, DINO) with lightly's heads and losses.

Tensors in, a scalar loss out. The backbone is any module mapping ``(B, 3, H, W)`` to pooled features ``(B, D)``
(a timm model built with ``num_classes=0``); it is trained in place, so its ``state_dict`` is the adapted encoder.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["SSL_METHODS", "SSLConfig", "SSLNet", "import_lightly"]

SSL_METHODS = ("simclr", "byol", "dino")


def import_lightly():
    """The ``lightly`` package, or an ImportError that says how to install it."""
    try:
        import lightly
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "self-supervised adaptation needs the `lightly` package: pip install 'genedml[ssl]' "
            "(or pip install 'lightly>=1.5')."
        ) from err
    return lightly


@dataclass(frozen=True)
class SSLConfig:
    """Heads and loss of one self-supervised method.

    Parameters
    ----------
    method
        ``"simclr"`` (NT-Xent over two views), ``"byol"`` (online predictor vs momentum target) or ``"dino"``
        (self-distillation with a momentum teacher and centring).
    hidden_dim
        Hidden width of the projection (and BYOL prediction) head.
    proj_dim
        Output width of the projection head (DINO: bottleneck width).
    temperature
        SimCLR NT-Xent temperature.
    dino_out_dim
        DINO prototype count.
    momentum
        Start of the cosine momentum schedule of BYOL/DINO's teacher (rises to 1 over training).
    """

    method: str = "simclr"
    hidden_dim: int = 512
    proj_dim: int = 128
    temperature: float = 0.2
    dino_out_dim: int = 2048
    momentum: float = 0.99

    def __post_init__(self) -> None:
        if self.method not in SSL_METHODS:
            raise ValueError(f"`method` must be one of {SSL_METHODS}, got {self.method!r}.")

    def to_dict(self) -> dict:
        """Plain dict for hyper-parameters and provenance."""
        return asdict(self)


class SSLNet(nn.Module):
    """A backbone with the heads of one self-supervised method; ``forward(view0, view1)`` returns the loss.

    Parameters
    ----------
    backbone
        Trainable module ``(B, 3, H, W) → (B, D)``.
    num_features
        Its output width ``D``.
    config
        Method and head sizes.
    max_epochs
        Length of training (DINO's teacher-temperature warm-up spans at most a third of it).
    """

    def __init__(self, backbone: nn.Module, num_features: int, config: SSLConfig, *, max_epochs: int = 10) -> None:
        super().__init__()
        import_lightly()
        from lightly import loss, models

        heads = models.modules
        self.config = config
        self.backbone = backbone
        D, H, P = int(num_features), config.hidden_dim, config.proj_dim
        if config.method == "simclr":
            self.projection = heads.SimCLRProjectionHead(D, H, P)
            self.criterion = loss.NTXentLoss(temperature=config.temperature)
        elif config.method == "byol":
            self.projection = heads.BYOLProjectionHead(D, H, P)
            self.prediction = heads.BYOLPredictionHead(P, H, P)
            self.criterion = loss.NegativeCosineSimilarity()
        else:
            self.projection = self._dino_head(D)
            warm = max(0, min(30, max_epochs // 3))
            self.criterion = loss.DINOLoss(
                output_dim=config.dino_out_dim, warmup_teacher_temp_epochs=warm, warmup_teacher_temp=0.04
            )
        if config.method in ("byol", "dino"):
            self.backbone_momentum = copy.deepcopy(backbone)
            if config.method == "dino":  # weight-normed layers cannot be deep-copied: build and load
                self.projection_momentum = self._dino_head(D)
                self.projection_momentum.load_state_dict(self.projection.state_dict())
            else:
                self.projection_momentum = copy.deepcopy(self.projection)
            models.utils.deactivate_requires_grad(self.backbone_momentum)
            models.utils.deactivate_requires_grad(self.projection_momentum)

    def _dino_head(self, D: int) -> nn.Module:
        import warnings

        from lightly.models.modules import DINOProjectionHead

        c = self.config
        with warnings.catch_warnings():
            # lightly's DINO head uses torch.nn.utils.weight_norm, which torch deprecates; nothing to act on here.
            warnings.filterwarnings("ignore", message=".*weight_norm.*", category=FutureWarning)
            return DINOProjectionHead(D, c.hidden_dim, c.proj_dim, c.dino_out_dim, freeze_last_layer=1)

    @property
    def has_momentum(self) -> bool:
        """Whether the method keeps a momentum (teacher/target) copy."""
        return self.config.method in ("byol", "dino")

    def momentum_update(self, m: float) -> None:
        """EMA of the online weights into the momentum copy (BYOL, DINO); a no-op for SimCLR."""
        if not self.has_momentum:
            return
        from lightly.models.utils import update_momentum

        update_momentum(self.backbone, self.backbone_momentum, m=m)
        update_momentum(self.projection, self.projection_momentum, m=m)

    def _target(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.projection_momentum(self.backbone_momentum(x).flatten(1)).detach()

    def forward(self, view0: torch.Tensor, view1: torch.Tensor, *, epoch: int = 0) -> torch.Tensor:
        """Symmetric loss of two augmented views of the same tiles."""
        method = self.config.method
        f0, f1 = self.backbone(view0).flatten(1), self.backbone(view1).flatten(1)
        z0, z1 = self.projection(f0), self.projection(f1)
        if method == "simclr":
            return self.criterion(z0, z1)
        t0, t1 = self._target(view0), self._target(view1)
        if method == "byol":
            p0, p1 = self.prediction(z0), self.prediction(z1)
            return 0.5 * (self.criterion(p0, t1) + self.criterion(p1, t0))
        return self.criterion([t0, t1], [z0, z1], epoch=epoch)

    def after_backward(self, epoch: int) -> None:
        """DINO freezes its last layer for the first epoch (lightly's recipe); nothing for the other methods."""
        if self.config.method == "dino":
            self.projection.cancel_last_layer_gradients(current_epoch=epoch)
