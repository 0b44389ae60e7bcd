"""Sentinel-1 item metadata: collections per catalog, polarisation assets, orbit direction,
the geometry and scale of the values (no pixels).

Which collections hold backscatter on a map grid, and how each spells its assets, was read
from the recorded items and collections in ``shared/data/stac`` (Planetary Computer
``sentinel-1-rtc`` and ``sentinel-1-grd``, Earth Search ``sentinel-1-grd``) and from the CDSE
``sentinel-1-global-mosaics`` layout (monthly VV/VH mosaics, 20 m, transforms in GDAL order:
see :func:`cup4soil.sources.assets.fix_transform`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pystac

from ..errors import BandError, CollectionError, ParameterError
from .assets import raster_info

__all__ = [
    "COLLECTIONS", "POLARIZATIONS", "SAR_GEOMETRY", "asset_key", "check_map_geometry",
    "check_orbit", "check_polarizations", "collection_for", "in_db", "nodata", "orbit_state",
    "refuse_collection",
]

#: Polarisations cup4soil computes statistics of, canonical (lower-case) names.
POLARIZATIONS: tuple[str, ...] = ("vv", "vh")

#: Asset keys per polarisation, in order of preference: Planetary Computer ``sentinel-1-rtc``
#: (``vv``), CDSE mosaics (``VV``), and catalogs made from OPERA RTC-S1 or pyroSAR products.
ASSET_ALIASES: dict[str, tuple[str, ...]] = {
    "vv": ("vv", "VV", "VV_linear", "sigma0_vv", "gamma0_vv"),
    "vh": ("vh", "VH", "VH_linear", "sigma0_vh", "gamma0_vh"),
}

#: Named catalog -> its Sentinel-1 collection of backscatter on a map grid.
COLLECTIONS: dict[str, str] = {
    "planetary-computer": "sentinel-1-rtc",
    "cdse": "sentinel-1-global-mosaics",
    "earth-search": "sentinel-1-grd",  # refused: see SAR_GEOMETRY
}

#: Collections of Level-1 products in SAR geometry, and why cup4soil cannot use them.
SAR_GEOMETRY: dict[str, str] = {
    "sentinel-1-grd": "Level-1 GRD: uncalibrated digital numbers in SAR (ground-range) "
                      "geometry, georeferenced only by tie points, not terrain-corrected",
    "sentinel-1-slc": "Level-1 SLC: complex values in slant-range geometry",
}

#: Nodata of collections whose items do not declare it.
DEFAULT_NODATA: dict[str, float] = {"sentinel-1-rtc": -32768.0}

_USE_INSTEAD = (
    "Use Planetary Computer's sentinel-1-rtc (catalog='planetary-computer': gamma0, "
    "radiometrically terrain-corrected, on a UTM grid), CDSE's sentinel-1-global-mosaics "
    "(catalog='cdse'), or terrain-correct the scenes yourself (SNAP, pyroSAR, OPERA RTC-S1) "
    "into a catalog whose items carry vv/vh assets on a map grid."
)


def collection_for(catalog: str) -> str | None:
    """The Sentinel-1 collection of a named catalog (None: not a named catalog)."""
    return COLLECTIONS.get(catalog)


def check_map_geometry(item: pystac.Item) -> None:
    """Refuse items of Level-1 collections in SAR geometry.

    Raises
    ------
    CollectionError
        The item is a GRD or SLC product (its collection, or the calibration annotations of
        a SAFE product among its assets, say so).
    """
    coll = item.collection_id or ""
    why = SAR_GEOMETRY.get(coll)
    if why is None and any(k.startswith("schema-calibration-") for k in item.assets):
        why = "a Level-1 SAFE product (it carries calibration annotations): uncalibrated " \
              "values in SAR geometry"
    if why is not None:
        raise CollectionError(
            f"item {item.id!r} ({coll or 'no collection'}) is {why}; its pixels are neither "
            f"backscatter nor on a map grid. {_USE_INSTEAD}"
        )


def refuse_collection(name: str, catalog: str) -> None:
    """Refuse a named collection in SAR geometry before any search (no network)."""
    why = SAR_GEOMETRY.get(name)
    if why is not None:
        raise CollectionError(
            f"{catalog}'s {name} is {why}; its pixels are neither backscatter nor on a map "
            f"grid. {_USE_INSTEAD}"
        )


def asset_key(item: pystac.Item, pol: str) -> str:
    """The asset key of polarisation ``pol`` (``"vv"`` or ``"vh"``) in ``item``.

    Raises
    ------
    BandError
        The item has no asset for it.
    """
    for key in ASSET_ALIASES.get(pol, (pol,)):
        if key in item.assets:
            return key
    raise BandError(
        f"item {item.id!r} has no {pol.upper()} asset (its assets are "
        f"{', '.join(sorted(item.assets))}). Search a Sentinel-1 collection with vv/vh "
        "backscatter, or ask for polarizations=('vv',) if the item has VV only."
    )


def check_polarizations(pols: Sequence[str] | str) -> tuple[str, ...]:
    """Canonical polarisation names (``"vv"``, ``"vh"``), validated."""
    if isinstance(pols, str):
        pols = (pols,)
    out = tuple(dict.fromkeys(str(p).lower() for p in pols))
    bad = [p for p in out if p not in POLARIZATIONS]
    if bad or not out:
        raise ParameterError(
            f"polarizations={list(pols)}: choose from {', '.join(POLARIZATIONS)}.")
    return out


def orbit_state(item: pystac.Item) -> str | None:
    """``"ascending"``, ``"descending"`` or None (mosaics of both, or unknown)."""
    value = item.properties.get("sat:orbit_state")
    return str(value).lower() if value else None


def check_orbit(orbit: str | None) -> str | None:
    """Validate ``orbit`` (``"ascending"``, ``"descending"`` or None for both)."""
    if orbit is None:
        return None
    o = str(orbit).lower()
    if o not in ("ascending", "descending"):
        raise ParameterError(f"orbit={orbit!r}: use 'ascending', 'descending' or None (both).")
    return o


def nodata(item: pystac.Item, key: str) -> float | None:
    """The asset's nodata value (declared, else the collection's known one)."""
    info = raster_info(item.assets[key])
    if info.nodata is not None:
        return info.nodata
    return DEFAULT_NODATA.get(item.collection_id or "")


def in_db(item: pystac.Item, key: str) -> bool:
    """Whether the asset's values are in decibels (its raster metadata says ``unit: dB``).

    Items that do not say are taken as linear power, the convention of Planetary Computer's
    ``sentinel-1-rtc`` and of OPERA RTC-S1 (the block tasks refuse values that look like dB).
    """
    unit = (raster_info(item.assets[key]).unit or "").lower().replace(" ", "")
    return unit in ("db", "decibel", "decibels")
