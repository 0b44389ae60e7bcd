"""Scaling of the sample pipeline on a local distributed cluster.

The SCMaP composite of a sample archive, written with ``store.write`` through a
``cup4soil.cluster.connect("local", ...)`` cluster, for 1 and 2 workers and as the area and
the number of scenes double. Printed: wall time, speed-up against 1 worker and the peak
resident memory of the busiest worker (sampled every 0.2 s). Memory per worker must not
grow with the number of scenes. Run: ``python benchmarks/scaling.py`` (archives are
generated once under ``/tmp/cup4soil-bench``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import warnings

import cup4soil
from cup4soil import cluster, sample, scmap, store

ROOT = "/tmp/cup4soil-bench"
#: cube chunks, composite blocks and regions, 20 m px: the smallest area has 4 of them
CHUNK = 128


def run(size: int, scenes: int, workers: int) -> tuple[float, float]:
    cat = sample.make_catalog(f"{ROOT}/scaling-{size}-{scenes}", size=size,
                              scenes_per_year=scenes, seed=1)
    items = cup4soil.search(cat.bbox, cat.time_range, catalog=cat.catalog)
    cube = cup4soil.load_s2(items, chunks={"x": CHUNK, "y": CHUNK})
    comp = scmap.composite(cube, 0.137, products=("SRC", "BSC", "VPC", "MASK"),
                           chunks={"y": CHUNK, "x": CHUNK})
    client = cluster.connect("local", workers=workers, threads_per_worker=1,
                             worker_memory="2GiB")
    peak = 0.0
    stop = threading.Event()

    def sample_memory() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                mem = client.run(lambda: __import__("psutil").Process().memory_info().rss)
                peak = max(peak, max(mem.values()) / 2**20)
            except Exception:
                pass
            time.sleep(0.2)

    out = tempfile.mkdtemp()
    watcher = threading.Thread(target=sample_memory, daemon=True)
    try:
        watcher.start()
        t = time.perf_counter()
        store.write(comp, os.path.join(out, "c.zarr"), chunks=CHUNK)
        wall = time.perf_counter() - t
    finally:
        stop.set()
        watcher.join()
        cluster.close(client)
        shutil.rmtree(out, ignore_errors=True)
    return wall, peak


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a tiny run (tests/test_benchmarks.py)")
    args = ap.parse_args()
    runs = ((64, 3),) if args.smoke else ((400, 12), (800, 12), (400, 24))
    warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification")
    rows = []
    for size, scenes in runs:
        for workers in ((1,) if args.smoke else (1, 2)):
            wall, peak = run(size, scenes, workers)
            rows.append((size, scenes, workers, wall, peak))
    print(f"{'area (10 m px)':>14} {'scenes/yr':>9} {'workers':>7} {'wall s':>7} "
          f"{'speed-up':>8} {'peak worker MB':>15}")
    for r in rows:
        one = next(w for s, n, k, w, _ in rows if (s, n, k) == (r[0], r[1], 1))
        print(f"{r[0]:>11}^2 {r[1]:>9} {r[2]:>7} {r[3]:>7.1f} {one / r[3]:>7.2f}x "
              f"{r[4]:>15.0f}")


if __name__ == "__main__":
    main()
