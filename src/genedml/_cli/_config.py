"""YAML run configuration of the ``genedml`` command, validated against the Python API's signatures."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

__all__ = ["DATA_SOURCES", "load_config", "load_data"]

DATA_SOURCES = ("synthetic", "her2st", "st", "visium", "hest", "zarr")
SECTIONS = ("data", "fit", "predict", "evaluate", "cv", "output")


def _api():
    import genedml as gd

    return {
        "fit": gd.tl.fit,
        "predict": gd.tl.predict,
        "evaluate": gd.tl.evaluate,
        "cv": gd.tl.cross_validate,
        "synthetic": gd.datasets.synthetic,
        "her2st": gd.datasets.her2st,
        "st": gd.io.read_st,
        "visium": gd.io.read_visium,
        "hest": gd.io.read_hest,
        "zarr": gd.io.read_zarr,
    }


def _check_keys(section: str, given: dict, func, *, exclude: tuple[str, ...] = ()) -> None:
    params = inspect.signature(func).parameters
    accepts_var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    valid = [n for n, p in params.items() if p.kind != p.VAR_KEYWORD and n not in exclude]
    if accepts_var_kw and section == "fit":  # fit forwards TrainConfig fields
        from ..models import TrainConfig

        valid += [f for f in TrainConfig.__dataclass_fields__ if f != "extra_trainer_kwargs"]
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise ValueError(f"config section {section!r}: unknown key(s) {unknown}; valid keys: {sorted(set(valid))}.")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config and check every key against the function it configures (unknown keys → error)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`--config`={str(path)!r}: no such file.")
    cfg = yaml.safe_load(path.read_text()) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"`--config`={str(path)!r}: the top level must be a mapping of sections {SECTIONS}.")
    unknown = sorted(set(cfg) - set(SECTIONS))
    if unknown:
        raise ValueError(f"config: unknown section(s) {unknown}; valid sections: {list(SECTIONS)}.")
    api = _api()
    data = cfg.get("data") or {}
    if data:
        if not isinstance(data, dict) or len(data) != 1 or next(iter(data)) not in DATA_SOURCES:
            raise ValueError(
                f"config section 'data' must hold exactly one source of {list(DATA_SOURCES)}, got {data!r}."
            )
        ((src, kw),) = data.items()
        kw = kw or {}
        if not isinstance(kw, dict):
            raise ValueError(f"config 'data.{src}' must be a mapping of arguments, got {kw!r}.")
        _check_keys(f"data.{src}", kw, api[src])
    for sec, exclude in (
        ("fit", ("sdata",)),
        ("predict", ("sdata", "model", "copy")),
        ("evaluate", ("sdata",)),
        ("cv", ("sdata",)),
    ):
        given = cfg.get(sec) or {}
        if not isinstance(given, dict):
            raise ValueError(f"config section {sec!r} must be a mapping, got {given!r}.")
        _check_keys(sec, given, api[sec], exclude=exclude)
    return cfg


def load_data(cfg: dict[str, Any], *, default: str = "synthetic"):
    """The SpatialData the ``data`` section describes (default: the built-in synthetic dataset)."""
    data = cfg.get("data") or {default: {}}
    ((src, kw),) = data.items()
    kw = dict(kw or {})
    func = _api()[src]
    if src == "zarr":
        return func(kw.pop("path"), **kw)
    if src == "visium":
        return func(kw.pop("path"), **kw)
    if src == "st":
        return func(kw.pop("samples"), **kw)
    if src == "hest":
        return func(kw.pop("h5ad"), kw.pop("image"), kw.pop("metadata"), **kw)
    return func(**kw)
