"""Terrain covariates from the Copernicus DEM: elevation, slope, aspect, curvature, TPI.

:func:`terrain` reads Copernicus DEM GLO-30 (Planetary Computer or Earth Search
``cop-dem-glo-30``, CDSE ``cop-dem-glo-30-dged-cog``, or a DEM file/URL of the user's) onto
the target grid grown by a margin -- the largest TPI radius plus the 3 x 3 stencils --
bilinearly, and derives:

- ``elevation`` (m), ``slope`` (degrees, Horn's method) and ``northness``/``eastness``
  (cosine and sine of the aspect; 0 on flat ground) with xarray-spatial, which is
  Dask-aware (``map_overlap`` with the stencil's depth);
- ``profile_curvature`` and ``plan_curvature`` (1/m; :func:`.kernels.curvatures`, as
  xarray-spatial only has the total curvature);
- ``tpi_<r>`` (m): elevation minus the mean elevation within ``r`` metres (xarray-spatial's
  circular kernel and convolution, overlap = the radius).

**Seamless across DEM tiles.** Tiles that share one pixel grid (GLO-30 tiles of a latitude
band, a user's DEM) are first mosaicked on their own grid (a plain read, no resampling),
then the mosaic is reprojected bilinearly (odc-geo): a pixel near a tile edge interpolates
between the pixels of both tiles. Reprojecting tile by tile and fusing, as odc-stac does,
would give the edge pixels a one-sided interpolation (metres of error on slopes, lines in
the slope map). Tiles on different grids are reprojected one by one.

**Exact across chunks.** The DEM is reprojected in fixed tiles of the padded grid
(independent of ``chunks``: a reprojection's last bits depend on the window it is computed
for), then every derivative overlaps its neighbours by its stencil's reach, so a chunked
result equals the one-chunk result bit for bit (tested). The margin is cut off at the end,
so no pixel of the result sits at the DEM's edge.

Checked alternatives: xarray-spatial 0.5 fits slope, aspect and focal means (Dask-aware,
float32, NaN beyond the array's edge); it requires north-up grids with metric pixels, which
is what cup4soil's grids are. The topographic wetness index needs flow accumulation over
the whole catchment and is not chunk-local; it is not computed here (see docs/covariates.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import dask.array as dsa
import numpy as np
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from ..errors import ParameterError
from ..sources import dem as demmeta
from ..sources.assets import fix_transform, item_epsg
from . import kernels as _k
from .grid import (
    GridLike,
    as_geobox,
    chunk_shape,
    crs_of,
    find_items,
    layer_attrs,
    resolve_collection,
    source_label,
)
from .loading import check_covers, file_item, lazy_layer, read_header

__all__ = ["TERRAIN", "terrain"]

#: The layers :func:`terrain` returns (and ``tpi_<radius>`` for each radius).
TERRAIN: tuple[str, ...] = (
    "elevation", "slope", "northness", "eastness", "profile_curvature", "plan_curvature",
)
#: Side of the fixed tiles the DEM is read in, pixels of the padded grid.
READ_TILE = 2048
#: DEM items are not dated by acquisition: search every date.
_ALL_TIME = ("1970-01-01", "2100-12-31")


def _radii(tpi_radii: Sequence[float], res: float) -> tuple[float, ...]:
    out = []
    for r in tpi_radii:
        try:
            v = float(r)
        except (TypeError, ValueError):
            raise ParameterError(f"tpi_radii: {r!r} is not a radius in metres.") from None
        if not math.isfinite(v) or v < res:
            raise ParameterError(
                f"tpi_radii: {r} m is less than one pixel ({res:g} m); give radii of at least "
                "one pixel, e.g. (100, 500).")
        out.append(v)
    return tuple(dict.fromkeys(out))


def terrain(
    geobox_or_aoi: GridLike,
    *,
    catalog: str | os.PathLike[str] = "planetary-computer",
    dem: str | os.PathLike[str] | None = None,
    collections: Sequence[str] | str | None = None,
    tpi_radii: Sequence[float] = (100, 500),
    resolution: float = 20.0,
    crs: Any = None,
    chunks: dict[str, int] | None = None,
) -> xr.Dataset:
    """Terrain covariates on a grid from the Copernicus DEM (lazy).

    Parameters
    ----------
    geobox_or_aoi
        The target grid (a GeoBox or a composite), or an AOI (then ``resolution``, ``crs``).
        The grid must be north-up with metric pixels (UTM, EPSG:3035, ...).
    catalog
        Where to find GLO-30: ``"planetary-computer"``, ``"earth-search"``, ``"cdse"``, or a
        static catalog / STAC API with a ``cop-dem-glo-30`` collection.
    dem
        A DEM file or URL of your own instead (any CRS; heights in metres).
    collections
        The DEM collection (default: the catalog's GLO-30).
    tpi_radii
        Radii of the topographic position indices, metres.
    resolution, crs
        The grid made from an AOI.
    chunks
        Output chunks, e.g. ``{"y": 512, "x": 512}`` (default 1024 px). The values do not
        depend on them.

    Returns
    -------
    xarray.Dataset
        ``elevation`` (m), ``slope`` (degrees), ``northness``, ``eastness`` (1),
        ``profile_curvature``, ``plan_curvature`` (1/m), ``tpi_<r>`` (m) for each radius;
        float32, lazy, on the grid.

    Raises
    ------
    CoverageError
        The DEM does not cover the grid and its margin.
    """
    geobox = as_geobox(geobox_or_aoi, resolution=resolution, crs=crs)
    crs = crs_of(geobox)
    if crs.geographic or crs.units[0] not in ("metre", "meter", "m"):
        raise ParameterError(
            f"terrain needs a grid in metres; {crs} is not. Use a projected grid (the "
            "composite's UTM grid, or crs='EPSG:3035').")
    a = geobox.affine
    if a.b != 0 or a.d != 0 or a.e >= 0:
        raise ParameterError("terrain needs a north-up grid without rotation (negative y "
                             "pixel size); flip or reproject the grid first.")
    res_x, res_y = float(abs(a.a)), float(abs(a.e))
    radii = _radii(tpi_radii, max(res_x, res_y))
    reach = max([math.ceil(r / min(res_x, res_y)) for r in radii] + [1])
    margin = reach + 2
    padded = geobox.pad(margin)
    cy, cx = chunk_shape(chunks)
    read = (min(READ_TILE, padded.shape.y), min(READ_TILE, padded.shape.x))
    if dem is not None:
        info = read_header(dem)
        items = [file_item(info)]
        key = "data"
        what = f"the DEM {info.href}"
        source = f"user DEM {os.path.basename(info.href)}"
    else:
        collection = resolve_collection(catalog, collections, demmeta.COLLECTIONS, "DEM")
        items = find_items(padded, _ALL_TIME, catalog=catalog, collection=collection,
                           what="DEM")
        key = ""
        what = f"the {collection} DEM"
        source = source_label(collection, items)
    check_covers(items, padded, what)
    keys = [demmeta.asset_key(it) for it in items] if not key else [key] * len(items)
    # Dask arrays are Any here: dask.array has no type hints.
    z: Any = _dem_on(items, keys, padded, read)
    z = z.rechunk((cy, cx))
    coords = xr_coords(padded)
    elev = xr.DataArray(z, dims=("y", "x"), coords={"y": coords["y"], "x": coords["x"]},
                        attrs={"res": (res_x, res_y)})
    layers = _derivatives(elev, res_x, res_y, radii)
    crop = (slice(margin, margin + geobox.shape.y), slice(margin, margin + geobox.shape.x))
    out_coords = dict(xr_coords(geobox, crs_coord_name="spatial_ref"))
    data_vars = {}
    for name, arr in layers.items():
        cropped = arr[crop].rechunk((cy, cx))
        var = xr.DataArray(cropped, dims=("y", "x"), coords=out_coords)
        var.attrs.update(layer_attrs(units=_UNITS[name.split("_")[0]], long_name=_long(name),
                                     source=source, resampling="bilinear (DEM)"))
        var.encoding["grid_mapping"] = "spatial_ref"
        data_vars[name] = var
    return xr.Dataset(data_vars, attrs={
        "title": "terrain covariates (cup4soil.covariates.terrain)", "source": source,
        "tpi_radii_m": list(radii), "margin_px": margin,
        "methods": "slope and aspect: Horn (xarray-spatial); curvatures: Zevenbergen & "
                   "Thorne; TPI: elevation minus the mean within a circle",
    })


_UNITS = {"elevation": "m", "slope": "degree", "northness": "1", "eastness": "1",
          "profile": "1/m", "plan": "1/m", "tpi": "m"}


def _long(name: str) -> str:
    if name.startswith("tpi_"):
        return f"topographic position index, radius {name[4:]} m: elevation minus mean"
    return {
        "elevation": "height above the EGM2008 geoid (Copernicus DEM, a surface model)",
        "slope": "slope, Horn's method", "northness": "cosine of the aspect",
        "eastness": "sine of the aspect",
        "profile_curvature": "profile curvature (Zevenbergen-Thorne, ArcGIS sign)",
        "plan_curvature": "plan curvature (Zevenbergen-Thorne, ArcGIS sign)",
    }[name]


def _native_grid(items: Sequence[pystac.Item], keys: Sequence[str], target: GeoBox
                 ) -> GeoBox | None:
    """The DEM tiles' common pixel grid around ``target`` (None: no common grid)."""
    from rasterio.transform import Affine

    grids = []
    for it, k in zip(items, keys, strict=True):
        fields = {**it.properties, **it.assets[k].extra_fields}
        epsg = item_epsg(it)
        if "proj:transform" not in fields or epsg is None:
            return None
        grids.append((fix_transform(fields["proj:transform"])[:6], epsg))
    (a, _, c, _, e, f), epsg = grids[0]
    for (a2, b2, c2, d2, e2, f2), epsg2 in grids:
        if epsg2 != epsg or b2 or d2 or not (math.isclose(a2, a, rel_tol=1e-9)
                                             and math.isclose(e2, e, rel_tol=1e-9)):
            return None
        dx, dy = (c2 - c) / a, (f2 - f) / e
        if abs(dx - round(dx)) > 1e-3 or abs(dy - round(dy)) > 1e-3:
            return None
    bb = target.extent.to_crs(f"EPSG:{epsg}").boundingbox
    col0 = math.floor((bb.left - c) / a) - 2
    col1 = math.ceil((bb.right - c) / a) + 2
    row0 = math.floor((bb.top - f) / e) - 2
    row1 = math.ceil((bb.bottom - f) / e) + 2
    return GeoBox((row1 - row0, col1 - col0), Affine(a, 0, c + col0 * a, 0, e, f + row0 * e),
                   f"EPSG:{epsg}")


def _dem_on(items: Sequence[pystac.Item], keys: Sequence[str], padded: GeoBox,
            read: tuple[int, int]) -> Any:
    """The DEM on the padded grid: a mosaic on the tiles' own grid reprojected once, or
    (tiles on different grids) each tile reprojected and fused."""
    from odc.geo.xr import assign_crs

    native = _native_grid(items, keys, padded)
    if native is None:
        return lazy_layer(items, keys, padded, data_type="float32", nodata=float("nan"),
                          resampling="bilinear", chunk=read)
    mosaic = lazy_layer(items, keys, native, data_type="float32", nodata=float("nan"),
                        resampling="nearest", chunk=(READ_TILE, READ_TILE))
    src = assign_crs(xr.DataArray(mosaic, dims=native.dimensions, coords=xr_coords(native),
                                  attrs={"nodata": float("nan")}), crs_of(native))
    out = src.odc.reproject(padded, resampling="bilinear", dst_nodata=np.nan, chunks=read)
    return out.data


def _curvature(block: np.ndarray, which: int, dx: float, dy: float) -> np.ndarray:
    out: np.ndarray = _k.curvatures(block, dx, dy)[which]
    return out


def _derivatives(elev: xr.DataArray, dx: float, dy: float, radii: Sequence[float]
                 ) -> dict[str, Any]:
    """Every derivative of the padded elevation, as Dask arrays of its shape."""
    from xrspatial import aspect, slope
    from xrspatial.convolution import circle_kernel, convolve_2d

    z = elev.data.astype(np.float32)
    out: dict[str, Any] = {"elevation": z}
    overlap: Any = dsa.map_overlap  # dask.array has no type hints
    out["slope"] = slope(elev).data.astype(np.float32)
    asp = aspect(elev).data
    flat = asp < 0  # xarray-spatial marks flat cells with -1
    rad = dsa.deg2rad(asp)
    out["northness"] = dsa.where(flat, 0.0, dsa.cos(rad)).astype(np.float32)
    out["eastness"] = dsa.where(flat, 0.0, dsa.sin(rad)).astype(np.float32)
    for i, name in enumerate(("profile_curvature", "plan_curvature")):
        out[name] = overlap(_curvature, z, depth=1, boundary=np.nan, which=i, dx=dx,
                                    dy=dy, dtype=np.float32, meta=np.array((), np.float32))
    for r in radii:
        kernel = circle_kernel(dx, dy, r)
        kernel = kernel / kernel.sum()
        mean = convolve_2d(z, kernel)
        out[f"tpi_{r:g}"] = (z - mean).astype(np.float32)
    return out
