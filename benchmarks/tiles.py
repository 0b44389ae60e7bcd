"""Continental runs: tiles/hour, bytes/s and worker memory on a local cluster; the cost
constants of ``cup4soil.tiling.plan``; EU27 planning time and the EU27 projection.

1. **Run.** A synthetic sample archive (``cup4soil.sample``) spanning >= 9 cells of the 1 km
   EEA grid is planned and run on ``connect("local")`` with 1 worker and with 2 workers
   (1 thread each), side by side: tiles/hour, decoded bytes read per second (the plan's
   estimate of bytes over the wall time), peak worker memory (max RSS of the worker
   processes). The 1-worker run measures the per-pixel-observation constants
   (CPU-seconds, and memory above the idle worker per block pixel-observation), printed
   next to the constants stored in ``cup4soil/tiling/plan.py``.
2. **Planning EU27** from synthetic item metadata (no pixel, no file): ~110 km footprints
   (MGRS-like, 1 x 1 degree) over the EU27 bounding boxes, 2018-2022, a scene every
   ``--revisit`` days per footprint; planning time at 100 km and 10 km tiles (target < 60 s).
3. **EU27 projection** at 20 m, 2018-2022, 10 km tiles, from the 10 km plan and the
   constants measured in 1. (assumptions printed with it).

Run: ``python benchmarks/tiles.py`` (``--smoke``: a tiny archive, 1 worker, fewer items).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pystac
import shapely

from cup4soil import cluster
from cup4soil.sample import make_catalog
from cup4soil.sources import sentinel2 as s2
from cup4soil.tiling import grid, plan, run

THRESHOLD = 0.1
# the module (the package exports the function under the same name)
plan_module = importlib.import_module("cup4soil.tiling.plan")


def _max_rss() -> int:
    """Peak resident memory of this process, bytes (Linux reports KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _rss_now() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def run_on_cluster(catalog, workers: int, out: Path) -> dict[str, float]:
    p = plan(catalog.bbox, catalog.time_range, size="1km", resolution=20,
             catalog=str(catalog.catalog), max_cloud_cover=None)
    client = cluster.connect("local", workers=workers, threads_per_worker=1)
    try:
        idle = max(client.run(_rss_now).values())
        t0 = time.perf_counter()
        result = run(p, out=str(out), client=client, threshold=THRESHOLD,
                     max_tiles_in_flight=workers)
        wall = time.perf_counter() - t0
        peak = max(client.run(_max_rss).values())
    finally:
        cluster.close(client)
    assert result.complete, result.state.summary()
    t = p.totals
    return {"tiles": t["tiles"], "wall": wall, "tiles_per_hour": t["tiles"] / wall * 3600,
            "bytes_per_s": t["bytes_read"] / wall, "peak": peak, "idle": idle,
            "pixel_obs": t["pixel_observations"], "chunk": p.chunk,
            "times": max(x.times for x in p.tiles)}


def eu27_items(revisit_days: int, years: tuple[int, int] = (2018, 2022)) -> list[pystac.Item]:
    """Synthetic Sentinel-2 L2A metadata over EU27: 1 x 1 degree footprints meeting a member
    state's bounding box, one scene every ``revisit_days`` days (assets do not exist)."""
    boxes = [shapely.box(*grid.country_bbox(c)) for c in grid.countries()]  # type: ignore[misc]
    eu = shapely.union_all(boxes)
    w, s, e, n = (int(np.floor(v)) if i < 2 else int(np.ceil(v))
                  for i, v in enumerate(eu.bounds))
    feet = [shapely.box(x, y, x + 1, y + 1) for x in range(w, e) for y in range(s, n)]
    feet = [f for f in feet if f.intersects(eu)]
    start = dt.datetime(years[0], 1, 1, 10, 30, tzinfo=dt.UTC)
    days = range(0, (dt.datetime(years[1], 12, 31, tzinfo=dt.UTC) - start).days + 1,
                 revisit_days)
    assets = {b: {"href": f"https://synthetic.invalid/{b}.tif",
                  "type": str(pystac.MediaType.COG),
                  "proj:transform": [s2.NATIVE_GSD[b], 0, 0, 0, -s2.NATIVE_GSD[b], 0],
                  "raster:bands": [{"data_type": "uint8" if b == "SCL" else "uint16"}]}
              for b in s2.ALL_BANDS}
    out = []
    for k, f in enumerate(feet):
        geom = shapely.geometry.mapping(f)
        for d in days:
            when = start + dt.timedelta(days=d, minutes=k % 50)
            item = pystac.Item(id=f"S2_T{k:04d}_{when:%Y%m%d}", geometry=geom,
                               bbox=list(f.bounds), datetime=when, properties={})
            for key, a in assets.items():
                item.add_asset(key, pystac.Asset(a["href"], media_type=a["type"],
                                                 extra_fields={k2: v for k2, v in a.items()
                                                               if ":" in k2}))
            out.append(item)
    return out


def runs(smoke: bool) -> None:
    """1.: plan and run the synthetic archive on 1 (and 2) local workers; print."""
    root = Path(os.environ.get("CUP4SOIL_BENCH_DATA", tempfile.mkdtemp(prefix="c4s-tiles-")))
    if smoke:
        cat = make_catalog(root / "sample-smoke", size=80, years=(2021, 2022),
                           scenes_per_year=3, seed=7)
        sizes = (1,)
    else:
        # 2.6 km x 2.6 km at 10 m: at least 3 x 3 cells of the 1 km grid
        cat = make_catalog(root / "sample-tiles", size=260, years=(2020, 2022),
                           scenes_per_year=6, seed=7)
        sizes = (1, 2)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in sizes:
            rows[w] = run_on_cluster(cat, w, Path(tmp) / f"w{w}" / "mosaic.zarr")
    print(f"\n1. run: synthetic archive, {int(rows[1]['tiles'])} tiles of 1 km at 20 m, "
          f"{int(rows[1]['times'])} time steps, connect('local'), 1 thread per worker")
    print(f"{'':28}" + "".join(f"{f'{w} worker(s)':>16}" for w in sizes))
    for label, key, scale, fmt in (("wall time, s", "wall", 1, ".1f"),
                                   ("tiles/hour", "tiles_per_hour", 1, ".0f"),
                                   ("bytes/s (decoded), MB/s", "bytes_per_s", 1e-6, ".2f"),
                                   ("peak worker memory, MiB", "peak", 2**-20, ".0f")):
        print(f"{label:28}" + "".join(f"{rows[w][key] * scale:>16{fmt}}" for w in sizes))
    if 2 in rows:
        print(f"{'speed-up 2 vs 1 worker':28}{rows[1]['wall'] / rows[2]['wall']:>32.2f}")
    one = rows[1]
    # one worker, one thread: wall time = CPU time of the tiles (plus the driver's share)
    per_tile = one["wall"] / one["tiles"]
    overhead = per_tile - one["pixel_obs"] / one["tiles"] * plan_module.CPU_SECONDS_PER_PIXEL_OBS
    tile_mem = max(one["peak"] - one["idle"], 0)  # small blocks: the fixed part dominates
    print("\ncost constants (cup4soil/tiling/plan.py)   stored        measured now")
    print(f"{'seconds per tile (fixed part)':38}{plan_module.TILE_OVERHEAD_SECONDS:>12.3g}"
          f"{overhead:>18.3g}")
    print(f"{'CPU-s per pixel-observation (scmap)':38}"
          f"{plan_module.CPU_SECONDS_PER_PIXEL_OBS:>12.3g}{'(benchmarks/scmap.py)':>22}")
    print(f"{'tile memory above idle, MiB':38}"
          f"{plan_module.TILE_MEMORY / 2**20:>12.0f}{tile_mem / 2**20:>18.0f}")
    print(f"{'idle worker memory, MiB':38}{plan_module.BASE_MEMORY / 2**20:>12.0f}"
          f"{one['idle'] / 2**20:>18.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (a smoke test)")
    ap.add_argument("--revisit", type=int, default=None,
                    help="days between synthetic EU27 scenes per footprint (default 10)")
    ap.add_argument("--plan-only", action="store_true",
                    help="skip the runs (1.): EU27 planning and projection only")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")

    # --- 1. runs on a local cluster ---------------------------------------------------
    if not args.plan_only:
        runs(args.smoke)

    # --- 2. planning EU27 -------------------------------------------------------------
    revisit = args.revisit or (60 if args.smoke else 10)
    t0 = time.perf_counter()
    items = eu27_items(revisit)
    made = time.perf_counter() - t0
    print(f"\n2. planning EU27 from {len(items)} synthetic items (made in {made:.1f} s; "
          f"{len({i.geometry['coordinates'][0][0] for i in items})} footprints, a scene every "
          f"{revisit} days 2018-2022); no pixel or file is read")
    plans = {}
    for size in ("100km",) if args.smoke else ("100km", "10km"):
        t0 = time.perf_counter()
        plans[size] = plan("EU27", "2018/2022", size=size, resolution=20, items=items)
        took = time.perf_counter() - t0
        print(f"  {size:>6} tiles: {len(plans[size].tiles):>6} tiles planned in {took:6.1f} s "
              f"(target < 60 s)")

    # --- 3. the EU27 projection -------------------------------------------------------
    p = plans.get("10km", plans["100km"])
    t = p.totals
    print(f"\n3. EU27 at 20 m, 2018-2022, {p.size} tiles: {int(t['tiles'])} tiles, "
          f"{t['pixel_observations']:.3g} pixel-observations, {t['bytes_read'] / 1e12:.1f} TB "
          f"to read (decoded), {t['cpu_seconds'] / 3600:.0f} CPU-hours, "
          f"{t['output_bytes'] / 1e12:.2f} TB of products (uncompressed)")
    for workers in (10, 100):
        proj = p.projection(workers=workers, threads=4)
        print(f"  {workers:>3} workers x 4 threads: ~{proj.wall_seconds / 3600:.1f} h wall, "
              f"{proj.worker_memory_bytes / 2**30:.1f} GiB per worker")
    print("  assumptions: the EU27 member states' bounding boxes (sea and neighbours included, "
          "so an upper bound on tiles); 1 x 1 degree footprints, each revisited every "
          f"{revisit} days (about what a cloud-cover filter keeps of the 5-day revisit); every "
          "scene of a tile is a time step; the stored cost constants (per tile + per "
          "pixel-observation, one core of this machine); decoded bytes (COG DEFLATE reads are "
          "~1.5-3x smaller); products uncompressed.")


if __name__ == "__main__":
    main()
