"""Graph size and build time of SCMaP composites for five years of one full Sentinel-2 tile.

Synthetic item metadata (no pixel is read): a real Planetary Computer ``sentinel-2-l2a``
item of tile 06VVN (from ``shared/data/stac/odc-stac-tests``) repeated as ~700 acquisitions
over 2018-2022, both processing baselines. The cube is the whole tile at 20 m
(5490 x 5490 px, 10 bands + SCL); the graph is the yearly SCMaP composite.

Printed: items, cube tasks (what a plain xarray/odc-stac pipeline would schedule; cup4soil
builds them as one lazy layer per band from a read plan), SCMaP graph tasks (its block
tasks read their windows from the plan, so no per-scene task is in it), build times and the
pickled graph size; then the graph is submitted to a local distributed scheduler and
cancelled as soon as it holds the tasks ("the scheduler accepts it").
Targets: built in < 10 s, < 200 000 tasks. Run: ``python benchmarks/graph.py``.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import pickle
import time
from pathlib import Path

import dask
import pystac

import cup4soil
from cup4soil import scmap

DATA = Path(os.environ.get("CUP4SOIL_SHARED_DATA",
                           Path(__file__).resolve().parents[2] / "shared" / "data"))
TEMPLATE = DATA / "stac/odc-stac-tests/S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"


def items(n: int) -> list[pystac.Item]:
    base = json.loads(TEMPLATE.read_text())
    out = []
    start = dt.datetime(2018, 1, 1, 21, 25, 29)
    step = (dt.datetime(2022, 12, 31) - start) / n
    for i in range(n):
        d = copy.deepcopy(base)
        when = start + i * step
        d["id"] = f"S2B_MSIL2A_{when:%Y%m%dT%H%M%S}_R043_T06VVN_synthetic{i:04d}"
        d["properties"]["datetime"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        # before 2022-01-25 baseline 03.xx, after it 04.00 (the offset changes)
        d["properties"]["s2:processing_baseline"] = "04.00" if when >= dt.datetime(
            2022, 1, 25) else "02.14"
        d["properties"]["eo:cloud_cover"] = 10.0
        for a in d["assets"].values():
            a["href"] = a["href"].split("?")[0].replace("https://", "https://synthetic.invalid/")
        d["links"] = []
        out.append(pystac.Item.from_dict(d))
    return out


def tile_grid(item: pystac.Item):
    """The tile's own 20 m grid (5490 x 5490 px) from the 20 m assets' projection."""
    from affine import Affine
    from odc.geo.geobox import GeoBox

    b11 = item.assets["B11"].extra_fields
    shape = b11.get("proj:shape")
    t = b11.get("proj:transform")
    code = item.properties.get("proj:code") or f"EPSG:{item.properties['proj:epsg']}"
    return GeoBox(tuple(shape), Affine(*t[:6]), code)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=700)
    ap.add_argument("--chunk", type=int, default=1024, help="cube chunk size, pixels")
    ap.add_argument("--no-scheduler", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="a tiny run (tests/test_benchmarks.py)")
    args = ap.parse_args()
    if args.smoke:
        args.items, args.chunk, args.no_scheduler = 8, 2048, True
    its = items(args.items)
    t0 = time.perf_counter()
    with dask.config.set(scheduler="sync"):  # building must compute nothing
        cube = cup4soil.load_s2(its, resolution=20, geobox=tile_grid(its[0]),
                                chunks={"x": args.chunk, "y": args.chunk})
        t_cube = time.perf_counter() - t0
        n_cube = len(cube.__dask_graph__())
        t1 = time.perf_counter()
        comp = scmap.composite(cube, 0.2, by="year")
        t_comp = time.perf_counter() - t1
    n_comp = len(comp.__dask_graph__())
    # what a client ships to the scheduler: the graph, pickled (the read plan once)
    mb = len(pickle.dumps(dict(comp.__dask_graph__()), protocol=5)) / 1e6
    # baseline: the same cube through odc-stac's own graph builder (one task per chunk)
    import odc.stac

    from cup4soil.cube import load as cube_mod

    bands = list(cube.data_vars)
    t3 = time.perf_counter()
    with dask.config.set(scheduler="sync"):
        ref = odc.stac.load([cube_mod._normalise(it, bands) for it in its], bands=bands,
                            geobox=cube.odc.geobox, groupby="solar_day",
                            chunks={"x": args.chunk, "y": args.chunk}, use_overviews=False,
                            resampling=cube_mod._resampling(bands, 20.0))
    t_ref = time.perf_counter() - t3
    n_ref = len(ref.__dask_graph__())
    print(f"items: {args.items} (deduplicated {cube.sizes['time']} dates), cube "
          f"{dict(cube.sizes)} at 20 m, {len(cube.data_vars)} bands")
    print(f"{'graph':<36} {'tasks':>10} {'build s':>8}")
    print(f"{'baseline: odc.stac.load cube':<36} {n_ref:>10,} {t_ref:>8.1f}")
    print(f"{f'cube (cup4soil, {args.chunk} px chunks)':<36} {n_cube:>10,} {t_cube:>8.1f}")
    print(f"{'SCMaP composite by year (cup4soil)':<36} {n_comp:>10,} {t_comp:>8.1f}")
    print(f"{'total build':<36} {'':>10} {t_cube + t_comp:>8.1f}")
    print(f"SCMaP graph pickled: {mb:.1f} MB")
    print(f"targets: < 200,000 tasks: {'met' if n_comp < 200_000 else 'NOT met'}; "
          f"< 10 s: {'met' if t_cube + t_comp < 10 else 'NOT met'}")
    if args.no_scheduler:
        return
    from distributed import Client, LocalCluster

    # a scheduler without workers: it takes the graph, nothing runs
    with LocalCluster(n_workers=0, dashboard_address=None) as lc, Client(lc) as client:
        t2 = time.perf_counter()
        futures = client.compute(list(comp.data_vars.values()))
        accepted, t_accept, last = 0, float("nan"), -1
        while time.perf_counter() - t2 < 300:
            accepted = client.run_on_scheduler(lambda dask_scheduler: len(
                dask_scheduler.tasks))
            if accepted and accepted == last:  # stable: the whole graph is in
                break
            if accepted != last:
                t_accept, last = time.perf_counter() - t2, accepted
            time.sleep(1.0)
        client.cancel(futures)
    print(f"scheduler accepted {accepted:,} tasks in {t_accept:.1f} s (a scheduler without "
          "workers; then cancelled, no pixel was read)")


if __name__ == "__main__":
    main()
