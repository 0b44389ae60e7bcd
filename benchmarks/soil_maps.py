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
* the same models through their reference libraries: quantile-forest for the forests plus
  scikit-learn's ``predict`` of the ensemble's weighted members (for ``qrf`` the same as
  the line before),
* cup4soil's compiled kernels alone (``Predictor.predict_quantiles_and_mean`` of every
  model in its map form — the compiled forest and the members' fast forms — on the same
  pixels, in 1024² slices as the map's chunks),

for ``--method qrf`` (the forests alone) and ``--method ensemble`` (the default: forests
plus ridge, SVR and gradient boosting). Run: ``python benchmarks/soil_maps.py``
(``--pixels``, ``--method``; ``--smoke`` for a tiny run). Speeds are pixels per CPU
second of the one-threaded process (per core, and robust to other processes on the machine).
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
    # CPU seconds of this one-threaded process: pixels per second *per core*, and robust
    # to other processes sharing the machine
    t0 = time.process_time()
    model.predict(cov, chunks=1024).compute(scheduler="synchronous")
    whole = n / (time.process_time() - t0)
    # the compiled kernels alone: every model's quantiles and mean (forest plus, for the
    # ensemble, its members' fast forms) of the same pixels as one array
    fast = [p.for_prediction() for p in predictors]
    t0 = time.process_time()
    for start in range(0, n, 1024 * 1024):  # the map's chunk size: the same cache use
        for p in fast:
            p.predict_quantiles_and_mean(x[start:start + 1024 * 1024])
    kernel = n / (time.process_time() - t0)
    sub = x[: max(int(n * qf_share), 1000)]
    t0 = time.process_time()
    for p in predictors:
        est = p.require_estimator()
        est.n_jobs = 1
        est.predict(sub, quantiles=QUANTILES)
        est.predict(sub, quantiles="mean")
    qf_s = time.process_time() - t0
    qf = len(sub) / qf_s
    # the same models through their reference libraries: quantile-forest for the forests,
    # scikit-learn's predict for the members that have weight (those the map evaluates)
    t0 = time.process_time()
    for p in predictors:
        if p.weights is not None:
            for w, member in zip(p.weights[1:], p.members, strict=True):
                if w > 0:
                    member.predict(sub)
    reference = len(sub) / (qf_s + time.process_time() - t0)
    return {"train_s": train_s, "whole": whole, "kernel": kernel, "qf": qf,
            "reference": reference, "models": len(predictors)}


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
          f"{side} x {side} = {side * side:,} pixels, one core; pixels per CPU second "
          "(higher is better)")
    print(f"{'method':<9} {'train s':>8} {'whole predict':>14} {'quantile-forest':>16} "
          f"{'reference libs':>15} {'kernels alone':>14} {'whole/qf':>9} {'whole/ref':>10} "
          f"{'whole/kernels':>14}")
    for method in args.method:
        r = run(method, side, args.train, qf_share=0.05)
        print(f"{method:<9} {r['train_s']:>8.0f} {r['whole']:>14,.0f} {r['qf']:>16,.0f} "
              f"{r['reference']:>15,.0f} {r['kernel']:>14,.0f} "
              f"{r['whole'] / r['qf']:>8.1f}x {r['whole'] / r['reference']:>9.1f}x "
              f"{r['whole'] / r['kernel']:>13.0%}")
    print("whole predict = SoilMapModel.predict(...).compute(): all 35 layers; "
          "quantile-forest = predict(X, quantiles=[0.05, 0.5, 0.95]) and the mean of the "
          "forests; reference libs = the same plus scikit-learn's predict of the ensemble's "
          "weighted members (= quantile-forest for qrf); kernels alone = cup4soil's compiled "
          "quantiles and mean of every model (forest and members' fast forms), 1024² "
          "pixels at a time")


if __name__ == "__main__":
    main()
