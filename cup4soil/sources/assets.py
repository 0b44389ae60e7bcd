"""Raster asset metadata of any STAC item, whatever the catalog's dialect (no pixels).

STAC 1.0 items describe a raster asset with the raster extension (``raster:bands``: one
entry per band with ``data_type``, ``nodata``, ``unit``, ``scale``, ``offset``); STAC 1.1
items (CDSE) put ``data_type``, ``nodata`` and ``unit`` on the asset itself, or in its
``bands`` list. :func:`raster_info` reads either. :func:`fix_transform` repairs projection
transforms written in GDAL's order, which some CDSE collections publish
(``sentinel-1-global-mosaics``, the DEMs), and :func:`normalised` makes the clone of an item
that the cube's read plan (odc-stac) reads: exactly the wanted assets, under canonical
names, with explicit data type and nodata and a transform in rasterio's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pystac

__all__ = ["RasterInfo", "fix_transform", "item_epsg", "normalised", "raster_info"]


@dataclass(frozen=True)
class RasterInfo:
    """What an asset's metadata says about its first band.

    Attributes
    ----------
    data_type
        Pixel type (``"float32"``, ``"uint8"``, ...) or None where the item does not say.
    nodata
        Nodata value (may be NaN) or None.
    unit
        Unit of the values (``"meter"``, ``"dB"``, ...) or None.
    scale, offset
        Linear transform to physical values, ``value = DN * scale + offset``.
    """

    data_type: str | None = None
    nodata: float | None = None
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0


def _first(entries: Any) -> Mapping[str, Any] | None:
    if isinstance(entries, Sequence) and entries and isinstance(entries[0], Mapping):
        return entries[0]
    return None


def raster_info(asset: pystac.Asset) -> RasterInfo:
    """The data type, nodata, unit, scale and offset of an asset's first band."""
    fields = asset.extra_fields
    merged: dict[str, Any] = {}
    # Lowest precedence first: STAC 1.1 asset fields, then its bands, then raster:bands.
    for key in ("data_type", "nodata", "unit", "raster:scale", "raster:offset"):
        if key in fields:
            merged[key.removeprefix("raster:")] = fields[key]
    band = _first(fields.get("bands"))
    if band is not None:
        for key in ("data_type", "nodata", "unit", "raster:scale", "raster:offset"):
            if key in band:
                merged[key.removeprefix("raster:")] = band[key]
    band = _first(fields.get("raster:bands"))
    if band is not None:
        for key in ("data_type", "nodata", "unit", "scale", "offset"):
            if key in band:
                merged[key] = band[key]
    nodata = merged.get("nodata")
    if isinstance(nodata, str):  # "nan", "inf" as the raster extension allows
        nodata = float(nodata)
    return RasterInfo(
        data_type=str(merged["data_type"]) if merged.get("data_type") else None,
        nodata=None if nodata is None else float(nodata),
        unit=str(merged["unit"]) if merged.get("unit") else None,
        scale=float(merged.get("scale", 1.0) or 1.0),
        offset=float(merged.get("offset", 0.0) or 0.0),
    )


def fix_transform(transform: Sequence[float]) -> list[float]:
    """A projection transform in rasterio/affine order, whichever order it was written in.

    ``proj:transform`` is ``[a, b, c, d, e, f]`` (pixel width, row rotation, x origin, column
    rotation, pixel height, y origin). GDAL's ``GetGeoTransform`` order is
    ``[c, a, b, f, d, e]``; CDSE publishes some collections so (``[600000, 20, 0, 5700000,
    0, -20]``). A north-up transform in GDAL order has zero rotations at positions 2 and 4
    and a non-zero pixel size at 1 and 5, where rasterio's order has them at 1 and 3, and
    0 and 4. Ambiguous cases (both readings plausible, e.g. origins at 0) are left as given.
    Trailing elements of a 9-element transform are kept.
    """
    t = [float(v) for v in transform]
    if len(t) < 6:
        return t
    a, b, c, d, e, f = t[:6]
    rasterio_like = a != 0 and e != 0 and b == 0 and d == 0
    gdal_like = b != 0 and f != 0 and c == 0 and e == 0
    if gdal_like and not rasterio_like:
        return [b, c, a, e, f, d, *t[6:]]
    return t


def item_epsg(item: pystac.Item) -> int | None:
    """EPSG code from projection metadata (``proj:epsg`` or ``proj:code``), item level
    first, then the assets."""
    for fields in (item.properties, *(a.extra_fields for a in item.assets.values())):
        if fields.get("proj:epsg") is not None:
            return int(fields["proj:epsg"])
        code = fields.get("proj:code")
        if isinstance(code, str) and code.upper().startswith("EPSG:"):
            return int(code.split(":")[1])
    return None


def normalised(item: pystac.Item, assets: Mapping[str, str], *, data_type: str,
               nodata: float | None) -> pystac.Item:
    """A clone of ``item`` with exactly ``assets`` (canonical name -> the item's asset key),
    each declaring ``data_type`` and ``nodata`` (``raster:bands``), hrefs absolute, and
    projection transforms in rasterio order (item and asset level)."""
    clone = item.clone()
    out: dict[str, pystac.Asset] = {}
    for name, key in assets.items():
        asset = clone.assets[key]
        asset.href = asset.get_absolute_href() or asset.href
        band: dict[str, Any] = {"data_type": data_type}
        if nodata is not None:
            band["nodata"] = float(nodata)
        asset.extra_fields["raster:bands"] = [band]
        for k in ("raster:scale", "raster:offset", "bands", "nodata", "data_type"):
            asset.extra_fields.pop(k, None)
        if "proj:transform" in asset.extra_fields:
            asset.extra_fields["proj:transform"] = fix_transform(
                asset.extra_fields["proj:transform"])
        asset.owner = clone
        out[name] = asset
    clone.assets = out
    if "proj:transform" in clone.properties:
        clone.properties["proj:transform"] = fix_transform(clone.properties["proj:transform"])
    epsg = item_epsg(item)
    if epsg is not None:
        clone.properties["proj:epsg"] = epsg
    return clone
