"""Copernicus DEM item metadata: collections per catalog, the elevation asset (no pixels).

From the recorded items in ``shared/data/stac/covariates``: Planetary Computer
``cop-dem-glo-30`` (asset ``data``, no ``raster:bands``: no nodata, no unit; SAS-signed
Azure hrefs) and Earth Search ``cop-dem-glo-30`` (asset ``data``, ``raster:bands`` with
``unit: meter`` and ``sampling: point``). GLO-30 is float32 metres above the EGM2008 geoid,
a surface model, on a point-registered EPSG:4326 grid whose tiles abut half a pixel
outside whole degrees; ocean is 0.0, not nodata.
"""

from __future__ import annotations

import pystac

from ..errors import BandError

__all__ = ["COLLECTIONS", "asset_key", "collection_for"]

#: Named catalog -> its Copernicus DEM GLO-30 collection.
COLLECTIONS: dict[str, str] = {
    "planetary-computer": "cop-dem-glo-30",
    "earth-search": "cop-dem-glo-30",
    "cdse": "cop-dem-glo-30-dged-cog",
}

#: Asset keys of the elevation raster, in order of preference.
ASSET_KEYS: tuple[str, ...] = ("data", "DEM", "dem", "elevation")


def collection_for(catalog: str) -> str | None:
    """The DEM collection of a named catalog (None: not a named catalog)."""
    return COLLECTIONS.get(catalog)


def asset_key(item: pystac.Item) -> str:
    """The asset key of the elevation raster of a DEM item.

    Raises
    ------
    BandError
        No such asset (nor a single asset with role ``data``).
    """
    for key in ASSET_KEYS:
        if key in item.assets:
            return key
    data = [k for k, a in item.assets.items() if "data" in (a.roles or [])]
    if len(data) == 1:
        return data[0]
    raise BandError(
        f"item {item.id!r} has no elevation asset (its assets are "
        f"{', '.join(sorted(item.assets))}). Search a Copernicus DEM collection "
        f"({', '.join(sorted(set(COLLECTIONS.values())))}) or pass dem=<path/URL>."
    )
