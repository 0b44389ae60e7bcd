"""Pure array kernels of the covariates stage (NumPy and Numba; no xarray, no dask, no I/O).

- :func:`series_stats`: per-pixel temporal statistics of a backscatter series with gaps:
  count, mean, sample standard deviation and percentiles with NumPy's default (``linear``)
  interpolation. Each row is sorted once (NumPy's vectorised sort, NaN last, in place),
  then one compiled pass reads every statistic off the sorted row; xarray's route sorts
  once per quantile call and reduces mean, std and count in further passes, each with its
  own temporaries (``benchmarks/covariates.py`` measures both).
- :func:`curvatures`: profile and plan curvature from a 3 x 3 stencil (Zevenbergen and
  Thorne 1987's coefficients); xarray-spatial offers only the total curvature.
- :func:`to_db`: decibels of linear power, NaN where the power is not positive.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["curvatures", "series_stats", "to_db"]


@numba.njit(nogil=True)
def _lerp(a: float, b: float, t: float) -> float:
    # numpy.lib._function_base_impl._lerp: the form depends on t, for monotonicity.
    diff = b - a
    if t >= 0.5:
        return b - diff * (1.0 - t)
    return a + diff * t


@numba.njit(nogil=True)
def _sorted_stats(rows: np.ndarray, qs: np.ndarray, count: np.ndarray, mean: np.ndarray,
                  std: np.ndarray, quant: np.ndarray) -> None:
    """Statistics of rows sorted ascending with NaN last (as ``numpy.sort`` leaves them)."""
    n_pix, n_t = rows.shape
    for j in range(n_pix):
        k = 0
        total = 0.0
        while k < n_t and rows[j, k] == rows[j, k]:  # up to the first NaN
            total += rows[j, k]
            k += 1
        count[j] = k
        if k == 0:
            mean[j] = np.nan
            std[j] = np.nan
            for i in range(qs.shape[0]):
                quant[j, i] = np.nan
            continue
        m = total / k
        mean[j] = m
        if k > 1:
            ss = 0.0
            for i in range(k):
                d = rows[j, i] - m
                ss += d * d
            std[j] = math.sqrt(ss / (k - 1))
        else:
            std[j] = np.nan
        for i in range(qs.shape[0]):
            pos = qs[i] * (k - 1)
            lo = math.floor(pos)
            hi = min(lo + 1, k - 1)
            quant[j, i] = _lerp(np.float64(rows[j, lo]), np.float64(rows[j, hi]), pos - lo)


def series_stats(series: np.ndarray, qs: np.ndarray, *, in_place: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Temporal statistics of each pixel's series, NaN = no observation.

    The rows are sorted first (NumPy's sort: vectorised, NaN last), then one compiled pass
    over each sorted row takes the count, the mean, the standard deviation and the order
    statistics the percentiles interpolate between.

    Parameters
    ----------
    series
        ``(pixels, time)`` values (linear power), NaN where masked.
    qs
        Quantiles in [0, 1] (0.05 for the 5th percentile).
    in_place
        Sort ``series`` itself (a C-contiguous float array) instead of a copy: no extra
        memory, the time order of each row is lost.

    Returns
    -------
    count, mean, std, quantiles
        ``count`` (int32) valid values per pixel; ``mean`` and ``std`` (sample, n - 1;
        NaN for fewer than two values) and ``quantiles`` ``(pixels, len(qs))`` in float64,
        NaN where a pixel has no value. Quantiles interpolate linearly between order
        statistics, as ``numpy.nanquantile(..., method="linear")`` does.
    """
    if in_place and series.flags.c_contiguous and series.dtype.kind == "f":
        arr = series
    else:
        arr = np.array(series, dtype=np.result_type(series.dtype, np.float32), order="C")
    arr.sort(axis=1)
    q = np.ascontiguousarray(qs, dtype=np.float64)
    n = arr.shape[0]
    count = np.zeros(n, dtype=np.int32)
    mean = np.empty(n, dtype=np.float64)
    std = np.empty(n, dtype=np.float64)
    quant = np.empty((n, q.shape[0]), dtype=np.float64)
    _sorted_stats(arr, q, count, mean, std, quant)
    return count, mean, std, quant


def to_db(power: np.ndarray) -> np.ndarray:
    """``10 log10(power)`` as float32, NaN where power is not positive or not finite."""
    p = np.asarray(power, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(p > 0, 10.0 * np.log10(np.where(p > 0, p, 1.0)), np.nan)
    return out.astype(np.float32)


@numba.njit(nogil=True)
def _curvatures(z: np.ndarray, dx: float, dy: float, profile: np.ndarray,
                plan: np.ndarray) -> None:
    rows, cols = z.shape
    for r in range(rows):
        for c in range(cols):
            if r == 0 or c == 0 or r == rows - 1 or c == cols - 1:
                profile[r, c] = np.nan
                plan[r, c] = np.nan
                continue
            # z1 z2 z3 / z4 z5 z6 / z7 z8 z9, row 0 north (north-up grid).
            z1, z2, z3 = z[r - 1, c - 1], z[r - 1, c], z[r - 1, c + 1]
            z4, z5, z6 = z[r, c - 1], z[r, c], z[r, c + 1]
            z7, z8, z9 = z[r + 1, c - 1], z[r + 1, c], z[r + 1, c + 1]
            d = ((z4 + z6) / 2.0 - z5) / (dx * dx)
            e = ((z2 + z8) / 2.0 - z5) / (dy * dy)
            f = (-z1 + z3 + z7 - z9) / (4.0 * dx * dy)
            g = (-z4 + z6) / (2.0 * dx)
            h = (z2 - z8) / (2.0 * dy)
            gh = g * g + h * h
            if gh == 0.0:  # flat: no slope direction
                profile[r, c] = 0.0
                plan[r, c] = 0.0
            else:
                # Second derivatives along and across the gradient (d = z_xx / 2, ...).
                profile[r, c] = 2.0 * (d * g * g + e * h * h + f * g * h) / gh
                plan[r, c] = 2.0 * (d * h * h + e * g * g - f * g * h) / gh


def curvatures(z: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Profile and plan curvature of a north-up elevation grid, 1/m.

    Parameters
    ----------
    z
        Elevation, metres, ``(rows, cols)`` with row 0 the northernmost.
    dx, dy
        Pixel width and height, metres (positive).

    Returns
    -------
    numpy.ndarray
        ``(2, rows, cols)`` float32: profile curvature (the second derivative of height in
        the direction of the slope) and plan curvature (across it), from Zevenbergen and
        Thorne's quadratic surface. Positive where the surface is concave -- footslopes
        (flow slows down) and hollows (flow converges), where water and sediment gather --
        negative on shoulders and ridges. ArcGIS' Curvature tool reports -100 times the
        profile and 100 times the plan values. NaN on the border row and column, 0 where
        the surface is flat.
    """
    arr = np.asarray(z, dtype=np.float64)
    profile = np.empty(arr.shape, dtype=np.float64)
    plan = np.empty(arr.shape, dtype=np.float64)
    _curvatures(arr, float(dx), float(dy), profile, plan)
    return np.stack([profile, plan]).astype(np.float32)
