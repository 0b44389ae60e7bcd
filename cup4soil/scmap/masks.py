"""SCMaP observation validity as a lazy boolean DataArray.

An observation is valid when it has data, its SCL class is usable, the sun is high
enough, and it is not within 100 m of a cloud, cloud shadow or cirrus pixel (see
``shared/docs/scmap.md``). The rule is :func:`cup4soil.scmap.kernels.observe`, applied
lazily by :func:`observe_lazy` with ``map_overlap`` (SCL gets a halo of the buffer
radius), so it is exact across chunk borders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeAlias

import dask.array as dsa
import numpy as np
import xarray as xr

from ..cube.windows import AnyArray
from ..errors import BandError, ParameterError
from ..sources import sentinel2 as _s2meta
from . import kernels as _kernels

__all__ = ["SUN_ELEVATION_NAMES", "SUN_ZENITH_NAMES", "cloud_buffer_pixels", "sun_zenith",
           "valid", "valid_pixel_count"]

#: Names of a sun zenith angle in a user's cube (coordinate or data variable, per time step
#: ``(time,)`` or per pixel ``(time, y, x)``), besides a variable whose ``standard_name``
#: is CF's ``solar_zenith_angle``. Degrees, or radians if its ``units`` say so.
SUN_ZENITH_NAMES: tuple[str, ...] = (
    "sza", "SZA", "sun_zenith", "solar_zenith", "sun_zenith_angle", "solar_zenith_angle",
    "mean_solar_zenith", "s2:mean_solar_zenith",
)
#: Names of a sun elevation angle (zenith = 90 - elevation), or CF's
#: ``solar_elevation_angle`` as ``standard_name``.
SUN_ELEVATION_NAMES: tuple[str, ...] = (
    "sun_elevation", "solar_elevation", "sun_elevation_angle", "solar_elevation_angle",
    "view:sun_elevation",
)
_RADIANS = ("rad", "radian", "radians")

#: Bits of the observation codes :func:`observe_lazy` makes when given a threshold.
VALID_BIT, BARE_BIT = np.uint8(1), np.uint8(2)
#: What ``map_blocks`` tells a block function about the blocks (``None``: the output's).
BlockInfo: TypeAlias = dict[int | None, dict[str, Any]]


def _sun_angles(cube: xr.Dataset) -> list[tuple[str, bool]]:
    """``(name, is_elevation)`` of every sun-angle variable or coordinate of ``cube``."""
    found = []
    for name, var in [*cube.coords.items(), *cube.data_vars.items()]:
        standard = str(var.attrs.get("standard_name", ""))
        if name in SUN_ZENITH_NAMES or standard == "solar_zenith_angle":
            found.append((str(name), False))
        elif name in SUN_ELEVATION_NAMES or standard == "solar_elevation_angle":
            found.append((str(name), True))
    return found


def sun_zenith(cube: xr.Dataset) -> xr.Dataset:
    """``cube`` with its sun angle as SCMaP reads it: ``sza`` in degrees, a coordinate
    ``(time,)`` per time step or a data variable ``(time, y, x)`` per pixel.

    Any spelling of :data:`SUN_ZENITH_NAMES` or :data:`SUN_ELEVATION_NAMES` (or a CF
    ``standard_name``), as coordinate or data variable, is honoured: elevations become
    zeniths, radians (``units``) become degrees. What cannot be read as a sun zenith is
    refused, never ignored.

    Raises
    ------
    ParameterError
        Several sun-angle variables, one over other dimensions than ``(time,)`` or
        ``(time, y, x)``, or per-time angles outside 0..180 degrees.
    """
    found = _sun_angles(cube)
    if not found:
        return cube
    if len(found) > 1:
        raise ParameterError(
            f"the cube has several sun angles ({', '.join(n for n, _ in found)}); keep one "
            "(drop the others with cube.drop_vars([...])) so that SCMaP knows which limits "
            "the observations.")
    name, elevation = found[0]
    var = cube[name]
    time_dim = "time"
    if set(var.dims) == {time_dim}:
        per_pixel = False
    elif set(var.dims) == {time_dim, "y", "x"}:
        per_pixel = True
    else:
        raise ParameterError(
            f"the cube's sun angle {name!r} has dimensions {tuple(var.dims)}; SCMaP reads a "
            "sun zenith per time step (time,) or per pixel (time, y, x). Broadcast or select "
            "it to one of those, or drop it.")
    if str(var.attrs.get("units", "")).strip().lower() in _RADIANS:
        var = var * (180.0 / math.pi)
    if elevation:
        var = 90.0 - var
    var = var.astype("float32") if var.dtype.kind != "f" else var
    if not per_pixel:
        if isinstance(var.data, dsa.Array):  # lazy: checked where it is read, not here
            data: Any = var.data
        else:
            values = np.asarray(var.values, dtype="float64")
            bad = values[np.isfinite(values) & ((values < 0) | (values > 180))]
            if bad.size:
                raise ParameterError(
                    f"the cube's sun angle {name!r} gives zenith angles of {bad[0]:g} "
                    "degrees, outside 0..180. Give degrees (or units='radian'), as a zenith "
                    "(0 = sun overhead) or under an elevation name (sun_elevation).")
            data = values.astype(var.dtype)  # compared in its own float type
        out = cube.drop_vars(name).assign_coords(sza=(time_dim, data))
    else:
        out = cube.drop_vars(name)
        out["sza"] = var.transpose(time_dim, "y", "x").variable
    out["sza"].attrs.update(units="degree", long_name="sun zenith angle",
                            source=name if name != "sza" else "sza")
    return out


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


#: Largest cloud buffer, metres: a wider one would make every block read most of the cube.
MAX_BUFFER_M = 10_000.0


def check_number(name: str, value: object, *, low: float, high: float = math.inf,
                 what: str = "a number", low_open: bool = False) -> float:
    """``value`` as a finite float within ``[low, high]`` (``(low, high]`` with
    ``low_open``).

    Raises
    ------
    ParameterError
        Not a number, NaN or infinite, or outside the range; the message gives the range.
    """
    bad = isinstance(value, bool)
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        bad = True
        v = math.nan
    inside = (v > low if low_open else v >= low) and v <= high
    if bad or not math.isfinite(v) or not inside:
        left = "(" if low_open else "["
        right = "]" if math.isfinite(high) else ")"
        top = f"{high:g}" if math.isfinite(high) else "inf"
        raise ParameterError(f"{name}={value!r} must be {what} in {left}{low:g}, {top}{right}.")
    return v


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
    valid_da, _ = observe_lazy(cube, buffer_m=buffer_m, max_sun_zenith=max_sun_zenith,
                               bands=bands, invalid_scl=invalid_scl, cloud_scl=cloud_scl)
    return valid_da


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


def _observe_block(
    scl: np.ndarray, *arrays: np.ndarray, names: tuple[str, ...], layout: tuple[bool, bool, bool],
    radius: int, sza: np.ndarray | None, max_sun_zenith: float, invalid_scl: tuple[int, ...],
    cloud_scl: tuple[int, ...], block_info: BlockInfo | None = None,
) -> np.ndarray:
    """The observation rule on one block. ``scl`` has a halo of ``radius`` pixels on each
    side that has a neighbouring block (dask's ``overlap`` with ``boundary="none"``); the
    other arrays have none. Returns validity (bool), or with a threshold the codes
    ``VALID_BIT | BARE_BIT`` (uint8)."""
    it = iter(arrays)
    bands = {n: next(it) for n in names}
    has_sza, has_threshold, has_landcover = layout
    sza_block: np.ndarray | None = next(it) if has_sza else None
    threshold = next(it) if has_threshold else None
    landcover = next(it) if has_landcover else None
    halo = _kernels.NO_HALO
    if block_info is not None:
        (t0, t1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
        _, ny, nx = block_info[None]["shape"]
        halo = (radius if y0 > 0 else 0, radius if y1 < ny else 0,
                radius if x0 > 0 else 0, radius if x1 < nx else 0)
        if sza is not None:
            sza_block = sza[t0:t1, None, None]
    elif sza is not None:
        sza_block = sza[:, None, None]
    if threshold is None:
        return _kernels.observe_valid(
            scl, bands.values(), radius=radius, sza=sza_block, max_sun_zenith=max_sun_zenith,
            halo=halo, invalid_scl=invalid_scl, cloud_scl=cloud_scl)
    obs = _kernels.observe(scl, bands, threshold, radius=radius, landcover=landcover,
                           sza=sza_block, max_sun_zenith=max_sun_zenith, halo=halo)
    return obs.valid * VALID_BIT | obs.bare * BARE_BIT


def observe_lazy(
    cube: xr.Dataset,
    *,
    buffer_m: float = 100.0,
    max_sun_zenith: float = 70.0,
    bands: Sequence[str] | None = None,
    threshold: AnyArray | None = None,
    landcover: AnyArray | None = None,
    invalid_scl: Sequence[int] = _kernels.INVALID_SCL,
    cloud_scl: Sequence[int] = _kernels.CLOUD_SCL,
) -> tuple[xr.DataArray, xr.DataArray | None]:
    """:func:`kernels.observe` over a cube, lazily if it is Dask-backed: ``(valid, bare)``.

    Parameters are those of :func:`valid`, and:

    threshold, landcover
        ``(y, x)`` arrays (NumPy or Dask) on the cube grid; without a threshold only
        validity is computed (``bare`` is None). With one, ``bands`` must hold B04, B08
        and B12.
    """
    if "SCL" not in cube:
        raise BandError("the cube has no SCL band, which the validity mask needs. Load it with "
                        "bands=[..., 'SCL'].")
    buffer_m = check_number("buffer_m", buffer_m, low=0.0, high=MAX_BUFFER_M,
                            what="a distance in metres (DLR uses 100)")
    max_sun_zenith = check_number("max_sun_zenith", max_sun_zenith, low=0.0, high=90.0,
                                  what="an angle in degrees (DLR uses 70)")
    cube = sun_zenith(cube)
    refl = [b for b in (bands or _s2meta.REFLECTANCE_BANDS) if b in cube]
    if not refl:
        raise BandError("the cube has no reflectance band to tell nodata from data.")
    radius = cloud_buffer_pixels(_resolution(cube), buffer_m)
    scl = cube["SCL"]
    data = _observe_array(cube, bands=refl, radius=radius, max_sun_zenith=max_sun_zenith,
                          threshold=threshold, landcover=landcover,
                          invalid_scl=tuple(invalid_scl), cloud_scl=tuple(cloud_scl))
    if threshold is None:
        valid_data, bare = data, None
    else:
        valid_data = (data & VALID_BIT) != 0
        bare = xr.DataArray((data & BARE_BIT) != 0, coords=scl.coords, dims=scl.dims,
                            name="bare", attrs={"long_name": "SCMaP bare-soil observation "
                                                "(before the NMAD outlier test)"})
    mask = xr.DataArray(valid_data, coords=scl.coords, dims=scl.dims, name="valid")
    mask.attrs = ({
        "long_name": "SCMaP valid observation",
        "cloud_buffer_m": float(buffer_m),
        "cloud_buffer_px": radius,
        "max_sun_zenith_deg": float(max_sun_zenith),
        "invalid_scl": list(invalid_scl),
        "cloud_scl": list(cloud_scl),
    })  # replaced, not updated: SCL's nodata attribute does not apply to a mask
    return mask, bare


def _observe_array(
    cube: xr.Dataset, *, bands: Sequence[str], radius: int, max_sun_zenith: float,
    threshold: AnyArray | None, landcover: AnyArray | None, invalid_scl: tuple[int, ...],
    cloud_scl: tuple[int, ...],
) -> AnyArray:
    """The array behind :func:`observe_lazy`: validity (bool), or with a threshold the
    codes ``VALID_BIT | BARE_BIT`` (uint8), over ``SCL``'s dimensions and chunks."""
    scl = cube["SCL"]
    dims = scl.dims
    band_data = [cube[b].transpose(*dims).data for b in bands]
    sza_t: np.ndarray | None = None
    sza_px = None
    if "sza" in cube.coords or "sza" in cube.data_vars:
        sza = cube["sza"]
        if sza.dims == (dims[0],) and not isinstance(sza.data, dsa.Array):
            sza_t = np.asarray(sza.values)  # compared in its own dtype, as xarray would
        else:  # per pixel, or lazy (Dataset.chunk chunks coordinates too)
            sza_px = sza.broadcast_like(scl).transpose(*dims).data
    extra = [a for a in (sza_px, threshold, landcover) if a is not None]
    kwargs: dict[str, Any] = {
        "names": tuple(bands), "radius": radius, "sza": sza_t,
        "layout": (sza_px is not None, threshold is not None, landcover is not None),
        "max_sun_zenith": max_sun_zenith, "invalid_scl": invalid_scl, "cloud_scl": cloud_scl,
    }
    if not isinstance(scl.data, dsa.Array):
        return _observe_block(np.asarray(scl.data), *(np.asarray(a) for a in band_data),
                              *(np.asarray(a) for a in extra), **kwargs)
    from dask.array.overlap import ensure_minimum_chunksize, overlap

    dtype = bool if threshold is None else np.uint8
    chunks = scl.data.chunks
    # Chunks at least as large as the halo, so that only SCL needs an overlap and every
    # array keeps the same blocks. (Rarely needed: a last chunk narrower than the buffer;
    # then every input is rechunked, which costs graph size, not results.)
    grown = (chunks[0], *(ensure_minimum_chunksize(  # type: ignore[no-untyped-call]
        max(radius, 1), c) for c in chunks[1:]))
    scl_data = _rechunk(scl.data, grown)
    if radius > 0:  # SCL's halo only: the bands stay fusable with their reads
        scl_data = overlap(scl_data, depth={0: 0, 1: radius, 2: radius},  # type: ignore[no-untyped-call]
                           boundary="none")
    args = [_rechunk(a, grown[-a.ndim:]) for a in (*band_data, *extra)]
    data = dsa.map_blocks(  # type: ignore[no-untyped-call]
        _observe_block, scl_data, *args, chunks=grown, dtype=dtype,
        meta=np.empty((0, 0, 0), dtype), **kwargs)
    return _rechunk(data, chunks)


def _rechunk(arr: AnyArray, chunks: tuple[tuple[int, ...], ...]) -> dsa.Array:
    """``arr`` as a Dask array with ``chunks`` (unchanged if it has them)."""
    out: dsa.Array = dsa.asarray(arr)  # type: ignore[no-untyped-call]
    return out if out.chunks == chunks else out.rechunk(chunks)  # type: ignore[no-untyped-call]
