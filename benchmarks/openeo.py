"""openEO: SCMaP through cup4soil's exported process graph on openeo_processes_dask vs the
native ``cup4soil.scmap.composite``, on the same cube.

One command, one run, printed side by side: wall time (graph walk and build, then compute)
and peak memory of each path, their ratio, and whether the products agree (counts exactly,
reflectances to float32 rounding). Each case runs in a fresh subprocess on a cube built from
a ``cup4soil.sample`` archive and held in memory (reading is not what is compared); peak
memory is the growth of the resident set during the run, sampled every 5 ms.

    python benchmarks/openeo.py                  # 256 x 256 px at 10 m -> 128 x 128 at 20 m, T = 40
    python benchmarks/openeo.py --size 128 --scenes-per-year 4      # quick
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

# This script is named like the openEO client's package: its folder, which Python puts first
# on sys.path, must not shadow ``import openeo`` (here and in the subprocesses).
sys.path[:] = [p for p in sys.path
               if Path(p or ".").resolve() != Path(__file__).resolve().parent]

THRESHOLD = 0.137
PRODUCTS = ("SRC", "SRC_STD", "MREF", "VPC", "BSC", "BSF", "MASK")


class _PeakRSS:
    """Samples the resident set size in a thread; ``growth`` is the peak above the start."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.start


def _sample(data: Path, size: int, per_year: int) -> Any:
    from cup4soil.sample import make_catalog

    return make_catalog(data / f"openeo-s{size}-y{per_year}", size=size,
                        scenes_per_year=per_year, seed=11)


def _run(job: dict[str, Any], queue: Any) -> None:
    import gc

    import dask

    import cup4soil
    from cup4soil import openeo, scmap

    sample = _sample(Path(job["data"]), job["size"], job["per_year"])
    items = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog,
                            max_cloud_cover=100)
    cube = cup4soil.load_s2(items, resolution=20.0).compute()
    wc = sample.truth_on("worldcover", cube.odc.geobox)
    if job["engine"] == "openeo":
        graph = openeo.scmap_graph(temporal_extent=sample.time_range, bbox=sample.bbox,
                                   max_cloud_cover=100, threshold=THRESHOLD,
                                   products=list(PRODUCTS))
        openeo.local_registry()  # import the engine outside the timing
    gc.collect()
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads"), _PeakRSS() as mem:
        if job["engine"] == "openeo":
            lazy = openeo.run_local(graph, cube, worldcover=wc)
        else:
            lazy = scmap.composite(cube, THRESHOLD, worldcover=wc, products=list(PRODUCTS))
        t1 = time.perf_counter()
        out = lazy.compute()
    t2 = time.perf_counter()
    queue.put({
        "build": t1 - t0, "compute": t2 - t1, "seconds": t2 - t0, "peak_mb": mem.growth / 2**20,
        "T": int(cube.sizes["time"]), "shape": (int(cube.sizes["y"]), int(cube.sizes["x"])),
        "products": {k: np.asarray(out[k].values) for k in PRODUCTS},
    })


def measure(**job: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(job, queue))
    proc.start()
    while True:
        try:
            result: dict[str, Any] = queue.get(timeout=1.0)
            break
        except Exception:  # queue.Empty; a crashed case must not hang the run
            if not proc.is_alive():
                raise SystemExit(f"the {job['engine']} case failed (exit {proc.exitcode})") \
                    from None
    proc.join()
    return result


def agree(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[bool, float]:
    """Counts and classes equal, reflectances within float32 rounding; the largest
    reflectance difference (1e-4 reflectance units)."""
    same = all(np.array_equal(a[k], b[k]) for k in ("VPC", "BSC", "MASK"))
    worst = 0.0
    for k in ("SRC", "SRC_STD", "MREF", "BSF"):
        same &= bool(np.allclose(a[k], b[k], rtol=3e-7, atol=1e-4, equal_nan=True))
        both = np.isfinite(a[k]) & np.isfinite(b[k])
        same &= bool(np.array_equal(np.isfinite(a[k]), np.isfinite(b[k])))
        if both.any():
            worst = max(worst, float(np.abs(a[k][both] - b[k][both]).max()))
    return same, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="side, 10 m pixels")
    parser.add_argument("--scenes-per-year", type=int, default=8, help="over 5 years")
    parser.add_argument("--data", default=os.environ.get("CUP4SOIL_BENCH_DATA",
                                                         "/tmp/cup4soil-bench"))
    parser.add_argument("--smoke", action="store_true", help="a tiny run (tests)")
    args = parser.parse_args()
    if args.smoke:
        args.size, args.scenes_per_year = 48, 1
    cores = os.cpu_count() or 1
    _sample(Path(args.data), args.size, args.scenes_per_year)  # outside the timings
    job = {"size": args.size, "per_year": args.scenes_per_year, "data": args.data}
    res = {e: measure(engine=e, **job) for e in ("native", "openeo")}
    h, w = res["native"]["shape"]
    print(f"openEO benchmark: SCMaP on {h} x {w} px at 20 m, T = {res['native']['T']}, "
          f"{cores} cores, threaded Dask, cube in memory; products {', '.join(PRODUCTS)}")
    print(f"{'path':<38} {'build s':>8} {'compute s':>10} {'wall s':>8} {'+RSS MB':>8}")
    names = {"native": "cup4soil scmap.composite",
             "openeo": "exported graph, openeo_processes_dask"}
    for e in ("native", "openeo"):
        r = res[e]
        print(f"{names[e]:<38} {r['build']:8.2f} {r['compute']:10.2f} {r['seconds']:8.2f} "
              f"{r['peak_mb']:8.1f}")
    ok, worst = agree(res["native"]["products"], res["openeo"]["products"])
    print(f"ratio openEO / native: wall {res['openeo']['seconds'] / res['native']['seconds']:.1f}x,"
          f" peak memory {res['openeo']['peak_mb'] / max(res['native']['peak_mb'], 1):.1f}x")
    print(f"products agree: {'yes' if ok else 'NO'} (counts and MASK equal; largest "
          f"reflectance difference {worst:.2g} x 1e-4)")
    sys.stdout.flush()
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
