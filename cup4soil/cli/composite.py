"""``cup4soil composite``: SCMaP bare-soil composites for an AOI and time span into Zarr."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from ._common import (
    cluster_arg,
    max_pixels_arg,
    storage_args,
    storage_options,
    threshold_arg,
    threshold_option,
    write_mode,
)

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    """Add the ``composite`` command."""
    p = sub.add_parser(
        "composite", help="SCMaP bare-soil composites for an AOI and time span into Zarr",
        description="Search, build the cube and write SCMaP products (SRC, VPC, BSC, BSF, "
                    "MASK, MREF) as a Zarr store.",
    )
    p.add_argument("--aoi", required=True,
                   help="built-in name (oderbruch), 'west,south,east,north' or GeoJSON file")
    p.add_argument("--time", required=True, help="e.g. 2018/2022")
    p.add_argument("--catalog", default="planetary-computer")
    p.add_argument("--out", required=True, help="Zarr store path or URL")
    p.add_argument("--resolution", type=float, default=20.0, help="metres (default 20)")
    p.add_argument("--crs", default=None, help="output CRS (default: UTM zone of the AOI)")
    p.add_argument("--by", choices=("year",), default=None, help="per-year products")
    threshold_option(p)
    p.add_argument("--max-cloud-cover", type=float, default=80.0, help="percent")
    p.add_argument("--worldcover", default=None, metavar="auto|PATH",
                   help="ESA WorldCover (auto: from --catalog) or a WorldCover raster: "
                        "built-up and water never bare, MASK 3")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    max_pixels_arg(p)
    storage_args(p)
    cluster_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Search, build the cube, compute the composites and write them."""
    from .. import load_s2, scmap, search, store

    t0 = time.perf_counter()
    items = search(args.aoi, args.time, catalog=args.catalog,
                   max_cloud_cover=args.max_cloud_cover)
    cube = load_s2(items, resolution=args.resolution, crs=args.crs, max_pixels=args.max_pixels)
    products = scmap.composite(cube, threshold_arg(args.threshold), by=args.by,
                               worldcover=args.worldcover, worldcover_catalog=args.catalog,
                               max_pixels=args.max_pixels)
    print(f"{len(items)} items -> cube {dict(cube.sizes)}; writing {args.out}")
    info = store.write(products, args.out, mode=write_mode(args), progress=True,
                       zarr_format=args.zarr_format,
                       storage_options=storage_options(args.storage_option))
    print(f"wrote {', '.join(info.variables)} to {info.url} ({info.computed} of "
          f"{info.regions} regions computed) in {time.perf_counter() - t0:.1f} s")
    return 0
