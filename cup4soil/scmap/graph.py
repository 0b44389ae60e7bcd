"""SCMaP's Dask graph: one :func:`~cup4soil.scmap.engine.composite_block` task per spatial
block, its windows bound and its threshold cut here, the outputs tiled back together.

How a block reads depends on the cube (:func:`source_kind`):

- ``"plan"`` -- a cube straight from :func:`cup4soil.load_s2`: the tasks read their
  windows from the cube's read plan (one graph key shared by all blocks: the graph does not
  grow with the number of scenes). Blocks are as large as the memory budget allows with the
  B02 series in memory (fewer blocks, fewer file opens);
- ``"memory"`` -- a cube whose chunks are all in memory (NumPy-backed or persisted): the
  tasks slice them. Blocks of at most 256 px a side, so that the cores share the work;
- ``"graph"`` -- any other lazy cube: its graph is flattened once (all arrays together, so
  shared upstream tasks stay shared) and each block computes its window from it, all
  variables of a batch of whole time chunks in one call. Blocks are whole chunks, so no
  two blocks compute the same chunk; the cloud buffer's halo comes from the neighbouring
  chunks as packed cloud flags computed in this graph (:class:`engine.HaloStrips`), once
  per chunk. Each upstream chunk is thus computed at most twice: once for the halos of
  its neighbours, once by its own block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import dask.array as dsa
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.delayed import Delayed, delayed
from odc.geo.geobox import GeoBox

from ..cube import readplan as _read
from ..cube.windows import AnyArray, FlatGraph, PlanWindows, WindowSource, window_source
from ..errors import ParameterError
from ..sources.sentinel2 import SCL
from .engine import (
    BAND_PRODUCTS,
    BATCH_OVERHEAD,
    BYTES_PER_PIXEL,
    SERIES_BYTES_PER_SCENE,
    BlockWindows,
    HaloStrips,
    Params,
    cloud_bits,
    composite_block,
)
from .threshold import Threshold

__all__ = [
    "DEFAULT_TASK_MEMORY", "Planned", "auto_block", "block_graph", "cube_arrays", "flatten",
    "planned", "source_kind",
]

#: Default memory budget of one block task, bytes.
DEFAULT_TASK_MEMORY = 192 * 2**20
#: Largest block side for a cube in memory: more blocks than cores keep all cores busy.
MEMORY_BLOCK = 256
#: How a composite's blocks read the cube.
SourceKind = Literal["plan", "memory", "graph"]


def _names(cube: xr.Dataset, params: Params) -> list[str]:
    per_pixel = "sza" in cube.data_vars and cube["sza"].ndim == 3
    return [SCL, *params.bands, *(["sza"] if per_pixel else [])]


def cube_arrays(cube: xr.Dataset, params: Params) -> dict[str, AnyArray]:
    """The ``(time, y, x)`` arrays a composite reads: SCL, the bands, a per-pixel ``sza``;
    Dask arrays as they are, NumPy arrays unwrapped (never hashed)."""
    out: dict[str, AnyArray] = {}
    for n in _names(cube, params):
        data = cube[n].transpose("time", "y", "x").data
        out[n] = data if isinstance(data, dsa.Array) else np.asarray(data)
    return out


def flatten(cube: xr.Dataset, params: Params) -> dict[str, FlatGraph]:
    """The arrays' graphs, flattened together once for all blocks to cut their windows
    from (tasks the arrays share stay shared)."""
    return FlatGraph.of_many(cube_arrays(cube, params))


def source_kind(flat: dict[str, FlatGraph] | None, plan: Planned | None) -> SourceKind:
    """``"plan"``, ``"memory"`` (every chunk in memory) or ``"graph"``."""
    if plan is not None:
        return "plan"
    assert flat is not None
    return "memory" if all(f.materialised() for f in flat.values()) else "graph"


@dataclass(frozen=True)
class Planned:
    """The read plan behind every array a composite needs, as one graph key."""

    key: Delayed
    bands: tuple[tuple[str, str], ...]  # (cube variable, plan band)


def planned(cube: xr.Dataset, params: Params) -> Planned | None:
    """The cube's read plan if all its SCL and band arrays are exactly a plan's output."""
    found = {}
    for name, arr in cube_arrays(cube, params).items():
        if (hit := _read.plan_of(arr)) is None:
            return None
        found[name] = hit
    plans = {id(plan) for plan, _ in found.values()}
    if len(plans) != 1:
        return None
    plan = next(iter(found.values()))[0]
    return Planned(_read.as_key(plan), tuple((n, band) for n, (_, band) in found.items()))


def auto_block(n_time: int, shape: tuple[int, int], budget: int,
               kind: SourceKind = "plan") -> int:
    """Side of a square block whose task fits the memory budget.

    With the B02 series held in memory (``"plan"``, ``"memory"``) the side shrinks as the
    series grows, so the task's memory stays flat; blocks are otherwise as large as that
    allows (each block opens every file it reads). A ``"graph"`` block's series may spill
    to scratch (it must hold whole chunks), so its side depends on the budget alone.
    """
    per_pixel = float(BYTES_PER_PIXEL)
    if kind != "graph":
        per_pixel += 1.5 * SERIES_BYTES_PER_SCENE * max(n_time, 1)  # + room for records
    pixels = max(budget - BATCH_OVERHEAD, budget // 4) / per_pixel
    side = int(math.sqrt(max(pixels, 1)))
    side = max(16, min(2048, side - side % 16 or 16))
    if kind == "memory":
        side = min(side, MEMORY_BLOCK)
    return min(side, max(shape))


def _aligned_block(chunks: tuple[tuple[int, ...], ...], side: int) -> tuple[int, int]:
    """Block sides that follow the cube's spatial chunks (whole multiples or divisors of
    them), so each time slice of a block is read without slicing across chunks."""
    out = []
    for dim in chunks[1:]:
        c = dim[0]
        # Whole chunks when the budget allows, else an even split of one chunk.
        out.append(c * (side // c) if side >= c else -(-c // -(-c // side)))
    return out[0], out[1]


def _strips(scl: dsa.Array, rows: tuple[int, int], cols: tuple[int, int],
            halo_rows: tuple[int, int], halo_cols: tuple[int, int]) -> HaloStrips:
    """The packed cloud flags of a block's halo, lazily from the cube's SCL."""
    (y0, y1), (x0, x1), (ya, yb), (xa, xb) = rows, cols, halo_rows, halo_cols

    def part(r: tuple[int, int], c: tuple[int, int]) -> dsa.Array | None:
        if r[1] <= r[0] or c[1] <= c[0]:
            return None
        window = scl[:, r[0]:r[1], c[0]:c[1]].rechunk({1: -1, 2: -1})
        out: dsa.Array = window.map_blocks(
            cloud_bits, dtype=np.uint8,
            chunks=(window.chunks[0], (r[1] - r[0],), (-(-(c[1] - c[0]) // 8),)))
        return out

    return HaloStrips(top=part((ya, y0), (xa, xb)), bottom=part((y1, yb), (xa, xb)),
                      left=part((y0, y1), (xa, x0)), right=part((y0, y1), (x1, xb)))


def _windows(rows: tuple[int, int], cols: tuple[int, int], halo_rows: tuple[int, int],
             halo_cols: tuple[int, int], t: tuple[int, int], names: list[str],
             arrays: dict[str, AnyArray], flat: dict[str, FlatGraph] | None,
             plan: Planned | None, kind: SourceKind) -> BlockWindows:
    """The windows of one block: SCL with its halo (or the halo's cloud flags), the other
    arrays without."""
    (y0, y1), (x0, x1), (ya, yb), (xa, xb) = rows, cols, halo_rows, halo_cols
    halo = (y0 - ya, yb - y1, x0 - xa, xb - x1)
    scl: WindowSource
    bands: WindowSource
    if plan is not None:
        plan_band = dict(plan.bands)
        # The plan's key in a dataclass field: Dask binds the plan before the task runs.
        scl = PlanWindows(((SCL, plan_band[SCL]),), halo_rows, halo_cols, *t, plan=plan.key)
        bands = PlanWindows(tuple((n, plan_band[n]) for n in names if n != SCL), rows, cols,
                            *t, plan=plan.key)
        return BlockWindows(scl, bands, halo)
    assert flat is not None
    core = {n: (y0, y1, x0, x1, *t) for n in names if n != SCL}
    if kind == "memory":
        scl = window_source(flat, {SCL: (ya, yb, xa, xb, *t)})
        return BlockWindows(scl, window_source(flat, core), halo)
    # One source for everything a batch needs; the halo from the neighbours' strips.
    both = window_source(flat, {SCL: (y0, y1, x0, x1, *t), **core})
    strips = None
    if any(halo):
        scl_arr = arrays[SCL]
        assert isinstance(scl_arr, dsa.Array)
        strips = _strips(scl_arr, rows, cols, halo_rows, halo_cols)
    return BlockWindows(both, both, halo, strips)


def _layout(name: str, n_band: int, h: int, w: int) -> tuple[tuple[int, ...], np.dtype[Any]]:
    if name in BAND_PRODUCTS:
        return (n_band, h, w), np.dtype(np.float32)
    return (h, w), np.dtype({"VPC": np.uint16, "BSC": np.uint16, "BSF": np.float32,
                             "MASK": np.uint8}[name])


def _assemble(rows: list[list[dsa.Array]]) -> dsa.Array:
    """Tile per-block arrays (rows of blocks) back into one array over the last two axes."""
    out: dsa.Array = dsa.concatenate(  # type: ignore[no-untyped-call]
        [dsa.concatenate(row, axis=-1) for row in rows], axis=-2)  # type: ignore[no-untyped-call]
    return out


def block_graph(
    cube: xr.Dataset, threshold: Threshold, worldcover: xr.DataArray | None, params: Params,
    geobox: GeoBox, *, chunks: dict[str, int] | None, task_memory: int,
    flat: dict[str, FlatGraph] | None = None, plan: Planned | None = None, t0: int = 0,
) -> dict[str, dsa.Array]:
    """Each product of ``cube`` (a time range starting at ``t0`` of the cube that ``flat``
    or ``plan`` describe) as a Dask array tiled from one task per block."""
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    n_t = cube.sizes["time"]
    arrays = cube_arrays(cube, params)
    if flat is None and plan is None:
        flat = FlatGraph.of_many(arrays)
    kind = source_kind(flat, plan)
    if chunks:
        by_, bx_ = int(chunks.get("y", ny)), int(chunks.get("x", nx))
        if by_ < 1 or bx_ < 1:
            raise ParameterError(f"chunks={chunks} must be positive pixel counts.")
    else:
        scl = arrays[SCL]
        grid = scl.chunks if isinstance(scl, dsa.Array) else tuple((s,) for s in scl.shape)
        by_, bx_ = _aligned_block(grid, auto_block(n_t, (ny, nx), task_memory, kind))
    r = params.radius
    sza = (np.asarray(cube["sza"].values, dtype=np.float64)
           if "sza" in cube.coords and cube["sza"].dims == ("time",) else np.full(n_t, np.nan))
    names = _names(cube, params)
    t = (t0, t0 + n_t)
    n_band = len(params.bands)
    # Keys named here: hashing the arguments (in-memory windows, thresholds) would cost
    # more than a block's work.
    token = tokenize(
        kind, t, by_, bx_, params, task_memory, threshold,
        plan.key.key if plan is not None else None,
        tuple((n, f.name) for n, f in (flat or {}).items()),
        None if worldcover is None else (worldcover.data.name
                                         if isinstance(worldcover.data, dsa.Array)
                                         else worldcover.data))
    blocks: dict[str, list[list[dsa.Array]]] = {p: [] for p in params.products}
    for iy, (y0, y1) in enumerate(_read.splits(ny, by_)):
        row: dict[str, list[dsa.Array]] = {p: [] for p in params.products}
        for ix, (x0, x1) in enumerate(_read.splits(nx, bx_)):
            halo_rows, halo_cols = (max(0, y0 - r), min(ny, y1 + r)), (max(0, x0 - r),
                                                                      min(nx, x1 + r))
            windows = _windows((y0, y1), (x0, x1), halo_rows, halo_cols, t, names, arrays,
                               flat, plan, kind)
            block = geobox[y0:y1, x0:x1]
            wc = worldcover.data[y0:y1, x0:x1] if worldcover is not None else None
            task = delayed(composite_block)(
                windows, threshold.restrict(block), block, wc, sza, params, task_memory,
                dask_key_name=f"scmap-block-{token}-{iy}-{ix}")
            for p in params.products:
                shape, dtype = _layout(p, n_band, y1 - y0, x1 - x0)
                row[p].append(dsa.from_delayed(  # type: ignore[no-untyped-call]
                    task[p], shape=shape, dtype=dtype))
        for p in params.products:
            blocks[p].append(row[p])
    return {p: _assemble(blocks[p]) for p in params.products}
