"""`TrainConfig`: everything about *how* a model is trained (the architecture lives in `GeneDMLConfig`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig"]

_PROTOCOLS = ("clean", "paper")


@dataclass
class TrainConfig:
    """Training settings (paper defaults: Adam 1e-4, StepLR(20, 0.95), ≤ 200 epochs, patience 20 on val PCC).

    Attributes
    ----------
    lr, step_size, gamma
        Adam learning rate and the per-epoch StepLR schedule.
    weight_decay
        Adam weight decay (the paper uses none).
    max_epochs, patience
        Epoch budget and early-stopping patience on the validation PCC(A); ``patience=None`` disables stopping.
    min_epochs
        Epochs before early stopping may trigger.
    batch_size
        Spots per batch (per device under DDP).
    sections_per_batch
        ``None``: batches mix all sections (paper); ``k``: each batch comes from ``k`` sections, bounding the number of
        global-encoder passes per step.
    augment
        Draw a random cached dihedral variant of the target tokens per spot (needs ``embed(dihedral=True)``).
    gradient_clip_val
        Gradient-norm clipping (``None`` = off).
    precision
        Lightning precision; ``None`` = ``"16-mixed"`` on CUDA (AMP), ``"32-true"`` on CPU.
    accelerator, devices, strategy
        Passed to the Lightning ``Trainer`` (``"auto"``, ``"cpu"``, ``"gpu"``; device count; ``"ddp"`` …).
    protocol
        ``"clean"``: early stopping on an inner validation split grouped by patient (by section with one patient);
        ``"paper"``: on the evaluated data itself, as the released code does — **optimistic**.
    val_fraction
        Fraction of spots held out when a single section leaves no grouped split.
    seed
        Seed of everything (the paper's 2021).
    log_every_n_steps
        Lightning logging interval.
    """

    lr: float = 1e-4
    weight_decay: float = 0.0
    step_size: int = 20
    gamma: float = 0.95
    max_epochs: int = 200
    min_epochs: int = 1
    patience: int | None = 20
    batch_size: int = 256
    sections_per_batch: int | None = None
    augment: bool = True
    gradient_clip_val: float | None = 1.0
    precision: str | None = None
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    protocol: str = "clean"
    val_fraction: float = 0.2
    seed: int = 2021
    log_every_n_steps: int = 10
    extra_trainer_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        if self.protocol not in _PROTOCOLS:
            raise ValueError(f"`protocol` must be one of {_PROTOCOLS}, got {self.protocol!r}.")
        for name in ("lr", "gamma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)!r}.")
        for name in ("step_size", "max_epochs", "batch_size", "min_epochs"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive int, got {v!r}.")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(f"`patience` must be a positive int or None, got {self.patience!r}.")
        import numbers

        if not isinstance(self.seed, numbers.Integral) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"`seed` must be a non-negative int, got {self.seed!r}.")
        if not isinstance(self.augment, bool):
            raise ValueError(f"`augment` must be a bool, got {self.augment!r}.")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"`val_fraction` must lie in (0, 1), got {self.val_fraction!r}.")

    def to_dict(self) -> dict:
        """Plain-dict form (for checkpoints and ``uns``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys raise a clear error."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ValueError(f"unknown TrainConfig key(s) {unknown}; valid keys: {sorted(valid)}.")
        return cls(**d)
