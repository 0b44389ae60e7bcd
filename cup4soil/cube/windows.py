"""The windows a block task reads: a spatial window of a cube, time slice by time slice.

A task that composites one spatial block over a long time series reads its input itself,
in bounded batches of time slices, instead of receiving it from Dask (which would keep the
block's whole series alive at once). What it reads through is a :class:`WindowSource`:

- :class:`PlanWindows` reads straight from a cube's :class:`~cup4soil.cube.readplan.ReadPlan`
  (a cube from :func:`cup4soil.load_s2`): the task holds no cube graph at all, and each
  (band, scene) is read on its own, so a task can read SCL first and decode the bands
  only of the scenes it needs;
- :class:`ChunkWindows` slices a cube held in memory (NumPy-backed, or a persisted Dask
  cube): no Dask, no copy but the batch itself;
- :class:`GraphWindows` computes a window of any other lazy cube (stackstac, a user's
  ``odc.stac.load``, a cube after ``isel``/``where``/``concat``) from that cube's graph, cut
  out once by :class:`FlatGraph`. Every array of a batch is computed in one call over the
  merged graph, and batches follow the cube's time chunks, so an upstream task shared by
  several variables (one loader for all bands) runs once per block.

:func:`window_source` picks :class:`ChunkWindows` or :class:`GraphWindows` for a window
cut from a :class:`FlatGraph`.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

import dask.array as dsa
import numpy as np
from dask.base import compute
from dask.delayed import Delayed
from dask.optimization import cull

from .readplan import ReadPlan

__all__ = [
    "AnyArray", "Batch", "ChunkWindows", "FlatGraph", "GraphWindows", "PlanWindows", "Times",
    "WindowSource", "read_bytes", "window_source",
]

#: ``(t0, {name: (k, y, x) array})``: ``k`` consecutive time slices from ``t0`` on.
Batch: TypeAlias = tuple[int, dict[str, np.ndarray]]
#: Time slices to read: increasing indices within one batch.
Times: TypeAlias = "Sequence[int] | np.ndarray"
#: An array held in memory or computed lazily by Dask.
AnyArray: TypeAlias = "np.ndarray | dsa.Array"
#: Default bytes materialised per batch, and threads reading one batch.
BATCH_BYTES = 8 * 2**20
READ_THREADS = 4


class WindowSource(Protocol):
    """Named ``(time, y, x)`` arrays of one spatial window, read a batch of time slices at
    a time. Times count from the window's first time slice."""

    @property
    def names(self) -> tuple[str, ...]:
        """The arrays this source can read."""
        ...

    @property
    def n_time(self) -> int:
        """Time slices of the window."""
        ...

    @property
    def separable(self) -> bool:
        """True when reading some of the names (or some time slices) costs only those; False
        when they share upstream work, so that all names of a batch are best read at once."""
        ...

    def batch_edges(self, names: Sequence[str]) -> list[int]:
        """Batch boundaries ``[0, ..., n_time]``: each batch of ``names`` fits the source's
        memory budget (and, for a lazy graph, holds whole time chunks)."""
        ...

    def read(self, names: Sequence[str], times: Times, *,
             pool: Executor | None = None) -> dict[str, np.ndarray]:
        """The time slices ``times`` (increasing, within one batch) of ``names``, each
        ``(len(times), y, x)``; ``pool``: threads to read with."""
        ...

    def batches(self, names: Sequence[str]) -> Iterator[Batch]:
        """All time slices of ``names``, batch by batch."""
        edges = self.batch_edges(names)
        for ta, tb in itertools.pairwise(edges):
            yield ta, self.read(names, range(ta, tb))


def _uniform_edges(n_time: int, per_slice: int, budget: int) -> list[int]:
    k = max(1, int(budget // max(per_slice, 1)))
    return [*range(0, n_time, k), n_time]


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

    @property
    def n_time(self) -> int:
        return self.t1 - self.t0

    @property
    def separable(self) -> bool:
        return True

    def _plan(self) -> ReadPlan:
        if not isinstance(self.plan, ReadPlan):
            raise TypeError("PlanWindows read before Dask put the read plan in place of its key")
        return self.plan

    def _band(self, name: str) -> str:
        return dict(self.bands)[name]

    def batch_edges(self, names: Sequence[str]) -> list[int]:
        plan = self._plan()
        h, w = self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]
        per_slice = sum(h * w * np.dtype(plan.cfg[self._band(n)].dtype).itemsize for n in names)
        return _uniform_edges(self.n_time, per_slice, self.batch_bytes)

    def read(self, names: Sequence[str], times: Times, *,
             pool: Executor | None = None) -> dict[str, np.ndarray]:
        plan = self._plan()
        h, w = self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]
        times = list(times)
        out = {n: np.empty((len(times), h, w), np.dtype(plan.cfg[self._band(n)].dtype))
               for n in names}

        window = plan.window(self.rows, self.cols)

        def one(n: str, i: int) -> None:
            plan.read(self._band(n), self.t0 + times[i], self.rows, self.cols, out=out[n][i],
                      window=window)

        jobs = [(n, i) for n in names for i in range(len(times))]
        if pool is None:
            for n, i in jobs:
                one(n, i)
        else:
            # Threads: GDAL reads release the GIL, so a block's slices decode in parallel.
            for f in [pool.submit(one, n, i) for n, i in jobs]:
                f.result()
        return out


def _chunk_value(value: Any) -> np.ndarray | None:
    """The array of a materialised chunk (persisted or literal), else None."""
    from dask.task_spec import DataNode

    if isinstance(value, DataNode):
        value = value.value
    return value if isinstance(value, np.ndarray) else None


class ChunkWindows(WindowSource):
    """A window of arrays whose chunks are in memory (a NumPy-backed or persisted cube):
    read by slicing them, without Dask.

    Not a dataclass on purpose: ``dask.delayed`` would look into one and hash its arrays.

    Parameters
    ----------
    grids
        Per name: the chunk arrays covering the window as a nested ``[t][y][x]`` list, and
        the chunks' time, row and column edges in the window's coordinates (the first edge
        of each may be negative: the window starts inside a chunk).
    shape
        ``(time, y, x)`` of the window, per name.
    batch_bytes
        Memory budget of a batch.
    """

    def __init__(self, grids: Mapping[str, tuple[list[list[list[np.ndarray]]],
                                                 tuple[np.ndarray, np.ndarray, np.ndarray]]],
                 shape: Mapping[str, tuple[int, int, int]], *,
                 batch_bytes: int = BATCH_BYTES) -> None:
        self.grids = dict(grids)
        self.shape = dict(shape)
        self.batch_bytes = batch_bytes
        self.token = uuid.uuid4().hex

    def __dask_tokenize__(self) -> tuple[str, str]:
        return (type(self).__name__, self.token)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.grids)

    @property
    def n_time(self) -> int:
        return next(iter(self.shape.values()))[0]

    @property
    def separable(self) -> bool:
        return True

    def batch_edges(self, names: Sequence[str]) -> list[int]:
        per_slice = 0
        for n in names:
            chunks = self.grids[n][0]
            _, h, w = self.shape[n]
            per_slice += h * w * chunks[0][0][0].dtype.itemsize
        return _uniform_edges(self.n_time, per_slice, self.batch_bytes)

    def read(self, names: Sequence[str], times: Times, *,
             pool: Executor | None = None) -> dict[str, np.ndarray]:
        idx = np.asarray(list(times), dtype=np.intp)
        out = {}
        for n in names:
            chunks, (te, ye, xe) = self.grids[n]
            _, h, w = self.shape[n]
            dst = np.empty((len(idx), h, w), chunks[0][0][0].dtype)
            ct = np.searchsorted(te, idx, side="right") - 1
            for i, (t, c) in enumerate(zip(idx, ct, strict=True)):
                for cy in range(len(ye) - 1):
                    ya, yb = max(0, ye[cy]), min(h, ye[cy + 1])
                    for cx in range(len(xe) - 1):
                        xa, xb = max(0, xe[cx]), min(w, xe[cx + 1])
                        dst[i, ya:yb, xa:xb] = chunks[c][cy][cx][
                            t - te[c], ya - ye[cy]:yb - ye[cy], xa - xe[cx]:xb - xe[cx]]
            out[n] = dst
        return out


class GraphWindows(WindowSource):
    """Windows of lazy arrays, hidden from Dask's dependency tracking (this is not a
    dataclass on purpose: ``dask.delayed`` would look into one), so that the task computes
    its time slices itself, a batch at a time, when it needs them.

    All names of a batch are computed in one call, over their merged graph: a task they
    share upstream runs once. Batches hold whole time chunks of every array read together,
    so no upstream chunk is computed for two batches. Each batch's graph is culled from the
    window's own before it is computed: the scheduler sees only that batch's tasks, so what
    a batch costs (graph bookkeeping and decoded chunks alike) does not grow with the
    window's number of time steps.

    Parameters
    ----------
    flat
        Per name, the flat graph the window is cut from (its ``dsk`` may be culled to the
        window: :func:`window_source`).
    windows
        Per name, the window ``(y0, y1, x0, x1, t0, t1)`` in the flat graph's pixels.
    slice_bytes
        Bytes one time slice of each array materialises (whole source chunks, not the
        window: :func:`read_bytes`); default: the window's own size.
    batch_bytes, read_threads
        Memory budget of a batch, and threads computing it.
    """

    def __init__(self, flat: Mapping[str, FlatGraph],
                 windows: Mapping[str, tuple[int, int, int, int, int, int]], *,
                 slice_bytes: Mapping[str, int] | None = None,
                 batch_bytes: int = BATCH_BYTES, read_threads: int = READ_THREADS) -> None:
        self.flat = {n: flat[n] for n in windows}
        self.windows = dict(windows)
        self.slice_bytes = dict(slice_bytes or {
            n: (w[1] - w[0]) * (w[3] - w[2]) * self.flat[n].dtype.itemsize
            for n, w in self.windows.items()
        })
        self.batch_bytes = batch_bytes
        self.read_threads = read_threads

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.windows)

    @property
    def n_time(self) -> int:
        w = next(iter(self.windows.values()))
        return w[5] - w[4]

    @property
    def separable(self) -> bool:
        return False

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        # Cheap and deterministic: the graphs' names and the windows identify the source.
        return (type(self).__name__, tuple((n, self.flat[n].name, w)
                                           for n, w in self.windows.items()),
                self.batch_bytes)

    def _time_edges(self, name: str) -> set[int]:
        """The source's time-chunk edges within the window, in window time."""
        t0, t1 = self.windows[name][4:]
        edges = self.flat[name].t_edges
        return {int(e) - t0 for e in edges if t0 <= e <= t1}

    def batch_edges(self, names: Sequence[str]) -> list[int]:
        """Greedy batches of whole time chunks: a boundary only where every array read
        together has one, as many chunks per batch as fit the budget (at least one)."""
        per_slice = sum(self.slice_bytes[n] for n in names)
        k = max(1, int(self.batch_bytes // max(per_slice, 1)))
        n_t = self.n_time
        common = set(range(n_t + 1))
        for n in names:
            common &= self._time_edges(n)
        cuts = sorted(common | {0, n_t})
        edges, prev = [0], 0
        for e in cuts[1:]:
            if e - edges[-1] > k and prev > edges[-1]:
                edges.append(prev)  # close the batch at the last common edge that fitted
            prev = e
        return [*edges, n_t]

    def read(self, names: Sequence[str], times: Times, *,
             pool: Executor | None = None) -> dict[str, np.ndarray]:
        times = list(times)
        ta, tb = times[0], times[-1] + 1
        arrays = []
        for n in names:
            y0, y1, x0, x1, t0, _ = self.windows[n]
            arrays.append(self.flat[n].window(y0, y1, x0, x1, t0 + ta, t0 + tb))
        # Not optimised either (see FlatGraph.of_many): the arrays' shared tasks run once.
        values = compute(  # type: ignore[no-untyped-call]
            *arrays, scheduler="threads", num_workers=self.read_threads,
            optimize_graph=False)
        pick = np.asarray(times) - ta
        whole = len(times) == tb - ta
        return {n: (np.asarray(v) if whole else np.asarray(v)[pick])
                for n, v in zip(names, values, strict=True)}


class FlatGraph:
    """A (time, y, x) dask array's graph, materialised once, from which windows are cut by
    chunk index: building all blocks costs one pass over the graph instead of one per block
    (``dask.optimize`` of a sliced array rebuilds the whole cube's graph).

    :meth:`of_many` merges several arrays' graphs, unoptimised, so the tasks they share
    stay shared (Dask's array optimisation fuses a shared loader into each array's tasks).
    """

    def __init__(self, name: str, dsk: dict[Any, Any], chunks: tuple[tuple[int, ...], ...],
                 dtype: np.dtype[Any]) -> None:
        self.name, self.dsk, self.chunks, self.dtype = name, dsk, chunks, dtype
        self.t_edges = np.concatenate([[0], np.cumsum(chunks[0])]).astype(int)
        self.y_edges = np.concatenate([[0], np.cumsum(chunks[1])]).astype(int)
        self.x_edges = np.concatenate([[0], np.cumsum(chunks[2])]).astype(int)

    @classmethod
    def of(cls, arr: AnyArray) -> FlatGraph:
        return cls.of_many({"a": arr})["a"]

    @classmethod
    def of_many(cls, arrays: Mapping[str, AnyArray]) -> dict[str, FlatGraph]:
        """Each array's flat graph; the Dask-backed ones flattened (and optimised) together.
        A NumPy array becomes one chunk under a random name: it is never hashed."""
        out: dict[str, FlatGraph] = {}
        lazy = {n: a for n, a in arrays.items() if isinstance(a, dsa.Array)}
        for n, a in arrays.items():
            if not isinstance(a, dsa.Array):
                arr = np.asarray(a)
                name = f"ndarray-{uuid.uuid4().hex}"
                out[n] = cls(name, {(name, 0, 0, 0): arr},
                             tuple((s,) for s in arr.shape), arr.dtype)
        if lazy:
            # Merged as they are, not optimised: Dask's array optimisation fuses a task that
            # several arrays share (one loader for all bands) into each of them, so it
            # would run once per array.
            dsk: dict[Any, Any] = {}
            for a in lazy.values():
                dsk.update(a.__dask_graph__())
            for n, a in lazy.items():
                out[n] = cls(a.name, dsk, a.chunks, a.dtype)
        return {n: out[n] for n in arrays}

    def _index(self, y0: int, y1: int, x0: int, x1: int, t0: int,
               t1: int) -> tuple[int, int, int, int, int, int]:
        it0 = int(np.searchsorted(self.t_edges, t0, side="right")) - 1
        it1 = int(np.searchsorted(self.t_edges, t1, side="left"))
        iy0 = int(np.searchsorted(self.y_edges, y0, side="right")) - 1
        iy1 = int(np.searchsorted(self.y_edges, y1, side="left"))
        ix0 = int(np.searchsorted(self.x_edges, x0, side="right")) - 1
        ix1 = int(np.searchsorted(self.x_edges, x1, side="left"))
        return it0, it1, iy0, iy1, ix0, ix1

    def materialised(self) -> bool:
        """Whether every chunk is an array in memory (a NumPy or persisted cube)."""
        return all(_chunk_value(self.dsk.get((self.name, t, i, j))) is not None
                   for t in range(len(self.chunks[0])) for i in range(len(self.chunks[1]))
                   for j in range(len(self.chunks[2])))

    def chunk_grid(self, y0: int, y1: int, x0: int, x1: int, t0: int = 0,
                   t1: int | None = None) -> tuple[list[list[list[np.ndarray]]],
                                                   tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The in-memory chunks covering a window, and their edges relative to it (for
        :class:`ChunkWindows`)."""
        t1 = int(self.t_edges[-1]) if t1 is None else t1
        it0, it1, iy0, iy1, ix0, ix1 = self._index(y0, y1, x0, x1, t0, t1)
        grid: list[list[list[np.ndarray]]] = []
        for t in range(it0, it1):
            plane = []
            for i in range(iy0, iy1):
                row = []
                for j in range(ix0, ix1):
                    value = _chunk_value(self.dsk[(self.name, t, i, j)])
                    assert value is not None
                    row.append(value)
                plane.append(row)
            grid.append(plane)
        edges = (self.t_edges[it0:it1 + 1] - t0, self.y_edges[iy0:iy1 + 1] - y0,
                 self.x_edges[ix0:ix1 + 1] - x0)
        return grid, edges

    def keys(self, y0: int, y1: int, x0: int, x1: int, t0: int = 0,
             t1: int | None = None) -> list[tuple[str, int, int, int]]:
        """The keys of the chunks the pixels [t0:t1, y0:y1, x0:x1] touch."""
        t1 = int(self.t_edges[-1]) if t1 is None else t1
        it0, it1, iy0, iy1, ix0, ix1 = self._index(y0, y1, x0, x1, t0, t1)
        return [(self.name, t, i, j) for t in range(it0, it1) for i in range(iy0, iy1)
                for j in range(ix0, ix1)]

    def with_graph(self, dsk: dict[Any, Any]) -> FlatGraph:
        """The same array over another graph (e.g. the one culled to a window)."""
        return FlatGraph(self.name, dsk, self.chunks, self.dtype)

    def window(self, y0: int, y1: int, x0: int, x1: int, t0: int = 0,
               t1: int | None = None) -> dsa.Array:
        """The pixels [t0:t1, y0:y1, x0:x1] as a dask array whose graph holds only the
        chunks they touch (and what those depend on): culling walks from those chunks
        only, so it costs what the window holds, not what the graph holds."""
        from dask.task_spec import Alias

        t1 = int(self.t_edges[-1]) if t1 is None else t1
        it0, it1, iy0, iy1, ix0, ix1 = self._index(y0, y1, x0, x1, t0, t1)
        want = self.keys(y0, y1, x0, x1, t0, t1)
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


def window_source(flat: Mapping[str, FlatGraph], windows: Mapping[str, tuple[int, int, int,
                                                                             int, int, int]],
                  *, batch_bytes: int = BATCH_BYTES) -> WindowSource:
    """A source for the windows ``{name: (y0, y1, x0, x1, t0, t1)}`` of the flat graphs:
    :class:`ChunkWindows` when all their chunks are in memory, else :class:`GraphWindows`
    (computing whole source chunks: :func:`read_bytes`)."""
    if all(flat[n].materialised() for n in windows):
        grids = {n: flat[n].chunk_grid(*w) for n, w in windows.items()}
        shape = {n: (w[5] - w[4], w[1] - w[0], w[3] - w[2]) for n, w in windows.items()}
        return ChunkWindows(grids, shape, batch_bytes=batch_bytes)
    # The window's graph, culled once for all names (tasks they share stay shared); each
    # batch is culled from it again when it is read.
    want = [k for n, w in windows.items() for k in flat[n].keys(*w)]
    sub, _ = cull(_graph_of(flat, windows), want)  # type: ignore[no-untyped-call]
    cut = {n: flat[n].with_graph(sub) for n in windows}
    return GraphWindows(cut, windows, batch_bytes=batch_bytes, slice_bytes={
        n: _touched_bytes(flat[n], w) for n, w in windows.items()})


def _graph_of(flat: Mapping[str, FlatGraph], windows: Mapping[str, Any]) -> dict[Any, Any]:
    """The graph the windows' flat graphs share (one dict when flattened together)."""
    graphs = {id(flat[n].dsk): flat[n].dsk for n in windows}
    if len(graphs) == 1:
        return next(iter(graphs.values()))
    merged: dict[Any, Any] = {}
    for g in graphs.values():
        merged.update(g)
    return merged


def _touched_bytes(flat: FlatGraph, w: tuple[int, int, int, int, int, int]) -> int:
    y0, y1, x0, x1 = w[:4]
    _, _, iy0, iy1, ix0, ix1 = flat._index(y0, y1, x0, x1, w[4], w[5])
    rows = int(flat.y_edges[iy1] - flat.y_edges[iy0])
    cols = int(flat.x_edges[ix1] - flat.x_edges[ix0])
    return rows * cols * int(flat.dtype.itemsize)


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
