"""Lazy, Dask-backed Sentinel-2 L2A datacubes from STAC items.

:func:`load_s2` plans everything from metadata first (asset keys, DN offsets, sun
zenith, output grid), then builds the lazy cube with odc-stac (default) or stackstac,
and harmonises reflectance across processing baselines. No pixel is read until the
result is computed.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeAlias

import dask.array as dsa
import numpy as np
import odc.geo.xr  # noqa: F401 - registers the .odc accessor on results
import pystac
import rioxarray  # noqa: F401 - registers the .rio accessor on results
import shapely.geometry
import xarray as xr
from odc.geo.crs import CRS, SomeCRS
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from rasterio.errors import NotGeoreferencedWarning
from shapely.geometry.base import BaseGeometry

from .._limits import check_size, resolve_max_pixels
from ..errors import AOIError, CRSError, NoItemsError, ParameterError, RedactingFilter
from ..sources import checks as _checks
from ..sources import sentinel2 as _s2meta
from ..sources.aoi import (
    AOILike,
    crosses_antimeridian,
    parse_aoi,
    resolution_m,
    shifted_east,
    unwrapped_bounds,
    utm_crs,
)
from ..sources.assets import item_epsg
from ..sources.search import AOI_KEY
from . import kernels as _kernels
from . import readers as _readers
from . import readplan as _read

__all__ = ["load_s2"]

Engine = Literal["odc-stac", "stackstac"]
#: STAC items as users pass them: an ItemCollection, Items, or item dicts.
ItemsLike: TypeAlias = (
    "pystac.ItemCollection | Iterable[pystac.Item] | Iterable[Mapping[str, Any]]")

# odc-loader reprojects into plain arrays, which rasterio reports as "not georeferenced".
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module=r"rasterio\.warp")

# odc-loader logs failed reads with the full (possibly signed) URL.
for _name in ("odc.loader._rio", "odc.loader", "stackstac"):
    logging.getLogger(_name).addFilter(RedactingFilter())
DEFAULT_CHUNK = 1024


@dataclass(frozen=True)
class _ItemPlan:
    """What the loader needs to know about one item, decided before any read."""

    item: pystac.Item  # assets renamed to canonical band names
    offsets: tuple[int, ...]  # DN offset per requested band
    sun_zenith: float  # degrees
    solar_day: np.datetime64


def _as_items(items: ItemsLike) -> list[pystac.Item]:
    if isinstance(items, pystac.ItemCollection):
        return list(items.items)
    if isinstance(items, pystac.Item):
        return [items]
    out = []
    for it in items:
        out.append(it if isinstance(it, pystac.Item) else pystac.Item.from_dict(dict(it)))
    return out


def _acquired(item: pystac.Item) -> datetime:
    """The item's acquisition time: ``datetime``, else ``start_datetime``."""
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise ParameterError(
            f"item {item.id!r} has no acquisition time (neither datetime nor start_datetime); "
            "fix its metadata or leave it out.")
    return when


def _solar_day(item: pystac.Item) -> np.datetime64:
    """Local solar date of the acquisition (UTC time shifted by longitude / 15 h)."""
    when = _acquired(item)
    lon = 0.0
    if item.bbox:
        west, east = float(item.bbox[0]), float(item.bbox[-2] if len(item.bbox) == 4
                                                  else item.bbox[3])
        if west > east:  # across the antimeridian (STAC's bbox convention)
            east += 360.0
        lon = (west + east) / 2
        lon = (lon + 180.0) % 360.0 - 180.0
    stamp = np.datetime64(when.replace(tzinfo=None), "s") + np.timedelta64(
        round(lon * 240), "s"
    )
    day: np.datetime64 = stamp.astype("datetime64[D]")
    return day


def _normalise(item: pystac.Item, bands: Sequence[str]) -> pystac.Item:
    """Copy of ``item`` whose assets are exactly the canonical ``bands``."""
    keys = {b: _s2meta.asset_key(item, b) for b in bands}
    clone = item.clone()
    assets: dict[str, pystac.Asset] = {}
    for band, key in keys.items():
        asset = clone.assets[key]
        asset.href = asset.get_absolute_href() or asset.href
        # Scale/offset are handled by cup4soil's harmonisation; odc-stac needs dtype/nodata.
        asset.extra_fields["raster:bands"] = [
            {"data_type": "uint8" if band == _s2meta.SCL else "uint16", "nodata": 0}
        ]
        for k in ("raster:scale", "raster:offset"):
            asset.extra_fields.pop(k, None)
        asset.owner = clone
        assets[band] = asset
    clone.assets = assets
    # stackstac 0.5 reads only proj:epsg; pystac >= 1.12 writes (and migrates to) proj:code.
    epsg = item_epsg(item)
    if epsg is not None:
        clone.properties["proj:epsg"] = epsg
    return clone


def _plan(items: Sequence[pystac.Item], bands: Sequence[str]) -> list[_ItemPlan]:
    plans = []
    for it in items:
        # What cannot be read correctly is refused from the metadata, before any read.
        _checks.check_item(it, {b: _s2meta.asset_key(it, b) for b in bands})
        norm = _normalise(it, bands)
        plans.append(_ItemPlan(
            item=norm,
            offsets=tuple(_s2meta.dn_offset(it, b) for b in bands),
            sun_zenith=_s2meta.mean_sun_zenith(it),
            solar_day=_solar_day(it),
        ))
    return plans


def _sun_zenith(groups: Iterable[Sequence[_ItemPlan]]) -> np.ndarray:
    """Mean sun zenith of each time step's items, degrees (float32; NaN where no item of
    the step says)."""
    out = []
    for group in groups:
        vals = [p.sun_zenith for p in group]
        out.append(np.nan if all(np.isnan(vals)) else float(np.nanmean(vals)))
    return np.asarray(out, dtype="float32")


def _area(items: ItemsLike, plans: Sequence[_ItemPlan],
          bbox: AOILike | None) -> tuple[BaseGeometry, bool]:
    """Output area in lon/lat, and whether it came from the user (bbox or search AOI)."""
    if bbox is not None:
        return parse_aoi(bbox), True
    extra = getattr(items, "extra_fields", {}) or {}
    if AOI_KEY in extra:
        return shapely.geometry.shape(extra[AOI_KEY]), True
    footprints = []
    for p in plans:
        if p.item.geometry:
            footprints.append(shapely.geometry.shape(p.item.geometry))
        elif p.item.bbox:
            footprints.append(shapely.geometry.box(*p.item.bbox))
        else:
            raise ParameterError(
                f"item {p.item.id!r} has neither a geometry nor a bbox; pass bbox=... or "
                "geobox=... to say which area to load.")
    return shapely.union_all(footprints), False


def _target_crs(crs: SomeCRS | None, area: BaseGeometry, from_user: bool,
                plans: Sequence[_ItemPlan]) -> CRS:
    if crs is not None:
        try:
            return CRS(crs)
        except Exception:
            raise CRSError(
                f"crs={crs!r} is not a coordinate reference system. Give e.g. 'EPSG:32633' or "
                "'EPSG:3035'."
            ) from None
    if from_user:
        # Across the antimeridian the centre is taken with the area in one piece.
        c = shifted_east(area).centroid
        return utm_crs((c.x + 180.0) % 360.0 - 180.0, c.y)
    codes = {c for p in plans if (c := item_epsg(p.item)) is not None}
    if len(codes) == 1:
        return CRS(f"EPSG:{codes.pop()}")
    if not codes:
        raise CRSError("the items carry no projection metadata. Pass crs='EPSG:...'.")
    raise CRSError(
        f"the items are in several CRSs ({', '.join(f'EPSG:{c}' for c in sorted(codes))}) and no "
        "target CRS was given. Pass crs='EPSG:...' (e.g. the UTM zone of your area, or "
        "'EPSG:3035' for European products) or bbox=... so cup4soil picks the UTM zone."
    )


def _geobox(area: BaseGeometry, crs: CRS, resolution: float) -> GeoBox:
    if crosses_antimeridian(area):
        _check_antimeridian(area, crs)
    geom = Geometry(area, "EPSG:4326").to_crs(crs)
    # Pixel edges on multiples of the resolution, like Sentinel-2's own grids.
    return GeoBox.from_bbox(geom.boundingbox, crs, resolution=resolution)


def _resampling(bands: Sequence[str], resolution: float) -> dict[str, str]:
    out = {}
    for b in bands:
        coarser = resolution > _s2meta.NATIVE_GSD[b]
        if b == _s2meta.SCL:
            out[b] = "mode" if coarser else "nearest"  # classes are never averaged
        else:
            out[b] = "average" if coarser else "nearest"
    return out


def _chunks(chunks: Mapping[str, int] | None) -> tuple[int, int]:
    if chunks is not None and not isinstance(chunks, Mapping):
        raise ParameterError(f"chunks={chunks!r} must be a dict of pixel counts, e.g. "
                             "{'y': 1024, 'x': 1024}.")
    chunks = dict(chunks or {})
    unknown = set(chunks) - {"x", "y", "time"}
    if unknown:
        raise ParameterError(f"chunks has unknown dimensions {sorted(unknown)}; use x, y, time.")
    if chunks.get("time", 1) != 1:
        raise ParameterError("chunks['time'] must be 1: each time step is read by its own task.")
    sizes = []
    for dim in ("y", "x"):
        value = chunks.get(dim, DEFAULT_CHUNK)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ParameterError(
                f"chunks['{dim}']={value!r} must be a positive whole number of pixels "
                f"(default {DEFAULT_CHUNK}).")
        sizes.append(int(value))
    return sizes[0], sizes[1]


def _check_antimeridian(area: BaseGeometry, crs: CRS) -> None:
    """Refuse a CRS in which an area across the antimeridian is not in one piece (in
    lon/lat it would be a band round the world)."""
    west, south, east, north = unwrapped_bounds(area)
    where = f"lon {west:.4f}..{east:.4f}, lat {south:.4f}..{north:.4f}"
    c = shifted_east(area).centroid
    utm = utm_crs((c.x + 180.0) % 360.0 - 180.0, c.y)
    if crs.geographic:
        raise AOIError(
            f"the area ({where}) crosses the antimeridian: in {crs} the cube would be a band "
            f"of 360 degrees round the world. Use a projected CRS, e.g. crs='{utm}' (the UTM "
            "zone of the area, the default without crs=).")
    parts = [Geometry(p, "EPSG:4326").to_crs(crs).boundingbox
             for p in getattr(area, "geoms", [area])]
    union = (min(b.left for b in parts), min(b.bottom for b in parts),
             max(b.right for b in parts), max(b.top for b in parts))
    whole = (union[2] - union[0]) * (union[3] - union[1])
    pieces = sum((b.right - b.left) * (b.top - b.bottom) for b in parts)
    if not all(math.isfinite(v) for v in union) or whole > 4 * pieces:
        raise AOIError(
            f"the area ({where}) crosses the antimeridian, and {crs} does not keep its two "
            f"sides together (the cube would span the whole gap between them). Use "
            f"crs='{utm}' (the UTM zone of the area), or split the area at +-180 degrees.")


# ----------------------------------------------------------------------------------- readers


# odc-loader's and stackstac's readers with file checks, retries and errors naming the
# asset (cube/readers.py); the old names stay for code that patches them.
_SafeReader = _readers.SafeRioReader
_SafeRioDriver = _readers.SafeRioDriver
_SafeStackstacReader = _readers.SafeStackstacReader


def _load_odc(
    plans: Sequence[_ItemPlan], bands: Sequence[str], geobox: GeoBox, resolution: float,
    chunk: tuple[int, int],
) -> tuple[xr.Dataset, np.ndarray]:
    """The cube from odc-stac's metadata and reader, one lazy layer per band (``_read``).

    Returns the dataset (harmonised: each item is shifted by its own DN offset before the
    items of a solar day are fused) and the mean sun zenith per time step, degrees.
    """
    from odc.geo.xr import xr_coords

    plan = _read.make_plan(
        [p.item for p in plans], bands, geobox, _resampling(bands, resolution),
        np.array([p.offsets for p in plans], dtype=np.int32), _SafeRioDriver(),
    )
    coords = xr_coords(geobox, crs_coord_name="spatial_ref")
    coords["time"] = xr.DataArray(np.array(plan.times, dtype="datetime64[ns]"), dims="time")
    variables = {}
    key = _read.as_key(plan)
    for band in bands:
        var = xr.DataArray(_read.lazy_band(plan, band, chunk, key=key), dims=("time", "y", "x"),
                           coords=coords)
        var.encoding["grid_mapping"] = "spatial_ref"
        variables[band] = var
    sza = _sun_zenith([plans[i] for i in group] for group in plan.groups)
    return xr.Dataset(variables), sza


def _load_stackstac(
    items: list[pystac.Item], bands: Sequence[str], geobox: GeoBox, resolution: float,
    chunk: tuple[int, int],
) -> xr.Dataset:
    import stackstac
    from rasterio.enums import Resampling

    epsg = geobox.crs.epsg if geobox.crs is not None else None
    if epsg is None:
        raise CRSError(f"engine='stackstac' needs an EPSG code; {geobox.crs} has none.")
    left, bottom, right, top = geobox.boundingbox
    methods = _resampling(bands, resolution)
    days = np.array([_solar_day(it) for it in items])
    variables: dict[str, xr.DataArray] = {}
    for band in bands:
        dtype = np.dtype("uint8" if band == _s2meta.SCL else "uint16")
        da = stackstac.stack(
            [it.to_dict(transform_hrefs=False) for it in items], assets=[band], epsg=epsg,
            resolution=resolution,
            bounds=(left, bottom, right, top), snap_bounds=False, xy_coords="center",
            resampling=Resampling[methods[band]],
            dtype=dtype,
            # stackstac checks np.can_cast(type(fill_value), dtype): give a typed zero.
            fill_value=dtype.type(0), rescale=False, sortby_date=False, properties=False,
            band_coords=False, chunksize=(1, 1, chunk[0], chunk[1]),
            errors_as_nodata=(), reader=_SafeStackstacReader, gdal_env=_readers.stackstac_env(),
        ).isel(band=0, drop=True)
        # stackstac's object-dtype coordinates break to_zarr; keep only dimension coords.
        da = da.drop_vars([c for c in da.coords if c not in ("time", "y", "x")])
        da = da.assign_coords(solar_day=("time", days))
        if len(set(days.tolist())) < len(days):
            first_time = da.time.groupby("solar_day").min()
            da = da.groupby("solar_day").map(stackstac.mosaic, nodata=0)
            da = da.rename(solar_day="time").assign_coords(time=first_time.values)
        else:
            da = da.drop_vars("solar_day")
        variables[band] = da
    ds = xr.Dataset(variables)
    # Same pixel-centre coordinates and CRS coordinate as odc-stac.
    from odc.geo.xr import xr_coords

    coords = xr_coords(geobox, crs_coord_name="spatial_ref")
    ds = ds.assign_coords(y=coords["y"], x=coords["x"], spatial_ref=coords["spatial_ref"])
    for v in ds.data_vars.values():
        # stackstac's attrs (RasterSpec, Affine) are not serialisable; the grid is in coords.
        v.attrs = {"nodata": 0}
    return ds


# ------------------------------------------------------------------------------- harmonise


def _shift_block(block: np.ndarray, offsets: np.ndarray,
                 block_info: dict[int | None, dict[str, Any]] | None = None) -> np.ndarray:
    """Shift each time slice of a (time, y, x) block by its own DN offset."""
    assert block_info is not None  # map_blocks passes it
    t0, t1 = block_info[0]["array-location"][0]
    out = block.copy()
    for i, off in enumerate(offsets[t0:t1]):
        out[i] = _kernels.shift_dn(block[i], int(off))
    return out


def _harmonise(da: xr.DataArray, offsets: np.ndarray) -> xr.DataArray:
    """Apply one DN offset per time step (one task layer, fused with the reads)."""
    if not np.any(offsets):
        return da
    data = dsa.map_blocks(  # type: ignore[no-untyped-call]
        _shift_block, da.data, np.asarray(offsets), dtype=da.dtype)
    return da.copy(data=data)


def _fuse_first(values: Iterable[xr.DataArray]) -> xr.DataArray:
    """First non-nodata value along a list of same-grid arrays (odc-stac's default fuser)."""
    it = iter(values)
    out = next(it)
    for other in it:
        out = xr.where(out != 0, out, other).astype(out.dtype)  # type: ignore[no-untyped-call]
    return out


def load_s2(
    items: ItemsLike,
    *,
    bands: Sequence[str] | None = None,
    resolution: float = 20.0,
    crs: SomeCRS | None = None,
    bbox: AOILike | None = None,
    chunks: Mapping[str, int] | None = None,
    engine: Engine = "odc-stac",
    geobox: GeoBox | None = None,
    max_pixels: float | None = None,
) -> xr.Dataset:
    """Build a lazy, harmonised Sentinel-2 L2A cube from STAC items.

    Parameters
    ----------
    items
        Items from :func:`cup4soil.search` or any STAC source (Planetary Computer, Earth
        Search and CDSE asset keys are all understood).
    bands
        Canonical band names (default: B02 B03 B04 B05 B06 B07 B08 B8A B11 B12 and SCL).
    resolution
        Output pixel size, metres (CRS units). SCMaP works at 20 m. Reflectance is
        resampled by ``average`` when coarser than native, SCL by ``mode``; never averaged.
    crs
        Output CRS. Default: the UTM zone of the area (the search AOI or ``bbox``); for
        European mosaics use ``"EPSG:3035"``.
    bbox
        Output extent as a lon/lat bbox or any AOI :func:`cup4soil.search` accepts.
        Default: the AOI of the search that produced ``items``, else their footprints.
    chunks
        Spatial chunk size in pixels, e.g. ``{"y": 1024, "x": 1024}``; time is always 1.
    engine
        ``"odc-stac"`` (default) or ``"stackstac"``: the same grid and values.
    geobox
        An exact output grid (:class:`odc.geo.geobox.GeoBox`); overrides ``crs``, ``bbox``
        and ``resolution``. Use it to match another product pixel for pixel.
    max_pixels
        Most pixel observations (time steps x y x) the cube may have; default
        :data:`cup4soil._limits.DEFAULT_MAX_PIXELS` (about 3.4e10: a whole Sentinel-2 tile for
        five years at 20 m, three times). A larger cube is refused before anything is
        planned, with its size and the fixes (a coarser resolution, tiles, or a larger
        ``max_pixels``; ``math.inf``: no limit). Cubes of more than a million tasks are
        refused too (use larger ``chunks``).

    Returns
    -------
    xarray.Dataset
        One ``(time, y, x)`` variable per band: uint16 DN on the pre-04.00 scale
        (reflectance = DN / 10000), SCL as uint8, nodata 0, one time step per solar day.
        Coordinate ``sza`` holds the scene-mean sun zenith angle per time step, degrees.
        The CRS is in the ``spatial_ref`` coordinate (odc-geo's ``.odc`` and rioxarray's
        ``.rio`` accessors read it).
    """
    if engine not in ("odc-stac", "stackstac"):
        raise ParameterError(f"engine={engine!r} is unknown. Use 'odc-stac' or 'stackstac'.")
    res = resolution_m(resolution)
    canon = _s2meta.check_bands(bands)
    limit = resolve_max_pixels(max_pixels)
    item_list = _as_items(items)
    if not item_list:
        raise NoItemsError("no items to load. Run cup4soil.search first and check it found some.")
    chunk = _chunks(chunks)
    plans = _plan(item_list, canon)
    if geobox is None:
        area, from_user = _area(items, plans, bbox)
        target = _target_crs(crs, area, from_user, plans)
        geobox = _geobox(area, target, res)
    else:
        if geobox.crs is None:
            raise CRSError("geobox= has no CRS; give a GeoBox with one (e.g. cube.odc.geobox).")
        target, res = geobox.crs, float(abs(geobox.resolution.x))
    _check_cube_size(geobox, plans, canon, chunk, res, limit)

    if engine == "odc-stac":
        cube, sza = _load_odc(plans, canon, geobox, res, chunk)
    else:
        cube, sza = _load_stackstac_harmonised(plans, canon, geobox, res, chunk)
    cube = cube.assign_coords(sza=("time", sza))
    cube["sza"].attrs.update(units="degree", long_name="scene-mean sun zenith angle")
    for band in canon:
        attrs = {"nodata": 0, "units": "1"}
        if band == _s2meta.SCL:
            attrs["long_name"] = "Sen2Cor scene classification"
        else:
            attrs["long_name"] = f"surface reflectance {band} x 10000 (pre-04.00 DN scale)"
        cube[band].attrs.update(attrs)
    cube.attrs.update({
        "title": "Sentinel-2 L2A cube (cup4soil.load_s2)",
        "harmonisation": "DN on the pre-04.00 scale: reflectance = DN / 10000; BOA_ADD_OFFSET "
                         "removed from processing baseline 04.00 on; 0 = nodata",
        "engine": engine,
        "resolution": res,
        "crs": str(target),
        # provenance: the items read and their processing baselines (None: unknown)
        "input_items": [p.item.id for p in plans],
        "processing_baselines": [
            None if (b := _s2meta.processing_baseline(p.item)) is None else f"{b:05.2f}"
            for p in plans],
    })
    return cube


def _check_cube_size(geobox: GeoBox, plans: Sequence[_ItemPlan], bands: Sequence[str],
                     chunk: tuple[int, int], resolution: float, limit: float) -> None:
    """The size guard (:func:`cup4soil._limits.check_size`) from the grid and the items,
    before any array or chunk list is made."""
    ny, nx = geobox.shape.yx
    n_t = len({p.solar_day for p in plans})  # one time step per solar day
    per_pixel = sum(1 if b == _s2meta.SCL else 2 for b in bands)  # bytes: uint16, SCL uint8
    tasks = n_t * math.ceil(ny / chunk[0]) * math.ceil(nx / chunk[1]) * len(bands)
    check_size("the cube", shape={"time": n_t, "y": ny, "x": nx},
               nbytes=float(n_t) * ny * nx * per_pixel, tasks=tasks, max_pixels=limit,
               resolution=resolution,
               chunks_hint=f"larger chunks= (now {chunk[0]} x {chunk[1]} px)")


def _load_stackstac_harmonised(
    plans: Sequence[_ItemPlan], bands: Sequence[str], geobox: GeoBox, res: float,
    chunk: tuple[int, int],
) -> tuple[xr.Dataset, np.ndarray]:
    """The stackstac cube, harmonised, and the mean sun zenith per time step, degrees."""
    day_offsets: dict[np.datetime64, set[tuple[int, ...]]] = defaultdict(set)
    for p in plans:
        day_offsets[p.solar_day].add(p.offsets)
    # Usually every solar day has one DN offset: load once, shift per time step. A day that
    # mixes baselines (tiles processed differently) is loaded per offset and fused.
    groups: dict[tuple[int, ...], list[_ItemPlan]] = defaultdict(list)
    for p in plans:
        mixed = len(day_offsets[p.solar_day]) > 1
        groups[p.offsets if mixed else ()].append(p)
    parts = []
    for key, group in groups.items():
        group.sort(key=lambda p: (p.item.datetime, p.item.id))
        ds = _load_stackstac([p.item for p in group], bands, geobox, res, chunk)
        # Label each time step with its solar day, which fixes its offsets.
        by_time: dict[np.datetime64, _ItemPlan] = {
            np.datetime64(_acquired(p.item).replace(tzinfo=None), "ns"): p for p in group}
        labels = [_nearest_day(t, by_time) for t in ds.time.values]
        per_time = [key or next(iter(day_offsets[d])) for d in labels]
        for i, band in enumerate(bands):
            ds[band] = _harmonise(ds[band], np.array([offs[i] for offs in per_time]))
        parts.append(ds.assign_coords(solar_day=("time", labels)))
    cube = parts[0] if len(parts) == 1 else _merge_parts(parts, bands).sortby("time")
    sza = _sun_zenith([p for p in plans if p.solar_day == d] for d in cube["solar_day"].values)
    return cube.drop_vars("solar_day"), sza


def _nearest_day(t: np.datetime64, by_time: Mapping[np.datetime64, _ItemPlan]) -> np.datetime64:
    """Solar day of the item acquired at (or, if loaders rounded it, closest to) time t."""
    best = t if t in by_time else min(by_time, key=lambda k: abs(k - t))
    return by_time[best].solar_day


def _merge_parts(parts: list[xr.Dataset], bands: Sequence[str]) -> xr.Dataset:
    """Concatenate parts of different DN offsets; fuse solar days that occur in several."""
    combined = xr.concat(parts, dim="time", coords="different", compat="equals")
    labels = combined["solar_day"].values
    if len(set(labels.tolist())) == len(labels):
        return combined
    pieces = []
    for day in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == day)
        sel = combined.isel(time=idx)
        if len(idx) == 1:
            pieces.append(sel)
            continue
        fused = xr.Dataset(
            {b: _fuse_first(sel[b].isel(time=i) for i in range(len(idx))) for b in bands}
        ).expand_dims(time=[sel.time.values.min()])
        pieces.append(fused.assign_coords(solar_day=("time", [day])))
    return xr.concat(pieces, dim="time")
