"""SCMaP kernels and the composite against a slow, obviously correct per-pixel reference."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from cup4soil import scmap
from cup4soil.scmap import kernels as _kernels
from cup4soil.sources.sentinel2 import REFLECTANCE_BANDS

INVALID = (0, 1, 2, 3, 7, 8, 9, 10, 11)
CLOUD = (3, 8, 9, 10)


def make_cube(scl, bands, sza, res=20.0, chunks=None):
    t, h, w = scl.shape
    gbox = GeoBox.from_bbox((400000, 5800000, 400000 + w * res, 5800000 + h * res),
                            "EPSG:32633", resolution=res)
    assert gbox.shape == (h, w)
    coords = dict(xr_coords(gbox, crs_coord_name="spatial_ref"))
    coords["time"] = np.datetime64("2020-01-01") + np.arange(t) * np.timedelta64(20, "D")
    coords["sza"] = ("time", np.asarray(sza, dtype="float32"))
    data = {"SCL": (("time", "y", "x"), scl.astype(np.uint8))}
    for i, b in enumerate(REFLECTANCE_BANDS):
        data[b] = (("time", "y", "x"), bands[i].astype(np.uint16))
    cube = xr.Dataset(data, coords=coords)
    return cube.chunk({"time": 1, **(chunks or {})}) if chunks else cube


def reference(scl, bands, sza, thr, wc, *, radius, sigma=3.0, mref_sigma=4.0, min_bare=3):
    """Per pixel, per observation, with plain loops and numpy's median/mean/std."""
    t, h, w = scl.shape
    b02, b04, b08, b12 = (bands[REFLECTANCE_BANDS.index(b)] for b in ("B02", "B04", "B08", "B12"))
    out = {k: np.zeros((h, w)) for k in ("VPC", "BSC", "BSF", "MASK")}
    for k in ("SRC", "SRC_STD", "SRC_CI95", "MREF", "MREF_STD"):
        out[k] = np.full((10, h, w), np.nan)
    for i in range(h):
        for j in range(w):
            valid, bare, below = [], [], False
            for k in range(t):
                win = scl[k, max(0, i - radius):i + radius + 1, max(0, j - radius):j + radius + 1]
                ok = (scl[k, i, j] not in INVALID and all(bands[b][k, i, j] != 0 for b in range(10))
                      and not np.isin(win, CLOUD).any() and not sza[k] > 70)
                a4, a8, a12 = (np.float32(x[k, i, j]) for x in (b04, b08, b12))
                p = np.float32((a8 - a4) / (a8 + a4)) + np.float32((a8 - a12) / (a8 + a12))
                valid.append(ok)
                bare.append(ok and p <= thr[i, j] and (wc is None or wc[i, j] not in (50, 80)))
                below = below or (ok and p < thr[i, j])

            series = b02[:, i, j].astype(float)
            kb, kv = _keep(series, bare, sigma), _keep(series, valid, mref_sigma)
            out["VPC"][i, j] = sum(valid)
            n = len(kb)
            if n >= min_bare:
                out["BSC"][i, j] = n
                out["BSF"][i, j] = n / sum(valid)
                x = bands[:, kb, i, j].astype(float)
                out["SRC"][:, i, j] = x.mean(axis=1)
                out["SRC_STD"][:, i, j] = x.std(axis=1, ddof=1)
                out["SRC_CI95"][:, i, j] = 1.96 * x.std(axis=1, ddof=1) / np.sqrt(n)
            else:
                out["BSF"][i, j] = np.nan
            if kv:
                x = bands[:, kv, i, j].astype(float)
                out["MREF"][:, i, j] = x.mean(axis=1)
                out["MREF_STD"][:, i, j] = x.std(axis=1, ddof=1) if len(kv) > 1 else np.nan
            m = 0
            if sum(valid) and not below:
                m = 2
            if n >= min_bare:
                m = 1
            if wc is not None and wc[i, j] in (0, 50, 70, 80, 90, 95):
                m = 3
            out["MASK"][i, j] = m
    return out


def _keep(series, selected, sigma):
    """Indices of the selected observations that survive SCMaP's NMAD outlier test."""
    idx = [k for k, s in enumerate(selected) if s]
    if not idx:
        return []
    x = series[idx]
    med = np.median(x)
    nmad = 1.4826 * np.median(np.abs(x - med))
    return [k for k in idx if not (series[k] > med + sigma * nmad and series[k] > med + 80)]


@st.composite
def scenes(draw):
    t = draw(st.integers(2, 10))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    clear = draw(st.floats(0.5, 1.0))  # share of clear observations
    scl = np.where(rng.random((t, h, w)) < clear, rng.choice([4, 5, 5, 6], size=(t, h, w)),
                   rng.choice([8, 9, 3, 10, 0, 11, 7, 1, 2], size=(t, h, w)))
    soil = rng.integers(1500, 4000, size=(10, 1, h, w)) + rng.integers(-300, 300, (10, t, h, w))
    veg = rng.random((t, h, w)) < draw(st.floats(0, 1))
    bands = np.where(veg[None], rng.integers(200, 600, (10, t, h, w)), soil).clip(0, 10000)
    bands[6] = np.where(veg, rng.integers(3000, 4000, (t, h, w)), bands[6])  # NIR of vegetation
    if draw(st.booleans()):  # nodata in some observations
        bands[rng.integers(0, 10), rng.random((t, h, w)) < 0.15] = 0
    if draw(st.booleans()):  # constant B02 series: NMAD = 0
        bands[0] = bands[0][:1]
    if draw(st.booleans()):  # a bright outlier
        bands[0, rng.integers(0, t)] += 900
    sza = rng.choice([30.0, 45.0, 72.0, np.nan], size=t, p=[0.5, 0.3, 0.1, 0.1])
    thr = np.full((h, w), draw(st.sampled_from([-0.2, 0.0, 0.137, 0.25, 0.6, 2.1])), np.float32)
    if draw(st.booleans()):  # a tie: the threshold equals one observation's PVIR2
        k, i, j = rng.integers(0, t), rng.integers(0, h), rng.integers(0, w)
        thr[i, j] = _kernels.pvir2(bands[2, k, i, j:j + 1], bands[6, k, i, j:j + 1],
                                   bands[9, k, i, j:j + 1])[0]
    wc = rng.choice([40, 40, 40, 10, 30, 50, 80, 0], size=(h, w)) if draw(st.booleans()) else None
    return scl, bands.astype(np.int64), sza, thr, wc


@settings(max_examples=min(60, settings().max_examples))  # a Dask graph per example
@given(case=scenes(), radius_px=st.sampled_from([0, 1, 2]))
def test_composite_matches_reference(case, radius_px):
    scl, bands, sza, thr, wc = case
    res = 100.0 / radius_px if radius_px else 200.0
    cube = make_cube(scl, bands, sza, res=res)
    thr_da = xr.DataArray(thr, dims=("y", "x"), coords={"y": cube.y, "x": cube.x})
    wc_da = (xr.DataArray(wc, dims=("y", "x"), coords={"y": cube.y, "x": cube.x})
             if wc is not None else None)
    got = scmap.composite(cube, thr_da, worldcover=wc_da).compute()
    ref = reference(scl, bands, sza, thr, wc, radius=radius_px)
    for name in ("VPC", "BSC", "MASK"):
        np.testing.assert_array_equal(got[name].values, ref[name], err_msg=name)
    for name in ("BSF", "SRC", "SRC_STD", "SRC_CI95", "MREF", "MREF_STD"):
        np.testing.assert_allclose(got[name].values, ref[name], rtol=2e-6, atol=1e-3,
                                   equal_nan=True, err_msg=name)


def test_masked_median_matches_numpy():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 100, (7, 5, 5))
    m = rng.random((7, 5, 5)) < 0.6
    got = _kernels.masked_median(x, m)
    for i in range(5):
        for j in range(5):
            sel = x[m[:, i, j], i, j]
            exp = np.median(sel) if sel.size else np.nan
            assert (np.isnan(got[i, j]) and np.isnan(exp)) or got[i, j] == exp


def test_moments_stay_precise_for_large_dn():
    # Raw sums of squares would lose the variance of 60000 +- 0.5 in float32/float64 sums.
    x = 60000.0 + np.array([0.5, -0.5] * 500)
    mom = _kernels.Moments((1, 1, 1))
    for v in x:
        mom.add(np.array([[[v]]]), np.array([[True]]))
    assert mom.std()[0, 0, 0] == pytest.approx(np.std(x, ddof=1), rel=1e-9)


def test_pvir2_zero_denominator_is_nan():
    p = _kernels.pvir2(np.array([0, 1000]), np.array([0, 3000]), np.array([0, 1000]))
    assert np.isnan(p[0]) and p[1] == pytest.approx(1.0)


@given(t=st.integers(1, 20), h=st.integers(1, 5), w=st.integers(1, 5), seed=st.integers(0, 99))
def test_packed_flags_round_trip(t, h, w, seed):
    flags = np.random.default_rng(seed).random((t, h, w)) < 0.5
    bits = _kernels.flags_new(t, (h, w))
    for k in range(t):
        _kernels.flags_set(bits, k, flags[k])
    for k in range(t):
        np.testing.assert_array_equal(_kernels.flags_get(bits, k), flags[k])
    rows = slice(0, max(1, h // 2))
    np.testing.assert_array_equal(_kernels.flags_unpack(bits, t, rows), flags[:, rows])
    np.testing.assert_array_equal(_kernels.flags_pack(flags[:, rows]), bits[:, rows])


# ------------------------------------------------------------------------ observation rule


def slow_observe(scl, bands, sza, thr, wc, *, radius, max_sza=70.0):
    """SCMaP's observation rule, pixel by pixel in plain Python (shared/docs/scmap.md)."""
    t, h, w = scl.shape
    valid = np.zeros((t, h, w), bool)
    bare = np.zeros((t, h, w), bool)
    for k in range(t):
        for i in range(h):
            for j in range(w):
                if int(scl[k, i, j]) in INVALID:
                    continue
                if any(int(b[k, i, j]) == 0 for b in bands.values()):
                    continue
                z = float(sza[k, i, j])
                if z == z and z > max_sza:  # NaN (unknown) does not invalidate
                    continue
                near = [int(scl[k, a, b])
                        for a in range(max(0, i - radius), min(h, i + radius + 1))
                        for b in range(max(0, j - radius), min(w, j + radius + 1))]
                if any(c in CLOUD for c in near):
                    continue
                valid[k, i, j] = True
                a4, a8, a12 = (np.float32(bands[n][k, i, j]) for n in ("B04", "B08", "B12"))
                p = np.float32((a8 - a4) / (a8 + a4)) + np.float32((a8 - a12) / (a8 + a12))
                built_or_water = wc is not None and int(wc[i, j]) in (50, 80)
                bare[k, i, j] = bool(p <= thr[i, j]) and not built_or_water
    return valid, bare


@st.composite
def observation_cases(draw):
    t, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    # Mostly clear, some invalid classes, few clouds (each grows a buffer).
    classes = np.array([4, 5, 6, 0, 1, 2, 7, 11, 3, 8, 9, 10], np.uint8)
    weights = np.array([0.3, 0.3, 0.2, *[0.024] * 5, *[0.02] * 4])
    scl = rng.choice(classes, (t, h, w), p=weights / weights.sum())
    bands = {b: rng.integers(1, 4000, (t, h, w)).astype(np.uint16) for b in REFLECTANCE_BANDS}
    bands[draw(st.sampled_from(REFLECTANCE_BANDS))][rng.random((t, h, w)) < 0.1] = 0
    angles = np.array([30.0, 69.9, 70.0, 72.0, np.nan], np.float32)
    per_pixel = draw(st.booleans())
    sza = rng.choice(angles, (t, h, w) if per_pixel else (t, 1, 1))
    thr = rng.choice(np.array([-0.3, 0.0, 0.137, 0.5], np.float32), (h, w))
    k, i, j = rng.integers(0, t), rng.integers(0, h), rng.integers(0, w)
    # a tie: the threshold equals one observation's PVIR2 (PVIR2 <= threshold is bare)
    thr[i, j] = _kernels.pvir2(*(bands[n][k, i, j:j + 1] for n in ("B04", "B08", "B12")))[0]
    wc = rng.choice(np.array([40, 30, 50, 80], np.uint8), (h, w)) if draw(st.booleans()) else None
    radius = draw(st.integers(0, 3))
    # A window of the scene, its SCL with a halo that reaches at least ``radius`` further
    # (or to the scene's edge): the rule must give the whole scene's result on the window.
    y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
    y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
    extra = draw(st.integers(0, 2))
    halo_rows = (max(0, y0 - radius - extra), min(h, y1 + radius + extra))
    halo_cols = (max(0, x0 - radius - extra), min(w, x1 + radius + extra))
    return scl, bands, sza, thr, wc, radius, (y0, y1, x0, x1), halo_rows, halo_cols


@given(case=observation_cases())
def test_observe_matches_per_pixel_reference(case):
    scl, bands, sza, thr, wc, radius, (y0, y1, x0, x1), (ya, yb), (xa, xb) = case
    ref_valid, ref_bare = slow_observe(scl, bands, np.broadcast_to(sza, scl.shape), thr, wc,
                                       radius=radius)
    core = (slice(None), slice(y0, y1), slice(x0, x1))
    sza_core = sza[core] if sza.shape[1:] != (1, 1) else sza
    obs = _kernels.observe(
        scl[:, ya:yb, xa:xb], {b: v[core] for b, v in bands.items()}, thr[y0:y1, x0:x1],
        radius=radius, landcover=None if wc is None else wc[y0:y1, x0:x1], sza=sza_core,
        halo=(y0 - ya, yb - y1, x0 - xa, xb - x1))
    np.testing.assert_array_equal(obs.valid, ref_valid[core])
    np.testing.assert_array_equal(obs.bare, ref_bare[core])
    # the validity half alone is the same rule
    alone = _kernels.observe_valid(scl[:, ya:yb, xa:xb], [v[core] for v in bands.values()],
                                   radius=radius, sza=sza_core,
                                   halo=(y0 - ya, yb - y1, x0 - xa, xb - x1))
    np.testing.assert_array_equal(alone, ref_valid[core])
