"""Running a plan: every tile's composite into one mosaic on the EEA grid, resumable.

:func:`run` writes one Zarr mosaic spanning the plan's tiles (EPSG:3035, the plan's
resolution, north up). The mosaic is created once as a template (metadata only, nothing
computed); each tile is then one graph -- :func:`cup4soil.load_s2` on the tile's GeoBox and
:func:`cup4soil.scmap.composite` -- writing its own regions (blocks of whole Zarr chunks)
through :class:`cup4soil.products.mosaic.MosaicWriter`, which keeps the products stage's
rules (lease, manifests with checksums, nothing foreign touched, completion marker last).

- **Isolation and retries.** Tiles run several at once on a Dask client (one future per
  tile, :func:`distributed.as_completed`), else one after another on the local scheduler.
  A tile that fails is retried ``retries`` times, then recorded as failed with its
  (redacted) reason; the other tiles go on.
- **State.** ``tiles.json`` in the product's sidecar prefix (``out + ".cup4soil/"``),
  written whole after every tile: per tile ``done``/``failed``, attempts, reason.
- **Resume.** Running the same plan again skips tiles whose regions' manifests exist and
  whose checksums match (verified when the product is opened), rewrites the regions of a
  half-written tile, and retries failed tiles. The result is bit-identical to an
  uninterrupted run.
- **Completion.** Only when every tile is done: one STAC item per tile (with COG assets
  when ``cogs=`` is given) in a STAC collection (``out + ".cup4soil/stac/"``), the product's
  STAC item, then the completion marker.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from ..cube import load_s2
from ..errors import Cup4SoilError, ParameterError, TilingError, redact
from ..products.layout import filesystem, write_object
from ..products.mosaic import MosaicWriter
from ..products.regions import Region
from ..scmap import composite
from ..scmap.threshold import ThresholdLike
from ..sources import sentinel2 as s2
from ..sources.search import search
from . import grid
from .plan import Plan

__all__ = ["RunResult", "TileState", "run", "status"]

log = logging.getLogger(__name__)

#: Name of the tile state object in the product's sidecar prefix.
STATE = "tiles.json"
#: Folder of the STAC collection (one item per tile) in the sidecar prefix.
STAC_DIR = "stac"


@dataclass(frozen=True)
class TileState:
    """Where the tiles of a plan stand.

    Attributes
    ----------
    done, failed, left : tuple of str
        Tile codes written; failed after their retries; not written yet (failed ones are
        not in ``left``).
    reasons : dict
        Tile code -> why it failed (redacted).
    complete : bool
        The product is marked complete.
    running : int
        Tiles being computed (0 outside a run).
    """

    done: tuple[str, ...]
    failed: tuple[str, ...]
    left: tuple[str, ...]
    reasons: dict[str, str] = field(default_factory=dict)
    complete: bool = False
    running: int = 0

    def summary(self) -> str:
        """One line: counts, then the failed tiles with their reasons."""
        head = (f"{len(self.done)} done, {len(self.failed)} failed, {len(self.left)} left"
                f"{', complete' if self.complete else ''}")
        return "; ".join([head, *(f"{c}: {self.reasons.get(c, '')}" for c in self.failed)])


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` did.

    Attributes
    ----------
    url : str
        The mosaic (query strings removed).
    state : TileState
        Tiles done, failed and left after the run.
    computed : tuple of str
        Tiles computed by this call.
    seconds : float
        Wall time, seconds.
    """

    url: str
    state: TileState
    computed: tuple[str, ...]
    seconds: float

    @property
    def complete(self) -> bool:
        return self.state.complete


# --- the mosaic's layout -----------------------------------------------------------------

def plan_fingerprint(p: Plan) -> str:
    """Hash of what the mosaic depends on: tiles, items per tile, options."""
    h = hashlib.sha256()
    h.update(json.dumps({"size": p.size, "resolution": p.resolution, "time": p.time,
                         "chunk": p.chunk, "options": p.options,
                         "tiles": [[t.code, list(t.groups)] for t in p.tiles],
                         "groups": p.groups, "items": p.item_ids},
                        sort_keys=True).encode())
    return h.hexdigest()[:32]


def _mosaic_geobox(p: Plan) -> GeoBox:
    size = grid.SIZES[p.size]
    idx = np.array([grid.parse_code(t.code)[1:] for t in p.tiles])
    e0, n0 = idx.min(axis=0)
    e1, n1 = idx.max(axis=0) + 1
    return GeoBox.from_bbox((int(e0) * size, int(n0) * size, int(e1) * size, int(n1) * size),
                            grid.CRS, resolution=p.resolution)


def _structure(bands: Sequence[str], threshold: ThresholdLike) -> xr.Dataset:
    """The composite's variables (dims, dtypes, attributes) from a lazy 2 x 2 px cube: the
    same code path as a tile's, so the mosaic always matches what tiles produce."""
    gb = GeoBox.from_bbox((0, 0, 40, 40), grid.CRS, resolution=20)
    coords = xr_coords(gb, crs_coord_name="spatial_ref")
    times = np.array(["2020-01-01", "2020-02-01"], dtype="datetime64[ns]")
    cube = xr.Dataset({b: xr.DataArray(
        da.zeros((2, 2, 2), dtype="uint8" if b == s2.SCL else "uint16", chunks=(1, 2, 2)),
        dims=("time", "y", "x"), coords={**coords, "time": times}) for b in bands})
    cube = cube.assign_coords(sza=("time", [30.0, 30.0]))
    # the threshold's value does not change the structure: a number avoids fetching it
    del threshold
    return composite(cube, 0.1)


def _template(p: Plan, bands: Sequence[str], threshold: ThresholdLike,
              worldcover: str | None = None) -> xr.Dataset:
    gb = _mosaic_geobox(p)
    coords = xr_coords(gb, crs_coord_name="spatial_ref")
    ny, nx = gb.shape.yx
    tile_px = round(grid.SIZES[p.size] / p.resolution)
    proto = _structure(bands, threshold)
    out = {}
    for name, var in proto.data_vars.items():
        shape = tuple(ny if d == "y" else nx if d == "x" else var.sizes[d] for d in var.dims)
        chunks = tuple(tile_px if d in ("y", "x") else var.sizes[d] for d in var.dims)
        fill = np.nan if np.issubdtype(var.dtype, np.floating) else 0
        extra = {d: proto[d].values for d in var.dims if d not in ("y", "x")}
        out[name] = xr.DataArray(da.full(shape, fill, dtype=var.dtype,  # type: ignore[no-untyped-call]
                                                 chunks=chunks),
                                 dims=var.dims, coords={**coords, **extra}, attrs=var.attrs)
        out[name].encoding["grid_mapping"] = "spatial_ref"
    start, end = p.time.split("/")
    thr = threshold if isinstance(threshold, int | float | str) else "raster"
    return xr.Dataset(out, attrs={
        "title": f"SCMaP composites, EEA grid {p.size} tiles (cup4soil.tiling.run)",
        "time_start": f"{start}T00:00:00", "time_end": f"{end}T23:59:59",
        "tiling_plan": plan_fingerprint(p), "tile_size": p.size,
        "tiles": len(p.tiles), "threshold": redact(str(thr)),
        # part of the layout's fingerprint: a resume with another land-cover rule is refused
        "worldcover": redact(worldcover) if worldcover is not None else "none",
    })


def _regions_of(p: Plan, gb: GeoBox, regions: Sequence[Region]) -> dict[str, list[Region]]:
    """Tile code -> its regions (blocks) of the mosaic."""
    by_key = {r.key: r for r in regions}
    size = grid.SIZES[p.size]
    tile_px = round(size / p.resolution)
    per = tile_px // p.chunk
    top = gb.affine.f
    left = gb.affine.c
    out: dict[str, list[Region]] = {}
    for t in p.tiles:
        _, e, n = grid.parse_code(t.code)
        row0 = round((top - (n + 1) * size) / p.resolution) // p.chunk
        col0 = round((e * size - left) / p.resolution) // p.chunk
        out[t.code] = [by_key[f"{row0 + i}-{col0 + j}"] for i in range(per)
                       for j in range(per)]
    return out


# --- one tile ------------------------------------------------------------------------------

def _tile_tasks(p: Plan, code: str, items: Mapping[str, pystac.Item], writer: MosaicWriter,
                regions: Sequence[Region], bands: Sequence[str],
                threshold: ThresholdLike, worldcover: str | None = None) -> list[Any]:
    """The tile's graph: its cube, its composite, one write task per region left."""
    ids = p.tile_items(code)
    missing = [i for i in ids if i not in items]
    if missing:
        raise TilingError(f"tile {code}: {len(missing)} planned items are no longer in the "
                          f"catalog (e.g. {missing[0]}); make the plan again.")
    t = p.tile(code)
    cube = load_s2([items[i] for i in ids], bands=bands, geobox=t.geobox,
                   chunks={"y": p.chunk, "x": p.chunk})
    comp = composite(cube, threshold, chunks={"y": p.chunk, "x": p.chunk},
                     worldcover=worldcover, worldcover_catalog=_worldcover_catalog(p))
    tasks = []
    ty, tx = regions[0].ys.start, regions[0].xs.start
    for r in regions:
        sub = comp.isel(y=slice(r.ys.start - ty, r.ys.stop - ty),
                        x=slice(r.xs.start - tx, r.xs.stop - tx))
        tasks.append(writer.region_task(r, sub))
    return tasks


def _worldcover_catalog(p: Plan) -> str:
    """Where ``worldcover="auto"`` looks: the plan's catalog."""
    return p.catalog if p.catalog is not None else "planetary-computer"


def _check_worldcover(worldcover: Any, p: Plan) -> str | None:
    if worldcover is None:
        return None
    if isinstance(worldcover, os.PathLike):
        worldcover = os.fspath(worldcover)
    if not isinstance(worldcover, str) or not worldcover:
        raise ParameterError(f"worldcover={worldcover!r}: give 'auto' (ESA WorldCover from the "
                             "plan's catalog) or the path/URL of a WorldCover raster.")
    if worldcover == "auto" and p.catalog is None:
        raise ParameterError("worldcover='auto' searches the plan's catalog, but this plan was "
                             "made from items (no catalog): give the path/URL of a WorldCover "
                             "raster instead.")
    return worldcover


def _collect(*keys: str) -> list[str]:
    return list(keys)


def _reason(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, Cup4SoilError) else f"{type(exc).__name__}: {exc}"
    return redact(" ".join(text.split()))[:1000]


# --- state ---------------------------------------------------------------------------------

def _state_doc(p: Plan, done: set[str], failed: dict[str, str],
               attempts: Mapping[str, int]) -> dict[str, Any]:
    tiles = {}
    for t in p.tiles:
        s = "done" if t.code in done else "failed" if t.code in failed else "left"
        tiles[t.code] = {"state": s, "attempts": int(attempts.get(t.code, 0)),
                         **({"reason": failed[t.code]} if t.code in failed else {})}
    return {"plan": plan_fingerprint(p), "tiles": tiles,
            "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


class _Progress:
    """Tiles done/failed/running, rate and ETA, logged (INFO) after every tile."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.start_done = total, done
        self.t0 = time.perf_counter()

    def report(self, done: int, failed: int, running: int) -> str:
        dt_s = max(time.perf_counter() - self.t0, 1e-9)
        rate = (done - self.start_done) / dt_s * 3600.0
        left = self.total - done - failed
        eta = f"{left / rate * 3600.0:.0f} s" if rate > 0 else "unknown"
        line = (f"tiles: {done}/{self.total} done, {failed} failed, {running} running, "
                f"{rate:.1f} tiles/h, ETA {eta}")
        log.info(line)
        return line


# --- the run -------------------------------------------------------------------------------

def _items_for(p: Plan, items: Any) -> dict[str, pystac.Item]:
    if items is None:
        if p.catalog is None:
            raise ParameterError("the plan was made from given items (no catalog): pass the "
                                 "same items= to run().")
        found = search(p.aoi, p.time, catalog=p.catalog, collections=p.collections,
                       max_cloud_cover=p.max_cloud_cover)
    else:
        found = items
    out = {}
    for i in found:
        item = i if isinstance(i, pystac.Item) else pystac.Item.from_dict(dict(i))
        out[item.id] = item
    return out


def _client(client: Any) -> Any:
    if client is not None:
        return client
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def run(
    plan: Plan | str,
    *,
    out: str,
    client: Any = None,
    retries: int = 2,
    max_tiles_in_flight: int | None = None,
    items: Any = None,
    threshold: ThresholdLike = "dlr-europe",
    storage_options: Mapping[str, Any] | None = None,
    zarr_format: int = 3,
    cogs: str | None = None,
    on_tile: Callable[[str, str, TileState], None] | None = None,
    worldcover: str | os.PathLike[str] | None = None,
) -> RunResult:
    """Run a plan: each tile's SCMaP composite into one mosaic Zarr, resumable.

    Parameters
    ----------
    plan : Plan or str
        A :class:`~cup4soil.tiling.plan.Plan` or the path of its ``plan.json``.
    out : str
        The mosaic's URL (local path, ``s3://...``). Running again with the same plan
        resumes it.
    client : distributed.Client, optional
        Where tiles run (default: the current client, else the local threaded scheduler,
        one tile at a time).
    retries : int
        Extra attempts of a failing tile before it is recorded as failed.
    max_tiles_in_flight : int, optional
        Tiles computed at once on a client (default: the client's total threads).
    items : iterable of pystac.Item, optional
        The items (default: the plan's catalog searched again, once, over the plan's AOI).
    threshold
        SCMaP's PVIR2 threshold (see :func:`cup4soil.scmap.composite`).
    storage_options : dict, optional
        Passed to fsspec.
    zarr_format : {3, 2}
        Zarr format of the mosaic.
    cogs : str, optional
        A URL prefix: a COG per variable and tile is written to ``<cogs>/<tile code>/``
        and added to the tile's STAC item.
    on_tile : callable, optional
        Called ``on_tile(code, "done" | "failed", state)`` after each tile settles.
    worldcover : {"auto"} or str, optional
        SCMaP's land-cover exclusion (see :func:`cup4soil.scmap.composite`): ``"auto"``
        finds ESA WorldCover in the plan's catalog for each tile, a path/URL names a
        WorldCover raster; default: none. Recorded in the mosaic, so a resume with another
        choice is refused.

    Returns
    -------
    RunResult
    """
    t0 = time.perf_counter()
    p = Plan.load(plan) if isinstance(plan, str) else plan
    if not isinstance(retries, int) or retries < 0:
        raise ParameterError(f"retries={retries!r} must be a non-negative integer.")
    bands = list(p.options.get("bands") or s2.ALL_BANDS)
    wc = _check_worldcover(worldcover, p)
    template = _template(p, bands, threshold, wc)
    tile_px = round(grid.SIZES[p.size] / p.resolution)
    writer = MosaicWriter(template, out, region=p.chunk, chunks=p.chunk,
                          storage_options=storage_options, zarr_format=zarr_format)
    computed: list[str] = []
    try:
        gb = _mosaic_geobox(p)
        per_tile = _regions_of(p, gb, writer.regions)
        del tile_px
        done_keys = writer.done()
        done = {c for c, rs in per_tile.items() if all(r.key in done_keys for r in rs)}
        old = writer.read_json(STATE) or {}
        attempts: dict[str, int] = {c: 0 for c in per_tile}
        failed: dict[str, str] = {}
        todo = [t.code for t in p.tiles if t.code not in done]
        progress = _Progress(len(p.tiles), len(done))
        del old

        def settle(code: str, ok: bool, reason: str = "", running: int = 0) -> None:
            if ok:
                done.add(code)
                writer.mark([r.key for r in per_tile[code]])
                computed.append(code)
            else:
                failed[code] = reason
            writer.write_json(STATE, _state_doc(p, done, failed, attempts))
            progress.report(len(done), len(failed), running)
            if on_tile is not None:
                on_tile(code, "done" if ok else "failed", _state(p, done, failed, writer,
                                                                 running))

        if todo:
            item_map = _items_for(p, items)

            def tasks(code: str) -> list[Any]:
                have = writer.done(refresh=attempts[code] > 0)
                left = [r for r in per_tile[code] if r.key not in have] or per_tile[code]
                return _tile_tasks(p, code, item_map, writer, left, bands, threshold, wc)

            c = _client(client)
            if c is None:
                _run_local(todo, tasks, attempts, retries, settle)
            else:
                _run_client(c, todo, tasks, attempts, retries, settle, max_tiles_in_flight)
        writer.write_json(STATE, _state_doc(p, done, failed, attempts))
        if len(done) == len(p.tiles) and not writer.complete:
            _tile_collection(p, writer, out, storage_options, cogs, per_tile)
            writer.finish()
        state = _state(p, done, failed, writer, 0)
    finally:
        writer.close()
    return RunResult(redact(out), state, tuple(computed), time.perf_counter() - t0)


def _state(p: Plan, done: set[str], failed: Mapping[str, str], writer: MosaicWriter,
           running: int) -> TileState:
    codes = [t.code for t in p.tiles]
    return TileState(tuple(c for c in codes if c in done),
                     tuple(c for c in codes if c in failed and c not in done),
                     tuple(c for c in codes if c not in done and c not in failed),
                     {c: failed[c] for c in codes if c in failed and c not in done},
                     writer.complete, running)


def _run_local(todo: Sequence[str], tasks: Callable[[str], list[Any]],
               attempts: dict[str, int], retries: int,
               settle: Callable[..., None]) -> None:
    from dask.base import compute

    for code in todo:
        while True:
            try:
                compute(*tasks(code), scheduler="threads")  # type: ignore[no-untyped-call]
            except Exception as exc:
                attempts[code] += 1
                if attempts[code] > retries:
                    settle(code, False, _reason(exc))
                    break
                log.warning("tile %s failed (attempt %d of %d): %s", code, attempts[code],
                            retries + 1, _reason(exc))
                continue
            attempts[code] += 1
            settle(code, True)
            break


def _run_client(client: Any, todo: Sequence[str], tasks: Callable[[str], list[Any]],
                attempts: dict[str, int], retries: int, settle: Callable[..., None],
                limit: int | None) -> None:
    from dask.delayed import delayed
    from distributed import as_completed

    if limit is None:
        limit = max(1, sum(client.nthreads().values()))
    queue = list(todo)
    futures: dict[Any, str] = {}
    ac = as_completed()  # type: ignore[no-untyped-call]

    def submit(code: str) -> None:
        try:
            job = delayed(_collect, pure=False)(*tasks(code))
        except Exception as exc:  # the graph cannot even be built: no retry helps
            attempts[code] = retries + 1
            settle(code, False, _reason(exc), len(futures))
            return
        fut = client.compute(job)
        futures[fut] = code
        ac.add(fut)  # type: ignore[no-untyped-call]

    while queue and len(futures) < limit:
        submit(queue.pop(0))
    try:
        for fut in ac:
            code = futures.pop(fut)
            attempts[code] += 1
            if fut.status == "finished":
                settle(code, True, running=len(futures))
            else:
                try:  # "error": the task's exception; "cancelled" (a worker lost): its own
                    exc = fut.exception()
                except BaseException as lost:
                    exc = lost
                if attempts[code] <= retries:
                    log.warning("tile %s failed (attempt %d of %d): %s", code, attempts[code],
                                retries + 1, _reason(exc))
                    submit(code)
                    continue
                settle(code, False, _reason(exc), len(futures))
            fut.release()
            while queue and len(futures) < limit:
                submit(queue.pop(0))
    finally:
        for fut in futures:  # the driver stops (error, interrupt): tiles running are left
            fut.cancel()


# --- the collection ------------------------------------------------------------------------

def _tile_collection(p: Plan, writer: MosaicWriter, out: str,
                     storage_options: Mapping[str, Any] | None, cogs: str | None,
                     per_tile: Mapping[str, Sequence[Region]]) -> None:
    """One STAC item per tile (COG assets with ``cogs``), in a collection, in the sidecar."""
    from ..products.cf import spatial_dims
    from ..products.cog import to_cogs
    from ..products.stac import item_of, stac_collection

    ds = xr.open_zarr(out, zarr_format=writer.zarr_format, consolidated=False,
                      decode_coords="all",  # spatial_ref as a coordinate: COGs get the CRS
                      storage_options=None if "://" not in out else dict(storage_options
                                                                          or {}))
    ds = ds[sorted(map(str, ds.data_vars))]  # a store lists its arrays in no fixed order
    dims = spatial_dims(ds)
    items = []
    for t in p.tiles:
        rs = per_tile[t.code]
        ys = slice(min(r.ys.start for r in rs), max(r.ys.stop for r in rs))
        xs = slice(min(r.xs.start for r in rs), max(r.xs.stop for r in rs))
        part = ds.isel({dims[0]: ys, dims[1]: xs})
        hrefs = None
        if cogs is not None:
            hrefs = to_cogs(part, f"{cogs.rstrip('/')}/{t.code}",
                            storage_options=storage_options)
        item = item_of(part, out, dims, hrefs, zarr_format=writer.zarr_format)
        item.id = t.code
        item.properties.update({"eea_grid:code": t.code, "eea_grid:long_code": t.long_code,
                                "title": f"SCMaP composites, tile {t.code}"})
        items.append(item)
    coll = stac_collection(items, id="cup4soil-tiles",
                           description=f"SCMaP composites on {len(items)} EEA grid tiles "
                                       f"({p.size}, {p.resolution:g} m), {p.time}.")
    fs, _ = filesystem(out, storage_options)
    base = writer.sidecar_path(STAC_DIR)
    coll.normalize_hrefs(fs.unstrip_protocol(base) if "://" in out else base)
    for it in coll.get_items():
        write_object(fs, f"{base}/{it.id}/{it.id}.json",
                     json.dumps(it.to_dict(transform_hrefs=False)).encode())
    write_object(fs, f"{base}/collection.json",
                 json.dumps(coll.to_dict(transform_hrefs=False)).encode())


def collection_path(out: str) -> str:
    """Where :func:`run` writes the tiles' STAC collection for the mosaic at ``out``."""
    return f"{out.rstrip('/')}.cup4soil/{STAC_DIR}/collection.json"


# --- status ----------------------------------------------------------------------------------

def status(plan: Plan | str, *, out: str,
           storage_options: Mapping[str, Any] | None = None) -> TileState:
    """Which tiles of a plan are done, failed (with reasons) and left in the mosaic at ``out``
    (from the sidecar: manifests and the state file; no pixel is read)."""
    from ..products.layout import Sidecar, fresh, read_status

    p = Plan.load(plan) if isinstance(plan, str) else plan
    fs, root = filesystem(out, storage_options)
    side = Sidecar.beside(root)
    st = read_status(fs, side)
    fresh(fs, f"{side.prefix}/{STATE}")
    try:
        doc = json.loads(fs.cat_file(f"{side.prefix}/{STATE}"))
    except (FileNotFoundError, ValueError):
        doc = {}
    if doc and doc.get("plan") != plan_fingerprint(p):
        raise TilingError(f"the mosaic at {redact(out)} was written from another plan; give "
                          "the plan.json it was run with.")
    try:
        have = {str(x).rstrip("/").rsplit("/", 1)[-1].removesuffix(".json")
                for x in fs.ls(side.regions, detail=False, refresh=True)
                if str(x).endswith(".json")}
    except FileNotFoundError:
        have = set()
    gb = _mosaic_geobox(p)
    from ..products.regions import split

    regions = split(gb.shape.yx, (p.chunk, p.chunk))
    per_tile = _regions_of(p, gb, regions)
    done = {c for c, rs in per_tile.items() if all(r.key in have for r in rs)}
    tiles = doc.get("tiles", {}) if isinstance(doc, dict) else {}
    failed = {c: str(v.get("reason", "")) for c, v in tiles.items()
              if isinstance(v, dict) and v.get("state") == "failed" and c not in done}
    codes = [t.code for t in p.tiles]
    return TileState(tuple(c for c in codes if c in done),
                     tuple(c for c in codes if c in failed),
                     tuple(c for c in codes if c not in done and c not in failed),
                     failed, st.complete, 0)
