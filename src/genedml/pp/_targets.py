"""`TargetSpec`: the recipe of a model's regression targets (genes and normalisation), validated where it is built."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .._validators import assert_positive_int, refuse_renamed, rename_legacy_keys
from ._normalize import RECIPES

__all__ = ["TargetSpec"]


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """Which genes a model predicts and how their counts become targets.

    Parameters
    ----------
    genes
        Explicit gene list (output order). Takes precedence over ``panel`` and ``n_top_genes``.
    n_top_genes
        Otherwise the top ``n_top_genes`` genes by mean raw count over the *training* spots (TRIPLEX's "HEG"),
        chosen inside each fold of a cross-validation (the argument of :func:`genedml.pp.select_genes` and scanpy).
    panel
        Or a named 250-gene panel of the paper: ``"her2st"``, ``"stnet"``, ``"skinst"``.
    normalize
        Count recipe: ``"paper"`` (median library size per section, log10(1 + x)) or ``"log1p_cp10k"``.
    smooth
        3 × 3 spot-grid smoothing of the targets (the paper's recipe; hexagonal neighbourhood on Visium).

    Examples
    --------
    >>> import genedml as gd
    >>> gd.pp.TargetSpec(n_top_genes=50).replace(smooth=False)
    TargetSpec(genes=None, n_top_genes=50, panel=None, normalize='paper', smooth=False)
    """

    genes: tuple[str, ...] | None = None
    n_top_genes: int = 250
    panel: str | None = None
    normalize: str = "paper"
    smooth: bool = True

    def __post_init__(self) -> None:
        genes = self.genes
        if genes is not None:
            if isinstance(genes, str) or (not isinstance(genes, Sequence | set) and not hasattr(genes, "__iter__")):
                raise TypeError(f"`genes` must be a list of gene names, got {genes!r}.")
            genes = tuple(str(g) for g in genes)
            if not genes:
                raise ValueError("`genes` is empty: pass None to select genes by `n_top_genes` or `panel`.")
            if len(set(genes)) != len(genes):
                dup = sorted({g for g in genes if genes.count(g) > 1})
                raise ValueError(f"`genes` lists {dup[:5]} more than once.")
            object.__setattr__(self, "genes", genes)
        if genes is None and self.panel is None:
            assert_positive_int(self.n_top_genes, name="n_top_genes")
        if self.panel is not None and not isinstance(self.panel, str):
            raise ValueError(f"`panel` must be a panel name or None, got {self.panel!r}.")
        if self.normalize not in RECIPES:
            raise ValueError(f"`normalize` must be one of {list(RECIPES)}, got {self.normalize!r}.")
        if not isinstance(self.smooth, bool):
            raise ValueError(f"`smooth` must be a bool, got {self.smooth!r}.")

    def replace(self, **changes: Any) -> TargetSpec:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def setup_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of a model's ``setup``."""
        out = dataclasses.asdict(self)
        out["genes"] = None if self.genes is None else list(self.genes)
        return out

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TargetSpec:
        """The spec of a saved record (`setup_kwargs`, a cross-validation's ``params``); other keys are ignored.

        Records written before ``n_genes`` was renamed ``n_top_genes`` are read with the old key mapped.

        Examples
        --------
        >>> import genedml as gd
        >>> gd.pp.TargetSpec.from_record({"n_genes": 50, "normalize": "log1p_cp10k", "methods": ["mean"]})
        TargetSpec(genes=None, n_top_genes=50, panel=None, normalize='log1p_cp10k', smooth=True)
        """
        if not isinstance(record, dict):
            raise ValueError(f"`record` must be a dict of TargetSpec fields, got {type(record).__name__}.")
        rec = rename_legacy_keys(record)
        return cls(**{k: rec[k] for k in cls.fields() if k in rec})

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """Names of the fields (the keyword shorthands ``fit`` and ``cross_validate`` route here)."""
        return tuple(f.name for f in dataclasses.fields(cls))


# `TargetSpec(n_genes=...)` (the name before the rename) names `n_top_genes` in its error; the signature is unchanged
TargetSpec.__init__ = refuse_renamed(TargetSpec.__init__)  # type: ignore[method-assign]
