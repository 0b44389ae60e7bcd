"""STAC Items of products and Collections of product families.

Every extension field is set through pystac's extension classes, which declare their
extension on the item (so no field of an undeclared extension can be written):

- projection v2 (``proj:code``, ``proj:shape``, ``proj:transform``, ``proj:bbox``; WKT2 for
  a CRS without EPSG code), plus ``proj:epsg`` beside ``proj:code``: stackstac 0.5 reads
  only ``proj:epsg`` (projection v1's name for it);
- datacube (``cube:dimensions``, ``cube:variables``);
- xarray-assets on the Zarr store asset ``zarr``: the ``xarray:open_kwargs`` that open it
  as :func:`cup4soil.store.open` does (``engine="zarr"``, ``consolidated=False``,
  ``decode_coords="all"`` so the grid mapping comes back as a coordinate);
- raster (``raster:bands``: data type, unit, nodata) on COG assets.

GDAL-based readers (stackstac, ``odc.stac.load``) read the COG assets
(:func:`cup4soil.store.to_cogs`); the Zarr asset is for xarray (``xr.open_dataset(href,
**open_kwargs)``, xpystac).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .._xrutil import crs_label
from ..errors import ParameterError, redact
from .cf import json_safe, spatial_dims

__all__ = ["ZARR_OPEN_KWARGS", "item_of", "stac_collection", "stac_item"]

#: How the Zarr asset opens with xarray (``xarray:open_kwargs``).
ZARR_OPEN_KWARGS: dict[str, Any] = {"engine": "zarr", "consolidated": False,
                                    "decode_coords": "all"}
_MEDIA_ZARR = "application/vnd+zarr"
_RASTER_TYPES = {"uint8": "uint8", "uint16": "uint16", "int16": "int16", "int32": "int32",
                 "uint32": "uint32", "float32": "float32", "float64": "float64",
                 "int8": "int8", "int64": "int64", "uint64": "uint64"}


def _times(attrs: Mapping[str, Any]) -> tuple[dt.datetime | None, dt.datetime | None]:
    def parse(v: Any) -> dt.datetime | None:
        if not v:
            return None
        t = dt.datetime.fromisoformat(str(v)[:19])
        return t.replace(tzinfo=dt.UTC)

    return parse(attrs.get("time_start")), parse(attrs.get("time_end"))


def _cube_dimensions(ds: xr.Dataset, gbox: Any, dims: tuple[str, str]) -> dict[str, Any]:
    """The datacube extension's ``cube:dimensions``: x/y, then bands, time and others."""
    bounds = gbox.geographic_extent.boundingbox
    extent = gbox.extent.boundingbox
    res = gbox.resolution
    ref = crs_label(gbox.crs)
    out: dict[str, Any] = {
        dims[1]: {"type": "spatial", "axis": "x",
                  "extent": [bounds.left, bounds.right] if gbox.crs.geographic
                  else [extent.left, extent.right],
                  "step": abs(res.x), "reference_system": ref},
        dims[0]: {"type": "spatial", "axis": "y", "extent": [extent.bottom, extent.top],
                  "step": abs(res.y), "reference_system": ref},
    }
    for d in ds.dims:
        if d in dims:
            continue
        values = ds[d].values.tolist() if d in ds.coords else list(range(ds.sizes[d]))
        out[str(d)] = ({"type": "temporal", "values": [str(v) for v in values]}
                       if str(d) == "time" else
                       {"type": "other" if str(d) != "band" else "bands",
                        "values": json_safe(values)})
    return out


def item_of(ds: xr.Dataset, url: str, dims: tuple[str, str],
            cogs: Mapping[str, str] | None = None, *, zarr_format: int | None = None) -> Any:
    """The STAC Item of product ``ds`` stored at ``url`` (see :func:`stac_item`)."""
    import odc.geo.xr  # noqa: F401
    import pystac
    from pystac.extensions.datacube import DatacubeExtension, Dimension, Variable
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, NoDataStrings, RasterBand, RasterExtension
    from pystac.extensions.xarray_assets import XarrayAssetsExtension
    from shapely.geometry import box, mapping

    gbox = ds.odc.geobox
    if gbox is None:
        raise ParameterError("a STAC item needs a georeferenced product (x/y and a CRS).")
    bounds = gbox.geographic_extent.boundingbox
    bbox = [bounds.left, bounds.bottom, bounds.right, bounds.top]
    start, end = _times(ds.attrs)
    written = dt.datetime.now(dt.UTC)
    name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".zarr") or "product"
    props: dict[str, Any] = {
        "title": str(ds.attrs.get("title", name)),
        "created": written.isoformat(),
        "cup4soil_version": ds.attrs.get("cup4soil_version"),
    }
    if start and end:
        props.update(start_datetime=start.isoformat(), end_datetime=end.isoformat())
    item = pystac.Item(id=name, geometry=json.loads(json.dumps(mapping(box(*bbox)))), bbox=bbox,
                       datetime=None if (start and end) else written,
                       properties=json_safe(props))
    epsg = gbox.crs.epsg
    ProjectionExtension.ext(item, add_if_missing=True).apply(
        code=f"EPSG:{epsg}" if epsg else None,
        wkt2=None if epsg else gbox.crs.to_wkt(),
        shape=list(gbox.shape), transform=[float(v) for v in list(gbox.affine)[:6]],
        bbox=[float(v) for v in gbox.extent.boundingbox])
    if epsg:
        item.properties["proj:epsg"] = int(epsg)  # stackstac 0.5 reads this name only
    DatacubeExtension.ext(item, add_if_missing=True).apply(
        dimensions={k: Dimension.from_dict(v)
                    for k, v in _cube_dimensions(ds, gbox, dims).items()},
        variables={str(n): Variable({"dimensions": list(map(str, v.dims)), "type": "data",
                                     "unit": str(v.attrs.get("units", "")),
                                     "description": str(v.attrs.get("long_name", n))})
                   for n, v in ds.data_vars.items()})
    zarr_asset = pystac.Asset(href=redact(url), media_type=_MEDIA_ZARR, roles=["data"],
                              title="Zarr store" + (f" (v{zarr_format})" if zarr_format
                                                    else ""))
    item.add_asset("zarr", zarr_asset)
    xarray_assets: Any = XarrayAssetsExtension.ext(zarr_asset, add_if_missing=True)
    xarray_assets.open_kwargs = dict(ZARR_OPEN_KWARGS)  # (AssetXarrayAssetsExtension)
    for var, href in (cogs or {}).items():
        asset = pystac.Asset(href=redact(href), media_type=pystac.MediaType.COG,
                             roles=["data"], title=var)
        item.add_asset(var, asset)
        base = ds.get(var)
        if base is None:
            continue
        declared = base.attrs.get("nodata")
        nodata: float | NoDataStrings | None
        if isinstance(declared, str) or (isinstance(declared, float) and np.isnan(declared)) \
                or (declared is None and np.issubdtype(base.dtype, np.floating)):
            nodata = NoDataStrings.NAN  # also the COG's nodata for floats (cog.py)
        else:
            nodata = None if declared is None else float(declared)
        RasterExtension.ext(asset, add_if_missing=True).apply(bands=[RasterBand.create(
            nodata=nodata, unit=str(base.attrs.get("units", "")),
            data_type=DataType(_RASTER_TYPES[str(base.dtype)])
            if str(base.dtype) in _RASTER_TYPES else DataType.OTHER)])
    return item


def stac_item(url: str, *, storage_options: Mapping[str, Any] | None = None,
              cogs: Mapping[str, str] | None = None) -> Any:
    """The STAC Item of a product: projection and datacube extensions, the Zarr store as an
    asset (its URL without any query string), optional COG assets with raster metadata.

    Parameters
    ----------
    url : str
        The product.
    storage_options : dict, optional
        Passed to fsspec.
    cogs : dict, optional
        Variable name → COG href (e.g. from :func:`to_cogs`), added as assets.

    Returns
    -------
    pystac.Item
    """
    from .reader import open as open_product

    ds = open_product(url, storage_options=storage_options)
    return item_of(ds, redact(url), spatial_dims(ds), cogs)


def stac_collection(items: Sequence[Any], *, id: str, description: str,
                    title: str | None = None, license: str = "CC-BY-4.0") -> Any:
    """A STAC Collection for a product family (e.g. yearly SOC maps), extent from items."""
    import pystac

    if not items:
        raise ParameterError("a collection needs at least one item.")
    bboxes = np.array([it.bbox for it in items])
    bbox = [float(bboxes[:, 0].min()), float(bboxes[:, 1].min()), float(bboxes[:, 2].max()),
            float(bboxes[:, 3].max())]
    times = []
    for it in items:
        for k in ("start_datetime", "end_datetime"):
            if it.properties.get(k):
                times.append(dt.datetime.fromisoformat(it.properties[k]))
        if it.datetime is not None:
            times.append(it.datetime)
    interval: list[list[dt.datetime | None]] = (
        [[min(times), max(times)]] if times else [[None, None]])
    coll = pystac.Collection(
        id=id, description=description, title=title or id, license=license,
        extent=pystac.Extent(pystac.SpatialExtent([bbox]),
                             pystac.TemporalExtent(interval)))
    for it in items:
        coll.add_item(it.clone())
    return coll
