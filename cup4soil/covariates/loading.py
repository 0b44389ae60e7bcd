"""Static layers (a DEM, a land-cover map, a user raster) on a grid, lazily, through the
cube's read plans.

Every static layer -- STAC items of a catalog, or a file a user names -- is read the same
way: a read plan (odc-stac's metadata, odc-loader's rasterio reader and fuser,
:mod:`cup4soil.cube.readplan`) describes it as one lazy Dask layer; a file becomes an
in-memory STAC item made from its header (:func:`file_item`), so user rasters go through
the code that reads catalogs. Tiles of one layer (DEM tiles, WorldCover tiles) are fused
first-valid-wins, as odc-stac does.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dask.array as dsa
import numpy as np
import pystac
import shapely.geometry
from odc.geo.geobox import GeoBox

from ..cube import readplan as _read
from ..cube.load import _SafeRioDriver
from ..errors import AssetReadError, CoverageError, LayerError
from ..sources.assets import normalised
from .grid import crs_of

__all__ = ["FileInfo", "check_covers", "file_item", "lazy_layer"]


@dataclass(frozen=True)
class FileInfo:
    """What a raster file's header says (read once, no pixels)."""

    href: str
    crs: str | None
    shape: tuple[int, int]
    transform: tuple[float, ...]
    dtype: str
    nodata: float | None
    palette: bool
    tags: dict[str, str] = field(default_factory=dict)
    band_tags: dict[str, str] = field(default_factory=dict)


def _href(path_or_url: str | os.PathLike[str]) -> str:
    text = os.fspath(path_or_url)
    if "://" in text:
        return text
    return str(Path(text).expanduser().resolve())


def read_header(path_or_url: str | os.PathLike[str]) -> FileInfo:
    """The header of a raster file or URL (GDAL reads only metadata)."""
    import rasterio
    from rasterio.enums import ColorInterp

    href = _href(path_or_url)
    try:
        with rasterio.open(href) as src:
            palette = src.colorinterp[0] == ColorInterp.palette
            t = src.transform
            return FileInfo(
                href=href, crs=src.crs.to_string() if src.crs else None,
                shape=(src.height, src.width), transform=(t.a, t.b, t.c, t.d, t.e, t.f),
                dtype=str(src.dtypes[0]), nodata=src.nodata, palette=bool(palette),
                tags=dict(src.tags()), band_tags=dict(src.tags(1)),
            )
    except rasterio.RasterioIOError as exc:
        raise AssetReadError(href, str(exc)) from None


def file_item(info: FileInfo) -> pystac.Item:
    """An in-memory STAC item of one raster file (asset ``data``), from its header.

    Raises
    ------
    LayerError
        The file has no CRS metadata (its pixels cannot be placed on any grid).
    """
    from odc.geo.geobox import GeoBox as _GeoBox
    from rasterio.transform import Affine

    use_crs = info.crs
    if use_crs is None:
        raise LayerError(
            f"the raster {info.href} has no CRS metadata, so cup4soil cannot tell where its "
            "pixels are (its coordinates may be in any CRS). Write its CRS into the file, "
            "e.g. gdal_edit.py -a_srs EPSG:25833 FILE, or rio edit-info --crs EPSG:25833 "
            "FILE.")
    grid = _GeoBox(info.shape, Affine(*info.transform[:6]), use_crs)
    outline = grid.extent.to_crs("EPSG:4326").geom
    item = pystac.Item(
        id=Path(info.href).stem, geometry=shapely.geometry.mapping(outline),
        bbox=list(outline.bounds), datetime=dt.datetime(2000, 1, 1, tzinfo=dt.UTC),
        properties={"proj:shape": list(info.shape), "proj:transform": list(info.transform)},
    )
    epsg = crs_of(grid).epsg
    if epsg is not None:
        item.properties["proj:epsg"] = epsg
    else:
        item.properties["proj:wkt2"] = crs_of(grid).to_wkt()
    item.add_asset("data", pystac.Asset(href=info.href, roles=["data"]))
    return item


def check_covers(items: Sequence[pystac.Item], geobox: GeoBox, what: str) -> None:
    """Refuse ``items`` whose footprints do not cover the whole grid.

    Raises
    ------
    CoverageError
        Part of the grid lies outside every item; the message says where.
    """
    from odc.geo.geom import Geometry

    shapes = [shapely.geometry.shape(it.geometry) if it.geometry
              else shapely.geometry.box(*(it.bbox or ())) for it in items
              if it.geometry or it.bbox]
    need = geobox.extent.to_crs("EPSG:4326")
    if shapes:
        have = Geometry(shapely.union_all(shapes), "EPSG:4326")
        # A footprint is drawn through pixel corners: allow a hundredth of a pixel.
        slack = 0.01 * float(abs(geobox.resolution.x))
        if have.to_crs(crs_of(geobox)).buffer(slack).contains(geobox.extent):
            return
        missing = need.geom.difference(have.geom)
    else:
        missing = need.geom
    w, s, e, n = tuple(missing.bounds) if not missing.is_empty else tuple(need.boundingbox)
    raise CoverageError(
        f"{what} does not cover the grid: nothing between lon {w:.4f}..{e:.4f}, lat "
        f"{s:.4f}..{n:.4f}. Give a {what} that covers the area plus its margin (terrain "
        "needs the largest TPI radius around it), or make the grid smaller.")


def lazy_layer(items: Sequence[pystac.Item], key: str | Sequence[str], geobox: GeoBox, *,
               data_type: str, nodata: float | None, resampling: str,
               chunk: tuple[int, int]) -> dsa.Array:
    """The asset ``key`` of ``items`` on ``geobox`` as a lazy ``(y, x)`` Dask array.

    ``key`` may name one asset key per item. Time steps (items of different dates) are
    fused first-valid-wins; nodata (NaN for floats without one) where no item has data.
    """
    keys = [key] * len(items) if isinstance(key, str) else list(key)
    norm = [normalised(it, {"layer": k}, data_type=data_type, nodata=nodata)
            for it, k in zip(items, keys, strict=True)]
    plan = _read.make_plan(norm, ["layer"], geobox, {"layer": resampling},
                           np.zeros((len(norm), 1), np.int32), _SafeRioDriver())
    stack = _read.lazy_band(plan, "layer", chunk)
    first: dsa.Array = stack[0]
    fill = np.nan if nodata is None else nodata
    for t in range(1, stack.shape[0]):
        if isinstance(fill, float) and np.isnan(fill):
            first = dsa.where(dsa.isnan(first), stack[t], first)
        else:
            first = dsa.where(first == fill, stack[t], first)
    return first
