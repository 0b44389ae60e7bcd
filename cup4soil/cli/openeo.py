"""``cup4soil openeo``: SCMaP as an openEO process graph -- export, run locally, submit.

``export`` writes the graph (:func:`cup4soil.openeo.scmap_graph`) as JSON;
``run-local`` reads a graph (cup4soil's or DLR's user-defined process), searches the
catalog for what its ``load_collection`` asks, builds the cube and runs the graph with
``openeo_processes_dask``; ``submit`` runs it on an openEO back-end. Both write the
composite as a Zarr product like ``cup4soil composite``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParameterError
from ._common import cluster_arg, storage_args, storage_options, threshold_arg, write_mode

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    """Add ``openeo export``, ``openeo run-local`` and ``openeo submit``."""
    p = sub.add_parser("openeo", help="SCMaP as an openEO process graph: export, run, submit",
                       description="Export SCMaP as an openEO process graph for the "
                                   "Copernicus Data Space, run a graph locally with "
                                   "openeo_processes_dask, or submit it to a back-end.")
    cmds = p.add_subparsers(dest="openeo_command", required=True)

    e = cmds.add_parser("export", help="write the SCMaP process graph as JSON")
    e.add_argument("--aoi", required=True,
                   help="built-in name (oderbruch), 'west,south,east,north' or GeoJSON file")
    e.add_argument("--time", required=True, help="e.g. 2018/2022")
    e.add_argument("--out", required=True, help="graph JSON file")
    e.add_argument("--products", nargs="+", default=None,
                   help="subset of SRC SRC_STD SRC_CI95 MREF MREF_STD VPC BSC BSF MASK")
    e.add_argument("--threshold", default="dlr-europe",
                   help="dlr-europe (load_stac of DLR's raster), a number, or a STAC URL")
    e.add_argument("--no-worldcover", action="store_true",
                   help="do not load ESA WorldCover (no MASK 3, built-up/water not excluded)")
    e.add_argument("--max-cloud-cover", type=float, default=80.0, help="percent")
    e.add_argument("--nmad-sigma", type=float, default=3.0)
    e.add_argument("--resolution", type=float, default=20.0, help="metres (default 20)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing file")
    e.set_defaults(run=run_export)

    r = cmds.add_parser("run-local", help="run a graph with openeo_processes_dask into Zarr")
    r.add_argument("graph", help="process graph JSON (cup4soil's or DLR's UDP)")
    r.add_argument("--catalog", required=True,
                   help="catalog to build the cube from: a name, STAC API URL or static "
                        "catalog path/URL")
    r.add_argument("--out", required=True, help="Zarr store path or URL")
    r.add_argument("--threshold", default="dlr-europe",
                   help="what the graph's load_stac returns: dlr-europe, a number or a "
                        "raster path (default: %(default)s)")
    r.add_argument("--worldcover", default=None, metavar="RASTER",
                   help="ESA WorldCover raster for graphs that load it (nearest onto the grid)")
    r.add_argument("--aoi", default=None, help="area, for graphs with a bounding-box parameter")
    r.add_argument("--time", default=None, help="time, for graphs with a temporal parameter")
    r.add_argument("--param", action="append", default=[], metavar="NAME=JSON",
                   help="value of a process parameter, e.g. nmad_sigma=3.5 (repeatable)")
    r.add_argument("--resolution", type=float, default=None,
                   help="metres (default: the graph's resample_spatial, else 20)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing store")
    storage_args(r)
    cluster_arg(r)
    r.set_defaults(run=run_graph)

    s = cmds.add_parser("submit", help="run a graph on an openEO back-end into Zarr")
    s.add_argument("graph", help="process graph JSON")
    s.add_argument("--backend", required=True,
                   help="back-end URL, e.g. https://openeo.dataspace.copernicus.eu")
    s.add_argument("--out", required=True, help="Zarr store path or URL")
    s.add_argument("--job", choices=("sync", "batch"), default="sync")
    s.add_argument("--format", choices=("netCDF", "GTiff"), default="netCDF")
    s.add_argument("--keep-result", default=None, metavar="FILE",
                   help="also keep the downloaded result file here")
    s.add_argument("--no-auth", action="store_true",
                   help="do not authenticate (default: the openEO client's OIDC flows)")
    s.add_argument("--provider-id", default=None, help="OIDC provider of the back-end")
    s.add_argument("--param", action="append", default=[], metavar="NAME=JSON",
                   help="value of a process parameter (repeatable)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing store")
    storage_args(s)
    s.set_defaults(run=run_submit)


def _params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise ParameterError(f"--param {pair!r}: use NAME=VALUE (VALUE as JSON).")
        try:
            out[name] = json.loads(raw)
        except ValueError:
            out[name] = raw
    return out


def run_export(args: argparse.Namespace) -> int:
    """Write the graph."""
    from ..openeo import output_labels, scmap_graph
    from ..scmap import PRODUCTS

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ParameterError(f"{out} exists; pass --overwrite to replace it.")
    graph = scmap_graph(
        temporal_extent=args.time, bbox=args.aoi, max_cloud_cover=args.max_cloud_cover,
        nmad_sigma=args.nmad_sigma, products=args.products,
        threshold=threshold_arg(args.threshold), worldcover=not args.no_worldcover,
        resolution=args.resolution,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(json.dumps(graph, indent=2))
    tmp.replace(out)
    labels = output_labels(args.products or PRODUCTS)
    print(f"wrote {out}: {len(graph['process_graph'])} nodes; result bands {labels[0]} .. "
          f"{labels[-1]} ({len(labels)})")
    return 0


def _worldcover(path: str, cube: Any) -> Any:
    import rioxarray
    import xarray as xr

    try:
        da = rioxarray.open_rasterio(path)
    except Exception as exc:  # rasterio's errors have no common base worth naming
        raise ParameterError(f"--worldcover {path}: cannot read it ({exc}).") from None
    if not isinstance(da, xr.DataArray) or da.sizes.get("band") != 1:
        raise ParameterError(f"--worldcover {path}: give a single-band WorldCover raster.")
    return da.squeeze("band", drop=True).odc.reproject(
        cube.odc.geobox, resampling="nearest").astype("uint8")


def run_graph(args: argparse.Namespace) -> int:
    """Search and load what the graph loads, run it locally, write Zarr."""
    from .. import load_s2, search, store
    from ..openeo import load_graph, run_local
    from ..openeo.graph import (
        bbox_extent,
        bind_parameters,
        graph_inputs,
        parameter_values,
        time_extent,
    )

    t0 = time.perf_counter()
    doc = load_graph(args.graph)
    given = _params(args.param)
    values = parameter_values(
        doc, given, temporal_extent=time_extent(args.time) if args.time else None,
        bbox=bbox_extent(args.aoi) if args.aoi else None)
    inputs = graph_inputs(bind_parameters(doc, values))
    items = search(inputs.bbox, inputs.time, catalog=args.catalog,
                   max_cloud_cover=inputs.max_cloud_cover)
    cube = load_s2(items, bbox=inputs.bbox,
                   resolution=args.resolution or inputs.resolution or 20.0)
    worldcover = None
    if inputs.worldcover:
        if args.worldcover is None:
            raise ParameterError(
                "the graph loads ESA WorldCover: give --worldcover RASTER (a WorldCover map "
                "covering the area), or export the graph with --no-worldcover.")
        worldcover = _worldcover(args.worldcover, cube)
    threshold = threshold_arg(args.threshold) if inputs.threshold_url else None
    print(f"{len(items)} items -> cube {dict(cube.sizes)}; running {args.graph} with "
          "openeo_processes_dask")
    products = run_local(doc, cube, threshold, worldcover=worldcover, parameters=values)
    info = store.write(products, args.out, mode=write_mode(args), progress=True,
                       zarr_format=args.zarr_format,
                       storage_options=storage_options(args.storage_option))
    print(f"wrote {', '.join(info.variables)} to {info.url} in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def run_submit(args: argparse.Namespace) -> int:
    """Submit the graph, open the result, write Zarr."""
    from .. import store
    from ..openeo import submit

    t0 = time.perf_counter()
    options = {"provider_id": args.provider_id} if args.provider_id else None
    ds = submit(args.graph, args.backend, job=args.job, format=args.format,
                out=args.keep_result, auth=None if args.no_auth else "oidc",
                auth_options=options, parameters=_params(args.param) or None)
    info = store.write(ds, args.out, mode=write_mode(args), progress=False,
                       zarr_format=args.zarr_format,
                       storage_options=storage_options(args.storage_option))
    print(f"wrote {', '.join(info.variables)} to {info.url} in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0
