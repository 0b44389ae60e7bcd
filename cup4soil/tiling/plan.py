"""Planning a continental run: tiles, the items each reads, and what it will cost.

:func:`plan` searches once over the whole AOI, then assigns every item to the EEA grid
tiles its footprint meets (shapely, in EPSG:3035) and estimates per tile what a run will
do -- all from STAC metadata, never reading a pixel:

- **items / time steps**: items whose footprint meets the tile; time steps are their
  distinct solar days (what :func:`cup4soil.load_s2` makes of them);
- **bytes to read** (``bytes_read``): per item and band, the window of the asset over the
  part of the tile its footprint covers, at the overview level a reader picks for the
  output resolution (the coarsest level whose pixels are no larger than the output
  pixels; COG overviews halve the resolution per level), times the asset's sample size.
  Native pixel size and data type come from the asset's ``proj:transform``/``proj:shape``
  and ``raster:bands`` (else Sentinel-2's native GSD and uint16, uint8 for SCL). This is
  the *decoded* size: compressed COG bytes are smaller (DEFLATE: typically 1.5-3x), whole
  COG blocks make them somewhat larger at window edges;
- **pixel-observations**: tile pixels x time steps -- the unit of the SCMaP engine's work;
- **tasks**: blocks x (bands x time steps (reads) + :data:`SCMAP_TASKS_PER_BLOCK`) + one
  write task per block;
- **CPU-seconds / peak memory**: :data:`TILE_OVERHEAD_SECONDS` + pixel-observations x
  :data:`CPU_SECONDS_PER_PIXEL_OBS`;
  :data:`BASE_MEMORY` + :data:`TILE_MEMORY` + block pixel-observations x
  :data:`PEAK_BYTES_PER_BLOCK_PIXEL_OBS` (constants and where they were measured below);
- **output bytes**: tile pixels x the uncompressed bytes per pixel of the composite's
  products.

Items with the same footprint (one MGRS tile of one orbit, across dates) form a *group*;
footprints are projected and intersected once per group, which keeps planning all of EU27
under a minute. A :class:`Plan` is saved as ``plan.json`` (:meth:`Plan.save`) with a
schema version; :meth:`Plan.load` refuses other versions.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import shapely
from odc.geo.geom import Geometry
from shapely.geometry.base import BaseGeometry

from ..errors import AOIError, NoItemsError, ParameterError, TilingError
from ..sources import sentinel2 as s2
from ..sources.aoi import AOILike, TimeLike, parse_time
from ..sources.search import search
from . import grid

__all__ = [
    "BASE_MEMORY", "CPU_SECONDS_PER_PIXEL_OBS", "PEAK_BYTES_PER_BLOCK_PIXEL_OBS",
    "SCHEMA_VERSION", "SCMAP_TASKS_PER_BLOCK", "TILE_MEMORY", "TILE_OVERHEAD_SECONDS", "Plan",
    "Projection",
    "TilePlan", "plan",
]

#: Version of the ``plan.json`` schema written by this module.
SCHEMA_VERSION = 1

# Costs of one tile's composite (load_s2 + scmap.composite + write): a fixed cost per tile
# (graph building, scheduling, metadata, opening COGs for small windows) plus a cost per
# pixel-observation. CPU_SECONDS_PER_PIXEL_OBS is the SCMaP engine's steady throughput from
# COGs, 112 k pixel-observations/s per core (``python benchmarks/scmap.py``, docs/
# benchmarks.md). TILE_OVERHEAD_SECONDS, TILE_MEMORY and BASE_MEMORY were measured by
# ``python benchmarks/tiles.py`` (2026-11-27: 12 tiles of 1 km at 20 m, 18 time steps, on
# connect("local") with one worker of one thread, load average ~10 on 2 cores: an upper
# bound). PEAK_BYTES_PER_BLOCK_PIXEL_OBS is what a block of the engine keeps per scene
# (B02 as uint16 and two packed flags, docs/benchmarks.md "Memory flat in T").
#: CPU-seconds per pixel-observation (one output pixel of one time step, all bands).
CPU_SECONDS_PER_PIXEL_OBS = 1 / 112_000
#: Seconds per tile besides its pixel-observations.
TILE_OVERHEAD_SECONDS = 22.0
#: Peak memory per pixel-observation of one block (bytes).
PEAK_BYTES_PER_BLOCK_PIXEL_OBS = 2.25
#: Memory of a tile's task above an idle worker besides its block (read buffers, one
#: block's products), bytes.
TILE_MEMORY = 70 * 2**20
#: Memory of an idle worker (interpreter, libraries), bytes.
BASE_MEMORY = 320 * 2**20
#: Tasks of the SCMaP engine per block besides the reads (passes, assembly).
SCMAP_TASKS_PER_BLOCK = 6
#: Uncompressed bytes per output pixel of the default products, per band count (float32
#: SRC, SRC_STD, SRC_CI95, MREF, MREF_STD per band; VPC, BSC uint16; BSF float32; MASK
#: uint8) -- checked against scmap.composite's dtypes by the tests.
_BAND_PRODUCTS = 5 * 4
_PIXEL_PRODUCTS = 2 + 2 + 4 + 1


def output_bytes_per_pixel(n_bands: int = len(s2.REFLECTANCE_BANDS)) -> int:
    """Uncompressed bytes per pixel of the default composite products."""
    return _BAND_PRODUCTS * n_bands + _PIXEL_PRODUCTS


@dataclass(frozen=True)
class TilePlan:
    """What a run does for one tile (estimates from metadata; see the module doc).

    Attributes
    ----------
    code, long_code : str
        The cell's short and INSPIRE codes.
    groups : tuple of int
        Indices into :attr:`Plan.groups` of the footprints meeting the tile.
    items : int
        Items read.
    times : int
        Time steps (solar days).
    bytes_read : int
        Decoded bytes read from the assets, bytes.
    pixel_observations : int
        Tile pixels x time steps.
    tasks : int
        Dask tasks of the tile's graph (estimate).
    cpu_seconds : float
        Estimated CPU time, seconds.
    memory_bytes : int
        Estimated peak memory of one worker thread, bytes.
    output_bytes : int
        Uncompressed bytes of the tile's products.
    """

    code: str
    long_code: str
    groups: tuple[int, ...]
    items: int
    times: int
    bytes_read: int
    pixel_observations: int
    tasks: int
    cpu_seconds: float
    memory_bytes: int
    output_bytes: int


_TOTALS = ("items", "times", "bytes_read", "pixel_observations", "tasks", "cpu_seconds",
           "output_bytes")


@dataclass(frozen=True)
class Projection:
    """A run's duration on a cluster (from the plan's CPU estimate).

    Attributes
    ----------
    workers, threads : int
        Cluster size: workers x threads per worker.
    wall_seconds : float
        Estimated wall time, seconds: total CPU over the threads, but at least the longest
        tile (tiles are the units of work), rounded up to whole waves of tiles.
    cpu_hours : float
        Total CPU, hours.
    worker_memory_bytes : int
        Memory a worker needs: ``threads`` x the largest per-thread peak.
    output_bytes : int
        Uncompressed product size, bytes.
    """

    workers: int
    threads: int
    wall_seconds: float
    cpu_hours: float
    worker_memory_bytes: int
    output_bytes: int


@dataclass(frozen=True)
class Plan:
    """A continental run, planned: tiles, their items, their estimated cost.

    Attributes
    ----------
    aoi : dict
        The AOI as a GeoJSON geometry, lon/lat.
    time : str
        ``"start/end"`` (ISO dates).
    size : str
        Cell size (``"10km"``).
    resolution : float
        Pixel size, metres.
    catalog : str or None
        Where the items were searched (None: items were given to :func:`plan`).
    collections : list of str or None
        Collections searched.
    max_cloud_cover : float or None
        Cloud cover limit of the search, percent.
    chunk : int
        Block and Zarr chunk size, pixels (divides the tile size).
    item_ids : list of str
        The items found, in search order.
    groups : list of list of int
        Items (indices into ``item_ids``) sharing one footprint.
    tiles : list of TilePlan
        Per-tile plans, south-west first.
    created : str
        When the plan was made (ISO, UTC).
    """

    aoi: dict[str, Any]
    time: str
    size: str
    resolution: float
    catalog: str | None
    collections: list[str] | None
    max_cloud_cover: float | None
    chunk: int
    item_ids: list[str]
    groups: list[list[int]]
    tiles: list[TilePlan]
    created: str = ""
    version: int = SCHEMA_VERSION
    options: dict[str, Any] = field(default_factory=dict)

    # --- figures ---------------------------------------------------------------------

    @property
    def totals(self) -> dict[str, float]:
        """Sums of the per-tile figures (``items`` counts item reads: an item meeting two
        tiles counts twice), plus ``tiles`` and the largest ``memory_bytes``."""
        out: dict[str, float] = {k: 0 for k in _TOTALS}
        for t in self.tiles:
            for k in _TOTALS:
                out[k] += getattr(t, k)
        out["tiles"] = len(self.tiles)
        out["memory_bytes"] = max((t.memory_bytes for t in self.tiles), default=0)
        return out

    def projection(self, *, workers: int = 1, threads: int = 1) -> Projection:
        """Estimated wall time and memory on ``workers`` x ``threads``."""
        if workers < 1 or threads < 1:
            raise ParameterError(f"workers={workers}, threads={threads}: both must be >= 1.")
        slots = workers * threads
        cpu = sorted((t.cpu_seconds for t in self.tiles), reverse=True)
        # Longest tiles first onto the least loaded slot (LPT): a fair bound for tile waves.
        load = np.zeros(slots)
        for c in cpu:
            load[int(np.argmin(load))] += c
        peak = max((t.memory_bytes for t in self.tiles), default=0)
        return Projection(workers, threads, float(load.max(initial=0.0)),
                          float(sum(cpu)) / 3600.0, int(threads * peak),
                          int(sum(t.output_bytes for t in self.tiles)))

    def tile_items(self, code: str) -> list[str]:
        """Ids of the items tile ``code`` reads."""
        for t in self.tiles:
            if t.code == code:
                idx = sorted({i for g in t.groups for i in self.groups[g]})
                return [self.item_ids[i] for i in idx]
        raise ParameterError(f"tile {code} is not in the plan.")

    def tile(self, code: str) -> grid.Tile:
        """The :class:`~cup4soil.tiling.grid.Tile` (codes and GeoBox) of ``code``."""
        return grid.tile(code, resolution=self.resolution)

    def summary(self) -> str:
        """A few lines for people: tiles, items, bytes, CPU, output."""
        t = self.totals
        return (f"{int(t['tiles'])} tiles of {self.size} at {self.resolution:g} m, "
                f"{len(self.item_ids)} items ({int(t['items'])} item reads), "
                f"{t['bytes_read'] / 1e9:.3g} GB to read (decoded), "
                f"{t['pixel_observations']:.3g} pixel-observations, {int(t['tasks'])} tasks, "
                f"{t['cpu_seconds'] / 3600:.3g} CPU-hours, peak {t['memory_bytes'] / 2**20:.0f} "
                f"MiB per thread, {t['output_bytes'] / 1e9:.3g} GB output (uncompressed)")

    # --- JSON ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (``version`` first)."""
        d = asdict(self)
        d["tiles"] = [{**asdict(t), "groups": list(t.groups)} for t in self.tiles]
        d["totals"] = self.totals
        return {"version": d.pop("version"), **d}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """A plan from :meth:`to_dict`'s data; refuses other schema versions."""
        version = data.get("version") if isinstance(data, Mapping) else None
        if version != SCHEMA_VERSION:
            raise TilingError(f"the plan has schema version {version!r}; this cup4soil reads "
                              f"version {SCHEMA_VERSION}. Make the plan again with "
                              "'cup4soil plan' (or the cup4soil version that wrote it).")
        try:
            tiles = [TilePlan(**{**t, "groups": tuple(t["groups"])}) for t in data["tiles"]]
            fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            return cls(**{**fields, "tiles": tiles})
        except (KeyError, TypeError) as exc:
            raise TilingError(f"the plan is incomplete or malformed ({type(exc).__name__}: "
                              f"{exc}); make it again with 'cup4soil plan'.") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``plan.json`` (whole: a temporary file, then renamed)."""
        p = Path(path)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, p)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Plan:
        """Read a ``plan.json`` written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TilingError(f"no plan at {path}; make one with 'cup4soil plan'.") from None
        except ValueError as exc:
            raise TilingError(f"{path} is not a plan (not JSON: {exc}).") from None
        return cls.from_dict(data)


# --- planning ----------------------------------------------------------------------------

def _as_items(items: Iterable[pystac.Item | Mapping[str, Any]]) -> list[pystac.Item]:
    return [i if isinstance(i, pystac.Item) else pystac.Item.from_dict(dict(i)) for i in items]


def _asset_cost(item: pystac.Item, band: str, resolution: float) -> float:
    """Decoded bytes per square metre read from ``band``'s asset at ``resolution``."""
    try:
        asset = item.assets[s2.asset_key(item, band)]
    except Exception:  # a band an item lacks is not read
        return 0.0
    native = s2.NATIVE_GSD.get(band, 10.0)
    transform = asset.extra_fields.get("proj:transform") or item.properties.get(
        "proj:transform")
    if transform and len(transform) >= 6 and transform[0]:
        native = abs(float(transform[0]))
    elif asset.extra_fields.get("gsd"):
        native = float(asset.extra_fields["gsd"])
    dtype = "uint8" if band == s2.SCL else "uint16"
    bands = asset.extra_fields.get("raster:bands") or []
    if bands and isinstance(bands[0], Mapping) and bands[0].get("data_type"):
        dtype = str(bands[0]["data_type"])
    try:
        size = int(np.dtype(dtype).itemsize)
    except TypeError:
        size = 2
    level = max(0, math.floor(math.log2(max(resolution / native, 1.0)) + 1e-9))
    pixel = native * float(2**level)
    return float(size) / (pixel * pixel)


def _solar_day(item: pystac.Item, lon: float) -> int:
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise ParameterError(f"item {item.id} has no datetime; cannot plan its time step.")
    local = when + dt.timedelta(hours=lon / 15.0)
    return local.toordinal()


def _groups(items: Sequence[pystac.Item]) -> tuple[list[list[int]], list[BaseGeometry]]:
    """Items by footprint (identical GeoJSON geometry), in first-seen order."""
    by_key: dict[str, list[int]] = {}
    shapes: dict[str, BaseGeometry] = {}
    for i, item in enumerate(items):
        if not item.geometry:
            raise AOIError(f"item {item.id} has no geometry; cannot assign it to tiles.")
        key = json.dumps(item.geometry, sort_keys=True)
        if key not in by_key:
            by_key[key] = []
            shapes[key] = shapely.geometry.shape(item.geometry)
        by_key[key].append(i)
    return list(by_key.values()), list(shapes.values())


def _check_chunk(size_m: int, resolution: float, chunk: int | None) -> int:
    n = round(size_m / resolution)
    if chunk is None:
        # the largest divisor of the tile side not above 1024 px
        return max(d for d in range(1, min(n, 1024) + 1) if n % d == 0)
    if not isinstance(chunk, int) or chunk < 1 or n % chunk:
        raise ParameterError(f"chunk={chunk!r} must be a positive number of pixels dividing "
                             f"the tile side ({n} px), so tiles are whole Zarr chunks.")
    return chunk


def plan(
    aoi: AOILike,
    time: TimeLike,
    *,
    size: str = "10km",
    resolution: float = 20,
    catalog: str | os.PathLike[str] | None = "planetary-computer",
    collections: Sequence[str] | str | None = None,
    max_cloud_cover: float | None = 80.0,
    items: Iterable[pystac.Item | Mapping[str, Any]] | None = None,
    chunk: int | None = None,
    bands: Sequence[str] | None = None,
) -> Plan:
    """Plan a continental run over the EEA grid tiles covering an AOI (reads no pixel).

    Parameters
    ----------
    aoi
        What :func:`cup4soil.tiling.grid.tiles` takes: a lon/lat bbox, GeoJSON, a file,
        or an EU27 country (its bounding box).
    time
        Time range, as :func:`cup4soil.search` takes it (``"2018/2022"``).
    size : {"1km", "10km", "100km"}
        Tile size.
    resolution : float
        Pixel size, metres; must divide the tile size.
    catalog, collections, max_cloud_cover
        Passed to :func:`cup4soil.search`, called once over the whole AOI.
    items : iterable of pystac.Item, optional
        Items to plan with instead of searching (``catalog`` is then recorded as None and
        the run needs the same items).
    chunk : int, optional
        Block and Zarr chunk size, pixels; must divide the tile side. Default: the largest
        divisor up to 1024.
    bands : sequence of str, optional
        Bands read (default: the ten reflectance bands and SCL).

    Returns
    -------
    Plan

    Raises
    ------
    NoItemsError
        No item meets any tile.
    """
    size_m = grid._size_m(size)
    size_name = grid._NAMES[size_m]
    grid.grid_spec(size_m, resolution=resolution)  # refuses a resolution not dividing it
    res = float(resolution)
    block = _check_chunk(size_m, res, chunk)
    canon = s2.check_bands(bands)
    start, end = parse_time(time)
    time_text = f"{start.date().isoformat()}/{end.date().isoformat()}"
    geom = grid.aoi_geometry(aoi)
    cols = [collections] if isinstance(collections, str) else (
        list(collections) if collections else None)
    if items is None:
        if catalog is None:
            raise ParameterError("give a catalog to search, or items=.")
        found = list(search(geom, (start, end), catalog=catalog, collections=cols,
                            max_cloud_cover=max_cloud_cover))
        catalog_text: str | None = str(catalog)
    else:
        found, catalog_text = _as_items(items), None
    if not found:
        raise NoItemsError(f"no items over the AOI in {time_text}; widen the time range or "
                           "check the catalog.")
    aoi3035 = grid._in_3035(geom)
    cells = list(grid.cover(aoi3035, size_m))
    if not cells:
        raise AOIError("the AOI covers no tile of the EEA grid.")
    groups, shapes = _groups(found)
    # footprints into EPSG:3035 once per group, densified (LAEA bends lon/lat edges)
    feet = [Geometry(s, "EPSG:4326").to_crs(grid.CRS, resolution=0.05).geom for s in shapes]
    # per cell: (group, covered area m2)
    per_cell: dict[int, list[tuple[int, float]]] = defaultdict(list)
    es = np.array([c[0] for c in cells])
    ns = np.array([c[1] for c in cells])
    boxes = shapely.box(es * size_m, ns * size_m, (es + 1) * size_m, (ns + 1) * size_m)
    tree = shapely.STRtree(boxes)
    for g, foot in enumerate(feet):
        hits = tree.query(foot, predicate="intersects")
        if hits.size == 0:
            continue
        areas = shapely.area(shapely.intersection(boxes[hits], foot))
        for h, a in zip(hits.tolist(), areas.tolist(), strict=True):
            if a > 0:
                per_cell[h].append((g, a))
    # per group: the first item's costs per m2 (one footprint = one product type)
    cost = [sum(_asset_cost(found[grp[0]], b, res) for b in canon) for grp in groups]
    lons = [s.centroid.x for s in shapes]
    days = [np.unique([_solar_day(found[i], lons[g]) for i in grp])
            for g, grp in enumerate(groups)]
    n = round(size_m / res)
    tile_px = n * n
    n_blocks = (n // block) ** 2
    out_px = output_bytes_per_pixel(sum(b != s2.SCL for b in canon))
    times_of: dict[tuple[int, ...], int] = {}
    tiles: list[TilePlan] = []
    for k, (e, nn) in enumerate(cells):
        hits = per_cell.get(k)
        if not hits:
            continue  # no item meets the tile: nothing to composite
        key = tuple(sorted(g for g, _ in hits))
        if key not in times_of:
            times_of[key] = int(np.unique(np.concatenate([days[g] for g in key])).size)
        n_t = times_of[key]
        n_items = sum(len(groups[g]) for g in key)
        bytes_read = sum(len(groups[g]) * cost[g] * a for g, a in hits)
        pix_obs = tile_px * n_t
        tasks = n_blocks * (len(canon) * n_t + SCMAP_TASKS_PER_BLOCK + 1)
        tiles.append(TilePlan(
            code=grid.short_code(size_m, e, nn), long_code=grid.long_code(size_m, e, nn),
            groups=key, items=n_items, times=n_t, bytes_read=round(bytes_read),
            pixel_observations=pix_obs, tasks=tasks,
            cpu_seconds=TILE_OVERHEAD_SECONDS + pix_obs * CPU_SECONDS_PER_PIXEL_OBS,
            memory_bytes=int(BASE_MEMORY + TILE_MEMORY + PEAK_BYTES_PER_BLOCK_PIXEL_OBS * block
                             * block * n_t),
            output_bytes=tile_px * out_px))
    if not tiles:
        raise NoItemsError(f"{len(found)} items found, but none meets a tile of the AOI; "
                           "check the AOI and the catalog.")
    aoi_json = json.loads(json.dumps(shapely.geometry.mapping(geom)))  # tuples as lists
    return Plan(aoi=aoi_json, time=time_text, size=size_name,
                resolution=res, catalog=catalog_text, collections=cols,
                max_cloud_cover=max_cloud_cover, chunk=block,
                item_ids=[i.id for i in found], groups=groups, tiles=tiles,
                created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                options={"bands": list(canon)})


def with_tiles(p: Plan, codes: Iterable[str]) -> Plan:
    """A plan restricted to some of its tiles (e.g. to rerun or test a few)."""
    keep = set(codes)
    missing = keep - {t.code for t in p.tiles}
    if missing:
        raise ParameterError(f"tiles {sorted(missing)} are not in the plan.")
    return replace(p, tiles=[t for t in p.tiles if t.code in keep])
