"""SCMaP observation validity as a lazy boolean DataArray.

An observation is valid when it has data, its SCL class is usable, the sun is high
enough, and it is not within 100 m of a cloud, cloud shadow or cirrus pixel (see
``shared/docs/scmap.md``). The dilation runs with ``map_overlap`` so it is exact across
chunk borders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import dask.array as dsa
import numpy as np
import xarray as xr

from ..errors import BandError, ParameterError
from ..sources import sentinel2 as _s2meta
from . import kernels as _kernels

__all__ = ["cloud_buffer_pixels", "valid", "valid_pixel_count"]


def _resolution(cube: xr.Dataset | xr.DataArray) -> float:
    """Pixel size in CRS units (metres): from the odc-geo grid, else the x coordinate."""
    geobox = cube.odc.geobox if hasattr(cube, "odc") else None
    if geobox is not None:
        return float(abs(geobox.resolution.x))
    x = np.asarray(cube["x"].values, dtype="float64")
    if x.size < 2:
        raise ParameterError("cannot tell the pixel size of a cube one pixel wide without a "
                             "CRS; build it with cup4soil.load_s2.")
    return float(abs(x[1] - x[0]))


def cloud_buffer_pixels(resolution: float, buffer_m: float = 100.0) -> int:
    """Cloud buffer radius in pixels: 100 m is 5 px at 20 m (an 11 x 11 square)."""
    if resolution <= 0:
        raise ParameterError(f"resolution={resolution} must be positive.")
    return math.floor(buffer_m / resolution + 1e-9)


def valid(
    cube: xr.Dataset,
    *,
    buffer_m: float = 100.0,
    max_sun_zenith: float = 70.0,
    bands: Sequence[str] | None = None,
    invalid_scl: Sequence[int] = _kernels.INVALID_SCL,
    cloud_scl: Sequence[int] = _kernels.CLOUD_SCL,
) -> xr.DataArray:
    """Lazy SCMaP validity mask of every observation.

    Parameters
    ----------
    cube
        Dataset from :func:`cup4soil.load_s2` with ``SCL`` and reflectance bands over
        ``(time, y, x)``; an ``sza`` coordinate (per time) or variable (per pixel) in
        degrees enables the sun-zenith limit.
    buffer_m
        Cloud/shadow/cirrus dilation distance, metres (a square of side 2 * buffer + 1 px).
    max_sun_zenith
        Observations with a sun zenith angle above this, degrees, are invalid.
    bands
        Reflectance bands whose nodata (0) makes an observation invalid; default: all
        reflectance bands present in the cube.
    invalid_scl, cloud_scl
        SCL classes that are invalid, and those that are dilated.

    Returns
    -------
    xarray.DataArray
        Boolean ``(time, y, x)``, True where the observation is valid; dask-backed if the
        cube is.
    """
    if "SCL" not in cube:
        raise BandError("the cube has no SCL band, which the validity mask needs. Load it with "
                        "bands=[..., 'SCL'].")
    if buffer_m < 0 or not math.isfinite(buffer_m):
        raise ParameterError(f"buffer_m={buffer_m} must be a non-negative distance in metres.")
    refl = [b for b in (bands or _s2meta.REFLECTANCE_BANDS) if b in cube]
    if not refl:
        raise BandError("the cube has no reflectance band to tell nodata from data.")
    radius = cloud_buffer_pixels(_resolution(cube), buffer_m)
    scl = cube["SCL"]

    bands_data = [cube[b].transpose(*scl.dims).data for b in refl]
    if isinstance(scl.data, dsa.Array):
        # Only the SCL needs the overlap (the buffer); the bands' nodata is blockwise.
        clouds = dsa.map_overlap(
            _kernels.cloud_buffer, scl.data, depth={0: 0, 1: radius, 2: radius},
            boundary="none", dtype=bool, trim=True, radius=radius, cloud_scl=tuple(cloud_scl),
        ).rechunk(scl.data.chunks)  # map_overlap may have grown chunks smaller than radius
        args = [dsa.asarray(a).rechunk(scl.data.chunks) for a in bands_data]
        data = dsa.map_blocks(
            _kernels.valid_from_parts, scl.data, clouds, *args, dtype=bool,
            invalid_scl=tuple(invalid_scl),
        )
    else:
        scl_np = np.asarray(scl.data)
        data = _kernels.valid_from_parts(
            scl_np, _kernels.cloud_buffer(scl_np, radius, cloud_scl),
            *(np.asarray(a) for a in bands_data), invalid_scl=invalid_scl,
        )
    mask = xr.DataArray(data, coords=scl.coords, dims=scl.dims, name="valid")
    if "sza" in cube.coords or "sza" in cube.data_vars:
        # NaN (unknown) sun zenith does not invalidate an observation.
        mask = mask & ~(cube["sza"] > max_sun_zenith)
    mask.attrs = ({
        "long_name": "SCMaP valid observation",
        "cloud_buffer_m": float(buffer_m),
        "cloud_buffer_px": radius,
        "max_sun_zenith_deg": float(max_sun_zenith),
        "invalid_scl": list(invalid_scl),
        "cloud_scl": list(cloud_scl),
    })  # replaced, not updated: SCL's nodata attribute does not apply to a mask
    return mask.transpose(*scl.dims)


def valid_pixel_count(cube: xr.Dataset, **kwargs: object) -> xr.DataArray:
    """VPC: number of valid observations per pixel over time (lazy), uint16.

    Keyword arguments are passed to :func:`valid`.
    """
    vpc = valid(cube, **kwargs).sum("time").astype("uint16")  # type: ignore[arg-type]
    vpc.name = "VPC"
    vpc.attrs = {"long_name": "valid pixel count", "units": "1",
                 # provenance travels with the product (store.write makes it global)
                 **{k: cube.attrs[k] for k in ("input_items", "processing_baselines")
                    if k in cube.attrs}}
    if cube.sizes.get("time"):
        vpc.attrs.update(time_start=str(cube.time.values.min())[:19],
                         time_end=str(cube.time.values.max())[:19])
    return vpc
