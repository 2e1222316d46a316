"""Device families, looked up by name. Adding a family: subclass DeviceFamily, list it here."""
from __future__ import annotations

from ..schema import lookup
from .base import DeviceFamily, Param
from .linear_drift import Biolek, Joglekar, Prodromakis
from .metastable import MetastableSwitch
from .stanford_pku import StanfordPKU
from .vteam import VTEAM
from .yakopcic import Yakopcic

FAMILIES: dict[str, DeviceFamily] = {
    f.name: f for f in (Joglekar(), Biolek(), Prodromakis(), VTEAM(), Yakopcic(), StanfordPKU(), MetastableSwitch())
}


def get_family(name: str, field: str = "family") -> DeviceFamily:
    return lookup(FAMILIES, name, field, "families")


__all__ = ["DeviceFamily", "Param", "FAMILIES", "get_family"]
