"""YAML run configuration of the ``genedml`` command, validated against the Python API's signatures.

Every key is checked before any work starts: unknown sections and keys are errors with a "did you mean …" hint, a
value of the wrong type names its key and the expected type, and malformed YAML names the file, line and column.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from .._validators import did_you_mean as _did_you_mean

__all__ = ["DATA_SOURCES", "SECTIONS", "ConfigError", "load_config", "load_data", "schema"]

DATA_SOURCES = ("synthetic", "her2st", "st", "visium", "hest", "zarr")
SECTIONS = ("data", "fit", "predict", "evaluate", "cv", "output")
#: Arguments a data source needs (positional in the Python API, keys in the YAML).
REQUIRED = {"zarr": ("path",), "visium": ("path",), "st": ("samples",), "hest": ("h5ad", "image", "metadata")}
#: Arguments that the command supplies itself (never in the YAML).
EXCLUDE = {
    "fit": ("sdata", "features", "targets"),
    "predict": ("sdata", "model", "copy"),
    "evaluate": ("sdata",),
    "cv": ("sdata", "features", "targets"),
}


class ConfigError(ValueError):
    """A run configuration that cannot be used; the message names the file, section and key."""


def did_you_mean(name: str, choices) -> str:
    """`` (did you mean 'x'?)`` for a renamed key's new name or the closest of ``choices``, or an empty string."""
    return _did_you_mean(str(name), [str(c) for c in choices])


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


def _parameters(section: str, func) -> dict[str, tuple[str, Any]]:
    """``{key: (annotation string, default)}`` of the keys a section accepts."""
    out = {}
    src = section.split(".", 1)[-1]
    for name, p in inspect.signature(func).parameters.items():
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or name in EXCLUDE.get(section, ()):
            continue
        default = p.default if p.default is not p.empty else "(required)"
        if name in REQUIRED.get(src, ()):
            default = "(required)"
        a = p.annotation
        out[name] = ("Any" if a is p.empty else a.__name__ if isinstance(a, type) else str(a), default)
    if section in ("fit", "cv"):  # the recipes' fields, as the API's keyword shorthands
        out.update(_shorthands(section, out))
    return out


def _shorthands(section: str, have: dict) -> dict[str, tuple[str, Any]]:
    """FeatureSpec, TargetSpec and TrainConfig fields (and cv's ``config``/``keep_models``) as YAML keys."""
    from dataclasses import MISSING, fields

    from ..features import FeatureSpec
    from ..models import TrainConfig
    from ..pp import TargetSpec

    out: dict[str, tuple[str, Any]] = {}
    if section == "cv":
        out["config"] = ("Any", None)
        out["keep_models"] = ("bool", True)
    for cls in (TargetSpec, FeatureSpec, TrainConfig):
        for f in fields(cls):
            name = "embed_batch_size" if (cls is FeatureSpec and f.name == "batch_size") else f.name
            if name in ("extra_trainer_kwargs", "device") or name in have or name in out:
                continue
            typ = "list[str] | None" if name == "genes" else str(f.type)
            out[name] = (typ, f.default if f.default is not MISSING else {})
    return out


def schema() -> dict[str, dict[str, tuple[str, Any]]]:
    """Every section (``data.<source>`` for the sources) with its keys' types and defaults (for docs and help)."""
    api = _api()
    out = {f"data.{s}": _parameters(f"data.{s}", api[s]) for s in DATA_SOURCES}
    for sec in ("fit", "predict", "evaluate", "cv"):
        out[sec] = _parameters(sec, api[sec])
    return out


# ------------------------------------------------------------------------------------------- type checks

_SCALARS = {
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "str": (str,),
    "Path": (str,),
    "os.PathLike": (str,),
    "None": (type(None),),
    "dict": (dict,),
    "Mapping": (dict,),
    "list": (list,),
    "tuple": (list,),
    "Sequence": (list,),
}


def _allowed(annotation: str) -> tuple[tuple[type, ...], str] | None:
    """Python types a YAML value may have for an annotation string; ``None`` when any value is allowed."""
    types: list[type] = []
    names = []
    for part in annotation.split("|"):
        base = part.strip().split("[", 1)[0].strip()
        if base not in _SCALARS:
            return None  # Any, a dataclass, a DataFrame …: the API checks it
        types += _SCALARS[base]
        names.append("null" if base == "None" else "list" if base in ("tuple", "Sequence") else base)
    return tuple(types), " or ".join(dict.fromkeys(names))


def _check_type(where: str, key: str, value: Any, annotation: str) -> None:
    allowed = _allowed(annotation)
    if allowed is None:
        return
    types, names = allowed
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ConfigError(f"{where}: `{key}` expects {names}, got {type(value).__name__} {shown}.")


def _check_section(where: str, section: str, given: Any, params: dict[str, tuple[str, Any]]) -> None:
    if given is None:
        return
    if not isinstance(given, dict):
        raise ConfigError(
            f"{where}: section `{section}` must be a mapping of key: value, got {type(given).__name__} {given!r}."
        )
    for key, value in given.items():
        if not isinstance(key, str) or key not in params:
            raise ConfigError(
                f"{where}: unknown key `{section}.{key}`{did_you_mean(key, params)}; "
                f"valid keys of `{section}`: {sorted(params)}."
            )
        _check_type(where, f"{section}.{key}", value, params[key][0])


# ------------------------------------------------------------------------------------------------ loading


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a syntax error names the file, line and column."""
    import yaml

    try:
        text = path.read_text()
    except UnicodeDecodeError as err:
        raise ConfigError(f"`--config`={str(path)!r}: not a text (UTF-8) file.") from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"`--config`={str(path)!r}: malformed YAML{at}: {problem}.") from err


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config and check every section, key and value type (unknown keys → error)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"`--config`={str(path)!r}: no such file.")
    if not path.is_file():
        raise ConfigError(f"`--config`={str(path)!r}: not a file.")
    cfg = read_yaml(path)
    if cfg is None:
        cfg = {}
    where = f"config {str(path)!r}"
    if not isinstance(cfg, dict):
        raise ConfigError(
            f"{where}: the top level must be a mapping of sections {list(SECTIONS)}, got {type(cfg).__name__}."
        )
    for sec in cfg:
        if not isinstance(sec, str) or sec not in SECTIONS:
            raise ConfigError(
                f"{where}: unknown section `{sec}`{did_you_mean(sec, SECTIONS)}; valid sections: {list(SECTIONS)}."
            )
    api = _api()
    _check_data(where, cfg.get("data"), api)
    for sec in EXCLUDE:
        _check_section(where, sec, cfg.get(sec), _parameters(sec, api[sec]))
    out = cfg.get("output")
    if out is not None and not isinstance(out, str):
        raise ConfigError(f"{where}: `output` expects a folder path (str), got {type(out).__name__} {out!r}.")
    return cfg


def _check_data(where: str, data: Any, api: dict) -> None:
    if data is None:
        return
    if not isinstance(data, dict) or len(data) != 1:
        raise ConfigError(
            f"{where}: section `data` must hold exactly one source of {list(DATA_SOURCES)}, got {data!r}."
        )
    ((src, kw),) = data.items()
    if src not in DATA_SOURCES:
        raise ConfigError(
            f"{where}: unknown data source `data.{src}`{did_you_mean(src, DATA_SOURCES)}; section `data` must hold "
            f"exactly one source of {list(DATA_SOURCES)}."
        )
    _check_section(where, f"data.{src}", kw, _parameters(f"data.{src}", api[src]))
    missing = [f"data.{src}.{k}" for k in REQUIRED.get(src, ()) if k not in (kw or {})]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing}.")


def load_data(cfg: dict[str, Any], *, default: str = "synthetic"):
    """The SpatialData the ``data`` section describes (default: the built-in synthetic dataset)."""
    data = cfg.get("data") or {default: {}}
    ((src, kw),) = data.items()
    kw = dict(kw or {})
    func = _api()[src]
    args = [kw.pop(k) for k in REQUIRED.get(src, ())]
    return func(*args, **kw)


_YAML_TYPES = {
    "int": "integer",
    "float": "number",
    "bool": "true/false",
    "str": "string",
    "Path": "path",
    "os.PathLike": "path",
    "None": "null",
    "dict": "mapping",
    "Mapping": "mapping",
    "list": "list",
    "tuple": "list",
    "Sequence": "list",
}


def _yaml_type(annotation: str) -> str:
    names = [_YAML_TYPES.get(part.strip().split("[", 1)[0].strip()) for part in annotation.split("|")]
    known = [n for n in dict.fromkeys(names) if n is not None]
    return " or ".join(known) if known else "any (see the Python API)"


def _yaml_value(value: Any) -> str:
    import yaml

    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("...").strip()


def schema_markdown() -> str:
    """The YAML schema as Markdown tables (the docs' "Command line" page holds this text; a test compares them)."""
    lines = []
    for section, params in schema().items():
        lines += [f"`{section}`", "", "| key | type | default |", "|---|---|---|"]
        for key, (ann, default) in params.items():
            shown = "required" if isinstance(default, str) and default == "(required)" else f"`{_yaml_value(default)}`"
            lines.append(f"| `{key}` | {_yaml_type(ann)} | {shown} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
