"""``cup4soil demo``: the whole chain offline on the built-in sample archive.

:func:`run_demo` is the library function: sample archive -> search -> cube -> valid pixel
count -> SCMaP composites (WorldCover from the archive) -> covariate set 3 (terrain, land
cover, Sentinel-1, SRC/MREF mosaic) -> soil samples -> QRF on set 3 -> SOC map with its 90 %
interval -> accuracy against the hidden truth, returning a :class:`DemoReport`. The command
prints it.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ._common import cluster_arg, zarr_format_arg

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["DemoReport", "Metrics", "register", "run_demo"]

Engine = Literal["odc-stac", "stackstac"]


@dataclass(frozen=True)
class Metrics:
    """Accuracy of a soil property map (the figures of ``models.cv_metrics``).

    Attributes
    ----------
    n
        Number of samples or pixels compared.
    mec
        Model efficiency coefficient (1 = perfect).
    rmse
        Root mean square error, dg/kg.
    picp90
        Fraction of true values inside the 90 % prediction interval.
    """

    n: int
    mec: float
    rmse: float
    picp90: float


@dataclass(frozen=True)
class DemoReport:
    """What the demo made and how well it did.

    Attributes
    ----------
    sample_root
        Folder of the sample archive.
    n_items, n_catalog_items
        Items the search returned; items in the catalog.
    cube_sizes
        Dimension sizes of the 20 m cube.
    crs
        CRS of the cube.
    bands
        The cube's variables.
    n_tasks
        Tasks in the graph of the valid pixel count.
    vpc_min, vpc_mean, vpc_max
        Valid observations per pixel (the mean truncated to an integer).
    n_dates
        Dates in the cube.
    vpc_url, scmap_url, soc_url
        The Zarr stores written.
    threshold
        The PVIR2 threshold used (a number or ``"dlr-europe"``).
    bare_fraction, vegetated_fraction
        Fractions of pixels with MASK 1 (bare soil) and 2 (permanently vegetated).
    median_bsf
        Median bare-soil frequency.
    covariates_url
        The Zarr store of covariate set 3.
    n_features
        Covariate layers (of set 3) the SOC model uses.
    folds
        The cross-validation scheme, as the model card states it.
    cv
        Cross-validated accuracy of the SOC model.
    soc_median, piw90_median
        Median SOC and median width of its 90 % interval over the map, dg/kg.
    truth
        Accuracy of the SOC map against the hidden truth on held-out cropland pixels.
    quicklooks
        PNG files written.
    soilmaps_url
        The Zarr store of every property (SoilGrids names), SOC stock and AWC.
    soil_cv, soil_truth
        Per property: calibrated cross-validation, and accuracy against the hidden truth at
        held-out cropland pixels (mapped units).
    soc_stock_median, awc_median
        Median SOC stock 0-30 cm (t/ha) and available water capacity (mm in 0-30 cm).
    covariate_sets
        The covariate-set table (MEC, RMSE, PICP90 per property and set) as text.
    validation_report
        The Markdown validation report against the hidden truth.
    steps
        ``(step, seconds)`` for each step of the chain.
    total_s
        Wall time of the whole demo, seconds.
    """

    sample_root: Path
    n_items: int
    n_catalog_items: int
    cube_sizes: dict[str, int]
    crs: str
    bands: tuple[str, ...]
    n_tasks: int
    vpc_min: int
    vpc_mean: int
    vpc_max: int
    n_dates: int
    vpc_url: str
    scmap_url: str
    threshold: float | str
    bare_fraction: float
    vegetated_fraction: float
    median_bsf: float
    covariates_url: str
    n_features: int
    folds: str
    cv: Metrics
    soc_url: str
    soc_median: float
    piw90_median: float
    truth: Metrics
    quicklooks: tuple[Path, ...]
    steps: tuple[tuple[str, float], ...] = field(default=())
    total_s: float = 0.0
    soilmaps_url: str = ""
    soil_cv: dict[str, Metrics] = field(default_factory=dict)
    soil_truth: dict[str, Metrics] = field(default_factory=dict)
    soc_stock_median: float = float("nan")
    awc_median: float = float("nan")
    covariate_sets: str = ""
    validation_report: Path | None = None

    def lines(self) -> list[str]:
        """The report as the ``cup4soil demo`` command prints it."""
        out = [
            f"cup4soil demo — sample archive in {self.sample_root}",
            f"  search     : {self.n_items} items ({self.n_catalog_items} in the catalog; "
            "the duplicate delivery and cloudy scenes removed)",
            f"  cube       : {self.cube_sizes} at 20 m, {self.crs}, bands "
            f"{', '.join(self.bands)}",
            f"  graph      : {self.n_tasks} tasks for the valid pixel count",
            f"  VPC        : min {self.vpc_min}, mean {self.vpc_mean}, max {self.vpc_max} "
            f"valid observations per pixel (of {self.n_dates} dates)",
            f"  written    : {self.vpc_url}",
            f"  SCMaP      : {self.scmap_url} (threshold {self.threshold}); bare soil "
            f"{self.bare_fraction:.0%}, permanently vegetated {self.vegetated_fraction:.0%} "
            f"of pixels; median BSF {self.median_bsf:.2f}",
            f"  covariates : {self.covariates_url} (set 3: terrain, land cover, Sentinel-1, "
            "SRC/MREF mosaic)",
            f"  SOC model  : QRF on {self.n_features} covariates of set 3 from {self.cv.n} "
            "samples; "
            f"CV ({self.folds}) MEC {self.cv.mec:.2f}, RMSE {self.cv.rmse:.1f} dg/kg, "
            f"PICP90 {self.cv.picp90:.2f}",
            f"  SOC map    : {self.soc_url}; median {self.soc_median:.0f} dg/kg, median 90 % "
            f"interval width {self.piw90_median:.0f} dg/kg",
            f"  vs truth   : {self.truth.n} held-out cropland pixels: MEC {self.truth.mec:.2f}, "
            f"RMSE {self.truth.rmse:.1f} dg/kg, PICP90 {self.truth.picp90:.2f}",
            f"  quicklooks : {', '.join(str(p) for p in self.quicklooks)}",
        ]
        if self.soilmaps_url:
            out.append(f"  soil maps  : {self.soilmaps_url}; median SOC stock "
                       f"{self.soc_stock_median:.1f} t/ha, median AWC {self.awc_median:.0f} mm")
            for p, cv in self.soil_cv.items():
                tr = self.soil_truth[p]
                out.append(f"    {p:<9} CV MEC {cv.mec:5.2f} PICP90 {cv.picp90:.2f} | truth "
                           f"MEC {tr.mec:5.2f} PICP90 {tr.picp90:.2f} (n {tr.n})")
            out.append("  covariate sets (CV, same folds):")
            out += [f"    {line}" for line in self.covariate_sets.splitlines()]
            out.append(f"  validation : {self.validation_report}")
        out += [f"  {label:<20} {secs:6.2f} s" for label, secs in self.steps]
        out.append(f"  total      : {self.total_s:.1f} s")
        return out


#: The hidden truth's rasters (%, g/kg, pH, kg/dm³, %: docs/sample.md) to SoilGrids' mapped
#: units, per property.
TRUTH_TO_MAPPED = {"soc": 100.0, "nitrogen": 100.0, "phh2o": 10.0, "bdod": 100.0,
                   "clay": 10.0, "sand": 10.0, "silt": 10.0}


def _metrics(d: dict[str, float]) -> Metrics:
    return Metrics(n=int(d["n"]), mec=float(d["MEC"]), rmse=float(d["RMSE"]),
                   picp90=float(d["PICP90"]))


def run_demo(
    out: str | os.PathLike[str] = "cup4soil-demo",
    *,
    size: int = 200,
    scenes_per_year: int = 12,
    engine: Engine = "odc-stac",
    seed: int = 0,
    zarr_format: int = 3,
) -> DemoReport:
    """Run the chain offline on the built-in sample archive.

    Parameters
    ----------
    out
        Output folder: the sample archive, ``demo.zarr`` (valid pixel count),
        ``scmap.zarr``, ``covariates.zarr`` (set 3), ``soc.zarr``, ``soil-samples.csv``,
        ``soc-model/`` and quicklooks.
    size
        Side of the sample area, 10 m pixels.
    scenes_per_year
        Acquisitions per year in the sample archive.
    engine
        Cube engine, ``"odc-stac"`` or ``"stackstac"``.
    seed
        Seed of the sample archive, the soil samples and the model.
    zarr_format
        Zarr format of the products (2 for GDAL-based readers).

    Returns
    -------
    DemoReport
    """
    import numpy as np
    import pandas as pd
    import xarray as xr

    from .. import covariates, load_s2, masks, models, quicklook, scmap, search, soilmap, store
    from ..sample import make_catalog

    folder = Path(out).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    steps: list[tuple[str, float]] = []

    def step(label: str, start: float) -> float:
        now = time.perf_counter()
        steps.append((label, now - start))
        return now

    t = t0
    sample = make_catalog(folder / "sample-catalog", size=size,
                          scenes_per_year=scenes_per_year, seed=seed)
    t = step("sample catalog", t)
    items = search(sample.bbox, sample.time_range, catalog=str(sample.catalog))
    t = step("search", t)
    cube = load_s2(items, resolution=20.0, engine=engine)
    vpc = masks.valid_pixel_count(cube)
    n_tasks = len(vpc.data.__dask_graph__())  # coordinates are in memory: the array's graph
    t = step("cube + mask graph", t)
    product = vpc.to_dataset()
    product["n_scenes"] = (cube["SCL"] != 0).sum("time").astype("uint16")
    product["n_scenes"].attrs = {"long_name": "scenes with data", "units": "1"}
    product.attrs.update({
        "title": "cup4soil demo: SCMaP valid pixel count",
        "source_catalog": str(sample.catalog),
        "items": len(items),
    })
    info = store.write(product, str(folder / "demo.zarr"), mode="w",
                       zarr_format=zarr_format)
    t = step("compute + write Zarr", t)
    result = store.open(info.url).load()
    # SCMaP composites; the sample area lies in the Oderbruch, inside DLR's threshold raster,
    # but the demo runs offline: it uses the raster's value there unless one is configured.
    threshold: float | str = "dlr-europe" if os.environ.get(scmap.THRESHOLD_ENV) else 0.137
    # ESA WorldCover from the archive's esa-worldcover collection: lake and village out.
    comp = scmap.composite(cube, threshold, worldcover="auto",
                           worldcover_catalog=sample.catalog)
    comp_info = store.write(comp, str(folder / "scmap.zarr"), mode="w",
                            zarr_format=zarr_format)
    composite_ds = store.open(comp_info.url).load()
    # record_in=True: each PNG's stretch also goes into the product's attributes
    pngs = quicklook.product(composite_ds, folder / "scmap", record_in=True)
    t = step("SCMaP composite + write", t)

    # CUP4SOIL's covariate set 3 on the composite's grid, from the same archive.
    cov = covariates.stack(composite_ds, set=3, catalog=sample.catalog)
    cov_info = store.write(cov, str(folder / "covariates.zarr"), mode="w",
                           zarr_format=zarr_format)
    # In the stack's order: the forest's draws follow the feature order, and a store lists
    # its variables in no fixed order.
    cov_ds = store.open(cov_info.url)[list(cov.data_vars)].load()
    t = step("covariates (set 3) + write", t)

    # Soil samples from the hidden truth, a QRF on set 3, the map with its interval.
    samples = sample.soil_samples(150, seed=seed)
    samples.to_csv(folder / "soil-samples.csv", index=False)
    # The quantile forest alone here and in the covariate-set table (a quarter of the default
    # ensemble's training time); the soil maps below use the default ensemble.
    model = models.train(samples, "soc", covariates=cov_ds, folds="400 m",
                         crs=sample.crs, missing="drop", random_state=seed, method="qrf")
    model.save(folder / "soc-model", overwrite=True)
    soc_map = model.predict(cov_ds)
    soc_map["soc_piw90"] = soc_map.soc_q95 - soc_map.soc_q05
    soc_map["soc_piw90"].attrs = {"long_name": "width of the 90 % prediction interval",
                                  "units": model.units}
    soc_info = store.write(soc_map, str(folder / "soc.zarr"), mode="w",
                       zarr_format=zarr_format)
    soc_ds = store.open(soc_info.url).load()
    truth = sample.truth_on("soc", composite_ds.odc.geobox).values * 100.0  # % -> dg/kg
    gbox = composite_ds.odc.geobox
    col, row = ~gbox.affine * (samples.x.to_numpy(), samples.y.to_numpy())
    sampled = np.zeros(gbox.shape, bool)
    sampled[row.astype(int), col.astype(int)] = True
    cropland = sample.truth_on("worldcover", gbox).values == 40
    held = np.isfinite(soc_ds.soc.values) & cropland & ~sampled
    acc = models.cv_metrics(truth[held], soc_ds.soc.values[held], soc_ds.soc_q05.values[held],
                            soc_ds.soc_q95.values[held])
    # the SOC median and interval width
    pngs += quicklook.product(soc_ds, folder / "soc", record_in=True)
    t = step("SOC model + map", t)

    # Every property with calibrated intervals (SoilGrids names), SOC stock and AWC.
    sm = soilmap.train(samples, list(TRUTH_TO_MAPPED), covariates=cov_ds, folds="400 m",
                       crs=sample.crs, random_state=seed)
    maps = sm.predict(cov_ds)
    # compat and join given: xarray's defaults are changing, and the layers share one grid.
    full = xr.merge([maps, soilmap.soc_stock(maps), soilmap.awc(maps)],
                    compat="no_conflicts", join="exact", combine_attrs="override")
    sm_info = store.write(full, str(folder / "soilmaps.zarr"), mode="w",
                          zarr_format=zarr_format)
    sm_ds = store.open(sm_info.url).load()
    # each property, its width, stock
    pngs += quicklook.product(sm_ds, folder / "soilmaps", record_in=True)
    t = step("soil maps + SOC stock + AWC", t)
    # The seed's table: set 1 (S1, terrain, land cover), 2 (+ MREF), 3 (+ SRC/MREF mosaic).
    set1 = cov_ds[[v for v in cov_ds.data_vars if not str(v).startswith("MOSAIC")]]
    sets = {1: set1, 2: xr.merge([set1, composite_ds[["MREF"]]], compat="no_conflicts",
                                 join="exact", combine_attrs="override"),
            3: cov_ds}
    table = soilmap.compare(samples, ["soc", "phh2o"], sets=(1, 2, 3), covariates=sets,
                            folds="400 m", crs=sample.crs, random_state=seed,
                            plot=folder / "covariate-sets.png", method="qrf")
    soil_truth: dict[str, Metrics] = {}
    report_lines = ["# cup4soil demo: validation against the hidden truth", "",
                    f"{int(held.sum())} held-out cropland pixels (no sample in them).", "",
                    "| property | units | ME | RMSE | MEC | CCC | PICP90 | n |",
                    "|---|---|---|---|---|---|---|---|"]
    for p, factor in TRUTH_TO_MAPPED.items():
        true_p = sample.truth_on(p, gbox).values * factor
        names = [soilmap.layer_name(p, q) for q in ("Q0.5", "Q0.05", "Q0.95")]
        ok = held & np.isfinite(sm_ds[names[0]].values)
        d = models.cv_metrics(true_p[ok], *(sm_ds[n].values[ok] for n in names))
        soil_truth[p] = _metrics(d)
        report_lines.append(f"| {p} | {sm_ds[names[0]].attrs['units']} | {d['ME']:.2f} | "
                            f"{d['RMSE']:.2f} | {d['MEC']:.2f} | {d['CCC']:.2f} | "
                            f"{d['PICP90']:.2f} | {d['n']} |")
    report_lines += ["", "Covariate sets (cross-validation, same folds):", "",
                     "```", table.round(3).to_string(), "```"]
    # The SOC map's report (scatter, residual map, coverage) at 300 of the held-out pixels
    # (all of them would hide the points in the plots).
    from ..products.report import validation_report

    rows, cols = np.nonzero(held & np.isfinite(sm_ds["soc_0-30cm_Q0.5"].values))
    pick = np.random.default_rng(seed).choice(rows.size, min(300, rows.size), replace=False)
    rows, cols = rows[pick], cols[pick]
    xs, ys = sm_ds["x"].values[cols], sm_ds["y"].values[rows]  # pixel centres
    soc_names = [soilmap.layer_name("soc", q) for q in ("Q0.5", "Q0.05", "Q0.95")]
    soc_table = pd.DataFrame({
        "x_map": xs, "y_map": ys,
        "observed": sample.truth_on("soc", gbox).values[rows, cols] * TRUTH_TO_MAPPED["soc"],
        **{k: sm_ds[n].values[rows, cols] for k, n in zip(("predicted", "q05", "q95"),
                                                          soc_names, strict=True)}})
    soc_report = validation_report(
        models.cv_metrics(soc_table["observed"], soc_table["predicted"], soc_table["q05"],
                          soc_table["q95"]),
        soc_table, folder / "validation-soc", property="soc",
        units=str(sm_ds[soc_names[0]].attrs["units"]), crs=sample.crs,
        title="Validation of the demo's SOC map against the hidden truth")
    report_lines += ["", f"SOC map at {len(soc_table)} held-out pixels, with plots: "
                     f"[{soc_report.parent.name}/report.md]({soc_report.parent.name}/"
                     "report.md)."]
    flag = sm_ds["extrapolated"].values
    extrapolated = float((flag == 1).sum()) / max(int((flag != 255).sum()), 1)
    report_lines += ["", f"Extrapolated pixels (a covariate more than 10 % of its training "
                     f"range outside it): {100 * extrapolated:.1f} % (layer `extrapolated` "
                     "of soilmaps.zarr)."]
    validation = folder / "validation.md"
    validation.write_text("\n".join(report_lines) + "\n")
    step("covariate sets + validation", t)

    vals = result["VPC"].values
    mask = composite_ds.MASK.values
    return DemoReport(
        sample_root=sample.root,
        n_items=len(items),
        n_catalog_items=sample.n_items,
        cube_sizes={str(k): int(v) for k, v in cube.sizes.items()},
        crs=sample.crs,
        bands=tuple(map(str, cube.data_vars)),
        n_tasks=n_tasks,
        vpc_min=int(vals.min()),
        vpc_mean=int(float(vals.mean())),
        vpc_max=int(vals.max()),
        n_dates=int(cube.sizes["time"]),
        vpc_url=str(info.url),
        scmap_url=str(comp_info.url),
        threshold=threshold,
        bare_fraction=float((mask == 1).mean()),
        vegetated_fraction=float((mask == 2).mean()),
        median_bsf=float(np.nanmedian(composite_ds.BSF.values)),
        covariates_url=str(cov_info.url),
        n_features=len(model.features),
        folds=str(model.card["folds"]),
        cv=_metrics(model.cv),
        soc_url=str(soc_info.url),
        soc_median=float(np.nanmedian(soc_ds.soc.values)),
        piw90_median=float(np.nanmedian(soc_ds.soc_piw90.values)),
        truth=_metrics(acc),
        quicklooks=tuple(Path(p) for p in pngs),
        steps=tuple(steps),
        total_s=time.perf_counter() - t0,
        soilmaps_url=str(sm_info.url),
        soil_cv={p: _metrics(row) for p, row in sm.cv.to_dict("index").items()},
        soil_truth=soil_truth,
        soc_stock_median=float(np.nanmedian(sm_ds["socstock_0-30cm_Q0.5"].values)),
        awc_median=float(np.nanmedian(sm_ds["awc_0-30cm_Q0.5"].values)),
        covariate_sets=table[["MEC", "RMSE", "PICP90", "MEC_fold_sd"]].round(3).to_string(),
        validation_report=validation,
    )


def register(sub: Subparsers) -> None:
    """Add the ``demo`` command."""
    p = sub.add_parser(
        "demo", help="run the chain offline on the built-in sample catalog",
        description="Run the whole chain offline on a synthetic Sentinel-2 archive over the "
                    "Oderbruch: make the sample catalog, search it, build the cube, compute "
                    "the valid pixel count and the SCMaP bare-soil composites, build covariate "
                    "set 3 (terrain, WorldCover, Sentinel-1 statistics, the composites), "
                    "draw soil samples from the hidden truth, train a quantile regression "
                    "forest with spatial cross-validation, map SOC with its 90 % interval, "
                    "report its accuracy against the hidden truth, and write Zarr stores and "
                    "quicklook PNGs into --out.",
    )
    p.add_argument("--out", default="cup4soil-demo", help="output folder (default: %(default)s)")
    p.add_argument("--size", type=int, default=200, help="side of the area, 10 m pixels")
    p.add_argument("--scenes-per-year", type=int, default=12)
    p.add_argument("--engine", choices=("odc-stac", "stackstac"), default="odc-stac")
    p.add_argument("--seed", type=int, default=0)
    zarr_format_arg(p)
    cluster_arg(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its report."""
    report = run_demo(args.out, size=args.size, scenes_per_year=args.scenes_per_year,
                      engine=args.engine, seed=args.seed, zarr_format=args.zarr_format)
    for line in report.lines():
        print(line)
    return 0
