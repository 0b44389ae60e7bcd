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

from ..errors import Cup4SoilError


def _cluster_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cluster", default=None, metavar="TARGET",
                   help="run on a Dask cluster: local, gateway, a Dask-Gateway URL or a "
                        "scheduler address (default: threads in this process)")


class _Cluster:
    """Context: a cluster from --cluster for the command's lifetime (or nothing)."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self.client: Any = None

    def __enter__(self) -> _Cluster:
        if self.target:
            from .. import cluster

            self.client = cluster.connect(self.target)
            print(f"cluster: {self.target} ({len(self.client.scheduler_info()['workers'])} "
                  "workers)")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            from .. import cluster

            cluster.close(self.client)


def _storage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                   help="fsspec storage option for --out, e.g. endpoint_url=http://... or "
                        "client_kwargs.region_name=eu-west-1 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="finish an interrupted write, keeping the regions already written")


def _storage_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a (nested, for dotted keys) dict; JSON values are decoded."""
    from ..errors import ParameterError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ParameterError(f"--storage-option {pair.split('=')[0]!r}: use KEY=VALUE.")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        *parents, last = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    return out


def _mode(args: argparse.Namespace) -> str:
    from ..errors import ParameterError

    if args.resume and args.overwrite:
        raise ParameterError("--resume and --overwrite exclude each other.")
    return "resume" if args.resume else "w" if args.overwrite else "w-"


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
    _cluster_arg(demo)

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
    _storage_args(comp)
    _cluster_arg(comp)

    train = sub.add_parser(
        "train", help="train a soil property model with cross-validation",
        description="Train a quantile regression forest (or rf) on soil samples, print the "
                    "cross-validation table and save the model with its model card.",
    )
    train.add_argument("samples", help="CSV, GeoPackage, GeoJSON or Parquet of soil samples")
    train.add_argument("--target", required=True, help="column to predict")
    train.add_argument("--unit", default=None,
                       help="unit of the target column, e.g. %% for SOC (converted to "
                            "SoilGrids units)")
    train.add_argument("--property", default=None, help="SoilGrids name (soc, phh2o, ...)")
    train.add_argument("--covariates", default=None,
                       help="Zarr store (path or URL) of covariate layers to sample at the points")
    train.add_argument("--features", nargs="+", default=None,
                       help="feature columns (or covariate layers) to use")
    train.add_argument("--folds", default="10",
                       help="k, a fold column, or a block size like '2 km' (default: 10)")
    train.add_argument("--method", choices=("qrf", "rf"), default="qrf")
    train.add_argument("--crs", default=None, help="CRS of the sample coordinates")
    train.add_argument("--tune", action="store_true", help="tune inside the training folds")
    train.add_argument("--missing", choices=("raise", "drop"), default="raise",
                       help="samples off the grid or on nodata: error or drop")
    train.add_argument("--out", required=True, help="model directory")
    train.add_argument("--overwrite", action="store_true")

    pred = sub.add_parser(
        "predict", help="map a soil property with its 90 %% interval into Zarr",
        description="Apply a saved model chunk by chunk to covariate layers.",
    )
    pred.add_argument("model", help="model directory written by 'cup4soil train'")
    pred.add_argument("--covariates", required=True, help="Zarr store (path or URL)")
    pred.add_argument("--out", required=True, help="Zarr store path or URL")
    pred.add_argument("--chunks", type=int, default=None, help="spatial chunk size, pixels")
    pred.add_argument("--overwrite", action="store_true", help="replace an existing store")
    _storage_args(pred)
    _cluster_arg(pred)

    inf = sub.add_parser("info", help="a product's variables, grid, completeness, provenance")
    inf.add_argument("url", help="Zarr store path or URL")
    inf.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                     help="fsspec storage option (repeatable; dotted keys nest)")
    inf.add_argument("--json", action="store_true", help="print JSON")

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
    from .. import search
    from ..sources import sentinel2 as _s2meta

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

    from .. import load_s2, scmap, search, store

    t0 = time.perf_counter()
    items = search(args.aoi, args.time, catalog=args.catalog,
                   max_cloud_cover=args.max_cloud_cover)
    cube = load_s2(items, resolution=args.resolution, crs=args.crs)
    products = scmap.composite(cube, _threshold_arg(args.threshold), by=args.by)
    print(f"{len(items)} items -> cube {dict(cube.sizes)}; writing {args.out}")
    info = store.write(products, args.out, mode=_mode(args), progress=True,
                       storage_options=_storage_options(args.storage_option))
    print(f"wrote {', '.join(info.variables)} to {info.url} ({info.computed} of "
          f"{info.regions} regions computed) in {time.perf_counter() - t0:.1f} s")
    return 0


def _folds_arg(text: str) -> int | float | str:
    if text.isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _cmd_train(args: argparse.Namespace) -> int:
    from .. import models, store

    covariates = store.open(args.covariates) if args.covariates else None
    model = models.train(
        args.samples, args.target, features=args.features, covariates=covariates,
        method=args.method, folds=_folds_arg(args.folds), tune=args.tune,
        property=args.property, unit=args.unit, crs=args.crs, missing=args.missing,
    )
    path = model.save(args.out, overwrite=args.overwrite)
    print(model.cv_table())
    print(f"model saved to {path}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:

    from .. import models, store

    t0 = time.perf_counter()
    model = models.load(args.model)
    covariates = store.open(args.covariates)
    out = model.predict(covariates, chunks=args.chunks)
    info = store.write(out, args.out, mode=_mode(args), progress=True,
                       storage_options=_storage_options(args.storage_option),
                       provenance={"model": str(args.model), "covariates": args.covariates})
    print(f"wrote {', '.join(info.variables)} ({model.units}) to {info.url} ({info.computed} "
          f"of {info.regions} regions computed) in {time.perf_counter() - t0:.1f} s")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .. import store

    i = store.info(args.url, storage_options=_storage_options(args.storage_option))
    if args.json:
        print(json.dumps(i, indent=2, default=str))
        return 0
    done, total = i["regions"]
    state = "complete" if i["complete"] else "INCOMPLETE"
    print(f"{i['url']}: {state}" + (f" ({done} of {total} regions)" if total else ""))
    g = i["grid"]
    if g:
        print(f"  grid       : {g['crs']}, {g['shape'][0]} x {g['shape'][1]} px at "
              f"{g['resolution'][0]:g} m, bounds {', '.join(f'{b:.1f}' for b in g['bounds'])}")
    for name, v in i["variables"].items():
        print(f"  {name:<12}: ({', '.join(v['dims'])}) {v['dtype']} [{v['units']}] "
              f"{v['long_name']}")
    p = i["provenance"]
    for key in ("title", "cup4soil_version", "time_start", "time_end", "cup4soil_written"):
        if key in p:
            print(f"  {key:<12}: {p[key]}")
    if "input_items" in p:
        base = sorted({b for b in p.get("processing_baselines", []) if b})
        print(f"  inputs     : {len(p['input_items'])} items, processing baselines "
              f"{', '.join(base) or 'unknown'}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import load_s2, masks, models, quicklook, scmap, search, store
    from ..sample import make_catalog

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
    info = store.write(product, str(out / "demo.zarr"), mode="w")
    t = step("compute + write Zarr", t)
    result = store.open(info.url).load()
    # SCMaP composites; the sample area lies in the Oderbruch, inside DLR's threshold raster,
    # but the demo runs offline: it uses the raster's value there unless one is configured.
    threshold: Any = "dlr-europe" if os.environ.get(scmap.THRESHOLD_ENV) else 0.137
    # ESA WorldCover's role is played by the sample's land-cover truth: lake and village out.
    worldcover = sample.truth_on("worldcover", cube.odc.geobox)
    comp = scmap.composite(cube, threshold, worldcover=worldcover)
    comp_info = store.write(comp, str(out / "scmap.zarr"), mode="w")
    composite_ds = store.open(comp_info.url).load()
    pngs = quicklook.product(composite_ds, out / "scmap")
    t = step("SCMaP composite + write", t)

    # Soil samples from the hidden SOC, a QRF on the SRC bands, the map with its interval.
    samples = sample.soil_samples(150, seed=args.seed)
    samples.to_csv(out / "soil-samples.csv", index=False)
    model = models.train(samples, "soc", covariates=composite_ds[["SRC"]], folds="400 m",
                         crs=sample.crs, missing="drop", random_state=args.seed)
    model.save(out / "soc-model", overwrite=True)
    soc_map = model.predict(composite_ds[["SRC"]])
    soc_map["soc_piw90"] = soc_map.soc_q95 - soc_map.soc_q05
    soc_map["soc_piw90"].attrs = {"long_name": "width of the 90 % prediction interval",
                                  "units": model.units}
    soc_info = store.write(soc_map, str(out / "soc.zarr"), mode="w")
    soc_ds = store.open(soc_info.url).load()
    truth = sample.truth_on("soc", composite_ds.odc.geobox).values * 100.0  # % -> dg/kg
    gbox = composite_ds.odc.geobox
    col, row = ~gbox.affine * (samples.x.to_numpy(), samples.y.to_numpy())
    sampled = np.zeros(gbox.shape, bool)
    sampled[row.astype(int), col.astype(int)] = True
    held = np.isfinite(soc_ds.soc.values) & (worldcover.values == 40) & ~sampled
    acc = models.cv_metrics(truth[held], soc_ds.soc.values[held], soc_ds.soc_q05.values[held],
                            soc_ds.soc_q95.values[held])
    pngs += quicklook.product(soc_ds, out / "soc")  # the SOC median and interval width
    t = step("SOC model + map", t)

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
    cv = model.cv
    print(f"  SOC model  : QRF on {len(model.features)} SRC bands from {cv['n']} samples; "
          f"CV ({model.card['folds']}) MEC {cv['MEC']:.2f}, RMSE {cv['RMSE']:.1f} dg/kg, "
          f"PICP90 {cv['PICP90']:.2f}")
    print(f"  SOC map    : {soc_info.url}; median {float(np.nanmedian(soc_ds.soc.values)):.0f} "
          f"dg/kg, median 90 % interval width "
          f"{float(np.nanmedian(soc_ds.soc_piw90.values)):.0f} dg/kg")
    print(f"  vs truth   : {acc['n']} held-out cropland pixels: MEC {acc['MEC']:.2f}, RMSE "
          f"{acc['RMSE']:.1f} dg/kg, PICP90 {acc['PICP90']:.2f}")
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
        "composite": _cmd_composite, "demo": _cmd_demo, "info": _cmd_info,
        "predict": _cmd_predict,
        "search": _cmd_search, "train": _cmd_train,
    }
    try:
        with _Cluster(getattr(args, "cluster", None)):
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
