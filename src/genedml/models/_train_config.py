"""`TrainConfig`: everything about *how* a model is trained (the architecture lives in `GeneDMLConfig`)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig"]

_PROTOCOLS = ("clean", "paper")


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


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
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(v) or not v > 0:
                raise ValueError(f"`{name}` must be a finite number > 0, got {v!r}.")
        if not _is_real(self.weight_decay) or not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"`weight_decay` must be a finite number >= 0, got {self.weight_decay!r}.")
        clip = self.gradient_clip_val
        if clip is not None and (not _is_real(clip) or not math.isfinite(clip) or not clip > 0):
            raise ValueError(f"`gradient_clip_val` must be None or a finite number > 0, got {clip!r}.")
        for name in ("step_size", "max_epochs", "batch_size", "min_epochs", "log_every_n_steps"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise ValueError(f"`{name}` must be a positive int, got {v!r}.")
        for name in ("patience", "sections_per_batch"):
            v = getattr(self, name)
            if v is not None and (not _is_int(v) or v < 1):
                raise ValueError(f"`{name}` must be a positive int or None, got {v!r}.")
        if not _is_real(self.val_fraction) or not 0 < self.val_fraction < 1:
            raise ValueError(f"`val_fraction` must lie in (0, 1), got {self.val_fraction!r}.")
        if not _is_int(self.seed) or self.seed < 0:
            raise ValueError(f"`seed` must be an int >= 0, got {self.seed!r}.")
        if not isinstance(self.augment, bool):
            raise ValueError(f"`augment` must be True or False, got {self.augment!r}.")
        if not isinstance(self.extra_trainer_kwargs, dict):
            raise ValueError(f"`extra_trainer_kwargs` must be a dict, got {type(self.extra_trainer_kwargs).__name__}.")

    def to_dict(self) -> dict:
        """Plain-dict form (for checkpoints and ``uns``)."""
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the fields (the training shorthands of ``fit`` and ``cross_validate``)."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of `to_dict`; unknown keys raise a clear error."""
        if not isinstance(d, dict):
            raise ValueError(f"`train_config` must be a TrainConfig or a dict of its fields, got {type(d).__name__}.")
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - valid)
        if unknown:
            raise ValueError(f"unknown TrainConfig key(s) {unknown}; valid keys: {sorted(valid)}.")
        return cls(**d)
