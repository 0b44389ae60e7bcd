"""The size guard: what one call should do, measured, and what the guard decides.

Synthetic item metadata (no pixel is read): a real Planetary Computer ``sentinel-2-l2a``
item of tile 06VVN repeated over 2018-2022 (as in ``benchmarks/graph.py``).

1. **Graph cost per task** (the basis of ``DEFAULT_MAX_TASKS``): the cube is built without
   the guard (``max_pixels=inf``) at chunk sizes giving growing task counts; printed are
   the build time, the client memory of the materialised graph (tracemalloc) and its
   pickled size (what the client sends the scheduler), per task and extrapolated to one
   million tasks.
2. **Decisions** for reference requests, side by side with the baseline (no guard: what
   the call would have planned): one tile for five years at 20 m (allowed), all of Europe
   at 10 m and ``resolution=1e-6``-like requests (refused), with the time to decide.

Run: ``python benchmarks/limits.py`` (``--smoke``: a tiny run).
"""

from __future__ import annotations

import argparse
import math
import pickle
import sys
import time
import tracemalloc
from pathlib import Path

import dask
from affine import Affine
from odc.geo.geobox import GeoBox

sys.path.insert(0, str(Path(__file__).resolve().parent))

from graph import items, tile_grid

import cup4soil
from cup4soil._limits import DEFAULT_MAX_PIXELS, DEFAULT_MAX_TASKS, human_bytes
from cup4soil.errors import TooLargeError

BANDS = 11  # B02..B12 and SCL
BYTES_PER_OBS = 2 * 10 + 1


def graph_cost(its: list, chunk: int) -> tuple[int, float, float, float]:
    """Tasks, build seconds, client MB of the materialised graph, pickled MB."""
    tracemalloc.start()
    t0 = time.perf_counter()
    with dask.config.set(scheduler="sync"):
        cube = cup4soil.load_s2(its, resolution=20, geobox=tile_grid(its[0]),
                                chunks={"x": chunk, "y": chunk}, max_pixels=math.inf,
                                engine="stackstac")
        graph = dict(cube.__dask_graph__())  # what a scheduler is sent: every task
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    pickled = len(pickle.dumps(graph, protocol=5)) / 1e6
    return len(graph), seconds, peak / 1e6, pickled


def decide(its: list, geobox: GeoBox) -> tuple[str, float, tuple[float, float, float]]:
    """The guard's decision on a cube of ``its`` over ``geobox``, seconds, and the size
    (observations, bytes, tasks at 2048 px chunks) the baseline would have planned."""
    n_t = len({it.datetime.date() for it in its})
    ny, nx = geobox.shape
    chunks = math.ceil(ny / 2048) * math.ceil(nx / 2048)
    size = (float(n_t) * ny * nx, float(n_t) * ny * nx * BYTES_PER_OBS,
            float(n_t * chunks * BANDS))
    t0 = time.perf_counter()
    try:
        cup4soil.load_s2(its, geobox=geobox, chunks={"x": 2048, "y": 2048})
        verdict = "allowed"
    except TooLargeError:
        verdict = "refused"
    return verdict, time.perf_counter() - t0, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100, help="dates of the cost runs")
    ap.add_argument("--smoke", action="store_true", help="a tiny run (tests/test_benchmarks.py)")
    args = ap.parse_args()
    n = 6 if args.smoke else args.items
    its = items(n)
    chunks = (2048, 1024) if args.smoke else (1024, 512)
    print(f"1. graph cost per task (cube of {n} dates x {BANDS} bands of tile 06VVN, 20 m, "
          "stackstac graph, no guard)")
    print(f"{'chunk px':>9} {'tasks':>9} {'build s':>8} {'client MB':>10} {'pickled MB':>11} "
          f"{'kB/task':>8} {'GB at 1M tasks':>15}")
    for c in chunks:
        tasks, seconds, client_mb, pickled_mb = graph_cost(its, c)
        per_task = (client_mb + pickled_mb) * 1e3 / tasks
        print(f"{c:>9} {tasks:>9,} {seconds:>8.1f} {client_mb:>10.0f} {pickled_mb:>11.0f} "
              f"{per_task:>8.2f} {per_task * DEFAULT_MAX_TASKS / 1e6:>15.1f}")

    print(f"\n2. decisions (default max_pixels {DEFAULT_MAX_PIXELS:.3g} observations, "
          f"{DEFAULT_MAX_TASKS:,} tasks); baseline: no guard, the call is planned")
    tile = tile_grid(its[0])
    five_years = items(20 if args.smoke else 365 * 5 // 5 * 2)  # a scene every ~2.5 days
    europe = GeoBox((4_000_000 // 10, 6_000_000 // 10), Affine(10, 0, 2_500_000, 0, -10,
                    5_500_000), "EPSG:3035")
    cases = [("one tile, 20 m", five_years, tile),
             ("one tile, 10 m", five_years, GeoBox(
                 (tile.shape[0] * 2, tile.shape[1] * 2),
                 Affine(10, 0, tile.affine.c, 0, -10, tile.affine.f), tile.crs)),
             ("Europe, 10 m", five_years, europe),
             ("one tile, 1 cm", its[:2], GeoBox(
                 (tile.shape[0] * 2000, tile.shape[1] * 2000),
                 Affine(0.01, 0, tile.affine.c, 0, -0.01, tile.affine.f), tile.crs))]
    print(f"{'request':<16} {'dates':>6} {'observations':>13} {'bytes':>10} {'tasks':>12} "
          f"{'baseline':>9} {'guard':>8} {'decided in s':>13}")
    for name, case_items, geobox in cases:
        verdict, seconds, (obs, nbytes, tasks) = decide(case_items, geobox)
        dates = len({it.datetime.date() for it in case_items})
        print(f"{name:<16} {dates:>6} {obs:>13.3g} {human_bytes(nbytes):>10} {tasks:>12,.0f} "
              f"{'planned':>9} {verdict:>8} {seconds:>13.2f}")


if __name__ == "__main__":
    main()
