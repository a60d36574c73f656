"""Published gene panels (``gd.datasets.gene_panel``) and how much of one a dataset covers."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any

from .._logging import logger

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["PANELS", "gene_panel", "panel_coverage"]

PANELS = ("her2st", "stnet", "skinst")


@functools.cache
def _load(name: str) -> tuple[str, ...]:
    text = resources.files(__package__).joinpath("panels", f"{name}.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def gene_panel(name: str) -> list[str]:
    """The 250-gene panel Gene-DML evaluates on a dataset, in the published order.

    Parsed from the supplementary material of Gene-DML (arXiv 2507.14670, Figures 3–5; genes selected following
    TRIPLEX). Symbols are kept exactly as printed, including old aliases (e.g. ``H2AFJ``, ``SEPW1``) and a few
    that look misprinted in the skinST list (``PDPDF``, ``FXSD3``): match against your data with
    :func:`panel_coverage`.

    Parameters
    ----------
    name
        ``"her2st"``, ``"stnet"`` or ``"skinst"``.

    Returns
    -------
    250 unique gene symbols (a new list each call).

    Examples
    --------
    >>> import genedml as gd
    >>> genes = gd.datasets.gene_panel("her2st")
    >>> len(genes), genes[:3]
    (250, ['IGKC', 'TMSB10', 'ERBB2'])
    """
    if not isinstance(name, str) or name.lower() not in PANELS:
        raise ValueError(f"`name` must be one of {list(PANELS)}, got {name!r}.")
    return list(_load(name.lower()))


def panel_coverage(data: ad.AnnData | Iterable[str] | Any, name: str) -> tuple[list[str], list[str]]:
    """Which genes of a panel a dataset has: ``(present, missing)``, both in panel order.

    Missing genes are logged at WARNING (this never fails: real data often lack a few panel genes, e.g. aliases
    renamed in newer annotations).

    Parameters
    ----------
    data
        An AnnData (its ``var_names``), a SpatialData (its ``"table"``) or an iterable of gene names.
    name
        Panel name, see :func:`gene_panel`.

    Returns
    -------
    The panel genes present in ``data`` and those missing from it.

    Examples
    --------
    >>> import genedml as gd
    >>> present, missing = gd.datasets.panel_coverage(gd.datasets.toy().tables["table"], "her2st")
    """
    panel = gene_panel(name)
    have = set(map(str, _var_names(data)))
    present = [g for g in panel if g in have]
    missing = [g for g in panel if g not in have]
    if missing:
        shown = ", ".join(missing[:20]) + (" …" if len(missing) > 20 else "")
        logger.warning(f"panel {name!r}: {len(missing)} of {len(panel)} genes are missing from the data: {shown}.")
    return present, missing


def _var_names(data: Any) -> Iterable[str]:
    if hasattr(data, "var_names"):
        return data.var_names
    if hasattr(data, "tables"):
        from .._data_model import get_table

        return get_table(data).var_names
    if isinstance(data, str) or not isinstance(data, Iterable):
        raise ValueError(
            f"`data` must be an AnnData, a SpatialData or an iterable of gene names, got {type(data).__name__}."
        )
    return data
