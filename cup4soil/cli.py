"""The ``cup4soil`` command line.

Every failure cup4soil diagnoses is one line on stderr, naming the problem and the fix,
with exit status 2; ``--verbose`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import Cup4SoilError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cup4soil",
        description="Soil-health maps from Sentinel data: search, cube, composites, models.",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="run the chain offline on the built-in sample catalog",
        description="Make the sample catalog, search it, build the cube, compute the valid "
                    "pixel count and write a Zarr store.",
    )
    demo.add_argument("--out", default="cup4soil-demo", help="output folder (default: %(default)s)")
    demo.add_argument("--size", type=int, default=200, help="side of the area, 10 m pixels")
    demo.add_argument("--scenes-per-year", type=int, default=12)
    demo.add_argument("--engine", choices=("odc-stac", "stackstac"), default="odc-stac")
    demo.add_argument("--seed", type=int, default=0)

    comp = sub.add_parser(
        "composite", help="SCMaP bare-soil composites for an AOI and time span into Zarr",
        description="Search, build the cube and write SCMaP products (SRC, VPC, BSC, BSF, "
                    "MASK, MREF) as a Zarr store.",
    )
    comp.add_argument("--aoi", required=True,
                      help="built-in name (oderbruch), 'west,south,east,north' or GeoJSON file")
    comp.add_argument("--time", required=True, help="e.g. 2018/2022")
    comp.add_argument("--catalog", default="planetary-computer")
    comp.add_argument("--out", required=True, help="Zarr store path or URL")
    comp.add_argument("--resolution", type=float, default=20.0, help="metres (default 20)")
    comp.add_argument("--crs", default=None, help="output CRS (default: UTM zone of the AOI)")
    comp.add_argument("--by", choices=("year",), default=None, help="per-year products")
    comp.add_argument("--threshold", default="dlr-europe",
                      help="PVIR2 threshold: a number, a raster path/URL, or dlr-europe")
    comp.add_argument("--max-cloud-cover", type=float, default=80.0, help="percent")
    comp.add_argument("--overwrite", action="store_true", help="replace an existing store")

    search = sub.add_parser("search", help="list the items a catalog holds for an AOI and time")
    search.add_argument("--aoi", required=True,
                        help="built-in name (oderbruch), 'west,south,east,north' or GeoJSON file")
    search.add_argument("--time", required=True, help="e.g. 2018/2022 or 2018-03-01/2018-10-31")
    search.add_argument("--catalog", default="planetary-computer",
                        help="planetary-computer, earth-search, cdse, a STAC API URL, or a "
                             "static catalog path/URL (default: %(default)s)")
    search.add_argument("--collections", nargs="+", default=None)
    search.add_argument("--max-cloud-cover", type=float, default=80.0, help="percent")
    search.add_argument("--limit", type=int, default=None)
    search.add_argument("--json", action="store_true", help="print the ItemCollection as JSON")
    return parser


def _cmd_search(args: argparse.Namespace) -> int:
    from . import _s2meta
    from .catalog import search

    items = search(
        args.aoi, args.time, catalog=args.catalog, collections=args.collections,
        max_cloud_cover=args.max_cloud_cover, limit=args.limit,
    )
    if args.json:
        print(json.dumps(items.to_dict(transform_hrefs=False)))
        return 0
    print(f"{'id':<62} {'datetime':<20} {'cloud %':>7} {'baseline':>8}")
    for it in items:
        d = _s2meta.describe(it)
        cc = "" if d["cloud_cover"] is None else f"{float(d['cloud_cover']):.1f}"
        base = "" if d["baseline"] is None else f"{d['baseline']:05.2f}"
        print(f"{d['id']:<62} {str(d['datetime'])[:19]:<20} {cc:>7} {base:>8}")
    print(f"{len(items)} items")
    return 0


def _threshold_arg(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _cmd_composite(args: argparse.Namespace) -> int:
    import dask.diagnostics

    from . import scmap, store
    from .catalog import search
    from .cube import load_s2

    t0 = time.perf_counter()
    items = search(args.aoi, args.time, catalog=args.catalog,
                   max_cloud_cover=args.max_cloud_cover)
    cube = load_s2(items, resolution=args.resolution, crs=args.crs)
    products = scmap.composite(cube, _threshold_arg(args.threshold), by=args.by)
    print(f"{len(items)} items -> cube {dict(cube.sizes)}; writing {args.out}")
    with dask.diagnostics.ProgressBar(minimum=2.0):
        info = store.write(products, args.out, mode="w" if args.overwrite else "w-")
    print(f"wrote {', '.join(info.variables)} to {info.url} in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import dask
    import numpy as np

    from . import masks, quicklook, scmap, store
    from .catalog import search
    from .cube import load_s2
    from .sample import make_catalog

    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps: list[tuple[str, float]] = []

    def step(label: str, start: float) -> float:
        now = time.perf_counter()
        steps.append((label, now - start))
        return now

    t = t0
    sample = make_catalog(out / "sample-catalog", size=args.size,
                          scenes_per_year=args.scenes_per_year, seed=args.seed)
    t = step("sample catalog", t)
    items = search(sample.bbox, sample.time_range, catalog=str(sample.catalog))
    t = step("search", t)
    cube = load_s2(items, resolution=20.0, engine=args.engine)
    vpc = masks.valid_pixel_count(cube)
    n_tasks = len(vpc.__dask_graph__())
    t = step("cube + mask graph", t)
    product = vpc.to_dataset()
    product["n_scenes"] = (cube["SCL"] != 0).sum("time").astype("uint16")
    product["n_scenes"].attrs = {"long_name": "scenes with data", "units": "1"}
    product.attrs.update({
        "title": "cup4soil demo: SCMaP valid pixel count",
        "source_catalog": str(sample.catalog),
        "items": len(items),
    })
    with dask.config.set(scheduler="threads"):
        info = store.write(product, str(out / "demo.zarr"), mode="w")
    t = step("compute + write Zarr", t)
    result = store.open(info.url).load()
    # SCMaP composites; the sample area lies in the Oderbruch, inside DLR's threshold raster,
    # but the demo runs offline: it uses the raster's value there unless one is configured.
    threshold: Any = "dlr-europe" if os.environ.get(scmap.THRESHOLD_ENV) else 0.137
    # ESA WorldCover's role is played by the sample's land-cover truth: lake and village out.
    worldcover = sample.truth_on("worldcover", cube.odc.geobox)
    comp = scmap.composite(cube, threshold, worldcover=worldcover)
    with dask.config.set(scheduler="threads"):
        comp_info = store.write(comp, str(out / "scmap.zarr"), mode="w")
    composite_ds = store.open(comp_info.url).load()
    pngs = [
        quicklook.false_colour(composite_ds.SRC, out / "scmap-SRC-B11-B08-B04.png"),
        quicklook.scalar_map(composite_ds.BSF, out / "scmap-BSF.png", vmin=0, vmax=1),
    ]
    t = step("SCMaP composite + write", t)

    print(f"cup4soil demo — sample archive in {sample.root}")
    print(f"  search     : {len(items)} items ({sample.n_items} in the catalog; "
          "the duplicate delivery and cloudy scenes removed)")
    print(f"  cube       : {dict(cube.sizes)} at 20 m, {sample.crs}, bands "
          f"{', '.join(map(str, cube.data_vars))}")
    print(f"  graph      : {n_tasks} tasks for the valid pixel count")
    vals = result["VPC"].values
    print(f"  VPC        : min {vals.min()}, median {int(float(vals.mean()))}, max {vals.max()} "
          f"valid observations per pixel (of {cube.sizes['time']} dates)")
    print(f"  written    : {info.url}")
    mask = composite_ds.MASK.values
    print(f"  SCMaP      : {comp_info.url} (threshold {threshold}); bare soil "
          f"{(mask == 1).mean():.0%}, permanently vegetated {(mask == 2).mean():.0%} of pixels; "
          f"median BSF {float(np.nanmedian(composite_ds.BSF.values)):.2f}")
    print(f"  quicklooks : {', '.join(str(p) for p in pngs)}")
    for label, secs in steps:
        print(f"  {label:<20} {secs:6.2f} s")
    print(f"  total      : {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cup4soil`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    commands: dict[str, Any] = {
        "composite": _cmd_composite, "demo": _cmd_demo, "search": _cmd_search,
    }
    try:
        return int(commands[args.command](args))
    except Cup4SoilError as exc:
        if args.verbose:
            raise
        print(f"cup4soil: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cup4soil: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
