"""The covariates' kernels against slow per-pixel references (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cup4soil.covariates import kernels

# Linear backscatter with gaps: NaN is "masked".
_values = st.one_of(st.just(float("nan")), st.floats(float(np.float32(1e-4)), 2.0, width=32))
_series = arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 30)), elements=_values)
_quantiles = st.lists(st.floats(0.01, 0.99), min_size=1, max_size=4)


def _reference(row: np.ndarray, qs: list[float]) -> tuple[int, float, float, list[float]]:
    """One pixel, the slow way: Python's statistics of the valid values, numpy's quantile."""
    vals = [float(v) for v in row if not math.isnan(v)]
    if not vals:
        return 0, math.nan, math.nan, [math.nan] * len(qs)
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 \
        else math.nan
    quant = [float(np.quantile(np.array(vals, dtype=np.float64), q)) for q in qs]
    return len(vals), mean, std, quant


@given(_series, _quantiles)
def test_series_stats_match_the_per_pixel_reference(series, qs):
    count, mean, std, quant = kernels.series_stats(series, np.array(qs))
    for j, row in enumerate(series):
        n, m, s, q = _reference(row, qs)
        assert count[j] == n
        np.testing.assert_allclose(mean[j], m, rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(std[j], s, rtol=1e-9, equal_nan=True)
        # The same interpolation as numpy, value for value.
        np.testing.assert_array_equal(quant[j], q)


@given(_series)
def test_series_stats_equal_numpy_nan_reductions(series):
    qs = np.array([0.05, 0.5, 0.95])
    count, mean, std, quant = kernels.series_stats(series, qs)
    data = series.astype(np.float64)
    some = count > 0
    assert np.array_equal(count, np.isfinite(data).sum(axis=1))
    assert np.isnan(mean[~some]).all() and np.isnan(quant[~some]).all()
    if not some.any():
        return
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ref_q = np.nanquantile(data[some], qs, axis=1).T
            ref_std = np.nanstd(data[some], axis=1, ddof=1)
    np.testing.assert_allclose(mean[some], np.nanmean(data[some], axis=1), rtol=1e-12)
    np.testing.assert_allclose(quant[some], ref_q, rtol=1e-12)
    several = count[some] > 1
    np.testing.assert_allclose(std[some][several], ref_std[several], rtol=1e-9)


def test_to_db_masks_non_positive_power():
    out = kernels.to_db(np.array([1.0, 0.1, 0.0, -1.0, np.nan, np.inf]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:2], [0.0, -10.0])
    assert np.isnan(out[2:5]).all() and np.isinf(out[5])


def _curvature_reference(z: np.ndarray, r: int, c: int, dx: float, dy: float
                         ) -> tuple[float, float]:
    """Second derivatives of height along and across the gradient at one cell, from finite
    differences (x east, y north: row r - 1 is north of row r)."""
    p = (z[r, c + 1] - z[r, c - 1]) / (2 * dx)
    q = (z[r - 1, c] - z[r + 1, c]) / (2 * dy)
    zxx = (z[r, c + 1] - 2 * z[r, c] + z[r, c - 1]) / dx**2
    zyy = (z[r - 1, c] - 2 * z[r, c] + z[r + 1, c]) / dy**2
    zxy = (z[r - 1, c + 1] - z[r - 1, c - 1] - z[r + 1, c + 1] + z[r + 1, c - 1]) / (4 * dx * dy)
    if p * p + q * q == 0:
        return 0.0, 0.0
    # Unit vectors along the gradient (p, q) and across it (-q, p).
    along = (zxx * p * p + 2 * zxy * p * q + zyy * q * q) / (p * p + q * q)
    across = (zxx * q * q - 2 * zxy * p * q + zyy * p * p) / (p * p + q * q)
    return along, across


@given(arrays(np.float64, st.tuples(st.integers(3, 9), st.integers(3, 9)),
              elements=st.floats(-50, 3000)),
       st.floats(5.0, 100.0), st.floats(5.0, 100.0))
def test_curvatures_match_the_per_cell_reference(z, dx, dy):
    out = kernels.curvatures(z, dx, dy)
    rows, cols = z.shape
    assert out.shape == (2, rows, cols) and out.dtype == np.float32
    assert np.isnan(out[:, 0]).all() and np.isnan(out[:, :, -1]).all()
    relief = max(1.0, float(np.ptp(z)))
    for r in range(1, rows - 1):
        for c in range(1, cols - 1):
            gx = (z[r, c + 1] - z[r, c - 1]) / (2 * dx)
            gy = (z[r - 1, c] - z[r + 1, c]) / (2 * dy)
            if 0 < np.hypot(gx, gy) < 1e-9 * relief:
                continue  # the slope direction of a near-flat cell is rounding noise
            ref = _curvature_reference(z, r, c, dx, dy)
            scale = 1e-6 * relief / min(dx, dy) ** 2
            np.testing.assert_allclose(out[:, r, c], np.float32(ref), rtol=1e-4, atol=scale)


def test_curvature_signs_on_a_hill_and_a_valley():
    """A dome is convex along and across its slopes (negative); a valley's sides are
    concave across (positive plan curvature), a footslope concave along (positive profile)."""
    y, x = np.mgrid[-10:11, -10:11] * 10.0   # x east; rows run south, so y = -row
    y = -y
    dome = 100.0 - 0.001 * (x**2 + y**2)
    profile, plan = kernels.curvatures(dome, 10.0, 10.0)
    inner = (slice(2, -2), slice(2, -2))
    off_top = np.hypot(x, y)[inner] > 15
    assert (profile[inner][off_top] < 0).all() and (plan[inner][off_top] < 0).all()
    valley = 0.002 * x**2 + 0.05 * y           # a trough descending to the south
    _, plan_v = kernels.curvatures(valley, 10.0, 10.0)
    sides = np.abs(x[inner]) > 15
    assert (plan_v[inner][sides] > 0).all()
    footslope = 0.001 * (y + 200) ** 2         # steep in the north, flattening southwards
    profile_f, _ = kernels.curvatures(footslope, 10.0, 10.0)
    assert (profile_f[inner] > 0).all()
    flat = kernels.curvatures(np.full((4, 4), 7.0), 10.0, 10.0)
    assert (flat[:, 1:-1, 1:-1] == 0).all()
