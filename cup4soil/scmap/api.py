"""SCMaP: DLR's Soil Composite Mapping Processor on Dask -- the public functions.

:func:`composite` turns a harmonised Sentinel-2 cube (from :func:`cup4soil.load_s2`) into
the SoilSuite products -- valid and bare-soil counts (VPC, BSC), bare-soil frequency (BSF),
the soil reflectance composite (SRC, SRC_STD, SRC_CI95), the mean reflectance composite
(MREF, MREF_STD) and the MASK -- with the semantics of ``shared/docs/scmap.md``.

Where the pieces are: the observation rule is :func:`cup4soil.scmap.kernels.observe`; the
threshold objects are in :mod:`~cup4soil.scmap.threshold`; one block task, pass by pass,
in :mod:`~cup4soil.scmap.engine`; the graph of block tasks in :mod:`~cup4soil.scmap.graph`;
what a block task reads through in :mod:`cup4soil.cube.windows`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox

from .._limits import check_size, resolve_max_pixels
from ..covariates.landcover import worldcover_for
from ..cube import readplan as _read
from ..cube.windows import FlatGraph
from ..errors import BandError, ParameterError, ThresholdError
from ..sources.resources import DLR_THRESHOLD_URL, THRESHOLD_ENV
from ..sources.sentinel2 import REFLECTANCE_BANDS, SCL
from . import block_kernels as _bk
from . import kernels as _kernels
from . import masks as _masks
from .engine import BAND_PRODUCTS, Params
from .graph import DEFAULT_TASK_MEMORY, Planned, auto_block, block_graph, flatten, planned
from .masks import check_number
from .threshold import Threshold, ThresholdLike, as_threshold, on_grid, threshold_array

__all__ = [
    "DEFAULT_TASK_MEMORY", "DLR_THRESHOLD_URL", "PRODUCTS", "THRESHOLD_ENV", "ThresholdError",
    "composite", "observations", "threshold_on", "to_soilsuite",
]

PRODUCTS: tuple[str, ...] = (
    "SRC", "SRC_STD", "SRC_CI95", "MREF", "MREF_STD", "VPC", "BSC", "BSF", "MASK",
)


def threshold_on(geobox: GeoBox, threshold: ThresholdLike = "dlr-europe") -> xr.DataArray:
    """The PVIR2 threshold on a grid (bilinear), as SCMaP uses it.

    Parameters
    ----------
    geobox
        Target grid (e.g. ``cube.odc.geobox``).
    threshold
        As for :func:`composite`: a float, a DataArray, a raster path/URL or
        ``"dlr-europe"``.

    Returns
    -------
    xarray.DataArray
        float32 ``(y, x)`` PVIR2 threshold (lazy if a Dask-backed DataArray was given).
    """
    from odc.geo.xr import xr_coords

    coords = xr_coords(geobox, crs_coord_name="spatial_ref")
    data = threshold_array(as_threshold(threshold, geobox), geobox)
    return xr.DataArray(data, dims=geobox.dimensions, coords=coords, name="threshold",
                        attrs={"long_name": "PVIR2 bare-soil threshold", "units": "1"})


def observations(
    cube: xr.Dataset,
    threshold: ThresholdLike = "dlr-europe",
    *,
    worldcover: xr.DataArray | None = None,
    max_sun_zenith: float = 70.0,
    buffer_m: float = 100.0,
    max_pixels: float | None = None,
) -> xr.Dataset:
    """Per-observation SCMaP quantities, lazily: ``PVIR2``, ``valid`` and ``bare`` (before
    the NMAD outlier test) over ``(time, y, x)``. For inspecting bare dates of fields.

    Parameters are those of :func:`composite`; ``valid`` is :func:`cup4soil.masks.valid`
    and ``bare`` follows the same rule as the composite (:func:`kernels.observe`).
    """
    _check_cube(cube)
    n_t, ny, nx = (int(cube.sizes[d]) for d in ("time", "y", "x"))
    check_size("the observations", shape={"time": n_t, "y": ny, "x": nx},
               nbytes=float(n_t) * ny * nx * 6,  # PVIR2 (float32), valid and bare (bool)
               tasks=3 * int(getattr(cube["SCL"].data, "npartitions", 1)),
               max_pixels=resolve_max_pixels(max_pixels))
    geobox = cube.odc.geobox
    thr = threshold_array(as_threshold(threshold, geobox), geobox)
    wc = _check_worldcover(worldcover, cube)
    valid, bare = _masks.observe_lazy(
        cube, buffer_m=buffer_m, max_sun_zenith=max_sun_zenith, threshold=thr,
        landcover=wc.data if wc is not None else None)
    p = xr.apply_ufunc(_kernels.pvir2, cube["B04"], cube["B08"], cube["B12"],
                       dask="parallelized", output_dtypes=[np.float32])
    return xr.Dataset({"PVIR2": p, "valid": valid, "bare": bare})


# ---------------------------------------------------------------------------------- checks


def _check_cube(cube: xr.Dataset) -> None:
    missing = [b for b in (*REFLECTANCE_BANDS, SCL) if b not in cube.data_vars]
    if missing:
        raise BandError(
            f"the cube lacks {', '.join(missing)}, which SCMaP needs. Load it with "
            "cup4soil.load_s2(items) (all ten bands and SCL are the default)."
        )
    for dim in ("time", "y", "x"):
        if dim not in cube.dims:
            raise ParameterError(f"the cube has no '{dim}' dimension; use cup4soil.load_s2.")


def _check_whole(name: str, value: object, *, low: int, what: str) -> int:
    """``value`` as a whole number >= ``low`` (not a bool, not NaN)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer,
                                                             np.floating))
    v = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not ok or not math.isfinite(v) or v != int(v) or v < low:
        raise ParameterError(f"{name}={value!r} must be {what}: a whole number >= {low}.")
    return int(v)


def _check_chunks(chunks: object) -> dict[str, int] | None:
    """Spatial block sizes given to :func:`composite`, checked."""
    if chunks is None:
        return None
    if not isinstance(chunks, Mapping):
        raise ParameterError(f"chunks={chunks!r} must be a dict of pixel counts, e.g. "
                             "{'y': 512, 'x': 512}.")
    unknown = sorted(set(chunks) - {"y", "x"})
    if unknown:
        raise ParameterError(f"chunks has unknown dimensions {unknown}; use y and x.")
    return {str(k): _check_whole(f"chunks[{k!r}]", v, low=1, what="a block size in pixels")
            for k, v in chunks.items()}


def _check_products(products: Sequence[str] | str | None) -> tuple[str, ...]:
    if isinstance(products, str):
        products = [products]  # one product by name
    chosen = tuple(products) if products is not None else PRODUCTS
    unknown = [p for p in chosen if p not in PRODUCTS]
    if unknown or not chosen:
        raise ParameterError(
            f"products={list(chosen)}: choose from {', '.join(PRODUCTS)}."
        )
    return chosen


def _check_composite_size(cube: xr.Dataset, chunks: dict[str, int] | None, task_memory: int,
                          products: Sequence[str], max_pixels: float | None) -> None:
    """The size guard of a composite (:mod:`cup4soil._limits`), before any graph is made:
    the observations its blocks read, and the tasks of its blocks (plus the cube's own
    graph when it is not read through a read plan: that graph is materialised)."""
    n_t, ny, nx = (int(cube.sizes[d]) for d in ("time", "y", "x"))
    if chunks:
        by_, bx_ = chunks.get("y", ny), chunks.get("x", nx)
    else:
        by_ = bx_ = auto_block(n_t, (ny, nx), task_memory)
    blocks = math.ceil(ny / by_) * math.ceil(nx / bx_)
    tasks = blocks * (1 + len(products))
    scl = cube["SCL"].data
    if hasattr(scl, "npartitions") and _read.plan_of(scl) is None:
        tasks += sum(int(getattr(cube[b].data, "npartitions", 1))
                     for b in (*REFLECTANCE_BANDS, SCL))
    res = cube.odc.geobox.resolution.x if cube.odc.geobox is not None else None
    check_size("the composite", shape={"time": n_t, "y": ny, "x": nx},
               nbytes=float(n_t) * ny * nx * (2 * len(REFLECTANCE_BANDS) + 1), tasks=tasks,
               max_pixels=resolve_max_pixels(max_pixels),
               resolution=abs(float(res)) if res is not None else None,
               chunks_hint="larger blocks (chunks={'y': ..., 'x': ...} or a larger "
                           "task_memory=)")


def composite(
    cube: xr.Dataset,
    threshold: ThresholdLike = "dlr-europe",
    *,
    worldcover: xr.DataArray | str | os.PathLike[str] | None = None,
    worldcover_catalog: str | os.PathLike[str] = "planetary-computer",
    nmad_sigma: float = 3.0,
    mref_nmad_sigma: float = 4.0,
    min_bare: int = 3,
    products: Sequence[str] | None = None,
    by: str | None = None,
    max_sun_zenith: float = 70.0,
    buffer_m: float = 100.0,
    chunks: dict[str, int] | None = None,
    task_memory: int = DEFAULT_TASK_MEMORY,
    max_pixels: float | None = None,
) -> xr.Dataset:
    """SCMaP bare-soil composites of a harmonised Sentinel-2 cube (lazy).

    Parameters
    ----------
    cube
        Dataset from :func:`cup4soil.load_s2`: B02 ... B12 and SCL over ``(time, y, x)``,
        uint16 DN on the pre-04.00 scale, nodata 0; a sun zenith angle enables the
        sun-zenith limit: ``sza`` (degrees) as a coordinate or data variable, per time step
        ``(time,)`` or per pixel ``(time, y, x)``, or any spelling of
        :data:`cup4soil.masks.SUN_ZENITH_NAMES` / :data:`~cup4soil.masks.SUN_ELEVATION_NAMES`
        (:func:`cup4soil.masks.sun_zenith`); one it cannot read is refused.
    threshold
        PVIR2 threshold: a float, a DataArray, a raster path/URL, or ``"dlr-europe"`` (DLR's
        regional raster, fetched once into ``~/.cache/cup4soil``, or read from the file named
        by ``$CUP4SOIL_DLR_THRESHOLD``). Rasters are resampled bilinearly onto the cube grid.
    worldcover
        ESA WorldCover classes on the cube grid: built-up (50) and water (80) are never bare;
        classes 0, 50, 70, 80, 90, 95 are MASK = 3. ``"auto"``: ESA WorldCover 2021 from
        ``worldcover_catalog``, put on the cube's grid (:func:`cup4soil.covariates.worldcover`);
        a path or URL: that WorldCover raster, reprojected by mode/nearest.
    worldcover_catalog
        Where ``worldcover="auto"`` finds ESA WorldCover (a named catalog or the path/URL of
        a static catalog, e.g. the sample archive's).
    nmad_sigma, mref_nmad_sigma
        Outlier factor of the NMAD test on B02 for the bare (SRC) and valid (MREF) sets,
        >= 0.
    min_bare
        Fewest bare observations for a pixel to get SRC and BSC (default 3), >= 1.
    products
        Subset of :data:`PRODUCTS`; the MREF pass is skipped when not asked for.
    by
        ``"year"``: per-calendar-year products with a ``year`` dimension.
    max_sun_zenith
        Observations with a larger sun zenith angle, degrees (0..90), are invalid.
    buffer_m
        Cloud/shadow/cirrus buffer, metres (0..10 000).
    chunks
        Spatial block, e.g. ``{"y": 512, "x": 512}``; default: from the number of scenes and
        ``task_memory``.
    task_memory
        Memory budget of one block task, bytes (at least 1 MiB).
    max_pixels
        Most pixel observations (time x y x of the cube) one call composites; default
        :data:`cup4soil._limits.DEFAULT_MAX_PIXELS`. Larger composites, and those of more
        than a million tasks, are refused before any graph is made (``math.inf``: no
        limit).

    Returns
    -------
    xarray.Dataset
        ``SRC``, ``SRC_STD``, ``SRC_CI95``, ``MREF``, ``MREF_STD`` (float32, ``(band, y, x)``,
        reflectance x 10000, NaN = nodata), ``VPC`` (uint16), ``BSC`` (uint16, 0 = nodata),
        ``BSF`` (float32 fraction, NaN = nodata), ``MASK`` (uint8: 1 bare soil, 2 permanently
        vegetated, 3 other surface, 0 = nodata). Lazy; CRS and grid of the cube.
    """
    _check_cube(cube)
    if cube.sizes["time"] < 2:
        raise ParameterError(
            "the cube has one time step; SCMaP composites a time series. Search a longer "
            "time range (DLR uses five years)."
        )
    if cube.sizes["time"] > _bk.MAX_OBSERVATIONS:
        raise ParameterError(
            f"the cube has {cube.sizes['time']} time steps; a composite counts at most "
            f"{_bk.MAX_OBSERVATIONS} observations per pixel (VPC is uint16). Composite "
            "shorter time ranges (by='year') and combine them."
        )
    # 0 is allowed (DLR's openEO process takes it: only observations at the median pass)
    nmad_sigma = check_number("nmad_sigma", nmad_sigma, low=0.0,
                              what="an outlier factor (DLR uses 3)")
    mref_nmad_sigma = check_number("mref_nmad_sigma", mref_nmad_sigma, low=0.0,
                                   what="an outlier factor (DLR uses 4)")
    max_sun_zenith = check_number("max_sun_zenith", max_sun_zenith, low=0.0, high=90.0,
                                  what="an angle in degrees (DLR uses 70)")
    buffer_m = check_number("buffer_m", buffer_m, low=0.0, high=_masks.MAX_BUFFER_M,
                            what="a distance in metres (DLR uses 100)")
    min_bare = _check_whole("min_bare", min_bare, low=1, what="a number of observations")
    task_memory = _check_whole("task_memory", task_memory, low=2**20,
                               what="bytes per block task (default 192 MiB)")
    chunks = _check_chunks(chunks)
    chosen = _check_products(products)
    if by not in (None, "year"):
        raise ParameterError(f"by={by!r} is unknown; use None or 'year'.")
    _check_composite_size(cube, chunks, task_memory, chosen, max_pixels)
    cube = _masks.sun_zenith(cube)
    geobox = cube.odc.geobox
    if geobox is None:
        raise ParameterError("the cube has no CRS/grid; build it with cup4soil.load_s2.")
    res = float(abs(geobox.resolution.x))
    params = Params(
        nmad_sigma=nmad_sigma, mref_nmad_sigma=mref_nmad_sigma, min_bare=int(min_bare),
        max_sun_zenith=max_sun_zenith, radius=_masks.cloud_buffer_pixels(res, buffer_m),
        products=chosen,
    )
    thr = as_threshold(threshold, geobox)
    wc = _check_worldcover(worldcover, cube, worldcover_catalog)

    if by == "year" and not cube.indexes["time"].is_monotonic_increasing:
        cube = cube.sortby("time")
    # A cube straight from load_s2 is read through its plan; any other cube (in memory,
    # stackstac, edited) through its graph, flattened once.
    plan = planned(cube, params)
    flat = None if plan is not None else flatten(cube, params)
    if by == "year":
        year_of = cube.time.dt.year.values
        years = np.unique(year_of)
        parts = []
        for y in years:
            idx = np.flatnonzero(year_of == y)
            parts.append(_composite_one(cube.isel(time=slice(idx[0], idx[-1] + 1)), thr, wc,
                                        params, geobox, chunks, task_memory,
                                        flat=flat, plan=plan, t0=int(idx[0])))
        out = xr.concat(parts, dim="year", coords="minimal", compat="override",
                        combine_attrs="override")
        out = out.assign_coords(year=("year", years.astype("int32")))
    else:
        out = _composite_one(cube, thr, wc, params, geobox, chunks, task_memory, flat=flat,
                             plan=plan)
    out.attrs.update({
        "title": "SCMaP composites (cup4soil.scmap.composite)",
        "threshold": threshold if isinstance(threshold, (int, float, str)) else "DataArray",
        "time_start": str(cube.time.values.min())[:19],
        "time_end": str(cube.time.values.max())[:19],
        "n_scenes": int(cube.sizes["time"]),
        "by": by or "none",
        "worldcover": worldcover is not None,
        **({"worldcover_source": str(wc.attrs["source"])} if wc is not None
           and "source" in wc.attrs else {}),
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items()},
        "buffer_m": buffer_m,
        "std_convention": "sample (n - 1), as openEO's sd",
        "mask_note": "MASK 2 only where the pixel had valid observations and none had "
                     "PVIR2 < threshold (DLR's graph assigns 2 to every remaining pixel)",
        **{k: cube.attrs[k] for k in ("input_items", "processing_baselines")
           if k in cube.attrs},
    })
    return out


def _check_worldcover(worldcover: xr.DataArray | str | os.PathLike[str] | None, cube: xr.Dataset,
                      catalog: str | os.PathLike[str] = "planetary-computer",
                      ) -> xr.DataArray | None:
    if worldcover is None:
        return None
    if isinstance(worldcover, (str, os.PathLike)):
        # Land cover is an SCMaP input: built here, lazily, on the cube's grid.
        return worldcover_for(worldcover, cube.odc.geobox, catalog=catalog)
    if not isinstance(worldcover, xr.DataArray) or worldcover.dims != ("y", "x"):
        raise ParameterError("worldcover must be a (y, x) DataArray of ESA WorldCover classes.")
    if "x" not in worldcover.coords or "y" not in worldcover.coords:
        raise ParameterError(
            "worldcover has no x/y coordinates, so nothing says where its pixels are. Give "
            "it the cube's grid: worldcover.odc.reproject(cube.odc.geobox, "
            "resampling='nearest') from a georeferenced raster.")
    if not on_grid(worldcover, cube.odc.geobox):
        raise ParameterError(
            f"worldcover is on another grid than the cube: {_grid_difference(worldcover, cube)}"
            ". Reproject it with worldcover.odc.reproject(cube.odc.geobox, "
            "resampling='nearest')."
        )
    return worldcover


def _distance(metres: float) -> str:
    """``1 km``, ``250 m``, ``0.5 m``."""
    m = abs(metres)
    return f"{m / 1000:.4g} km" if m >= 1000 else f"{m:.4g} m"


def _grid_difference(da: xr.DataArray, cube: xr.Dataset) -> str:
    """How the grid of a (y, x) array differs from the cube's: CRS, size, pixel size,
    shift -- what a user needs to see to fix it."""
    parts = []
    theirs = da.odc.geobox if da.odc.crs is not None else None
    ours = cube.odc.geobox
    if theirs is not None and ours is not None and theirs.crs != ours.crs:
        parts.append(f"it is in {theirs.crs}, the cube in {ours.crs}")
    h, w = da.sizes["y"], da.sizes["x"]
    big_h, big_w = cube.sizes["y"], cube.sizes["x"]
    xs, ys = np.asarray(da.x.values, float), np.asarray(da.y.values, float)
    cx, cy = np.asarray(cube.x.values, float), np.asarray(cube.y.values, float)

    def step(v: np.ndarray) -> float:
        return float(abs(v[1] - v[0])) if v.size > 1 else math.nan

    rx, cube_rx = step(xs), step(cx)
    if (h, w) != (big_h, big_w):
        parts.append(f"{h} x {w} px against the cube's {big_h} x {big_w} px")
    if math.isfinite(rx) and math.isfinite(cube_rx) and not math.isclose(rx, cube_rx,
                                                                          rel_tol=1e-6):
        parts.append(f"pixel size {rx:g} against the cube's {cube_rx:g}")
    elif xs.size and ys.size and cx.size and cy.size:
        dx, dy = float(xs[0] - cx[0]), float(ys[0] - cy[0])
        if dx or dy:
            moves = []
            if dx:
                moves.append(f"{_distance(dx)} {'east' if dx > 0 else 'west'}")
            if dy:
                moves.append(f"{_distance(dy)} {'north' if dy > 0 else 'south'}")
            total = math.hypot(dx, dy)
            size = ("same size and pixel size" if (h, w) == (big_h, big_w)
                    else "same pixel size")
            unit = "degrees" if ours is not None and ours.crs.geographic else "m"
            parts.append(f"shifted by {_distance(total)} ({' and '.join(moves)}; "
                         f"{size}, {big_h} x {big_w} px of {cube_rx:g} {unit})")
    return "; ".join(parts) or "its coordinates differ from the cube's"


def _composite_one(
    cube: xr.Dataset, thr: Threshold, wc: xr.DataArray | None, params: Params, geobox: GeoBox,
    chunks: dict[str, int] | None, task_memory: int, *, flat: dict[str, FlatGraph] | None = None,
    t0: int = 0,
    plan: Planned | None = None,
) -> xr.Dataset:
    """The products of one time range of the cube, with their coordinates and attributes."""
    arrays = block_graph(cube, thr, wc, params, geobox, chunks=chunks, task_memory=task_memory,
                         flat=flat, plan=plan, t0=t0)
    coords = {"y": cube.y, "x": cube.x}
    if "spatial_ref" in cube.coords:
        coords["spatial_ref"] = cube.spatial_ref
    data_vars = {}
    for p in params.products:
        if p in BAND_PRODUCTS:
            data_vars[p] = xr.DataArray(arrays[p], dims=("band", "y", "x"),
                                        coords={**coords, "band": list(params.bands)})
        else:
            data_vars[p] = xr.DataArray(arrays[p], dims=("y", "x"), coords=coords)
        data_vars[p].attrs.update(_ATTRS[p])
    return xr.Dataset(data_vars)


_ATTRS: dict[str, dict[str, Any]] = {
    "SRC": {"long_name": "soil reflectance composite: mean of bare observations",
            "units": "1e-4 reflectance", "nodata": float("nan")},
    "SRC_STD": {"long_name": "standard deviation of bare observations (n - 1)",
                "units": "1e-4 reflectance", "nodata": float("nan")},
    "SRC_CI95": {"long_name": "95 % confidence half-width of SRC: 1.96 SRC_STD / sqrt(BSC)",
                 "units": "1e-4 reflectance", "nodata": float("nan")},
    "MREF": {"long_name": "mean reflectance composite: mean of valid observations",
             "units": "1e-4 reflectance", "nodata": float("nan")},
    "MREF_STD": {"long_name": "standard deviation of valid observations (n - 1)",
                 "units": "1e-4 reflectance", "nodata": float("nan")},
    "VPC": {"long_name": "valid pixel count", "units": "1"},
    "BSC": {"long_name": "bare surface count (after NMAD outlier removal)", "units": "1",
            "nodata": 0},
    "BSF": {"long_name": "bare surface frequency BSC / VPC", "units": "1",
            "nodata": float("nan")},
    "MASK": {"long_name": "1 bare soil, 2 permanently vegetated, 3 other surface",
             "units": "1", "nodata": 0, "flag_values": [1, 2, 3],
             "flag_meanings": "bare_soil permanently_vegetated other_surface"},
}


def to_soilsuite(ds: xr.Dataset) -> xr.Dataset:
    """The products named as DLR's SoilSuite bands (``SRC_B02``, ``SRC_STD_B02``, ..., ``VPC``,
    ``BSC``, ``BSF``, ``MASK``), one 2-D variable each, ready for GeoTIFF export."""
    out = {}
    for name, var in ds.data_vars.items():
        if "band" in var.dims:
            for band in var.band.values:
                out[f"{name}_{band}"] = var.sel(band=band, drop=True)
        else:
            out[str(name)] = var
    return xr.Dataset(out, attrs=ds.attrs)
