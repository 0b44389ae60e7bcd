"""Speed of the multi-property soil maps: the whole ``SoilMapModel.predict`` against
quantile-forest and against cup4soil's compiled kernel alone.

Seven properties (soc, phh2o, nitrogen, bdod and clay/sand/silt as two log-ratio models:
six models) are trained on a small synthetic table, then mapped with 90 % intervals over a
synthetic covariate stack (20 float32 layers, 2048 x 2048 = 4.2 M pixels by default). One
run prints, side by side, pixels per second on one core for

* the whole ``SoilMapModel.predict(covariates).compute()`` (Dask, synchronous scheduler:
  stacking the layers, every model's quantiles and mean, texture back-transform, the
  uncertainty layer, float32 output),
* quantile-forest's ``RandomForestQuantileRegressor.predict`` of the same forests with the
  same quantiles (Q0.05/Q0.5/Q0.95) and the mean (on a share of the pixels),
* cup4soil's compiled kernel alone (:func:`cup4soil.models.forest.predict_quantiles` of
  every forest on the same pixels, as one (n, features) array),

for ``--method qrf`` (the forests alone) and ``--method ensemble`` (the default: forests
plus ridge, SVR and gradient boosting). Run: ``python benchmarks/soil_maps.py``
(``--pixels``, ``--method``; ``--smoke`` for a tiny run).
"""

from __future__ import annotations

import argparse
import os

# one core: the figures are "per core"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import time
import warnings

import dask
import numpy as np
import pandas as pd
import xarray as xr

from cup4soil import soilmap
from cup4soil.models import forest as _forest

QUANTILES = [0.05, 0.5, 0.95]
N_FEATURES = 20
PROPERTIES = {"soc": "g/kg", "phh2o": "pH", "nitrogen": "g/kg", "bdod": "g/cm3",
              "clay": "%", "sand": "%", "silt": "%"}


def samples(n: int, seed: int = 0) -> pd.DataFrame:
    """A synthetic table: 20 covariates and seven plausible topsoil properties."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    t = pd.DataFrame(x, columns=[f"c{j:02d}" for j in range(N_FEATURES)])
    t["soc"] = np.exp(2.5 + 0.4 * x[:, 0] + 0.2 * rng.normal(size=n))  # g/kg
    t["phh2o"] = 6.0 + 0.6 * x[:, 1] + 0.3 * rng.normal(size=n)
    t["nitrogen"] = t["soc"] / 10 * np.exp(0.1 * rng.normal(size=n))  # g/kg
    t["bdod"] = 1.4 - 0.1 * x[:, 0] + 0.05 * rng.normal(size=n)  # g/cm3
    parts = np.exp(np.c_[0.5 * x[:, 2], 0.5 * x[:, 3] + 0.5, np.zeros(n)]
                   + 0.2 * rng.normal(size=(n, 3)))
    parts = 100 * parts / parts.sum(1, keepdims=True)
    t["clay"], t["sand"], t["silt"] = parts[:, 0], parts[:, 1], parts[:, 2]
    return t


def covariates(side: int, seed: int = 1) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset({f"c{j:02d}": (("y", "x"), rng.normal(size=(side, side))
                                     .astype(np.float32)) for j in range(N_FEATURES)},
                      coords={"y": np.arange(side)[::-1] * 20.0, "x": np.arange(side) * 20.0})


def run(method: str, side: int, n_train: int, qf_share: float) -> dict[str, float]:
    t = samples(n_train)
    feats = [f"c{j:02d}" for j in range(N_FEATURES)]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = soilmap.train(t, PROPERTIES, features=feats, folds=5, method=method)
    train_s = time.perf_counter() - t0
    cov = covariates(side)
    n = side * side
    predictors = [m.predictor for m in model.models.values()]
    tex = model.texture_models
    if tex is not None:
        predictors += [tex[0].predictor, tex[1].predictor]
    x = np.stack([cov[f].values.ravel() for f in feats], axis=1)
    # compile the kernels, and warm up the whole path on a small window
    model.predict(cov.isel(y=slice(0, 64), x=slice(0, 64)), chunks=64).compute(
        scheduler="synchronous")
    t0 = time.perf_counter()
    model.predict(cov, chunks=1024).compute(scheduler="synchronous")
    whole = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for p in predictors:
        assert p.forest is not None
        _forest.predict_quantiles(p.forest, x, QUANTILES)
    kernel = n / (time.perf_counter() - t0)
    sub = x[: max(int(n * qf_share), 1000)]
    t0 = time.perf_counter()
    for p in predictors:
        est = p.require_estimator()
        est.n_jobs = 1
        est.predict(sub, quantiles=QUANTILES)
        est.predict(sub, quantiles="mean")
    qf = len(sub) / (time.perf_counter() - t0)
    return {"train_s": train_s, "whole": whole, "kernel": kernel, "qf": qf,
            "models": len(predictors)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=2048 * 2048,
                    help="pixels (a square of about this many)")
    ap.add_argument("--method", nargs="*", default=["qrf", "ensemble"])
    ap.add_argument("--train", type=int, default=300, help="training samples")
    ap.add_argument("--smoke", action="store_true", help="a tiny run (tests/test_benchmarks.py)")
    args = ap.parse_args()
    if args.smoke:
        args.pixels, args.method, args.train = 128 * 128, ["qrf"], 60
    side = round(float(np.sqrt(args.pixels)))
    dask.config.set(scheduler="synchronous")
    print(f"7 properties (6 models, 100 trees each), {N_FEATURES} features, "
          f"{side} x {side} = {side * side:,} pixels, one core; pixels/s (higher is better)")
    print(f"{'method':<9} {'train s':>8} {'whole predict':>14} {'quantile-forest':>16} "
          f"{'kernel alone':>13} {'whole/qf':>9} {'whole/kernel':>13}")
    for method in args.method:
        r = run(method, side, args.train, qf_share=0.05)
        print(f"{method:<9} {r['train_s']:>8.0f} {r['whole']:>14,.0f} {r['qf']:>16,.0f} "
              f"{r['kernel']:>13,.0f} {r['whole'] / r['qf']:>8.1f}x "
              f"{r['whole'] / r['kernel']:>12.0%}")
    print("whole predict = SoilMapModel.predict(...).compute(): all 35 layers; "
          "quantile-forest = predict(X, quantiles=[0.05, 0.5, 0.95]) and the mean of the same "
          "forests; kernel alone = compiled predict_quantiles of the same forests")


if __name__ == "__main__":
    main()
