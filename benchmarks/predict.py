"""Prediction speed of cup4soil's compiled quantile forest against quantile-forest.

One run prints, side by side, pixels per second on one core for

* scikit-learn ``RandomForestRegressor.predict`` (the mean; the issue's reference),
* quantile-forest ``RandomForestQuantileRegressor.predict`` with Q05/Q50/Q95,
* cup4soil's compiled forest, same model, same three quantiles,

for 100 trees and 20 features, and checks that cup4soil's quantiles equal
quantile-forest's. Run: ``python benchmarks/predict.py`` (``--pixels``, ``--train``).
"""

from __future__ import annotations

import argparse
import os

# one core: the figures are "per core"
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import time

import numpy as np
from quantile_forest import RandomForestQuantileRegressor
from sklearn.ensemble import RandomForestRegressor

from cup4soil.models import forest as _forest

QUANTILES = [0.05, 0.5, 0.95]


def _rate(fn, n: int, repeat: int = 3) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return n / best, out


def run(n_train: int, n_pixels: int, min_samples_leaf: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n_features = 20
    x = rng.normal(size=(n_train, n_features)).astype(np.float32)
    y = (2 * x[:, 0] + np.sin(3 * x[:, 1]) + x[:, 2] * x[:, 3]
         + rng.normal(scale=0.5, size=n_train))
    params = dict(n_estimators=100, min_samples_leaf=min_samples_leaf, random_state=seed,
                  n_jobs=1)
    qrf = RandomForestQuantileRegressor(**params).fit(x, y)
    rf = RandomForestRegressor(**params).fit(x, y)
    xp = rng.normal(size=(n_pixels, n_features)).astype(np.float32)
    forest = _forest.compile_forest(qrf)
    _forest.predict_quantiles(forest, xp[:64], QUANTILES)  # compile the kernels
    sub = xp[: max(n_pixels // 4, 1)]  # quantile-forest is slow; a quarter is plenty
    r_rf, _ = _rate(lambda: rf.predict(xp), len(xp), 1)
    r_qf, ref = _rate(lambda: qrf.predict(sub, quantiles=QUANTILES), len(sub), 1)
    r_c4s, mine = _rate(lambda: _forest.predict_quantiles(forest, xp, QUANTILES), len(xp))
    return {
        "n_train": n_train, "min_samples_leaf": min_samples_leaf,
        "depth": float(np.mean(forest.depths)), "rf_mean": r_rf, "qf": r_qf, "c4s": r_c4s,
        "equal": bool(np.array_equal(mine[: len(sub)], ref)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pixels", type=int, default=400_000)
    ap.add_argument("--train", type=int, nargs="*", default=[250, 2000])
    ap.add_argument("--smoke", action="store_true", help="a tiny run (tests/test_benchmarks.py)")
    args = ap.parse_args()
    if args.smoke:
        args.pixels, args.train = 2000, [100]
    print("100 trees, 20 features, one core; pixels/s (higher is better)")
    print(f"{'n_train':>8} {'leaf':>5} {'depth':>6} {'sklearn RF mean':>16} "
          f"{'quantile-forest Q05/50/95':>26} {'cup4soil Q05/50/95':>19} {'ratio':>6} "
          f"{'equal':>6}")
    for n_train in args.train:
        for msl in (5, 1):
            r = run(n_train, args.pixels, msl)
            print(f"{r['n_train']:>8} {r['min_samples_leaf']:>5} {r['depth']:>6.1f} "
                  f"{r['rf_mean']:>16,.0f} {r['qf']:>26,.0f} {r['c4s']:>19,.0f} "
                  f"{r['c4s'] / r['qf']:>5.1f}x {r['equal']!s:>6}")
    print("leaf = min_samples_leaf (5 is cup4soil's default, as ranger's for regression); "
          "depth = mean tree depth; ratio = cup4soil / quantile-forest")


if __name__ == "__main__":
    main()
