"""The grid covariates are made on, the items they are made from, and their attributes.

- :func:`as_geobox`: a GeoBox from a GeoBox, a composite (any xarray object with a grid) or
  an AOI (then the AOI's UTM zone, pixel edges on multiples of the resolution, like
  :func:`cup4soil.load_s2`);
- :func:`find_items`: a search of the covariate's collection over the grid, refusing with the
  collection's name and the span when it finds nothing;
- :func:`check_on_grid`: the refusal of layers that are not exactly on a grid (a fraction
  of a pixel off, another size or CRS), saying how to align them;
- :func:`layer_attrs`: the attributes every covariate carries (``units``, ``source``,
  ``time_start``/``time_end``, ``resampling``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pystac
import xarray as xr
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from ..errors import (
    CatalogError,
    CollectionError,
    CRSError,
    GridMismatchError,
    NoItemsError,
    ParameterError,
)
from ..sources import CATALOGS, search
from ..sources.aoi import AOILike, TimeLike, parse_aoi, parse_time, resolution_m, utm_crs

__all__ = [
    "GridLike", "as_geobox", "check_on_grid", "chunk_shape", "crs_of", "find_items",
    "layer_attrs", "named", "pixel_metres",
]

#: Output chunks of the static layers, pixels per side.
DEFAULT_CHUNK = 1024

#: What covariates are made on: a GeoBox, a dataset or array with a grid (a composite), or
#: an area of interest (then ``resolution`` and ``crs`` decide the grid).
GridLike = GeoBox | xr.Dataset | xr.DataArray | AOILike


def as_geobox(where: GridLike, *, resolution: float = 20.0, crs: Any = None) -> GeoBox:
    """The target grid of a covariate.

    Parameters
    ----------
    where
        A GeoBox; an xarray object on a grid (``.odc.geobox``, e.g. an SCMaP composite); or
        an area of interest as :func:`cup4soil.search` takes it.
    resolution
        Pixel size, metres, for an AOI.
    crs
        CRS for an AOI (default: its UTM zone).
    """
    if isinstance(where, GeoBox):
        crs_of(where)
        return where
    if isinstance(where, (xr.Dataset, xr.DataArray)):
        gbox = where.odc.geobox
        if not isinstance(gbox, GeoBox) or gbox.crs is None:
            raise CRSError("the dataset has no CRS/grid; give it one (odc-geo's assign_crs) or "
                           "pass a GeoBox.")
        return gbox
    res = resolution_m(resolution)
    area = parse_aoi(where)
    if crs is None:
        c = area.centroid
        target = utm_crs(c.x, c.y)
    else:
        try:
            target = CRS(crs)
        except Exception:
            raise CRSError(f"crs={crs!r} is not a coordinate reference system.") from None
    geom = Geometry(area, "EPSG:4326").to_crs(target)
    return GeoBox.from_bbox(geom.boundingbox, target, resolution=res)


def chunk_shape(chunks: dict[str, int] | None) -> tuple[int, int]:
    """``(y, x)`` chunk sides from ``{"y": ..., "x": ...}`` (default :data:`DEFAULT_CHUNK`)."""
    given = dict(chunks or {})
    unknown = set(given) - {"x", "y"}
    if unknown:
        raise ParameterError(f"chunks has unknown dimensions {sorted(unknown)}; use x, y.")
    cy, cx = int(given.get("y", DEFAULT_CHUNK)), int(given.get("x", DEFAULT_CHUNK))
    if cy < 1 or cx < 1:
        raise ParameterError(f"chunks={chunks} must be positive pixel counts.")
    return cy, cx


def crs_of(geobox: GeoBox) -> CRS:
    """The grid's CRS (a grid without one is refused)."""
    if geobox.crs is None:
        raise CRSError("the grid has no CRS; give the GeoBox one.")
    return geobox.crs


def pixel_metres(geobox: GeoBox) -> float:
    """Pixel width in metres (degrees taken at 111.32 km)."""
    return float(abs(geobox.resolution.x)) * (111_320.0 if crs_of(geobox).geographic else 1.0)


def lonlat_area(geobox: GeoBox) -> Any:
    """The grid's outline in lon/lat (a shapely geometry), for searches."""
    return geobox.extent.to_crs("EPSG:4326").geom


def named(catalog: str | os.PathLike[str]) -> str | None:
    """The canonical name of a named catalog (``"pc"`` -> ``"planetary-computer"``)."""
    key = os.fspath(catalog).strip().lower()
    for name, spec in CATALOGS.items():
        if key == name or key in spec.aliases:
            return name
    return None


def find_items(
    geobox: GeoBox, time: TimeLike, *, catalog: str | os.PathLike[str], collection: str,
    what: str,
) -> list[pystac.Item]:
    """Items of ``collection`` over the grid and the time span.

    Raises
    ------
    NoItemsError
        None found; the message names the collection, the catalog and the span.
    """
    start, end = parse_time(time)
    try:
        found = search(lonlat_area(geobox), (start.isoformat(), end.isoformat()),
                       catalog=catalog, collections=[collection], max_cloud_cover=None)
    except NoItemsError:
        w, s, e, n = geobox.extent.to_crs("EPSG:4326").boundingbox
        raise NoItemsError(
            f"no {what} items: {collection} in {os.fspath(catalog)} has none over lon "
            f"{w:.4f}..{e:.4f}, lat {s:.4f}..{n:.4f} between {start:%Y-%m-%d} and "
            f"{end:%Y-%m-%d}. Widen the time span, check the area, or name the collection "
            "your catalog uses (collections=[...])."
        ) from None
    return list(found.items)


def resolve_collection(catalog: str | os.PathLike[str], collections: Sequence[str] | str | None,
                       table: dict[str, str], what: str) -> str:
    """The collection to search: given, or the catalog's own for ``what``."""
    if isinstance(collections, str):
        collections = [collections]
    if collections:
        if len(collections) != 1:
            raise ParameterError(f"give one {what} collection, not {list(collections)}.")
        return str(collections[0])
    name = named(catalog)
    if name is None:
        # A static catalog or another API: the Planetary Computer name is the default.
        return table["planetary-computer"]
    if name not in table:
        offered = ", ".join(sorted(table))
        raise CollectionError(
            f"{name} has no {what} collection cup4soil knows. Use catalog= one of {offered}, "
            "or name the collection (collections=[...])."
        )
    return table[name]


def check_on_grid(obj: xr.Dataset | xr.DataArray, geobox: GeoBox, what: str) -> None:
    """Refuse ``obj`` unless it is exactly on ``geobox`` (same CRS, size and pixel edges).

    Raises
    ------
    GridMismatchError
        Another CRS or size, or pixel edges off by a fraction of a pixel; the message says
        how to align the layer.
    """
    fix = (f"Make {what} on the composite's grid (pass geobox=composite.odc.geobox, or "
           "the composite itself, when you build it) or align it with "
           f"{what}.odc.reproject(composite.odc.geobox, resampling=...).")
    gbox = obj.odc.geobox if "y" in obj.dims and "x" in obj.dims else None
    if not isinstance(gbox, GeoBox):
        raise GridMismatchError(f"{what} has no grid (no y/x dimensions with a CRS). {fix}")
    if gbox.crs != geobox.crs:
        raise GridMismatchError(f"{what} is in {gbox.crs}, the composite in {geobox.crs}. {fix}")
    if gbox.shape != geobox.shape:
        raise GridMismatchError(
            f"{what} is {gbox.shape.y} x {gbox.shape.x} px, the composite "
            f"{geobox.shape.y} x {geobox.shape.x} px. {fix}")
    a, b = gbox.affine, geobox.affine
    res = abs(b.a)
    if not np.allclose([a.a, a.b, a.d, a.e], [b.a, b.b, b.d, b.e], rtol=1e-9, atol=1e-9 * res):
        raise GridMismatchError(
            f"{what} has pixels of {abs(a.a):g} x {abs(a.e):g}, the composite of "
            f"{abs(b.a):g} x {abs(b.e):g} (CRS units). {fix}")
    dx, dy = (a.c - b.c) / b.a, (a.f - b.f) / b.e
    if abs(dx) > 1e-6 or abs(dy) > 1e-6:
        raise GridMismatchError(
            f"{what}'s pixel edges are offset from the composite's by {dx:+.3f} px in x and "
            f"{dy:+.3f} px in y: the layers would be compared pixel by pixel at different "
            f"places. {fix}")


def layer_attrs(*, units: str, long_name: str, source: str, resampling: str,
                time_start: str | None = None, time_end: str | None = None,
                **extra: Any) -> dict[str, Any]:
    """The attributes of one covariate layer (never a URL: ``source`` names collections)."""
    attrs: dict[str, Any] = {"units": units, "long_name": long_name, "source": source,
                             "resampling": resampling}
    if time_start is not None:
        attrs["time_start"] = time_start
    if time_end is not None:
        attrs["time_end"] = time_end
    attrs.update(extra)
    return attrs


def source_label(collection: str, items: Sequence[pystac.Item]) -> str:
    """``"sentinel-1-rtc (60 items)"``: the collection and how many items were used."""
    return f"{collection} ({len(items)} item{'s' if len(items) != 1 else ''})"


def item_time(item: pystac.Item) -> tuple[Any, Any]:
    """Start and end of an item (its datetime, or its start/end datetimes)."""
    cm = item.common_metadata
    start = item.datetime or cm.start_datetime
    end = item.datetime or cm.end_datetime or start
    if start is None:
        raise CatalogError(f"item {item.id!r} has no datetime; it is not a valid STAC item.")
    return start, end
