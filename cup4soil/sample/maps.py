"""The world's static maps on the grids of the real products: a Copernicus DEM GLO-30 crop
and an ESA WorldCover crop, both in EPSG:4326.

- **DEM**: GLO-30's grid at 50-60° N, 1" of latitude by 1.5" of longitude (about 31 x 28 m
  here), point-registered like the real tiles (pixel centres on whole arc seconds, so the
  GeoTIFF's corner sits half a pixel outside them), float32 metres, no nodata. Heights are
  the world's relief interpolated bilinearly at the pixel centres, plus 0.25 m of noise.
  The crop covers the area and a margin (what a 500 m TPI and its buffer need).
- **WorldCover**: 1/12000° pixels, area-registered on the degree grid, uint8 classes with
  the WorldCover colour table, nodata 0; the world's land cover sampled at the pixel
  centres (nearest 10 m pixel; beyond the area the edge classes continue).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from rasterio.transform import Affine
from scipy import ndimage

from .world import World

__all__ = ["COLOURS", "GeoRaster", "dem", "worldcover"]

#: WorldCover class colours (the collection's ``color-hint``s).
COLOURS = {10: "006400", 20: "FFBB22", 30: "FFFF4C", 40: "F096FF", 50: "FA0000",
           60: "B4B4B4", 70: "F0F0F0", 80: "0064C8", 90: "0096A0", 95: "00CF75",
           100: "FAE6A0"}
_DEM_DX, _DEM_DY = 1.5 / 3600, 1.0 / 3600  # GLO-30 spacing at 50-60 degrees north
_WC_STEP = 1.0 / 12000


@dataclass(frozen=True)
class GeoRaster:
    """A 2-D raster in EPSG:4326: its values and its (area-convention) transform."""

    data: npt.NDArray[Any]
    transform: Affine

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)``, degrees."""
        h, w = self.data.shape
        t = self.transform
        return t.c, t.f + t.e * h, t.c + t.a * w, t.f


def _to_utm(world: World, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64]
            ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    from pyproj import Transformer

    fwd = Transformer.from_crs(4326, world.grid.epsg, always_xy=True)
    x, y = fwd.transform(lon, lat)
    return np.asarray(x), np.asarray(y)


def _lonlat_box(world: World, pad_m: float, *, inscribed: bool) -> tuple[float, ...]:
    """Lon/lat box of the area grown by ``pad_m`` metres: inside the (slightly rotated)
    projected square when ``inscribed``, around it otherwise."""
    from pyproj import Transformer

    left, bottom, right, top = world.grid.bounds
    inv = Transformer.from_crs(world.grid.epsg, 4326, always_xy=True)
    xs = np.array([left - pad_m, right + pad_m, right + pad_m, left - pad_m])
    ys = np.array([bottom - pad_m, bottom - pad_m, top + pad_m, top + pad_m])
    lon, lat = inv.transform(xs, ys)
    if inscribed:  # corners: lower-left, lower-right, upper-right, upper-left
        return (max(lon[0], lon[3]), max(lat[0], lat[1]), min(lon[1], lon[2]),
                min(lat[2], lat[3]))
    return float(min(lon)), float(min(lat)), float(max(lon)), float(max(lat))


def dem(world: World) -> GeoRaster:
    """The DEM crop: GLO-30's point-registered grid, heights from the world's relief."""
    relief = world.relief
    # Stay 20 px inside the relief so that bilinear interpolation never extrapolates.
    west, south, east, north = _lonlat_box(world, (relief.margin - 20) * 10.0, inscribed=True)
    lon_c = np.arange(math.ceil(west / _DEM_DX), math.floor(east / _DEM_DX) + 1) * _DEM_DX
    lat_c = np.arange(math.floor(north / _DEM_DY), math.ceil(south / _DEM_DY) - 1, -1) * _DEM_DY
    lon, lat = np.meshgrid(lon_c, lat_c)
    x, y = _to_utm(world, lon, lat)
    g, m = world.grid, relief.margin
    col = (x - (g.x0 - m * 10.0)) / 10.0 - 0.5
    row = ((g.y0 + m * 10.0) - y) / 10.0 - 0.5
    heights = ndimage.map_coordinates(relief.elevation, [row, col], order=1, mode="nearest")
    heights = heights + 0.25 * world.draws("dem noise").standard_normal(heights.shape)
    transform = Affine(_DEM_DX, 0.0, lon_c[0] - _DEM_DX / 2, 0.0, -_DEM_DY,
                       lat_c[0] + _DEM_DY / 2)
    return GeoRaster(heights.astype(np.float32), transform)


def worldcover(world: World, pad_m: float = 400.0) -> GeoRaster:
    """The WorldCover crop around the area (plus ``pad_m``), classes of the world."""
    west, south, east, north = _lonlat_box(world, pad_m, inscribed=False)
    c0, c1 = math.floor(west / _WC_STEP), math.ceil(east / _WC_STEP)
    r0, r1 = math.floor(south / _WC_STEP), math.ceil(north / _WC_STEP)
    lon_c = (np.arange(c0, c1) + 0.5) * _WC_STEP
    lat_c = (np.arange(r1, r0, -1) - 0.5) * _WC_STEP
    lon, lat = np.meshgrid(lon_c, lat_c)
    x, y = _to_utm(world, lon, lat)
    g = world.grid
    col = np.clip(np.floor((x - g.x0) / 10.0), 0, g.size - 1).astype(int)
    row = np.clip(np.floor((g.y0 - y) / 10.0), 0, g.size - 1).astype(int)
    transform = Affine(_WC_STEP, 0.0, c0 * _WC_STEP, 0.0, -_WC_STEP, r1 * _WC_STEP)
    return GeoRaster(world.cover[row, col].astype(np.uint8), transform)
