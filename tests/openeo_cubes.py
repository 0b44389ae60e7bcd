"""Inputs and comparisons shared by the openEO tests: held-out random Sentinel-2 cubes,
the equivalence check of two composites, and a composite as a back-end returns it."""

from __future__ import annotations

import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from cup4soil.sources.sentinel2 import REFLECTANCE_BANDS

#: float32 results of float64 arithmetic done in two orders: a unit or two in the last place.
RTOL, ATOL = 3e-7, 1e-4


def assert_equivalent(local: xr.Dataset, native: xr.Dataset, skip: tuple[str, ...] = ()):
    """Counts and classes exactly, reflectances to float32 rounding, NaN where NaN."""
    for name, ref in native.data_vars.items():
        if name in skip:
            continue
        got = local[name]
        assert got.dims == ref.dims and got.dtype == ref.dtype, name
        if np.issubdtype(ref.dtype, np.integer):
            np.testing.assert_array_equal(got.values, ref.values, err_msg=name)
        else:
            np.testing.assert_allclose(got.values, ref.values, rtol=RTOL, atol=ATOL,
                                       err_msg=name)
    np.testing.assert_array_equal(local.x.values, native.x.values)
    np.testing.assert_array_equal(local.y.values, native.y.values)
    assert local.rio.crs == native.rio.crs


def random_cube(seed: int, *, size: int = 20, n_time: int = 10, partial_nodata: bool = True):
    """A random Sentinel-2 L2A cube (uint16 DN, SCL, per-scene sun zenith), its threshold
    raster and WorldCover classes: soil and vegetation mixed per observation so that PVIR2
    straddles the threshold, B02 haze outliers, clouds, nodata, a low sun."""
    rng = np.random.default_rng(seed)
    geobox = GeoBox.from_bbox((455_620, 5_830_000, 455_620 + 20 * size, 5_830_000 + 20 * size),
                              "EPSG:32633", resolution=20)
    coords = xr_coords(geobox, crs_coord_name="spatial_ref")
    days = np.sort(rng.choice(np.arange(1000), n_time, replace=False))
    times = np.datetime64("2020-01-01T10:30", "ns") + days.astype("timedelta64[D]")
    shape = (n_time, size, size)
    # Per pixel a chance of bare soil; a bare observation has little vegetation.
    bare = rng.uniform(0, 1, shape) < rng.uniform(0, 1, (1, size, size))
    veg = np.where(bare, rng.uniform(0, 0.15, shape), rng.uniform(0.1, 1, shape))
    soil = {"B02": 900, "B03": 1200, "B04": 1500, "B05": 1700, "B06": 1900, "B07": 2000,
            "B08": 2200, "B8A": 2300, "B11": 2800, "B12": 2500}
    green = {"B02": 500, "B03": 800, "B04": 400, "B05": 900, "B06": 2500, "B07": 3000,
             "B08": 3500, "B8A": 3600, "B11": 1800, "B12": 1000}
    bands = {}
    for b in REFLECTANCE_BANDS:
        mean = soil[b] * (1 - veg) + green[b] * veg
        bands[b] = np.clip(rng.normal(mean, 60), 1, 10_000)
    haze = rng.uniform(0, 1, shape) < 0.08
    bands["B02"] = np.where(haze, bands["B02"] + rng.uniform(200, 900, shape), bands["B02"])
    scl = rng.choice([4, 5, 6, 1, 2, 7, 11], shape, p=[.35, .35, .22, .02, .02, .02, .02])
    for t in range(n_time):  # now and then a small cloud (with its 100 m buffer)
        if rng.uniform() < 0.4:
            y0, x0 = rng.integers(0, size - 2, 2)
            scl[t, y0:y0 + 2, x0:x0 + 2] = rng.choice([3, 8, 9, 10])
    gap = np.zeros(shape, bool)
    gap[rng.integers(n_time), :, : size // 3] = True  # a swath edge
    for b in REFLECTANCE_BANDS:
        bands[b] = np.where(gap, 0, bands[b])
    scl = np.where(gap, 0, scl)
    if partial_nodata:  # one band missing, the others and SCL fine
        lost = (rng.uniform(0, 1, shape) < 0.02) & ~gap
        bands["B11"] = np.where(lost, 0, bands["B11"])
    sza = rng.uniform(25, 65, n_time).astype("float32")
    sza[rng.integers(n_time)] = 72.0  # winter: the sun too low
    data = {b: (("time", "y", "x"), v.astype("uint16")) for b, v in bands.items()}
    data["SCL"] = (("time", "y", "x"), scl.astype("uint8"))
    cube = xr.Dataset(data, coords={**coords, "time": times}).assign_coords(sza=("time", sza))
    yy, xx = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    thr = xr.DataArray((0.25 + 0.15 * np.sin(3 * yy + 2 * xx + seed)).astype("float32"),
                       dims=("y", "x"), coords=coords)
    wc = xr.DataArray(rng.choice([10, 20, 30, 40, 50, 60, 80, 90, 0], (size, size),
                                 p=[.1, .1, .1, .45, .05, .1, .04, .03, .03]).astype("uint8"),
                      dims=("y", "x"), coords=coords)
    return cube, thr, wc


def as_openeo_result(native: xr.Dataset, *, dlr_names: bool = False) -> xr.Dataset:
    """The composite as a back-end returns it: one float variable per band label, null as
    NaN (counts included), time reduced away."""
    out = {}
    for name, var in native.data_vars.items():
        if "band" in var.dims:
            label = name.replace("_STD", "-STD") if dlr_names else name
            for b in var.band.values:
                out[f"{label}_{b}"] = var.sel(band=b, drop=True).astype("float32")
        else:
            v = var.astype("float32")
            out[name] = v.where(v != 0) if name in ("BSC", "MASK") else v
    ds = xr.Dataset(out)
    ds = ds.drop_vars([c for c in ds.coords if c not in ("y", "x")])
    return ds.rio.write_crs(native.rio.crs)


def netcdf_bytes(ds: xr.Dataset, tmp_path) -> bytes:
    path = tmp_path / "made.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    return path.read_bytes()
