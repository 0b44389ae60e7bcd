"""``cup4soil plan``, ``run`` and ``status``: continental runs on the EEA grid (tiles)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ._common import cluster_arg, storage_options, threshold_arg, threshold_option, zarr_format_arg

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    """Add the ``plan``, ``run`` and ``status`` commands."""
    p = sub.add_parser("plan", help="plan a tiled run on the EEA grid: tiles, items, costs")
    p.add_argument("--aoi", required=True,
                   help="'west,south,east,north', a GeoJSON file, a built-in name, or an EU27 "
                        "country (name or ISO code; its bounding box) or EU27")
    p.add_argument("--time", required=True, help="e.g. 2018/2022")
    p.add_argument("--tile", default="10km", choices=("1km", "10km", "100km"),
                   help="tile size (default: %(default)s)")
    p.add_argument("--resolution", type=float, default=20.0, help="metres (default 20)")
    p.add_argument("--catalog", default="planetary-computer",
                   help="planetary-computer, earth-search, cdse, a STAC API URL, or a static "
                        "catalog path/URL (default: %(default)s)")
    p.add_argument("--collections", nargs="+", default=None)
    p.add_argument("--max-cloud-cover", type=float, default=80.0, help="percent")
    p.add_argument("--chunk", type=int, default=None,
                   help="block and Zarr chunk side, pixels (divides the tile side)")
    p.add_argument("--workers", type=int, default=1, help="cluster size for the projection")
    p.add_argument("--threads", type=int, default=1, help="threads per worker")
    p.add_argument("--out", required=True, help="where to write plan.json")
    p.set_defaults(run=run_plan)

    r = sub.add_parser("run", help="run a plan: every tile's composite into one mosaic")
    r.add_argument("plan", help="plan.json from 'cup4soil plan'")
    r.add_argument("--out", required=True, help="the mosaic's URL (path, s3://...); running "
                   "again resumes it")
    threshold_option(r)
    r.add_argument("--worldcover", default=None, metavar="auto|PATH",
                   help="exclude land cover as SCMaP does: 'auto' finds ESA WorldCover in the "
                        "plan's catalog, or a WorldCover raster's path/URL (default: none)")
    r.add_argument("--retries", type=int, default=2, help="extra attempts per failing tile")
    r.add_argument("--max-tiles-in-flight", type=int, default=None)
    r.add_argument("--cogs", default=None, metavar="PREFIX",
                   help="also write a COG per variable and tile under PREFIX/<tile>/")
    r.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec storage option for --out (repeatable)")
    zarr_format_arg(r)
    cluster_arg(r)
    r.set_defaults(run=run_run)

    s = sub.add_parser("status", help="tiles of a plan done, failed and left in a mosaic")
    s.add_argument("plan", help="plan.json")
    s.add_argument("--out", required=True, help="the mosaic's URL")
    s.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--json", action="store_true", help="print the state as JSON")
    s.set_defaults(run=run_status)


def run_plan(args: argparse.Namespace) -> int:
    """Plan, print the summary and the projection, write plan.json."""
    from ..tiling import plan

    p = plan(args.aoi, args.time, size=args.tile, resolution=args.resolution,
             catalog=args.catalog, collections=args.collections,
             max_cloud_cover=args.max_cloud_cover, chunk=args.chunk)
    p.save(args.out)
    proj = p.projection(workers=args.workers, threads=args.threads)
    print(p.summary())
    print(f"on {proj.workers} workers x {proj.threads} threads: ~{proj.wall_seconds / 3600:.3g} "
          f"h wall, {proj.cpu_hours:.3g} CPU-hours, {proj.worker_memory_bytes / 2**30:.2g} "
          "GiB per worker")
    print(f"plan written to {args.out}")
    return 0


def run_run(args: argparse.Namespace) -> int:
    """Run (or resume) a plan; exit status 0 only when the mosaic is complete."""
    from ..tiling import run

    result = run(args.plan, out=args.out, retries=args.retries,
                 max_tiles_in_flight=args.max_tiles_in_flight,
                 threshold=threshold_arg(args.threshold),
                 storage_options=storage_options(args.storage_option),
                 zarr_format=args.zarr_format, cogs=args.cogs, worldcover=args.worldcover)
    print(f"{result.url}: {result.state.summary()} ({len(result.computed)} tiles computed in "
          f"{result.seconds:.0f} s)")
    if not result.complete:
        print("some tiles failed: fix their cause and run the same command again")
        return 3
    return 0


def run_status(args: argparse.Namespace) -> int:
    """Print done/failed/left."""
    from ..tiling import status

    st = status(args.plan, out=args.out, storage_options=storage_options(args.storage_option))
    if args.json:
        print(json.dumps({"done": st.done, "failed": st.reasons, "left": st.left,
                          "complete": st.complete}))
    else:
        print(st.summary())
        for code in st.left:
            print(f"left: {code}")
    return 0
