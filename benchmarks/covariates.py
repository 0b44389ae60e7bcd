"""Covariates: Sentinel-1 statistics and terrain derivatives, against their baselines.

One command, one run, printed side by side:

1. Sentinel-1 statistics (VV/VH mean, std, p05, p95 in dB, counts) of cup4soil vs the
   direct xarray transcription a user would write on an ``odc.stac.load`` cube (``where``,
   ``quantile``, ``mean``, ``std`` over ``time``): wall time, memory growth, and whether the
   results are identical;
2. cup4soil's peak memory for T small vs T large scenes at the same spatial size, with a
   small per-task budget (target <= 1.3);
3. terrain derivatives chunked vs one chunk: identical, and their throughput.

Every case runs in a fresh subprocess (GDAL's block cache limited to 32 MB in each); peak
memory is the growth of the process's resident set during the compute, sampled every 5 ms.
The synthetic archives (``cup4soil.sample``, Sentinel-1 RTC COGs) are made once.

    python benchmarks/covariates.py            # 512 x 512 px at 10 m, T = 50 and 300
    python benchmarks/covariates.py --smoke    # a few seconds: the smoke test's run
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

FLOOR_DB = -35.0


def _make(data: Path, size: int, t: int) -> Any:
    from cup4soil.sample import make_catalog

    per_year = max(1, round(t / 5))
    return make_catalog(data / f"s1-{size}-t{per_year * 5}", size=size, scenes_per_year=1,
                        s1_scenes_per_year=per_year, seed=11)


def load_cube(items: Any, geobox: Any) -> Any:
    """The odc-stac cube of the items on the grid."""
    import odc.stac

    # Full resolution (no overviews: their resampling is whatever the producer chose), the
    # average of the 10 m pixels of each 20 m pixel, in linear power: cup4soil's inputs.
    return odc.stac.load(items, bands=["vv", "vh"], geobox=geobox, resampling="average",
                         chunks={"time": 1, "y": 2048, "x": 2048}, groupby="solar_day",
                         use_overviews=False)


def xarray_s1(cube: Any) -> dict[str, np.ndarray]:
    """The straightforward transcription: where, quantile, mean, std over time."""
    out: dict[str, np.ndarray] = {}
    for pol in ("vv", "vh"):
        x = cube[pol]
        x = x.where((x != -32768) & (x > 10 ** (FLOOR_DB / 10)))
        x = x.chunk({"time": -1})
        q = x.quantile([0.05, 0.95], dim="time")
        stats = {"mean": x.mean("time"), "std": x.std("time", ddof=1),
                 "p05": q.sel(quantile=0.05, drop=True), "p95": q.sel(quantile=0.95, drop=True),
                 "count": x.count("time")}
        import warnings

        import dask

        with warnings.catch_warnings():
            # std of a single observation: 0/0, NaN, as cup4soil gives (numpy's warning).
            warnings.simplefilter("ignore", RuntimeWarning)
            values = dask.compute(*stats.values())
        for name, v in zip(stats, values, strict=True):
            arr = np.asarray(v)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"{pol.upper()}_{name}"] = arr if name == "count" else \
                    (10 * np.log10(arr)).astype(np.float32)
    return out


def cup4soil_s1(catalog: Any, time_range: str, geobox: Any, task_memory: int | None
                ) -> dict[str, np.ndarray]:
    from cup4soil import covariates

    kwargs = {"task_memory": task_memory} if task_memory else {}
    ds = covariates.sentinel1(geobox, time_range, catalog=catalog, **kwargs).compute()
    out = {k: np.asarray(v.values) for k, v in ds.data_vars.items()
           if k.split("_")[-1] in ("mean", "std", "p05", "p95")}
    out["VV_count"] = np.asarray(ds.S1_count.values)  # S1_count counts VV
    return out


def cup4soil_s1_memory(cube: Any) -> dict[str, np.ndarray]:
    """cup4soil's statistics (the block tasks' reduction) of an in-memory cube, one task
    per spatial chunk."""
    import dask.array as da

    from cup4soil.covariates import sar

    arrays = {p: cube[p].where(cube[p] != -32768).data for p in ("vv", "vh")}
    names = ["VV_mean", "VV_std", "VV_p05", "VV_p95", "VH_mean", "VH_std", "VH_p05", "VH_p95",
             "S1_count"]

    def block(vv: np.ndarray, vh: np.ndarray) -> np.ndarray:
        res = sar.reduce_series({"vv": vv, "vh": vh}, noise_floor_db=FLOOR_DB)
        return np.stack([res[n].astype(np.float64) for n in names])

    stacked = da.map_blocks(block, arrays["vv"], arrays["vh"], dtype=np.float64,
                            chunks=((len(names),), *arrays["vv"].chunks[1:]))
    values = np.asarray(stacked.compute())
    out = {n: values[i].astype(np.float32) for i, n in enumerate(names[:-1])}
    out["VV_count"] = values[-1].astype(np.uint16)
    return out


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


def _run(job: dict[str, Any], queue: Any) -> None:
    os.environ["GDAL_CACHEMAX"] = "32"
    import gc

    import dask

    import cup4soil
    from cup4soil import covariates

    sample = _make(Path(job["data"]), job["size"], job["t"])
    grid = covariates.as_geobox(sample.bbox, resolution=20.0)
    result: dict[str, Any] = {"pixels": int(grid.shape.x * grid.shape.y)}
    if job["what"] == "terrain":
        # Warm up numba and xarray-spatial outside the timing.
        covariates.terrain(grid, catalog=sample.catalog).compute()
        gc.collect()
        t0 = time.perf_counter()
        chunks = {"y": job["chunk"], "x": job["chunk"]} if job["chunk"] else None
        with dask.config.set(scheduler="threads"):
            ds = covariates.terrain(grid, catalog=sample.catalog, chunks=chunks).compute()
        result["seconds"] = time.perf_counter() - t0
        result["values"] = {k: np.asarray(v.values) for k, v in ds.data_vars.items()}
        result["layers"] = len(ds.data_vars)
        queue.put(result)
        return
    items = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog,
                            collections=["sentinel-1-rtc"], max_cloud_cover=None)
    what = job["what"]
    if what.startswith("cup4soil"):
        from cup4soil.covariates import kernels

        # Compile the kernel outside the timing (a one-off per process).
        kernels.series_stats(np.ones((2, 3), np.float32), np.array([0.5]))
    if what.endswith("memory"):
        # Both engines get the same cube in memory, chunked as both need it: whole series,
        # 64 x 64 px blocks.
        with dask.config.set(scheduler="threads"):
            cube = load_cube(items, grid).chunk({"time": -1, "y": 64, "x": 64}).persist()
    gc.collect()
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads"), _PeakRSS() as mem:
        if what == "cup4soil":
            out = cup4soil_s1(sample.catalog, sample.time_range, grid, job.get("task_memory"))
        elif what == "cup4soil-memory":
            out = cup4soil_s1_memory(cube)
        elif what == "xarray-memory":
            out = xarray_s1(cube)
        else:
            out = xarray_s1(load_cube(items, grid))
    result.update(seconds=time.perf_counter() - t0, peak_mb=mem.growth / 2**20,
                  T=len(items), stats=out)
    queue.put(result)


def measure(**job: Any) -> dict[str, Any]:
    if job.pop("inline", False):  # --smoke: in this process (memory figures meaningless)
        import queue as _queue

        q: Any = _queue.Queue()
        _run(job, q)
        return dict(q.get())
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(job, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> tuple[bool, float]:
    """Identical counts and the largest difference of the dB statistics."""
    worst = 0.0
    for k in b:
        if k.endswith("count"):
            if not np.array_equal(a[k], b[k]):
                return False, float("inf")
            continue
        both = np.isfinite(a[k]) & np.isfinite(b[k])
        if not np.array_equal(np.isfinite(a[k]), np.isfinite(b[k])):
            return False, float("inf")
        if both.any():
            worst = max(worst, float(np.max(np.abs(a[k][both] - b[k][both]))))
    return worst < 1e-4, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="side, 10 m pixels")
    parser.add_argument("--t-small", type=int, default=50)
    parser.add_argument("--t-large", type=int, default=300)
    parser.add_argument("--task-memory", type=int, default=16,
                        help="cup4soil's per-task memory budget in part 2, MiB (small enough "
                             "to bind at both T)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run (seconds)")
    parser.add_argument("--data", default=os.environ.get("CUP4SOIL_BENCH_DATA",
                                                         "/tmp/cup4soil-bench"))
    args = parser.parse_args()
    if args.smoke:
        args.size, args.t_small, args.t_large, args.task_memory = 40, 10, 20, 1
    cores = os.cpu_count() or 1
    print(f"Covariates benchmark: {args.size} x {args.size} px at 10 m -> 20 m grid, "
          f"{cores} cores, threaded Dask; data in {args.data}")
    for t in (args.t_small, args.t_large):  # generate the archives outside the timings
        _make(Path(args.data), args.size, t)

    common = {"size": args.size, "data": args.data, "inline": args.smoke}
    print(f"\n1. Sentinel-1 statistics: cup4soil vs the xarray transcription (T = "
          f"{args.t_small}, from COGs)")
    res = {e: measure(what=e, t=args.t_small, **common) for e in ("xarray", "cup4soil")}
    same, worst = _compare(res["xarray"]["stats"], res["cup4soil"]["stats"])
    speedup = res["xarray"]["seconds"] / res["cup4soil"]["seconds"]
    print(f"{'engine':<9} {'wall s':>8} {'+RSS MB':>8} {'Mpx-obs/s':>10} {'speed-up':>9}")
    for e in ("xarray", "cup4soil"):
        r = res[e]
        rate = r["pixels"] * r["T"] / r["seconds"] / 1e6
        print(f"{e:<9} {r['seconds']:8.2f} {r['peak_mb']:8.1f} {rate:10.2f} "
              f"{(f'{speedup:.1f}x' if e == 'cup4soil' else ''):>9}")
    print(f"identical: {'yes' if same else 'NO'} (counts equal; largest dB difference "
          f"{worst:.2e}; target >= 5x faster)")
    mem = {e: measure(what=f"{e}-memory", t=args.t_small, **common)
           for e in ("xarray", "cup4soil")}
    same_m, worst_m = _compare(mem["xarray"]["stats"], mem["cup4soil"]["stats"])
    speedup_m = mem["xarray"]["seconds"] / mem["cup4soil"]["seconds"]
    print("the statistics alone, cube in memory (the same persisted odc-stac cube for both):")
    for e in ("xarray", "cup4soil"):
        r = mem[e]
        rate = r["pixels"] * r["T"] / r["seconds"] / 1e6
        print(f"{e:<9} {r['seconds']:8.2f} {r['peak_mb']:8.1f} {rate:10.2f} "
              f"{(f'{speedup_m:.1f}x' if e == 'cup4soil' else ''):>9}")
    print(f"identical: {'yes' if same_m else 'NO'} (largest dB difference {worst_m:.2e})")

    print(f"\n2. cup4soil peak memory, T = {args.t_small} vs T = {args.t_large} (task_memory "
          f"= {args.task_memory} MiB)")
    budget = args.task_memory * 2**20
    small = measure(what="cup4soil", t=args.t_small, task_memory=budget, **common)
    large = measure(what="cup4soil", t=args.t_large, task_memory=budget, **common)
    base_large = measure(what="xarray", t=args.t_large, **common)
    default_large = measure(what="cup4soil", t=args.t_large, **common)
    print(f"{'engine':<28} {'T':>4} {'+RSS MB':>8} {'wall s':>7}")
    rows = ((f"cup4soil, {args.task_memory} MiB budget", small),
            (f"cup4soil, {args.task_memory} MiB budget", large),
            ("cup4soil, default budget", res["cup4soil"]), ("cup4soil, default budget",
                                                             default_large),
            ("xarray", res["xarray"]), ("xarray", base_large))
    for label, r in rows:
        print(f"{label:<28} {r['T']:>4} {r['peak_mb']:8.1f} {r['seconds']:7.1f}")
    print(f"ratio T large / T small: cup4soil ({args.task_memory} MiB) "
          f"{large['peak_mb'] / small['peak_mb']:.2f} (target <= 1.3), xarray "
          f"{base_large['peak_mb'] / res['xarray']['peak_mb']:.2f}")

    print("\n3. terrain derivatives: chunked vs one chunk")
    chunk = max(16, args.size // 8)
    one = measure(what="terrain", t=args.t_small, chunk=0, **common)
    cut = measure(what="terrain", t=args.t_small, chunk=chunk, **common)
    identical = all(np.array_equal(one["values"][k], cut["values"][k], equal_nan=True)
                    for k in one["values"])
    print(f"{'chunks':<12} {'wall s':>8} {'px/s':>10} {'layers':>7}")
    for label, r in (("one", one), (f"{chunk} x {chunk}", cut)):
        print(f"{label:<12} {r['seconds']:8.2f} {r['pixels'] / r['seconds']:10.0f} "
              f"{r['layers']:>7}")
    print(f"identical: {'yes' if identical else 'NO'}")
    sys.stdout.flush()
    if not (same and same_m and identical):
        sys.exit("results differ: see above")  # a benchmark of wrong results is no benchmark


if __name__ == "__main__":
    main()
