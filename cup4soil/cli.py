"""The ``cup4soil`` command line.

Every failure cup4soil diagnoses is one line on stderr, naming the problem and the fix,
with exit status 2; ``--verbose`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import Cup4SoilError


def _positive_float(text: str) -> float:
    return float(text)


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


def _cmd_demo(args: argparse.Namespace) -> int:
    import dask

    from . import masks, store
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
    for label, secs in steps:
        print(f"  {label:<20} {secs:6.2f} s")
    print(f"  total      : {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cup4soil`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    commands: dict[str, Any] = {"demo": _cmd_demo, "search": _cmd_search}
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
