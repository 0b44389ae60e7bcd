"""Read plans: odc-stac's metadata, one lazy Dask layer per band, windows read by tasks.

odc-stac's graph builder materialises one task per chunk while the graph is built (five
years of a full Sentinel-2 tile in 1024 px chunks: 285 k tasks, 17 s on a 2-core machine,
``benchmarks/graph.py``). cup4soil keeps
odc-stac's item parsing, load configuration, solar-day grouping, rasterio reader and fuser,
but plans once per cube (:class:`ReadPlan`, a frozen object that travels to workers) and
describes each band as a single lazy ``Blockwise`` layer. Any window of any time step can
then be read straight from the plan, which is how SCMaP's block tasks read their input
without a cube graph inside them (:class:`cup4soil.cube.windows.PlanWindows`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dask.array as dsa
import numpy as np
import pystac
from dask.delayed import Delayed
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from odc.loader import resolve_fuser, resolve_load_cfg, resolve_src_nodata
from odc.loader.types import ReaderDriver
from odc.stac import parse_items

from .._compat import fuser_for_nodata, resolve_dst_fill_value
from ..errors import ParameterError
from ..sources import signing as _signing
from . import kernels as _kernels

__all__ = ["ReadPlan", "as_key", "lazy_band", "make_plan", "plan_of", "splits"]

#: Attribute set on a band's Dask layer: (plan, band). It marks arrays that are exactly a
#: plan's output (xarray/dask operations make new layers under new names, without it).
_MARK = "_cup4soil_read_plan"


@dataclass(frozen=True, eq=False)
class ReadPlan:
    """Everything a task needs to read any window of a planned cube.

    Attributes
    ----------
    geobox
        The cube's grid.
    bands
        Band names, in the order of ``offsets``' columns.
    cfg
        odc-loader load parameters per band (dtype, nodata, resampling, no overviews).
    srcs
        odc-loader sources per item (band name to ``RasterSource``).
    footprints
        Item footprints in the cube's CRS (None: unknown, always read).
    groups
        Item indices per time step (solar day), in odc-stac's fuse order.
    times
        Time coordinate per time step: the first item's nominal time (UTC, naive).
    offsets
        DN shift per item and band (``-1000`` for processing baseline >= 04.00).
    driver, env
        odc-loader reader driver and its captured GDAL/rasterio environment.
    token
        Deterministic identity of the plan (names the Dask layers).
    """

    geobox: GeoBox
    bands: tuple[str, ...]
    cfg: Mapping[str, Any]  # odc-loader's RasterLoadParams per band
    srcs: tuple[Mapping[str, Any], ...]
    footprints: tuple[Geometry | None, ...]
    groups: tuple[tuple[int, ...], ...]
    times: tuple[datetime, ...]
    offsets: np.ndarray
    driver: ReaderDriver
    env: Mapping[str, Any]
    token: str

    def __dask_tokenize__(self) -> tuple[str, str]:
        return ("cup4soil-read-plan", self.token)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(time, y, x) size of the planned cube, pixels."""
        ny, nx = self.geobox.shape.yx
        return len(self.groups), ny, nx

    def window(self, rows: tuple[int, int], cols: tuple[int, int]) -> tuple[GeoBox, Geometry]:
        """The grid of pixels ``[rows[0]:rows[1], cols[0]:cols[1]]`` and its extent: pass
        it to :meth:`read` for many reads of one window (made once, not per read)."""
        gbox = self.geobox[rows[0]:rows[1], cols[0]:cols[1]]
        return gbox, gbox.extent

    def read(self, band: str, t: int, rows: tuple[int, int], cols: tuple[int, int], *,
             out: np.ndarray | None = None,
             window: tuple[GeoBox, Geometry] | None = None) -> np.ndarray:
        """Pixels ``[t, rows[0]:rows[1], cols[0]:cols[1]]`` of ``band``, harmonised DN.

        Exactly what odc-stac's chunk reader does for that window: every item of the time
        step whose footprint touches the window is read (full resolution, the band's
        resampling), shifted by its own DN offset and fused first-valid-wins.

        ``out``: the array to write them into (the window's shape and the band's dtype),
        returned; ``window``: :meth:`window` of ``rows, cols``.
        """
        cfg = self.cfg[band]
        gbox, extent = self.window(rows, cols) if window is None else window
        dtype = np.dtype(cfg.dtype)
        fill = resolve_dst_fill_value(dtype, cfg, resolve_src_nodata(cfg.fill_value, cfg))
        if out is None:
            dst = np.full(gbox.shape.yx, fill, dtype=dtype)
        elif out.shape != tuple(gbox.shape.yx) or out.dtype != dtype:
            raise ParameterError(f"out= is {out.dtype} {out.shape}; the window of {band} is "
                                 f"{dtype} {tuple(gbox.shape.yx)}: pass an array of that "
                                 "shape and dtype, or none.")
        else:
            dst = out
            dst.fill(fill)
        fuser = resolve_fuser(cfg.fuser_fqn) if cfg.fuser_fqn else fuser_for_nodata(fill)
        # The default fuser fills where the window still holds the fill value: for the
        # first item read, that is everywhere, and a plain copy does the same.
        paste = not cfg.fuser_fqn
        b = self.bands.index(band)
        state = self.driver.new_load(self.geobox)
        with self.driver.restore_env(dict(self.env), state) as ctx:
            for i in self.groups[t]:
                fp = self.footprints[i]
                src = self.srcs[i].get(band)
                if src is None or (fp is not None and fp.disjoint(extent)):
                    continue
                # Signed URLs are renewed here, at read time, when near expiry.
                src = _signing.fresh_source(src)
                roi, pix = self.driver.open(src, ctx).read(cfg, gbox)
                pix = _kernels.shift_dn(pix, int(self.offsets[i, b]))
                if paste:
                    dst[roi] = pix
                    paste = False
                else:
                    fuser(dst[roi], pix)
        return dst


def make_plan(
    items: Sequence[pystac.Item], bands: Sequence[str], geobox: GeoBox,
    resampling: Mapping[str, str], offsets: np.ndarray, driver: ReaderDriver,
) -> ReadPlan:
    """Plan reads of ``bands`` of ``items`` onto ``geobox`` from metadata only.

    ``items`` carry exactly the ``bands`` as assets (``cube._normalise``); ``offsets`` is
    ``(len(items), len(bands))``.
    """
    parsed = list(parse_items(list(items), md_plugin=driver.md_parser))
    wanted = parsed[0].collection.resolve_bands(list(bands))
    cfg = resolve_load_cfg(wanted, dict(resampling), use_overviews=False, fail_on_error=True)
    srcs = tuple(p.resolve_bands(list(bands)) for p in parsed)
    footprints = tuple(p.safe_geometry(geobox.crs) for p in parsed)
    # odc-stac's groupby="solar_day": solar date at the grid's centre longitude, then
    # nominal time and id within a day (the fuse order).
    ((mid_lon, _),) = geobox.extent.centroid.to_crs("epsg:4326").points

    days = [p.solar_date_at(mid_lon).date() for p in parsed]
    order = sorted(range(len(parsed)),
                   key=lambda i: (days[i], parsed[i].nominal_datetime, parsed[i].id))
    groups = tuple(tuple(g) for _, g in itertools.groupby(order, key=days.__getitem__))
    times = tuple(parsed[g[0]].nominal_datetime.replace(tzinfo=None) for g in groups)
    digest = hashlib.sha256()
    for part in (
        repr(geobox), repr(sorted(cfg.items())), repr(groups),
        repr([sorted((k, v.uri) for k, v in s.items() if v is not None) for s in srcs]),
        np.ascontiguousarray(offsets, dtype=np.int32).tobytes(),
    ):
        digest.update(part if isinstance(part, bytes) else part.encode())
    return ReadPlan(
        geobox=geobox, bands=tuple(bands), cfg=cfg, srcs=srcs, footprints=footprints,
        groups=groups, times=times, offsets=np.asarray(offsets, dtype=np.int32),
        driver=driver, env=driver.capture_env(), token=digest.hexdigest()[:32],
    )


def _read_chunk(plan: ReadPlan, band: str, chunk: tuple[int, int],
                block_id: tuple[int, int, int] | None = None) -> np.ndarray:
    assert block_id is not None
    t, iy, ix = block_id
    _, ny, nx = plan.shape
    y0, x0 = iy * chunk[0], ix * chunk[1]
    rows, cols = (y0, min(ny, y0 + chunk[0])), (x0, min(nx, x0 + chunk[1]))
    return plan.read(band, t, rows, cols)[None]


def lazy_band(plan: ReadPlan, band: str, chunk: tuple[int, int], *,
              key: Delayed | None = None) -> dsa.Array:
    """``band`` of the planned cube as a ``(time, y, x)`` Dask array, chunks ``(1, *chunk)``.

    One ``Blockwise`` layer: building it costs the same for 10 or 10 000 time steps.
    ``key``: the plan's :func:`as_key`, shared by the bands of a cube.
    """
    n_t, ny, nx = plan.shape
    dtype = np.dtype(plan.cfg[band].dtype)
    chunks = ((1,) * n_t, tuple(b - a for a, b in splits(ny, chunk[0])),
              tuple(b - a for a, b in splits(nx, chunk[1])))
    name = f"{band.lower()}-{plan.token}"
    key = as_key(plan) if key is None else key
    arr: dsa.Array = dsa.map_blocks(  # type: ignore[no-untyped-call]
        _read_chunk, key, band, tuple(chunk), name=name, chunks=chunks, dtype=dtype,
        meta=np.empty((0, 0, 0), dtype))
    setattr(arr.dask.layers[arr.name], _MARK, (plan, band))
    return arr


def as_key(plan: ReadPlan) -> Delayed:
    """The plan as one graph key that tasks depend on: it is stored (and sent to workers)
    once, and Dask does not walk its hundreds of item sources (``dask.delayed`` would)."""
    from dask.highlevelgraph import HighLevelGraph
    from dask.task_spec import DataNode

    key = f"read-plan-{plan.token}"
    graph = HighLevelGraph.from_collections(key, {key: DataNode(key, plan)}, dependencies=())
    return Delayed(key, graph)  # type: ignore[no-untyped-call]


def plan_of(arr: object) -> tuple[ReadPlan, str] | None:
    """``(plan, band)`` if ``arr`` is exactly a band of a planned cube, else None."""
    if not isinstance(arr, dsa.Array):
        return None
    layer = arr.dask.layers.get(arr.name)
    found: tuple[ReadPlan, str] | None = getattr(layer, _MARK, None)
    if found is None or found[0].shape != arr.shape:
        return None
    return found


def splits(n: int, size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` cutting ``range(n)`` into pieces of ``size`` (the last one
    shorter): the chunks of a band, the blocks of a composite."""
    return [(i, min(i + size, n)) for i in range(0, n, size)]
