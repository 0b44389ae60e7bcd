"""``cup4soil covariates``: a CUP4SOIL covariate set on the composite's grid into Zarr."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from ..errors import ParameterError
from ._common import cluster_arg, storage_args, storage_options, write_mode

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    """Add the ``covariates`` command."""
    p = sub.add_parser(
        "covariates", help="a CUP4SOIL covariate set (1, 2 or 3) on the composite's grid "
                           "into Zarr",
        description="Set 1: terrain from the Copernicus DEM, ESA WorldCover land cover and "
                    "Sentinel-1 backscatter statistics; set 2 adds the SCMaP MREF; set 3 a "
                    "mosaic of SRC (where BSC >= 3) and MREF. Sets 2 and 3 need --composite.",
    )
    p.add_argument("--set", type=int, choices=(1, 2, 3), required=True, dest="covariate_set")
    p.add_argument("--composite", default=None,
                   help="Zarr store (path or URL) of SCMaP composites: its grid and time span "
                        "are the covariates'")
    p.add_argument("--aoi", default=None,
                   help="built-in name, 'west,south,east,north' or GeoJSON file (without "
                        "--composite: the grid)")
    p.add_argument("--time", default=None,
                   help="Sentinel-1 span, e.g. 2018/2022 (default: the composite's)")
    p.add_argument("--catalog", default="planetary-computer")
    p.add_argument("--out", required=True, help="Zarr store path or URL")
    p.add_argument("--resolution", type=float, default=20.0,
                   help="metres, without --composite (default 20)")
    p.add_argument("--crs", default=None, help="CRS without --composite (default: UTM zone)")
    p.add_argument("--orbit", choices=("ascending", "descending"), default=None,
                   help="Sentinel-1 orbit direction (default: both)")
    p.add_argument("--dem", default=None, help="a DEM file/URL instead of the catalog's GLO-30")
    p.add_argument("--extra", action="append", default=[], metavar="PATH[:categorical]",
                   help="a user raster to add (e.g. a geology map); ':categorical' for classes "
                        "(repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    storage_args(p)
    cluster_arg(p)
    p.set_defaults(run=run)


def _extra(spec: str, grid: Any) -> Any:
    from .. import covariates

    path, sep, kind = spec.rpartition(":")
    if not sep or kind not in ("categorical", "continuous"):
        path, kind = spec, "continuous"
    return covariates.raster(path, grid, kind="categorical" if kind == "categorical"
                             else "continuous")


def run(args: argparse.Namespace) -> int:
    """Build the covariate set and write it."""
    from .. import covariates, store

    t0 = time.perf_counter()
    options = storage_options(args.storage_option)
    composite = None
    if args.composite:
        composite = store.open(args.composite, storage_options=options)
        grid: Any = covariates.as_geobox(composite)
    elif args.aoi:
        grid = covariates.as_geobox(args.aoi, resolution=args.resolution, crs=args.crs)
    else:
        raise ParameterError("give --composite (its grid) or --aoi (then --resolution, --crs).")
    if args.covariate_set in (2, 3) and composite is None:
        raise ParameterError(f"--set {args.covariate_set} adds composite layers to set 1: "
                             "give --composite.")
    terrain: Any = {"dem": args.dem} if args.dem else True
    s1: Any = {"orbit": args.orbit} if args.orbit else True
    extra = [_extra(e, grid) for e in args.extra]
    ds = covariates.stack(composite, set=args.covariate_set, catalog=args.catalog,
                          time=args.time, geobox=None if composite is not None else grid,
                          terrain=terrain, sentinel1=s1, extra=extra)
    print(f"covariate set {args.covariate_set}: {len(ds.data_vars)} layers on "
          f"{grid.shape.y} x {grid.shape.x} px; writing {args.out}")
    info = store.write(ds, args.out, mode=write_mode(args), progress=True,
                       zarr_format=args.zarr_format, storage_options=options)
    print(f"wrote {', '.join(info.variables)} to {info.url} ({info.computed} of "
          f"{info.regions} regions computed) in {time.perf_counter() - t0:.1f} s")
    return 0
