"""``cup4soil map``, ``cup4soil compare`` and ``cup4soil validate``: every soil property in
one product, the covariate-set table, and a map's validation report at independent points."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from ..errors import ParameterError
from ._common import storage_args, storage_options, write_mode
from .models import folds_arg

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["register"]


def _properties(pairs: list[str]) -> dict[str, str | None]:
    """``--property soc:%`` → ``{"soc": "%"}``; ``--property clay`` (mapped units) → None."""
    out: dict[str, str | None] = {}
    for p in pairs:
        name, _, unit = p.partition(":")
        if not name:
            raise ParameterError(f"--property {p!r}: give COLUMN[:UNIT], e.g. soc:%.")
        out[name] = unit or None
    return out


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", required=True,
                   help="CSV, GeoPackage, GeoJSON or Parquet of soil samples")
    p.add_argument("--property", action="append", required=True, dest="properties",
                   metavar="COLUMN[:UNIT]",
                   help="a property column and its unit, e.g. soc:%% phh2o:pH (repeat)")
    p.add_argument("--folds", default="2 km",
                   help="k, a fold column, or a block size like '2 km' (default: 2 km)")
    p.add_argument("--crs", default=None, help="CRS of the sample coordinates")


def register(sub: Subparsers) -> None:
    """Add the ``map``, ``compare`` and ``validate`` commands."""
    m = sub.add_parser(
        "map", help="map several soil properties with calibrated 90 %% intervals",
        description="Train one model per property with shared spatial folds and write every "
                    "property in SoilGrids names and units (soc_0-30cm_mean, _Q0.05, ...).")
    _common(m)
    m.add_argument("--covariates", required=True, help="Zarr store of covariate layers")
    m.add_argument("--out", required=True, help="Zarr store path or URL")
    m.add_argument("--chunks", type=int, default=None, help="spatial chunk size, pixels")
    m.add_argument("--overwrite", action="store_true", help="replace an existing store")
    storage_args(m)
    m.set_defaults(run=run_map)

    c = sub.add_parser(
        "compare", help="cross-validate covariate sets (the CUP4SOIL table)",
        description="MEC, RMSE and PICP90 per property and covariate set, same folds.")
    _common(c)
    c.add_argument("--set", action="append", required=True, dest="sets", metavar="N=ZARR",
                   help="a covariate set and its Zarr store, e.g. 1=set1.zarr (repeat)")
    c.add_argument("--plot", default=None, help="write the bar chart to this PNG")
    c.set_defaults(run=run_compare)

    v = sub.add_parser(
        "validate", help="validate a soil map at independent points (Markdown report)",
        description="Sample a product written by 'cup4soil map' at independent points and "
                    "write ME, RMSE, MEC, CCC, PICP90 and n with a predicted-vs-observed "
                    "scatter, a residual map and an interval-coverage plot to "
                    "REPORT_DIR/report.md (and report.html).")
    v.add_argument("product", metavar="PRODUCT", help="Zarr store of soil maps (URL or path)")
    v.add_argument("points", metavar="POINTS",
                   help="CSV, GeoPackage, GeoJSON or Parquet of independent observations")
    v.add_argument("--property", required=True, dest="prop",
                   help="SoilGrids property to validate, e.g. soc")
    v.add_argument("--unit", default=None,
                   help="unit of the observations, e.g. %% (default: the map's units)")
    v.add_argument("--column", default=None,
                   help="observation column (default: the property's name)")
    v.add_argument("--crs", default=None, help="CRS of the point coordinates")
    v.add_argument("--out", required=True, metavar="REPORT_DIR",
                   help="report folder: new, empty, or an earlier cup4soil report")
    v.add_argument("--no-html", action="store_true", help="write report.md only")
    v.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec storage option for PRODUCT (repeatable)")
    v.set_defaults(run=run_validate)


def run_map(args: argparse.Namespace) -> int:
    """Train, predict, write; print the CV table."""
    from .. import soilmap, store

    t0 = time.perf_counter()
    covariates = store.open(args.covariates)
    model = soilmap.train(args.samples, _properties(args.properties), covariates=covariates,
                          folds=folds_arg(args.folds), crs=args.crs)
    print(model.cv.round(3).to_string())
    out = model.predict(covariates, chunks=args.chunks)
    info = store.write(out, args.out, mode=write_mode(args), progress=True,
                       zarr_format=args.zarr_format,
                       storage_options=storage_options(args.storage_option),
                       provenance={"samples": str(args.samples), "covariates": args.covariates})
    print(f"wrote {len(info.variables)} layers of {', '.join(model.properties)} to {info.url} "
          f"in {time.perf_counter() - t0:.1f} s")
    if "extrapolated" in info.variables:  # the share needs the pixels: read the written flag
        written = store.open(info.url, storage_options=storage_options(args.storage_option))
        share = soilmap.check_extrapolation(written["extrapolated"].values,
                                            what=f"the maps at {info.url}")
        print(f"extrapolated pixels (covariates > 10 % outside the training range): "
              f"{100 * share:.1f} %")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    """Print the covariate-set table (and write its chart)."""
    from .. import soilmap, store

    sets = {}
    for s in args.sets:
        k, _, url = s.partition("=")
        if not k.isdigit() or not url:
            raise ParameterError(f"--set {s!r}: give N=ZARR, e.g. 2=set2.zarr.")
        sets[int(k)] = store.open(url)
    table = soilmap.compare(args.samples, _properties(args.properties), sets=tuple(sets),
                            covariates=sets, folds=folds_arg(args.folds), crs=args.crs,
                            plot=args.plot)
    print(table.round(3).to_string())
    if args.plot:
        print(f"chart written to {args.plot}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """Validate, write the report, print the metrics."""
    from .. import soilmap, store
    from ..products.report import validation_report

    maps = store.open(args.product, storage_options=storage_options(args.storage_option))
    metrics, table = soilmap.validate(maps, args.points, args.prop, unit=args.unit,
                                      column=args.column, crs=args.crs)
    units = str(maps[soilmap.layer_name(args.prop, "Q0.5")].attrs.get("units", ""))
    path = validation_report(metrics, table, args.out, property=args.prop, units=units,
                             crs=table.attrs.get("crs"), html_report=not args.no_html)
    print("  ".join(f"{k}={v:.3f}" if k != "n" else f"n={int(v)}"
                    for k, v in metrics.items()) + f"  ({units})")
    print(f"report written to {path}")
    return 0
