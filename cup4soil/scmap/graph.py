"""SCMaP's Dask graph: one :func:`~cup4soil.scmap.engine.composite_block` task per spatial
block, its windows bound and its threshold cut here, the outputs tiled back together.

The block size comes from the number of scenes and a memory budget, so peak memory per
task stays flat as the series grows; blocks follow the cube's chunks. A cube straight from
:func:`cup4soil.load_s2` is read through its read plan (one graph key shared by all blocks:
the graph does not grow with the number of scenes); any other cube through its own graph,
flattened once, each block culling its window from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr
from dask.delayed import Delayed, delayed
from odc.geo.geobox import GeoBox

from ..cube import readplan as _read
from ..cube.windows import FlatGraph, GraphWindows, PlanWindows, WindowSource, read_bytes
from ..errors import ParameterError
from ..sources.sentinel2 import SCL
from .engine import BAND_PRODUCTS, BlockWindows, Params, composite_block
from .threshold import Threshold

__all__ = [
    "DEFAULT_TASK_MEMORY", "Planned", "auto_block", "block_graph", "cube_arrays", "flatten",
    "planned",
]

#: Default memory budget of one block task, bytes.
DEFAULT_TASK_MEMORY = 192 * 2**20
#: Bytes held per pixel and scene through a block task: B02 (2) and two packed flags
#: (1/4), with headroom. The sorts run strip by strip (:func:`engine.nmad_filter`).
BYTES_PER_PIXEL_SCENE = 3


def _names(cube: xr.Dataset, params: Params) -> list[str]:
    per_pixel = "sza" in cube.data_vars and cube["sza"].ndim == 3
    return [SCL, *params.bands, *(["sza"] if per_pixel else [])]


def cube_arrays(cube: xr.Dataset, params: Params) -> dict[str, dsa.Array]:
    """The ``(time, y, x)`` Dask arrays a composite reads: SCL, the bands, a per-pixel
    ``sza`` (NumPy-backed variables are wrapped, one chunk per time step)."""
    arrays = {n: cube[n].transpose("time", "y", "x").data for n in _names(cube, params)}
    return {n: (a if isinstance(a, dsa.Array)
                else dsa.from_array(a, chunks=(1, -1, -1)))  # type: ignore[no-untyped-call]
            for n, a in arrays.items()}


def flatten(cube: xr.Dataset, params: Params) -> dict[str, FlatGraph]:
    """Each array's graph, flattened once for all blocks to cut their windows from."""
    return {n: FlatGraph.of(a) for n, a in cube_arrays(cube, params).items()}


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


def auto_block(n_time: int, shape: tuple[int, int], budget: int) -> int:
    """Side of a square block whose first pass fits the memory budget. Blocks are not made
    smaller than that for parallelism: each block reads every scene twice, so more blocks
    mean more file opens; a block reads its slices with threads instead."""
    pixels = budget / (BYTES_PER_PIXEL_SCENE * max(n_time, 1))
    side = int(math.sqrt(max(pixels, 1)))
    side = max(16, min(2048, side - side % 16 or 16))
    return min(side, max(shape))


def _aligned_block(arr: dsa.Array, side: int) -> tuple[int, int]:
    """Block sides that follow the cube's spatial chunks (whole multiples or divisors of
    them), so each time slice of a block is read without slicing across chunks."""
    out = []
    for chunks in arr.chunks[1:]:
        c = chunks[0]
        # Whole chunks when the budget allows, else an even split of one chunk.
        out.append(c * (side // c) if side >= c else -(-c // -(-c // side)))
    return out[0], out[1]


def _windows(rows: tuple[int, int], cols: tuple[int, int], halo_rows: tuple[int, int],
             halo_cols: tuple[int, int], t: tuple[int, int], names: list[str],
             arrays: dict[str, dsa.Array], flat: dict[str, FlatGraph] | None,
             plan: Planned | None) -> BlockWindows:
    """The windows of one block: SCL with its halo, the other arrays without."""
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
    else:
        assert flat is not None
        scl = GraphWindows({SCL: flat[SCL].window(ya, yb, xa, xb, *t)},
                           slice_bytes={SCL: read_bytes(arrays[SCL], halo_rows, halo_cols)})
        core = {n: flat[n].window(y0, y1, x0, x1, *t) for n in names if n != SCL}
        bands = GraphWindows(core, slice_bytes={
            n: read_bytes(arrays[n], rows, cols) for n in core})
    return BlockWindows(scl, bands, halo)


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
    if chunks:
        by_, bx_ = int(chunks.get("y", ny)), int(chunks.get("x", nx))
        if by_ < 1 or bx_ < 1:
            raise ParameterError(f"chunks={chunks} must be positive pixel counts.")
    else:
        by_, bx_ = _aligned_block(arrays[SCL], auto_block(n_t, (ny, nx), task_memory))
    r = params.radius
    sza = (np.asarray(cube["sza"].values, dtype=np.float64)
           if "sza" in cube.coords and cube["sza"].dims == ("time",) else np.full(n_t, np.nan))
    names = _names(cube, params)
    if flat is None and plan is None:
        flat = {n: FlatGraph.of(a) for n, a in arrays.items()}
    t = (t0, t0 + n_t)
    n_band = len(params.bands)
    blocks: dict[str, list[list[dsa.Array]]] = {p: [] for p in params.products}
    for y0, y1 in _read.splits(ny, by_):
        row: dict[str, list[dsa.Array]] = {p: [] for p in params.products}
        for x0, x1 in _read.splits(nx, bx_):
            halo_rows, halo_cols = (max(0, y0 - r), min(ny, y1 + r)), (max(0, x0 - r),
                                                                      min(nx, x1 + r))
            windows = _windows((y0, y1), (x0, x1), halo_rows, halo_cols, t, names, arrays,
                               flat, plan)
            block = geobox[y0:y1, x0:x1]
            wc = worldcover.data[y0:y1, x0:x1] if worldcover is not None else None
            task = delayed(composite_block, pure=True)(
                windows, threshold.restrict(block), block, wc, sza, params)
            for p in params.products:
                shape, dtype = _layout(p, n_band, y1 - y0, x1 - x0)
                row[p].append(dsa.from_delayed(  # type: ignore[no-untyped-call]
                    task[p], shape=shape, dtype=dtype))
        for p in params.products:
            blocks[p].append(row[p])
    return {p: _assemble(blocks[p]) for p in params.products}
