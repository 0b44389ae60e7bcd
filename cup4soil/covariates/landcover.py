"""Land cover covariate: ESA WorldCover classes on a grid, by mode (coarser) or nearest.

Also the layer SCMaP takes as ``worldcover=``: :func:`worldcover_for` turns ``"auto"`` or a
path into it, so that built-up areas and water are never bare and MASK class 3 appears
without the user building the layer by hand.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from ..errors import NoItemsError, ParameterError
from ..sources import landcover as lcmeta
from .grid import (
    GridLike,
    as_geobox,
    chunk_shape,
    find_items,
    item_time,
    layer_attrs,
    pixel_metres,
    resolve_collection,
    source_label,
)
from .loading import lazy_layer
from .rasters import raster

__all__ = ["worldcover", "worldcover_for"]

#: WorldCover's pixel size at the equator, metres (1/12000 degree).
_NATIVE_M = 111_320.0 / 12000


def worldcover(
    geobox_or_aoi: GridLike,
    *,
    catalog: str | os.PathLike[str] = "planetary-computer",
    year: int = 2021,
    collections: Sequence[str] | str | None = None,
    resolution: float = 20.0,
    crs: Any = None,
    chunks: dict[str, int] | None = None,
) -> xr.DataArray:
    """ESA WorldCover classes on a grid (lazy).

    Parameters
    ----------
    geobox_or_aoi
        The target grid (a GeoBox or a composite), or an AOI (then ``resolution``, ``crs``).
    catalog
        ``"planetary-computer"`` (``esa-worldcover``), or a static catalog / STAC API with an
        ``esa-worldcover`` collection.
    year
        2020 (version 1.0.0) or 2021 (2.0.0).
    collections
        The WorldCover collection (default ``esa-worldcover``).
    resolution, crs
        The grid made from an AOI.
    chunks
        Output chunks (default 1024 px).

    Returns
    -------
    xarray.DataArray
        ``worldcover``: uint8 classes (10 tree cover ... 100 moss and lichen; 0 = nodata,
        e.g. open ocean), by ``mode`` where the grid is coarser than 10 m, else ``nearest``.
    """
    geobox = as_geobox(geobox_or_aoi, resolution=resolution, crs=crs)
    if int(year) not in lcmeta.YEARS:
        raise ParameterError(
            f"year={year}: ESA WorldCover exists for {', '.join(map(str, lcmeta.YEARS))}.")
    collection = resolve_collection(catalog, collections, lcmeta.COLLECTIONS, "WorldCover")
    items = find_items(geobox, str(int(year)), catalog=catalog, collection=collection,
                       what="ESA WorldCover")
    # A map of one year: its items span that year (search keeps any that touch it).
    items = [it for it in items if item_time(it)[0].year == int(year)]
    if not items:
        raise NoItemsError(f"no ESA WorldCover {year} map in {collection} over the grid. "
                           "Try the other year (2020 or 2021).")
    res = pixel_metres(geobox)
    method = "mode" if res > _NATIVE_M * 1.5 else "nearest"
    cy, cx = chunk_shape(chunks)
    data = lazy_layer(items, [lcmeta.asset_key(it) for it in items], geobox,
                      data_type="uint8", nodata=lcmeta.NODATA, resampling=method,
                      chunk=(cy, cx))
    coords = dict(xr_coords(geobox, crs_coord_name="spatial_ref"))
    out = xr.DataArray(data, dims=("y", "x"), coords=coords, name="worldcover")
    out.attrs.update(layer_attrs(
        units="1", long_name=f"ESA WorldCover {year} land cover class",
        source=source_label(collection, items), resampling=method,
        time_start=f"{year}-01-01", time_end=f"{year}-12-31",
        flag_values=list(lcmeta.CLASSES), flag_meanings=" ".join(lcmeta.CLASSES.values()),
        nodata=lcmeta.NODATA, kind="categorical"))
    out.encoding["grid_mapping"] = "spatial_ref"
    return out


def worldcover_for(spec: str | os.PathLike[str], geobox: GeoBox, *,
                   catalog: str | os.PathLike[str] = "planetary-computer") -> xr.DataArray:
    """The WorldCover layer SCMaP masks with: ``"auto"`` (from ``catalog``) or the path/URL
    of a WorldCover raster, on ``geobox``."""
    if os.fspath(spec) == "auto":
        return worldcover(geobox, catalog=catalog)
    layer = raster(spec, geobox, kind="categorical", name="worldcover")
    return layer.astype("uint8") if layer.dtype != "uint8" else layer
