"""Snapshot and restore of a spot table's mutable slots, so a failed or scratch computation leaves it as it was.

Used by `SpotModel.setup` (a failed setup leaves the user's table untouched) and `gd.tl.cross_validate` (per-fold
targets and gene lists are scratch: the table keeps only the documented keys).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ._keys import Keys

__all__ = ["TableState", "restore_table", "table_state"]


@dataclass
class TableState:
    """What `restore_table` needs to put a table back.

    References to the ``obsm``/``layers``/``obsp`` entries, the ``obs``/``var`` column names and a deep copy of
    ``uns["genedml"]`` (arrays are not copied: the code that writes replaces them, it does not edit them).
    """

    obsm: dict[str, Any]
    layers: dict[str, Any]
    obsp: dict[str, Any]
    obs_columns: list[str]
    var_columns: list[str]
    uns_genedml: dict | None


def table_state(table) -> TableState:
    """Record ``table``'s mutable slots (cheap: arrays by reference, ``uns["genedml"]`` deep-copied)."""
    uns = table.uns.get(Keys.uns)
    return TableState(
        obsm=dict(table.obsm.items()),
        layers=dict(table.layers.items()),
        obsp=dict(table.obsp.items()),
        obs_columns=list(table.obs.columns),
        var_columns=list(table.var.columns),
        uns_genedml=None if uns is None else copy.deepcopy(dict(uns)),
    )


def restore_table(table, state: TableState, *, keep_obsm=(), keep_uns=()) -> None:
    """Put ``table`` back as recorded.

    ``obsm`` keys in ``keep_obsm`` (a collection or a predicate) and the ``keep_uns`` keys of ``uns["genedml"]`` are
    left as they are now.
    """
    keep_o = keep_obsm if callable(keep_obsm) else (lambda k, _s=set(keep_obsm): k in _s)
    for slot, old in (("obsm", state.obsm), ("layers", state.layers), ("obsp", state.obsp)):
        current = getattr(table, slot)
        for key in list(current.keys()):
            if slot == "obsm" and keep_o(key):
                continue
            if key not in old:
                del current[key]
            elif current[key] is not old[key]:
                current[key] = old[key]
        for key, value in old.items():
            if key not in current and not (slot == "obsm" and keep_o(key)):
                current[key] = value
    extra_obs = [c for c in table.obs.columns if c not in state.obs_columns]
    if extra_obs:
        table.obs.drop(columns=extra_obs, inplace=True)
    extra_var = [c for c in table.var.columns if c not in state.var_columns]
    if extra_var:
        table.var.drop(columns=extra_var, inplace=True)
    now = table.uns.get(Keys.uns)
    kept = {k: now[k] for k in keep_uns if now is not None and k in now}
    if state.uns_genedml is None:
        if not kept:
            table.uns.pop(Keys.uns, None)
            return
        table.uns[Keys.uns] = kept
        return
    table.uns[Keys.uns] = {**state.uns_genedml, **kept}
