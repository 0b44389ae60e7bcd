"""ESA WorldCover item metadata: collections, the class map asset, the legend (no pixels).

From the recorded Planetary Computer ``esa-worldcover`` collection and the stactools item in
``shared/data/stac/covariates``: asset ``map``, uint8 classes, nodata 0 (open ocean), 10 m
(1/12000 degree, area-registered on whole degrees); version 1.0.0 for 2020 and 2.0.0 for
2021; ``datetime`` null with ``start_datetime``/``end_datetime`` spanning the year.
"""

from __future__ import annotations

import pystac

from ..errors import BandError

__all__ = ["CLASSES", "COLLECTIONS", "NODATA", "YEARS", "asset_key", "collection_for"]

#: Named catalog -> its ESA WorldCover collection.
COLLECTIONS: dict[str, str] = {"planetary-computer": "esa-worldcover"}

#: The WorldCover legend (class value -> name).
CLASSES: dict[int, str] = {
    10: "tree_cover", 20: "shrubland", 30: "grassland", 40: "cropland", 50: "built_up",
    60: "bare_sparse_vegetation", 70: "snow_ice", 80: "permanent_water", 90: "herbaceous_wetland",
    95: "mangroves", 100: "moss_lichen",
}
NODATA = 0
#: Years ESA published WorldCover for, and the product version of each.
YEARS: dict[int, str] = {2020: "1.0.0", 2021: "2.0.0"}


def collection_for(catalog: str) -> str | None:
    """The WorldCover collection of a named catalog (None: not a named catalog, or it has
    none)."""
    return COLLECTIONS.get(catalog)


def asset_key(item: pystac.Item) -> str:
    """The asset key of the class map.

    Raises
    ------
    BandError
        The item has no ``map`` asset.
    """
    for key in ("map", "Map", "data"):
        if key in item.assets:
            return key
    raise BandError(
        f"item {item.id!r} has no WorldCover class map (its assets are "
        f"{', '.join(sorted(item.assets))}). Search an ESA WorldCover collection (asset 'map')."
    )
