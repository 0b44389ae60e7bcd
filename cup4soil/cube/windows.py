"""The windows a block task reads: a spatial window of a cube, time slice by time slice.

A task that composites one spatial block over a long time series reads its input itself,
in bounded batches of consecutive time slices, instead of receiving it from Dask (which
would keep input blocks alive between two passes over the series). What it reads through
is a :class:`WindowSource`:

- :class:`PlanWindows` reads straight from a cube's :class:`~cup4soil.cube.readplan.ReadPlan`
  (a cube from :func:`cup4soil.load_s2`): the task holds no cube graph at all;
- :class:`GraphWindows` computes a window of any other cube (in memory, stackstac, edited)
  from that cube's graph, cut out once by :class:`FlatGraph`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import dask.array as dsa
import numpy as np
from dask.base import compute, optimize
from dask.delayed import Delayed

from .readplan import ReadPlan

__all__ = [
    "AnyArray", "Batch", "FlatGraph", "GraphWindows", "PlanWindows", "WindowSource", "read_bytes",
]

#: ``(t0, {name: (k, y, x) array})``: ``k`` consecutive time slices from ``t0`` on.
Batch: TypeAlias = tuple[int, dict[str, np.ndarray]]
#: An array held in memory or computed lazily by Dask.
AnyArray: TypeAlias = "np.ndarray | dsa.Array"
#: Default bytes materialised per batch, and threads reading one batch.
BATCH_BYTES = 8 * 2**20
READ_THREADS = 4


class WindowSource(Protocol):
    """Named ``(time, y, x)`` arrays of one spatial window, read in time batches."""

    @property
    def names(self) -> tuple[str, ...]:
        """The arrays this source can read."""
        ...

    def batch_size(self, names: Sequence[str]) -> int:
        """Time slices per batch of ``names`` that fit the source's memory budget."""
        ...

    def batches(self, names: Sequence[str], *, start: int = 0, stop: int | None = None,
                size: int | None = None) -> Iterator[Batch]:
        """Consecutive time slices ``start:stop`` of ``names``, ``size`` (default:
        :meth:`batch_size`) per batch."""
        ...

    def read(self, t: int, names: Sequence[str]) -> dict[str, np.ndarray]:
        """One time slice of the named arrays, ``(y, x)`` each."""
        _, batch = next(self.batches(names, start=t, stop=t + 1))
        return {n: v[0] for n, v in batch.items()}


@dataclass(frozen=True)
class PlanWindows(WindowSource):
    """A window read straight from the cube's read plan: no cube graph in the task, and
    building all blocks costs nothing per scene.

    ``plan`` may be given as the plan's graph key (:func:`~cup4soil.cube.readplan.as_key`):
    a task that receives this dataclass depends on that key, and Dask puts the plan itself
    in its place before the task runs (``dask.delayed`` looks into dataclasses).
    """

    bands: tuple[tuple[str, str], ...]  # (cube variable, plan band)
    rows: tuple[int, int]
    cols: tuple[int, int]
    t0: int
    t1: int
    plan: ReadPlan | Delayed
    batch_bytes: int = BATCH_BYTES
    read_threads: int = READ_THREADS

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.bands)

    def _plan(self) -> ReadPlan:
        if not isinstance(self.plan, ReadPlan):
            raise TypeError("PlanWindows read before Dask put the read plan in place of its key")
        return self.plan

    def _band(self, name: str) -> str:
        return dict(self.bands)[name]

    def batch_size(self, names: Sequence[str]) -> int:
        plan = self._plan()
        h, w = self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]
        per_slice = sum(
            h * w * np.dtype(plan.cfg[self._band(n)].dtype).itemsize for n in names)
        return max(1, int(self.batch_bytes // max(per_slice, 1)))

    def batches(self, names: Sequence[str], *, start: int = 0, stop: int | None = None,
                size: int | None = None) -> Iterator[Batch]:
        plan = self._plan()
        stop = self.t1 - self.t0 if stop is None else stop
        k = size or self.batch_size(names)
        # Threads: GDAL reads release the GIL, so a block's slices are read in parallel.
        with ThreadPoolExecutor(self.read_threads) as pool:
            for ta in range(start, stop, k):
                tb = min(stop, ta + k)
                futures = {
                    (n, t): pool.submit(plan.read, self._band(n), self.t0 + t, self.rows,
                                        self.cols)
                    for n in names for t in range(ta, tb)
                }
                yield ta, {n: np.stack([futures[n, t].result() for t in range(ta, tb)])
                           for n in names}


class GraphWindows(WindowSource):
    """Lazy arrays of one window, hidden from Dask's dependency tracking (this is not a
    dataclass on purpose: ``dask.delayed`` would look into one), so that the task computes
    its time slices itself, a batch at a time, when it needs them.

    Parameters
    ----------
    arrays
        ``(time, y, x)`` Dask arrays of the window (e.g. :meth:`FlatGraph.window`).
    slice_bytes
        Bytes one time slice of each array materialises (whole source chunks, not the
        window: :func:`read_bytes`); default: the window's own size.
    batch_bytes, read_threads
        Memory budget of a batch, and threads computing it.
    """

    def __init__(self, arrays: Mapping[str, dsa.Array], *,
                 slice_bytes: Mapping[str, int] | None = None,
                 batch_bytes: int = BATCH_BYTES, read_threads: int = READ_THREADS) -> None:
        self.arrays = dict(arrays)
        self.slice_bytes = dict(slice_bytes or {
            n: int(np.prod(a.shape[1:])) * a.dtype.itemsize for n, a in self.arrays.items()
        })
        self.batch_bytes = batch_bytes
        self.read_threads = read_threads

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        # Cheap and deterministic: the arrays' names identify their graphs.
        return (type(self).__name__, tuple((n, a.name) for n, a in self.arrays.items()),
                self.batch_bytes)

    def batch_size(self, names: Sequence[str]) -> int:
        per_slice = sum(self.slice_bytes[n] for n in names)
        return max(1, int(self.batch_bytes // max(per_slice, 1)))

    def batches(self, names: Sequence[str], *, start: int = 0, stop: int | None = None,
                size: int | None = None) -> Iterator[Batch]:
        first = self.arrays[names[0]]
        stop = first.shape[0] if stop is None else stop
        k = size or self.batch_size(names)
        for t0 in range(start, stop, k):
            t1 = min(stop, t0 + k)
            # Threads: GDAL reads release the GIL, so a block's slices are read in parallel.
            values = compute(  # type: ignore[no-untyped-call]
                *(self.arrays[n][t0:t1] for n in names), scheduler="threads",
                num_workers=self.read_threads)
            yield t0, {n: np.asarray(v) for n, v in zip(names, values, strict=True)}


class FlatGraph:
    """A (time, y, x) dask array's graph, fused and materialised once, from which windows
    are cut by chunk index: building all blocks costs one pass over the graph instead of
    one per block (``dask.optimize`` of a sliced array rebuilds the whole cube's graph).
    """

    def __init__(self, name: str, dsk: dict[Any, Any], chunks: tuple[tuple[int, ...], ...],
                 dtype: np.dtype[Any]) -> None:
        self.name, self.dsk, self.chunks, self.dtype = name, dsk, chunks, dtype
        self.t_edges = np.concatenate([[0], np.cumsum(chunks[0])])
        self.y_edges = np.concatenate([[0], np.cumsum(chunks[1])])
        self.x_edges = np.concatenate([[0], np.cumsum(chunks[2])])

    @classmethod
    def of(cls, arr: dsa.Array) -> FlatGraph:
        (opt,) = optimize(arr)  # type: ignore[no-untyped-call]
        return cls(opt.name, dict(opt.__dask_graph__()), opt.chunks, opt.dtype)

    def window(self, y0: int, y1: int, x0: int, x1: int, t0: int = 0,
               t1: int | None = None) -> dsa.Array:
        """The pixels [t0:t1, y0:y1, x0:x1] as a dask array whose graph holds only the
        chunks they touch (and what those depend on)."""
        from dask.optimization import cull
        from dask.task_spec import Alias

        t1 = int(self.t_edges[-1]) if t1 is None else t1
        it0 = int(np.searchsorted(self.t_edges, t0, side="right")) - 1
        it1 = int(np.searchsorted(self.t_edges, t1, side="left"))
        iy0 = int(np.searchsorted(self.y_edges, y0, side="right")) - 1
        iy1 = int(np.searchsorted(self.y_edges, y1, side="left"))
        ix0 = int(np.searchsorted(self.x_edges, x0, side="right")) - 1
        ix1 = int(np.searchsorted(self.x_edges, x1, side="left"))
        want = [(self.name, t, i, j) for t in range(it0, it1) for i in range(iy0, iy1)
                for j in range(ix0, ix1)]
        sub, _ = cull(self.dsk, want)  # type: ignore[no-untyped-call]
        name = f"{self.name}-w{it0}.{it1}.{iy0}.{iy1}.{ix0}.{ix1}"
        for t in range(it0, it1):
            for i in range(iy0, iy1):
                for j in range(ix0, ix1):
                    new = (name, t - it0, i - iy0, j - ix0)
                    sub[new] = Alias(new, (self.name, t, i, j))
        arr = dsa.Array(  # type: ignore[no-untyped-call]
            sub, name, chunks=(self.chunks[0][it0:it1], self.chunks[1][iy0:iy1],
                               self.chunks[2][ix0:ix1]), dtype=self.dtype)
        ot, oy, ox = int(self.t_edges[it0]), int(self.y_edges[iy0]), int(self.x_edges[ix0])
        out: dsa.Array = arr[t0 - ot:t1 - ot, y0 - oy:y1 - oy, x0 - ox:x1 - ox]
        return out


def read_bytes(arr: dsa.Array, rows: tuple[int, int], cols: tuple[int, int]) -> int:
    """Bytes of the source chunks a (rows, cols) window of one time slice of ``arr``
    touches: what computing that window materialises."""
    touched = []
    for (a, b), chunks in zip((rows, cols), arr.chunks[1:], strict=True):
        edges = np.cumsum((0, *chunks))
        first = np.searchsorted(edges, a, side="right") - 1
        last = np.searchsorted(edges, b, side="left")
        touched.append(int(edges[last] - edges[first]))
    return touched[0] * touched[1] * int(arr.dtype.itemsize)
