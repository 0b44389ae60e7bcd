"""SoilGrids 2.0 properties, their mapped units and conversions.

Units follow SoilGrids' mapped units (``soc`` dg/kg, ``nitrogen`` cg/kg, ``phh2o`` pH×10,
``bdod`` cg/cm³, ``clay``/``sand``/``silt`` g/kg); :func:`to_conventional` divides by the
conversion factor.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import overload

import xarray as xr

from ..errors import ParameterError

__all__ = ["PROPERTIES", "SoilGridsProperty", "resolve_property", "to_conventional"]


@dataclass(frozen=True)
class SoilGridsProperty:
    """A SoilGrids property: its mapped units and how other units convert to them."""

    long_name: str
    units: str  # SoilGrids mapped units
    factor: float  # mapped / factor = conventional
    conventional: str
    accepted: Mapping[str, float]  # input unit -> multiplier to mapped units
    aliases: tuple[str, ...]


_P = SoilGridsProperty

#: SoilGrids 2.0 properties, their mapped units and conversion factors.
PROPERTIES: dict[str, SoilGridsProperty] = {
    "soc": _P("soil organic carbon content", "dg/kg", 10, "g/kg",
              {"%": 100, "g/kg": 10, "dg/kg": 1}, ("soc", "oc", "organic_carbon")),
    "nitrogen": _P("total nitrogen", "cg/kg", 100, "g/kg",
                   {"%": 1000, "g/kg": 100, "cg/kg": 1}, ("nitrogen", "n", "tn")),
    "phh2o": _P("pH in water", "pH*10", 10, "pH", {"pH": 10, "pH*10": 1},
                ("phh2o", "ph", "ph_h2o", "ph_water")),
    "bdod": _P("bulk density of the fine earth fraction", "cg/cm³", 100, "kg/dm³",
               {"g/cm3": 100, "g/cm³": 100, "kg/dm3": 100, "kg/dm³": 100,
                "cg/cm3": 1, "cg/cm³": 1}, ("bdod", "bd", "bulk_density")),
    "clay": _P("clay content", "g/kg", 10, "%", {"%": 10, "g/kg": 1}, ("clay",)),
    "sand": _P("sand content", "g/kg", 10, "%", {"%": 10, "g/kg": 1}, ("sand",)),
    "silt": _P("silt content", "g/kg", 10, "%", {"%": 10, "g/kg": 1}, ("silt",)),
}


def resolve_property(target: str, prop: str | None, unit: str | None
                     ) -> tuple[str, str, float]:
    """The output name, its units and the multiplier from the sample unit to them.

    A known SoilGrids property (named by ``prop`` or guessed from ``target``) maps in
    SoilGrids units; any other target keeps its values and ``unit``.

    Raises
    ------
    ParameterError
        A known property without ``unit`` (unless ``target`` is named exactly like it), or
        with a unit it cannot convert.
    """
    key = prop
    if key is None:
        t = re.sub(r"_target$", "", target.lower())
        key = next((k for k, p in PROPERTIES.items() if t in p.aliases), None)
    if key is None or key not in PROPERTIES:
        if prop is not None and prop.lower() in PROPERTIES:
            key = prop.lower()
        else:
            name = prop or re.sub(r"\W+", "_", target).strip("_")
            return name, unit or "unknown", 1.0
    p = PROPERTIES[key]
    if unit is None:
        if target != key:
            raise ParameterError(
                f"target {target!r} looks like {key} ({p.long_name}); say its unit with "
                f"unit= one of {', '.join(p.accepted)} (SoilGrids maps {key} in {p.units}).")
        unit = p.units  # a column named exactly like the SoilGrids property: its units
    if unit not in p.accepted:
        raise ParameterError(f"unit {unit!r} for {key}: use one of {', '.join(p.accepted)}.")
    return key, p.units, float(p.accepted[unit])


@overload
def to_conventional(obj: xr.Dataset) -> xr.Dataset: ...


@overload
def to_conventional(obj: xr.DataArray) -> xr.DataArray: ...


def to_conventional(obj: xr.Dataset | xr.DataArray) -> xr.Dataset | xr.DataArray:
    """Divide SoilGrids mapped units by their conversion factor (dg/kg → g/kg, pH×10 → pH,
    cg/cm³ → kg/dm³, g/kg → %). Variables without a ``conversion_factor`` are unchanged."""
    def one(v: xr.DataArray) -> xr.DataArray:
        f = v.attrs.get("conversion_factor")
        if f is None:
            return v
        out: xr.DataArray = v / f
        out.attrs = {**v.attrs, "units": v.attrs.get("conventional_units", ""),
                     "conversion_factor": 1}
        return out

    if isinstance(obj, xr.DataArray):
        return one(obj)
    return xr.Dataset({k: one(v) for k, v in obj.data_vars.items()}, attrs=obj.attrs)
