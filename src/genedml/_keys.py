"""Every default key genedml reads or writes, in one place.

The data model (see the README): one :class:`~spatialdata.SpatialData` holds one or more tissue sections.
Section ``s`` has an H&E image element ``f"{s}_hne"``, a circles shapes element ``f"{s}_spots"`` (radius in
pixels of the section's full-resolution frame) and rows in one table (:attr:`Keys.table`) that annotates all
spot elements. Each section has two coordinate systems: ``s`` (full-resolution pixels) and ``f"{s}_um"``
(micrometres); the spot element's transformation to the latter is a scale by the pixel size (µm/px).
"""

from __future__ import annotations

__all__ = ["Keys"]


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

    @staticmethod
    def image(section: str) -> str:
        """Image element of a section."""
        return f"{section}{Keys.image_suffix}"

    @staticmethod
    def spots(section: str) -> str:
        """Spot shapes element of a section."""
        return f"{section}{Keys.spots_suffix}"

    @staticmethod
    def um(section: str) -> str:
        """Micrometre coordinate system of a section."""
        return f"{section}{Keys.um_suffix}"

    @staticmethod
    def var_flag(key_added: str) -> str:
        """Boolean ``var`` column marking the genes predicted into ``layers[key_added]``."""
        return f"{Keys.var_flag_prefix}{key_added}"

    @staticmethod
    def observed(layer: str) -> str:
        """Layer of normalised measured values written by ``gd.tl.evaluate`` next to ``layers[layer]``."""
        return f"{layer}_observed"

    @staticmethod
    def std(layer: str) -> str:
        """Layer of the ensemble spread (std over members) written by ``gd.tl.predict`` next to ``layers[layer]``."""
        return f"{layer}_std"

    @staticmethod
    def lower(layer: str) -> str:
        """Layer of the calibrated interval's lower bound written by ``gd.tl.predict(..., interval=…)``."""
        return f"{layer}_lower"

    @staticmethod
    def upper(layer: str) -> str:
        """Layer of the calibrated interval's upper bound written by ``gd.tl.predict(..., interval=…)``."""
        return f"{layer}_upper"

    @staticmethod
    def pcc(layer: str) -> str:
        """``var`` column of per-gene PCC written by ``gd.tl.evaluate``."""
        return f"genedml_pcc_{layer}"

    @staticmethod
    def features(encoder: str, scale: str) -> str:
        """``obsm`` key of cached encoder features for one scale (``"target"``, ``"neighbor"``, ``"global"``)."""
        safe = encoder.replace("/", "_").replace(":", "_")
        return f"genedml_{safe}_{scale}"
