"""Sentinel-1 covariates: per-pixel temporal statistics of VV and VH backscatter.

:func:`sentinel1` searches a catalog for terrain-corrected backscatter (Planetary Computer
``sentinel-1-rtc``, CDSE ``sentinel-1-global-mosaics``, or any catalog whose items carry
``vv``/``vh`` assets on a map grid), plans the reads onto the target grid with the cube's
read plans (odc-stac's metadata, reader and fuser; :mod:`cup4soil.cube.readplan`) and
returns lazy statistics: mean, standard deviation and percentiles computed in linear power
and reported in dB, the VH/VV ratio and the radar vegetation index.

Engine. Exact percentiles need each pixel's whole series, so -- like the SCMaP engine --
the grid is cut into blocks sized from the number of scenes and a memory budget; each block
task reads its window of every scene straight from the read plan (a bounded number of reads
in flight), keeps only the masked series of its pixels (float32, both polarisations) and
reduces it with a compiled kernel (:func:`cup4soil.covariates.kernels.series_stats`). Peak
memory per task is the budget, whatever the number of scenes; each input window is read
once.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from ..cube import readplan as _read
from ..cube.load import _SafeRioDriver
from ..errors import LayerError, NoItemsError, ParameterError
from ..sources import sentinel1 as s1meta
from ..sources.aoi import TimeLike, parse_time
from ..sources.assets import fix_transform, normalised
from . import kernels as _k
from .grid import (
    GridLike,
    as_geobox,
    find_items,
    layer_attrs,
    named,
    pixel_metres,
    resolve_collection,
    source_label,
)

__all__ = ["DEFAULT_TASK_MEMORY", "STATS", "sentinel1"]

#: Statistics :func:`sentinel1` computes by default.
STATS: tuple[str, ...] = ("mean", "std", "p05", "p95")
#: Memory budget of one block task, bytes.
DEFAULT_TASK_MEMORY = 192 * 2**20
#: Bytes per pixel, scene and polarisation a block task holds: the float32 series, plus
#: headroom for the reads in flight and the kernel's sorted copy.
_BYTES_PER_VALUE = 6
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")


@dataclass(frozen=True)
class _Params:
    """Frozen parameters of the block tasks."""

    pols: tuple[str, ...]
    quantiles: tuple[float, ...]
    stats: tuple[str, ...]
    floor: float  # linear power below which a value is noise
    periods: tuple[tuple[int, int], ...]  # time-step ranges [t0, t1) of each output period
    read_threads: int = 4
    in_flight: int = 8


@dataclass(frozen=True)
class _Group:
    """The time steps of one read plan: (plan index, step) -> position in the series."""

    plan: int
    steps: tuple[tuple[int, int], ...]  # (plan step, series position)
    db: bool
    nodata: float | None


def _parse_stats(stats: Sequence[str] | str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    if isinstance(stats, str):
        stats = (stats,)
    out: list[str] = []
    qs: list[float] = []
    for s in stats:
        name = str(s).lower()
        m = _PERCENTILE.match(name)
        if name in ("mean", "std"):
            pass
        elif m and 0 < float(m.group(1)) < 100:
            qs.append(float(m.group(1)) / 100.0)
            name = f"p{_fmt(qs[-1])}"
        else:
            raise ParameterError(
                f"stats: {s!r} is not a statistic; use 'mean', 'std' and percentiles such as "
                "'p05', 'p50', 'p95'.")
        if name not in out:
            out.append(name)
    if not out:
        raise ParameterError("stats is empty; ask for at least one of mean, std, p05, p95.")
    return tuple(out), tuple(dict.fromkeys(qs))


def _native_resolution(item: pystac.Item, key: str) -> float:
    """Pixel size of an asset, metres (degrees converted at the equator's 111 km)."""
    asset = item.assets[key]
    for fields in (asset.extra_fields, item.properties):
        t = fields.get("proj:transform")
        if t:
            size = abs(fix_transform(t)[0])
            return size * 111_320.0 if size < 1 else size
    bands = asset.extra_fields.get("raster:bands") or []
    if bands and isinstance(bands[0], dict) and bands[0].get("spatial_resolution"):
        return float(bands[0]["spatial_resolution"])
    return float(item.properties.get("gsd") or 10.0)


def _auto_block(n_time: int, n_pol: int, shape: tuple[int, int], budget: int
                ) -> tuple[int, int]:
    """Block sides ``(y, x)`` whose series fit ``budget``: as few blocks as the budget
    allows, cut evenly. Every block reads every scene's window, so the number of blocks,
    not their shape, sets how often a scene is opened (no 224 + 32 px remnants)."""
    ny, nx = shape
    pixels = max(256, int(budget / (_BYTES_PER_VALUE * max(n_time, 1) * n_pol)))
    need = math.ceil(ny * nx / pixels)
    options: list[tuple[int, float, int, int]] = []
    for rx in range(1, min(need, nx) + 1):
        ry = math.ceil(need / rx)
        while math.ceil(ny / ry) * math.ceil(nx / rx) > pixels and ry < ny:
            ry += 1
        by_, bx_ = math.ceil(ny / ry), math.ceil(nx / rx)
        if by_ * bx_ <= pixels:
            options.append((ry * rx, max(by_ / bx_, bx_ / by_), by_, bx_))
    if not options:  # a budget below one row of pixels: 16 x 16 px blocks
        return min(16, ny), min(16, nx)
    # Within 10 % of the fewest blocks, the squarest (a window touches fewest COG tiles).
    fewest = min(o[0] for o in options)
    _, _, by_, bx_ = min((o for o in options if o[0] <= 1.1 * fewest), key=lambda o: o[1])
    return by_, bx_


def sentinel1(
    geobox_or_aoi: GridLike,
    time: TimeLike,
    *,
    catalog: str | os.PathLike[str] = "planetary-computer",
    collections: Sequence[str] | str | None = None,
    orbit: str | None = None,
    stats: Sequence[str] = STATS,
    by: str | None = None,
    polarizations: Sequence[str] = ("vv", "vh"),
    resolution: float = 20.0,
    crs: Any = None,
    noise_floor_db: float = -35.0,
    chunks: dict[str, int] | None = None,
    task_memory: int = DEFAULT_TASK_MEMORY,
) -> xr.Dataset:
    """Temporal statistics of Sentinel-1 VV and VH backscatter on a grid (lazy).

    Parameters
    ----------
    geobox_or_aoi
        The target grid (a GeoBox, or a composite whose grid to use), or an area of
        interest (then ``resolution`` and ``crs`` make the grid).
    time
        The span, e.g. ``"2018/2022"`` (as :func:`cup4soil.search` takes it).
    catalog
        ``"planetary-computer"`` (``sentinel-1-rtc``: gamma0 RTC, signed), ``"cdse"``
        (``sentinel-1-global-mosaics``: monthly mosaics, 20 m), or the path/URL of a
        static catalog or STAC API whose items carry ``vv``/``vh`` assets on a map grid.
        Earth Search's ``sentinel-1-grd`` is refused: it is in SAR geometry, uncalibrated.
    collections
        The collection to search (default: the catalog's; ``sentinel-1-rtc`` for static
        catalogs).
    orbit
        ``"ascending"``, ``"descending"`` or None for both (flagged in the attributes).
    stats
        ``"mean"``, ``"std"`` and percentiles ``"pNN"`` (``"p05"``, ``"p95"``); with both
        p05 and p95 the range ``p95 - p05`` is added.
    by
        ``"year"``: statistics per calendar year, with a ``year`` dimension.
    polarizations
        ``("vv", "vh")``, or one of them (the ratio and RVI need both).
    resolution, crs
        The grid made from an AOI: pixel size (metres) and CRS (default: UTM zone).
    noise_floor_db
        Values below this backscatter, dB, are noise (GRD border noise, RTC fill) and
        masked, like nodata, values <= 0 and non-finite values.
    chunks
        Spatial block, e.g. ``{"y": 256, "x": 256}``; default: from the number of scenes and
        ``task_memory``.
    task_memory
        Memory budget of one block task, bytes.

    Returns
    -------
    xarray.Dataset
        For each polarisation ``P`` (``VV``, ``VH``): ``P_mean``, ``P_std``, ``P_pNN``
        (dB: ``10 log10`` of the statistic of linear power) and ``P_range`` (``P_p95 -
        P_p05``, dB); ``VHVV_ratio`` (dB, from the means), ``RVI`` (``4 VH / (VV + VH)`` of
        the means, 0..1+) and ``S1_count`` (valid observations of the first polarisation).
        float32, NaN where a pixel has no valid observation; lazy, on the target grid.

    Raises
    ------
    NoItemsError
        No scene over the grid and span (the message names the collection and the span).
    CollectionError
        A collection in SAR geometry (GRD, SLC).
    """
    geobox = as_geobox(geobox_or_aoi, resolution=resolution, crs=crs)
    pols = s1meta.check_polarizations(polarizations)
    orbit = s1meta.check_orbit(orbit)
    names, qs = _parse_stats(stats)
    if by not in (None, "year"):
        raise ParameterError(f"by={by!r} is unknown; use None or 'year'.")
    if not math.isfinite(float(noise_floor_db)):
        raise ParameterError(f"noise_floor_db={noise_floor_db} must be a finite dB value.")
    collection = resolve_collection(catalog, collections, s1meta.COLLECTIONS, "Sentinel-1")
    s1meta.refuse_collection(collection, named(catalog) or os.fspath(catalog))
    start, end = parse_time(time)
    items = find_items(geobox, time, catalog=catalog, collection=collection,
                       what="Sentinel-1")
    for it in items:
        s1meta.check_map_geometry(it)
    if orbit is not None:
        items = [it for it in items if s1meta.orbit_state(it) == orbit]
        if not items:
            raise NoItemsError(
                f"no {orbit} Sentinel-1 scene in {collection} over the grid between "
                f"{start:%Y-%m-%d} and {end:%Y-%m-%d}. Use orbit=None (both) or the other "
                "orbit direction.")
    plans, groups, times = _plan(items, pols, geobox)
    years = np.array([t.year for t in times])
    if by == "year":
        labels = np.unique(years)
        periods = tuple((int(np.flatnonzero(years == y)[0]), int(np.flatnonzero(years == y)[-1])
                         + 1) for y in labels)
    else:
        labels = np.array([], dtype=int)
        periods = ((0, len(times)),)
    floor = 10.0 ** (float(noise_floor_db) / 10.0)
    params = _Params(pols=pols, quantiles=qs, stats=names, floor=floor, periods=periods)
    out = _assemble(plans, groups, params, geobox, len(times), chunks, task_memory,
                    labels if by == "year" else None)
    orbits = sorted({s1meta.orbit_state(it) or "unknown" for it in items})
    span = {"time_start": f"{min(times):%Y-%m-%d}", "time_end": f"{max(times):%Y-%m-%d}"}
    src = source_label(collection, items)
    resampling = ", ".join(sorted({r for p in plans for r in _resampling_of(p)}))
    for name, var in out.data_vars.items():
        var.attrs.update(layer_attrs(
            units=_UNITS.get(str(name).split("_")[-1], "dB"), long_name=_long_name(str(name)),
            source=src, resampling=resampling, **span, orbit=orbit or "both"))
    out.attrs.update({
        "title": "Sentinel-1 backscatter statistics (cup4soil.covariates.sentinel1)",
        "collection": collection, "n_items": len(items), "n_scenes": len(times),
        "orbit": orbit or "both", "orbits_present": orbits, "stats": list(names),
        "statistics_scale": "computed in linear power, reported in dB",
        "std_convention": "sample (n - 1)", "noise_floor_db": float(noise_floor_db), **span,
        "by": by or "none",
    })
    return out


_UNITS = {"RVI": "1", "count": "1"}


def _long_name(name: str) -> str:
    if name == "RVI":
        return "radar vegetation index 4 VH / (VV + VH) of the temporal means"
    if name == "VHVV_ratio":
        return "VH / VV ratio of the temporal means, dB"
    if name == "S1_count":
        return "valid Sentinel-1 observations"
    pol, _, stat = name.partition("_")
    words = {"mean": "temporal mean", "std": "temporal standard deviation (n - 1)",
             "range": "p95 - p05 range"}
    label = words.get(stat) or f"{stat[1:]}th temporal percentile"
    return f"{pol} gamma0 backscatter, {label}"


def _resampling_of(plan: _read.ReadPlan) -> set[str]:
    return {str(plan.cfg[b].resampling) for b in plan.bands}


def _plan(items: list[pystac.Item], pols: tuple[str, ...], geobox: GeoBox
          ) -> tuple[list[_read.ReadPlan], list[_Group], list[Any]]:
    """One read plan per orbit direction (and scale), the series position of each step."""
    by_key: dict[tuple[str, bool, float | None], list[pystac.Item]] = {}
    res = pixel_metres(geobox)
    for it in items:
        keys = {p: s1meta.asset_key(it, p) for p in pols}
        db = s1meta.in_db(it, keys[pols[0]])
        nod = s1meta.nodata(it, keys[pols[0]])
        key = (s1meta.orbit_state(it) or "unknown", db, nod)
        by_key.setdefault(key, []).append(it)
    plans: list[_read.ReadPlan] = []
    steps: list[tuple[Any, int, int]] = []  # (time, plan, step)
    meta: list[tuple[bool, float | None]] = []
    for (_, db, nod), group in sorted(by_key.items(), key=lambda kv: kv[0][0]):
        norm = [normalised(it, {p: s1meta.asset_key(it, p) for p in pols}, data_type="float32",
                           nodata=nod) for it in group]
        native = _native_resolution(group[0], s1meta.asset_key(group[0], pols[0]))
        method = "average" if res > native * 1.01 else "nearest"
        plan = _read.make_plan(norm, pols, geobox, dict.fromkeys(pols, method),
                               np.zeros((len(norm), len(pols)), np.int32), _SafeRioDriver())
        k = len(plans)
        plans.append(plan)
        meta.append((db, nod))
        steps += [(t, k, i) for i, t in enumerate(plan.times)]
    steps.sort(key=lambda s: (s[0], s[1]))
    groups = []
    for k in range(len(plans)):
        db, nod = meta[k]
        groups.append(_Group(plan=k, steps=tuple((i, pos) for pos, (_, kk, i) in
                                                 enumerate(steps) if kk == k), db=db, nodata=nod))
    times = [t for t, _, _ in steps]
    return plans, groups, times


def _outputs(params: _Params) -> list[str]:
    out = []
    for pol in params.pols:
        p = pol.upper()
        for s in params.stats:
            out.append(f"{p}_{s}")
        if "p05" in params.stats and "p95" in params.stats:
            out.append(f"{p}_range")
    if set(params.pols) == {"vv", "vh"} and "mean" in params.stats:
        out += ["VHVV_ratio", "RVI"]
    out.append("S1_count")
    return out


def _assemble(plans: list[_read.ReadPlan], groups: list[_Group], params: _Params,
              geobox: GeoBox, n_time: int, chunks: dict[str, int] | None, task_memory: int,
              years: np.ndarray | None) -> xr.Dataset:
    ny, nx = geobox.shape.yx
    if chunks:
        unknown = set(chunks) - {"x", "y"}
        if unknown:
            raise ParameterError(f"chunks has unknown dimensions {sorted(unknown)}; use x, y.")
        by_, bx_ = int(chunks.get("y", ny)), int(chunks.get("x", nx))
        if by_ < 1 or bx_ < 1:
            raise ParameterError(f"chunks={chunks} must be positive pixel counts.")
    else:
        if task_memory <= 0:
            raise ParameterError(f"task_memory={task_memory} must be a positive number of bytes.")
        by_, bx_ = _auto_block(n_time, len(params.pols), (ny, nx), task_memory)
    # Dask's constructors are Any here: dask has no type hints.
    delayed: Any = dask.delayed  # type: ignore[attr-defined]
    from_delayed: Any = dsa.from_delayed
    concatenate: Any = dsa.concatenate
    keys = [_read.as_key(p) for p in plans]
    names = _outputs(params)
    n_period = len(params.periods)
    rows_out: dict[str, list[list[Any]]] = {n: [] for n in names}
    for y0 in range(0, ny, by_):
        y1 = min(ny, y0 + by_)
        row: dict[str, list[Any]] = {n: [] for n in names}
        for x0 in range(0, nx, bx_):
            x1 = min(nx, x0 + bx_)
            task = delayed(_block, pure=True)(
                tuple(keys), tuple(groups), (y0, y1), (x0, x1), n_time, params)
            for n in names:
                dtype = np.uint16 if n == "S1_count" else np.float32
                row[n].append(from_delayed(task[n], shape=(n_period, y1 - y0, x1 - x0),
                                               dtype=dtype))
        for n in names:
            rows_out[n].append(row[n])
    coords: dict[Any, Any] = dict(xr_coords(geobox, crs_coord_name="spatial_ref"))
    data_vars = {}
    for n in names:
        arr = concatenate([concatenate(r, axis=-1) for r in rows_out[n]], axis=-2)
        if years is None:
            data_vars[n] = xr.DataArray(arr[0], dims=("y", "x"), coords=coords)
        else:
            data_vars[n] = xr.DataArray(arr, dims=("year", "y", "x"),
                                        coords={**coords, "year": years.astype("int32")})
        data_vars[n].encoding["grid_mapping"] = "spatial_ref"
    return xr.Dataset(data_vars)


def _reads(plans: Sequence[_read.ReadPlan], groups: Sequence[_Group], rows: tuple[int, int],
           cols: tuple[int, int], pols: Sequence[str], threads: int, in_flight: int) -> Any:
    """Yield ``(group, series position, pol, pixels)`` for every step, reading with threads
    and at most ``in_flight`` windows in memory at a time."""
    work = [(g, pos, pol, plans[g.plan], i) for g in groups for i, pos in g.steps
            for pol in pols]
    with ThreadPoolExecutor(threads) as pool:
        pending: list[tuple[Any, Future[np.ndarray]]] = []
        for g, pos, pol, plan, i in work:
            pending.append(((g, pos, pol), pool.submit(plan.read, pol, i, rows, cols)))
            if len(pending) >= in_flight:
                head, fut = pending.pop(0)
                yield (*head, fut.result())
        for head, fut in pending:
            yield (*head, fut.result())


def _block(plans: tuple[_read.ReadPlan, ...], groups: tuple[_Group, ...], rows: tuple[int, int],
           cols: tuple[int, int], n_time: int, params: _Params) -> dict[str, np.ndarray]:
    """All statistics of one spatial block (NumPy inside; reads through the plans)."""
    h, w = rows[1] - rows[0], cols[1] - cols[0]
    series = {p: np.full((h * w, n_time), np.nan, dtype=np.float32) for p in params.pols}
    suspicious = dict.fromkeys(params.pols, 0)
    seen = dict.fromkeys(params.pols, 0)
    for g, pos, pol, raw in _reads(plans, groups, rows, cols, params.pols,
                                   params.read_threads, params.in_flight):
        v = raw.astype(np.float32, copy=True).ravel()
        bad = ~np.isfinite(v)
        if g.nodata is not None and math.isfinite(g.nodata):
            bad |= v == np.float32(g.nodata)
        if g.db:
            with np.errstate(over="ignore"):
                v = np.power(np.float32(10.0), v / np.float32(10.0))
        else:
            good = v[~bad]
            # Linear gamma0 of land is 1e-3..1; dB values are mostly negative, DNs large.
            suspicious[pol] += int(np.count_nonzero((good < 0) | (good > 10.0)))
            seen[pol] += good.size
        bad |= v <= params.floor
        v[bad] = np.nan
        series[pol][:, pos] = v
    for pol in params.pols:
        if seen[pol] >= 50 and suspicious[pol] > 0.5 * seen[pol]:
            raise LayerError(
                f"most {pol.upper()} values of the block at rows {rows[0]}..{rows[1]}, columns "
                f"{cols[0]}..{cols[1]} are negative or above 10: they look like dB or digital "
                "numbers, not gamma0 in linear power. If the items hold dB, say so in their "
                "raster metadata (raster:bands unit 'dB'); DNs need calibration first.")
    return _reduce(series, params, (h, w))


def reduce_series(series: dict[str, np.ndarray], *, stats: Sequence[str] = STATS,
                  noise_floor_db: float = -35.0) -> dict[str, np.ndarray]:
    """The statistics :func:`sentinel1` computes, of in-memory series (no I/O).

    ``series`` maps ``"vv"``/``"vh"`` to ``(time, y, x)`` gamma0 in linear power (NaN =
    no observation). For comparisons with other implementations (the benchmark).
    """
    names, qs = _parse_stats(stats)
    pols = tuple(series)
    n_t, h, w = next(iter(series.values())).shape
    params = _Params(pols=pols, quantiles=qs, stats=names,
                     floor=10.0 ** (noise_floor_db / 10.0), periods=((0, n_t),))
    flat = {}
    for pol, arr in series.items():
        v = np.asarray(arr, dtype=np.float32).reshape(n_t, h * w).T.copy()
        v[~(v > params.floor)] = np.nan
        flat[pol] = v
    return {k: v[0] for k, v in _reduce(flat, params, (h, w)).items()}


def _reduce(series: dict[str, np.ndarray], params: _Params, shape: tuple[int, int]
            ) -> dict[str, np.ndarray]:
    """The statistics of masked series ``(pixels, time)`` per polarisation."""
    h, w = shape
    out: dict[str, np.ndarray] = {}
    n_period = len(params.periods)
    q_index = {f"p{_fmt(q)}": i for i, q in enumerate(params.quantiles)}
    means: dict[str, np.ndarray] = {}
    for pol in params.pols:
        p = pol.upper()
        stacks: dict[str, list[np.ndarray]] = {}
        counts: list[np.ndarray] = []
        for t0, t1 in params.periods:
            # The block's series is not needed afterwards: sorted in place where it can be.
            count, mean, std, quant = _k.series_stats(series[pol][:, t0:t1],
                                                      np.array(params.quantiles), in_place=True)
            counts.append(count)
            for s in params.stats:
                if s == "mean":
                    vals = mean
                elif s == "std":
                    vals = std
                else:
                    vals = quant[:, q_index[s]]
                stacks.setdefault(s, []).append(vals)
            stacks.setdefault("_mean", []).append(mean)
        for s in params.stats:
            out[f"{p}_{s}"] = _k.to_db(np.stack(stacks[s])).reshape(n_period, h, w)
        if "p05" in params.stats and "p95" in params.stats:
            out[f"{p}_range"] = out[f"{p}_p95"] - out[f"{p}_p05"]
        means[pol] = np.stack(stacks["_mean"]).reshape(n_period, h, w)
        if pol == params.pols[0]:
            out["S1_count"] = np.minimum(np.stack(counts), 65535).astype(np.uint16).reshape(
                n_period, h, w)
    if set(params.pols) == {"vv", "vh"} and "mean" in params.stats:
        vv, vh = means["vv"], means["vh"]
        with np.errstate(divide="ignore", invalid="ignore"):
            out["VHVV_ratio"] = _k.to_db(vh / vv)
            out["RVI"] = (4.0 * vh / (vv + vh)).astype(np.float32)
    return out


def _fmt(q: float) -> str:
    """0.05 -> "05", 0.5 -> "50", 0.025 -> "2.5"."""
    pct = q * 100.0
    return f"{pct:02.0f}" if abs(pct - round(pct)) < 1e-9 else f"{pct:g}"
