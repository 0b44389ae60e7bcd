"""``cup4soil train`` and ``cup4soil predict``: soil property models and their maps."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from ._common import cluster_arg, max_pixels_arg, storage_args, storage_options, write_mode

if TYPE_CHECKING:
    from ._common import Subparsers

__all__ = ["register"]


def register(sub: Subparsers) -> None:
    """Add the ``train`` and ``predict`` commands."""
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
    train.add_argument("--method", choices=("ensemble", "qrf", "rf"), default="ensemble",
                       help="ensemble (default: QRF stacked with ridge, SVR and gradient "
                            "boosting), qrf (the quantile forest alone) or rf")
    train.add_argument("--crs", default=None, help="CRS of the sample coordinates")
    train.add_argument("--tune", action="store_true", help="tune inside the training folds")
    train.add_argument("--missing", choices=("raise", "drop"), default="raise",
                       help="samples off the grid or on nodata: error or drop")
    train.add_argument("--out", required=True, help="model directory")
    train.add_argument("--overwrite", action="store_true")
    train.set_defaults(run=run_train)

    pred = sub.add_parser(
        "predict", help="map a soil property with its 90 %% interval into Zarr",
        description="Apply a saved model chunk by chunk to covariate layers.",
    )
    pred.add_argument("model", help="model directory written by 'cup4soil train'")
    pred.add_argument("--covariates", required=True, help="Zarr store (path or URL)")
    pred.add_argument("--out", required=True, help="Zarr store path or URL")
    pred.add_argument("--chunks", type=int, default=None, help="spatial chunk size, pixels")
    pred.add_argument("--overwrite", action="store_true", help="replace an existing store")
    max_pixels_arg(pred)
    storage_args(pred)
    cluster_arg(pred)
    pred.set_defaults(run=run_predict)


def folds_arg(text: str) -> int | float | str:
    """``--folds``: k (an integer), else a number, else a column name or block size."""
    if text.isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def run_train(args: argparse.Namespace) -> int:
    """Train, save the model and print its cross-validation table."""
    from .. import models, store

    covariates = store.open(args.covariates) if args.covariates else None
    model = models.train(
        args.samples, args.target, features=args.features, covariates=covariates,
        method=args.method, folds=folds_arg(args.folds), tune=args.tune,
        property=args.property, unit=args.unit, crs=args.crs, missing=args.missing,
    )
    path = model.save(args.out, overwrite=args.overwrite)
    print(model.cv_table())
    print(f"model saved to {path}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Map the model's property with its interval and write the store."""
    from .. import models, store

    t0 = time.perf_counter()
    model = models.load(args.model)
    covariates = store.open(args.covariates)
    out = model.predict(covariates, chunks=args.chunks, max_pixels=args.max_pixels)
    info = store.write(out, args.out, mode=write_mode(args), progress=True,
                       zarr_format=args.zarr_format,
                       storage_options=storage_options(args.storage_option),
                       provenance={"model": str(args.model), "covariates": args.covariates})
    print(f"wrote {', '.join(info.variables)} ({model.units}) to {info.url} ({info.computed} "
          f"of {info.regions} regions computed) in {time.perf_counter() - t0:.1f} s")
    return 0
