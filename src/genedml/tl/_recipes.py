"""The keyword shorthands of `fit` and `cross_validate`, routed to the recipe objects they belong to."""

from __future__ import annotations

from typing import Any

__all__ = ["Recipes", "route_shorthands"]


class Recipes:
    """What a call's recipes resolved to: features, targets, training fields and the call's own extra options."""

    def __init__(self, features, targets, train: dict[str, Any], extra: dict[str, Any]) -> None:
        self.features, self.targets, self.train, self.extra = features, targets, train, extra


def route_shorthands(
    shorthands: dict[str, Any],
    *,
    features: Any,
    targets: Any,
    extra: dict[str, Any] | None = None,
    where: str,
) -> Recipes:
    """Split ``shorthands`` into `FeatureSpec` fields, `TargetSpec` fields, `TrainConfig` fields and ``extra`` options.

    ``features`` / ``targets`` are a spec, ``None`` (defaults) or, for features, an encoder name; shorthand fields
    override theirs. ``extra`` maps the call's own option names to their defaults. An unknown keyword is an error with
    a "did you mean".
    """
    from ..features import FeatureSpec
    from ..features._spec import resolve_feature_spec, unknown_keys_error
    from ..models import TrainConfig
    from ..pp import TargetSpec

    extra = dict(extra or {})
    f_kw = {k: v for k, v in shorthands.items() if k in FeatureSpec.fields()}
    t_kw = {k: v for k, v in shorthands.items() if k in TargetSpec.fields()}
    x_kw = {k: v for k, v in shorthands.items() if k in extra}
    train_fields = set(TrainConfig.field_names())
    # `batch_size` is a training field (spots per step); the encoder's is `embed_batch_size`
    f_kw.pop("batch_size", None)
    if "embed_batch_size" in shorthands:
        f_kw["batch_size"] = shorthands["embed_batch_size"]
    tr_kw = {k: v for k, v in shorthands.items() if k in train_fields}
    used = set(f_kw) | set(t_kw) | set(x_kw) | set(tr_kw) | {"embed_batch_size"} & set(shorthands)
    unknown = sorted(set(shorthands) - used)
    if unknown:
        known = [*FeatureSpec.fields(), *TargetSpec.fields(), *train_fields, *extra, "embed_batch_size"]
        raise unknown_keys_error(unknown, known, where=where)
    fspec, enc_obj = resolve_feature_spec(features, f_kw)
    if enc_obj is not None:
        raise ValueError("`encoder`: pass an encoder name (models rebuild their encoder at predict time).")
    if targets is None:
        tspec = TargetSpec(**t_kw)
    elif isinstance(targets, TargetSpec):
        tspec = targets.replace(**t_kw) if t_kw else targets
    else:
        raise ValueError(f"`targets` must be a TargetSpec or None, got {type(targets).__name__}.")
    return Recipes(fspec, tspec, tr_kw, {**extra, **x_kw})
