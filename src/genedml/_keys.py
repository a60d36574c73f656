"""Every default key genedml reads or writes, in one place.

The data model (see the README): one :class:`~spatialdata.SpatialData` holds one or more tissue sections.
Section ``s`` has an H&E image element ``f"{s}_hne"``, a circles shapes element ``f"{s}_spots"`` (radius in
pixels of the section's full-resolution frame) and rows in one table (:attr:`Keys.table`) that annotates all
spot elements. Each section has two coordinate systems: ``s`` (full-resolution pixels) and ``f"{s}_um"``
(micrometres); the spot element's transformation to the latter is a scale by the pixel size (µm/px).
"""

from __future__ import annotations

__all__ = ["Keys"]


def _affixed(*, prefix: str = "", suffix: str = "", doc: str) -> staticmethod:
    """A static method ``name -> prefix + name + suffix`` (a key derived from a section, layer or key name)."""

    def key(name: str) -> str:
        return f"{prefix}{name}{suffix}"

    key.__doc__ = doc
    return staticmethod(key)


class Keys:
    """Default key names (strings only, no logic)."""

    # elements
    table = "table"
    image_suffix = "_hne"
    spots_suffix = "_spots"
    grid_suffix = "_grid"
    um_suffix = "_um"

    # table.obs
    section = "section"
    patient = "patient"
    array_row = "array_row"
    array_col = "array_col"
    region = "region"
    instance = "spot_id"
    barcode = "barcode"

    # table.layers / obsm / var / uns
    counts = "counts"
    predicted = "predicted"
    selected = "genedml_selected"
    target = "genedml_target"
    spatial = "spatial"
    uns = "genedml"
    var_flag_prefix = "genedml_"

    image = _affixed(suffix=image_suffix, doc="Image element of a section.")
    spots = _affixed(suffix=spots_suffix, doc="Spot shapes element of a section.")
    um = _affixed(suffix=um_suffix, doc="Micrometre coordinate system of a section.")
    var_flag = _affixed(
        prefix=var_flag_prefix, doc="Boolean ``var`` column marking the genes predicted into ``layers[key_added]``."
    )
    observed = _affixed(
        suffix="_observed", doc="Layer of normalised measured values written by ``gd.tl.evaluate`` next to a layer."
    )
    std = _affixed(suffix="_std", doc="Layer of the ensemble spread (std over members) written by ``gd.tl.predict``.")
    lower = _affixed(suffix="_lower", doc="Layer of the calibrated interval's lower bound (``predict(interval=…)``).")
    upper = _affixed(suffix="_upper", doc="Layer of the calibrated interval's upper bound (``predict(interval=…)``).")
    pcc = _affixed(prefix="genedml_pcc_", doc="``var`` column of per-gene PCC written by ``gd.tl.evaluate``.")

    @staticmethod
    def features(encoder: str, scale: str) -> str:
        """``obsm`` key of cached encoder features for one scale (``"target"``, ``"neighbor"``, ``"global"``)."""
        safe = encoder.replace("/", "_").replace(":", "_")
        return f"genedml_{safe}_{scale}"
