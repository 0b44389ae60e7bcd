"""Checks of an item's metadata before its bands are planned for reading (no I/O).

What a cube cannot read correctly is refused here, from the item alone, with the item, the
asset and the fix -- instead of an empty scene, all-zero data or a reader's assertion at
compute time:

- an asset that is a picture (``image/png``, ``image/jpeg``, a ``.png`` href), not a band;
- a band declared as floating point (``raster:bands`` / ``data_type``): reflectance 0-1
  where Sentinel-2 digital numbers are expected would all be read as 0;
- projection metadata that puts an asset elsewhere than the item's geometry (declared
  EPSG:32632 for a file in EPSG:32633: the reader would skip the scene as off the area);
- a sun angle that is not an angle (``s2:mean_solar_zenith`` outside 0..180 degrees).

The reader checks the files themselves too, at compute time
(:mod:`cup4soil.cube.readers`), for what metadata does not say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pystac
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from ..errors import ItemError
from .aoi import crosses_antimeridian

__all__ = ["check_item", "declared_data_type", "proj_footprint"]

#: Media types and file endings of pictures: never a Sentinel-2 band.
_PICTURE_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp",
                  "image/bmp")
_PICTURE_ENDINGS = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp")
#: An asset must share at least this share of its footprint with the item's geometry.
_MIN_OVERLAP = 0.25


def declared_data_type(asset: pystac.Asset) -> str | None:
    """The data type the asset's metadata declares (raster extension of STAC 1.0, or the
    ``data_type`` of STAC 1.1 assets and bands), or None."""
    fields = asset.extra_fields
    for key in ("raster:bands", "bands"):
        for entry in fields.get(key) or []:
            if isinstance(entry, Mapping) and entry.get("data_type"):
                return str(entry["data_type"])
    value = fields.get("data_type")
    return str(value) if value else None


def _is_picture(asset: pystac.Asset) -> str | None:
    media = (asset.media_type or "").split(";")[0].strip().lower()
    if media in _PICTURE_TYPES:
        return f"media type {media}"
    path = asset.href.split("?", 1)[0].lower()
    if path.endswith(_PICTURE_ENDINGS):
        return f"a {path.rsplit('.', 1)[-1].upper()} file"
    return None


def proj_footprint(item: pystac.Item, asset: pystac.Asset) -> BaseGeometry | None:
    """The asset's footprint in lon/lat from its projection metadata (``proj:code`` or
    ``proj:epsg``, with ``proj:transform`` and ``proj:shape``, or ``proj:bbox``; asset
    fields first, then the item's), or None when they do not say."""
    from odc.geo.geom import box

    def get(key: str) -> Any:
        value = asset.extra_fields.get(key)
        return item.properties.get(key) if value is None else value

    code = get("proj:code")
    epsg = get("proj:epsg")
    crs = code if isinstance(code, str) and code else (f"EPSG:{int(epsg)}" if epsg else None)
    if crs is None:
        return None
    transform, shape, bbox = get("proj:transform"), get("proj:shape"), get("proj:bbox")
    try:
        if transform and shape and len(transform) >= 6 and len(shape) == 2:
            a, b, c, d, e, f = (float(v) for v in transform[:6])
            h, w = (int(v) for v in shape)
            if not (0 < abs(a) < 1e4 and 0 < abs(e) < 1e4):
                return None  # not an affine pixel size (e.g. GDAL's order): not judged
            xs = [c, c + a * w, c + b * h, c + a * w + b * h]
            ys = [f, f + d * w, f + e * h, f + d * w + e * h]
            geom = box(min(xs), min(ys), max(xs), max(ys), crs)
        elif bbox and len(bbox) == 4:
            x0, y0, x1, y1 = (float(v) for v in bbox)
            geom = box(x0, y0, x1, y1, crs)
        else:
            return None
        lonlat = geom.to_crs("EPSG:4326")
        out: BaseGeometry = lonlat.geom
    except Exception:  # metadata odc-geo cannot place: the reader checks the file
        return None
    return out if out.is_valid and not out.is_empty else None


def _fmt(geom: BaseGeometry) -> str:
    w, s, e, n = geom.bounds
    return f"lon {w:.2f}..{e:.2f}, lat {s:.2f}..{n:.2f}"


def _check_projection(item: pystac.Item, band: str, asset: pystac.Asset,
                      seen: dict[tuple[Any, ...], bool]) -> None:
    if not item.geometry:
        return
    fields = {**item.properties, **asset.extra_fields}
    key = tuple(repr(fields.get(k)) for k in ("proj:code", "proj:epsg", "proj:transform",
                                                "proj:shape", "proj:bbox"))
    if key in seen:
        return
    seen[key] = True
    footprint = proj_footprint(item, asset)
    if footprint is None:
        return
    geom = shapely.geometry.shape(item.geometry)
    if crosses_antimeridian(geom) or footprint.bounds[2] - footprint.bounds[0] > 180:
        return  # parts on both sides of +-180: not compared here (the reader checks)
    smaller = min(geom.area, footprint.area)
    if smaller <= 0:
        return
    overlap = geom.intersection(footprint).area / smaller
    if overlap < _MIN_OVERLAP:
        declared = fields.get("proj:code") or f"EPSG:{fields.get('proj:epsg')}"
        raise ItemError(
            f"item {item.id!r}: the projection metadata of band {band} ({declared}) puts the "
            f"raster at {_fmt(footprint)}, but the item's geometry is at {_fmt(geom)} "
            f"({overlap:.0%} overlap). One of them is wrong, so its pixels would land "
            "elsewhere (or the scene would read as empty). Correct the item's proj:code / "
            "proj:epsg (the file's own CRS: rio info or gdalinfo), or drop the projection "
            "metadata.")


def check_item(item: pystac.Item, assets: Mapping[str, str], *,
               integer_bands: Sequence[str] | None = None) -> None:
    """Refuse an item whose metadata says its bands cannot be read correctly.

    Parameters
    ----------
    item
        The STAC item.
    assets
        Canonical band -> asset key of the bands to read.
    integer_bands
        Bands that must hold integers (default: all of ``assets``).

    Raises
    ------
    ItemError
        A picture as a band, a floating-point band, projection metadata that contradicts
        the item's geometry, a sun angle that is not an angle.
    """
    integer = set(assets if integer_bands is None else integer_bands)
    seen: dict[tuple[Any, ...], bool] = {}
    for band, key in assets.items():
        asset = item.assets[key]
        picture = _is_picture(asset)
        if picture:
            raise ItemError(
                f"item {item.id!r}: the asset {key!r} of band {band} is a picture ({picture}: "
                f"{asset.href.split('?', 1)[0]}), not a raster band. Point the asset at the "
                "band's GeoTIFF/COG or JPEG 2000 file (thumbnails and previews cannot be "
                "read as bands).")
        dtype = declared_data_type(asset)
        if band in integer and dtype and dtype.lower().startswith(("float", "cfloat")):
            raise ItemError(
                f"item {item.id!r}: band {band} (asset {key!r}) is declared as {dtype} "
                "(reflectance 0-1?), but Sentinel-2 L2A bands are read as digital numbers "
                "(integers: reflectance x 10000); read as DN, every value would become 0. "
                "Convert the files to DN (round(reflectance * 10000), uint16) or load a "
                "collection that stores DN.")
        _check_projection(item, band, asset, seen)
    for key in ("s2:mean_solar_zenith", "view:sun_elevation"):
        value = item.properties.get(key)
        if value is None:
            continue
        try:
            angle = float(value)
        except (TypeError, ValueError):
            angle = math.nan
        low, high = (0.0, 180.0) if key == "s2:mean_solar_zenith" else (-90.0, 90.0)
        if not (low <= angle <= high):
            raise ItemError(
                f"item {item.id!r}: {key}={value!r} is not an angle in degrees within "
                f"{low:g}..{high:g}. Fix the item's metadata (radians must be converted to "
                "degrees), or drop the property (the sun-zenith limit then does not apply "
                "to the scene).")
