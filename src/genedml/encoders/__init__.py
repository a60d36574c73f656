"""Frozen image encoders through timm: ``gd.encoders`` (imports torch and timm; loaded lazily by ``genedml``)."""

from ._dihedral import dihedral
from ._encoder import Encoder, create_encoder, resolve_device
from ._encoder import build_architecture as build_architecture
from ._encoder import resolve_spec as resolve_spec
from ._feature_encoders import MORPHOLOGY_VERSION as MORPHOLOGY_VERSION
from ._feature_encoders import ConcatEncoder, MorphologyEncoder
from ._registry import EncoderSpec, list_encoders, register_encoder
from ._weights import WeightsUnavailableError, convert_ciga_state_dict

__all__ = [
    "ConcatEncoder",
    "Encoder",
    "EncoderSpec",
    "MorphologyEncoder",
    "WeightsUnavailableError",
    "convert_ciga_state_dict",
    "create_encoder",
    "dihedral",
    "list_encoders",
    "register_encoder",
    "resolve_device",
]
