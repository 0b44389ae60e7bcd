"""Averaging 10 m bands onto 20 m: the exact block-mean kernel and the reader that uses it."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from odc.geo.geobox import GeoBox
from odc.loader import RasterLoadParams
from rasterio.enums import Resampling

from cup4soil.cube import kernels
from cup4soil.cube.readers import may_align, read_aligned


def _slow_block_mean(src, k, shape, row0, col0, nodata, fill):
    """One output pixel at a time, exact fractions, halves rounded up."""
    out = np.empty(shape, dtype=src.dtype)
    for i in range(shape[0]):
        for j in range(shape[1]):
            vals = [int(src[r, c])
                    for r in range(row0 + k * i, row0 + k * i + k)
                    for c in range(col0 + k * j, col0 + k * j + k)
                    if 0 <= r < src.shape[0] and 0 <= c < src.shape[1]
                    and (nodata is None or int(src[r, c]) != nodata)]
            if not vals:
                out[i, j] = fill
                continue
            out[i, j] = math.floor(Fraction(sum(vals), len(vals)) + Fraction(1, 2))
    return out


@st.composite
def _cases(draw):
    dtype = draw(st.sampled_from([np.uint16, np.uint8, np.int16, np.int32]))
    info = np.iinfo(dtype)
    lo, hi = max(int(info.min), -5000), min(int(info.max), 65535)
    # few distinct values: ties, exact halves and nodata are frequent
    elements = st.one_of(st.sampled_from([0, 1, 2, 3, hi]), st.integers(lo, hi))
    src = draw(arrays(dtype, st.tuples(st.integers(1, 9), st.integers(1, 9)), elements=elements))
    k = draw(st.integers(1, 4))
    shape = (draw(st.integers(0, 5)), draw(st.integers(0, 5)))
    row0 = draw(st.integers(-2 * k, src.shape[0]))
    col0 = draw(st.integers(-2 * k, src.shape[1]))
    nodata = draw(st.sampled_from([None, 0, 3]))
    return src, k, shape, row0, col0, nodata


@given(_cases())
def test_block_mean_matches_the_exact_reference(case):
    src, k, shape, row0, col0, nodata = case
    got = kernels.block_mean(src, k, shape, row0=row0, col0=col0, nodata=nodata, fill=7)
    want = _slow_block_mean(src, k, shape, row0, col0, nodata, 7)
    assert got.dtype == src.dtype
    np.testing.assert_array_equal(got, want)


def test_block_mean_rounds_halves_up_and_skips_nodata():
    src = np.array([[1, 2, 0, 0], [0, 0, 0, 0]], np.uint16)
    got = kernels.block_mean(src, 2, (1, 2), nodata=0, fill=0)
    np.testing.assert_array_equal(got, [[2, 0]])  # mean 1.5 -> 2; no valid pixel -> fill
    signed = np.array([[-1, -2]], np.int16)
    np.testing.assert_array_equal(kernels.block_mean(signed, 2, (1, 1)), [[-1]])  # -1.5 -> -1


def test_block_mean_refuses_what_it_cannot_average():
    with pytest.raises(TypeError, match="integer"):
        kernels.block_mean(np.zeros((2, 2), np.float32), 2, (1, 1))
    with pytest.raises(ValueError, match="k=0"):
        kernels.block_mean(np.zeros((2, 2), np.uint16), 0, (1, 1))


# ------------------------------------------------------------------ the reader, on COGs


def _cog(path: Path, data: np.ndarray, *, nodata: float | None = 0, crs: str = "EPSG:32633",
         origin: tuple[float, float] = (500_000.0, 5_600_000.0), res: float = 10.0) -> Path:
    profile = dict(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1,
                   dtype=data.dtype, crs=crs, nodata=nodata, tiled=True, blockxsize=32,
                   blockysize=32, transform=rasterio.Affine(res, 0, origin[0], 0, -res,
                                                            origin[1]))
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data, 1)
    return path


@pytest.fixture(scope="module")
def band_10m(tmp_path_factory):
    rng = np.random.default_rng(5)
    data = rng.integers(1, 4000, (96, 80)).astype(np.uint16)
    data[:7, :11] = 0  # nodata corner
    data[40:42, 40:42] = [[0, 0], [0, 9]]
    return _cog(tmp_path_factory.mktemp("avg") / "B02.tif", data), data


def _cfg(**kw) -> RasterLoadParams:
    return RasterLoadParams(dtype="uint16", fill_value=0, resampling="average",
                            use_overviews=False, **kw)


def _gdal(path: Path, gbox: GeoBox) -> np.ndarray:
    out = np.zeros(gbox.shape.yx, np.uint16)
    with rasterio.open(path) as ds:
        rasterio.warp.reproject(rasterio.band(ds, 1), out, src_nodata=0, dst_nodata=0,
                                dst_crs=str(gbox.crs), dst_transform=gbox.transform,
                                resampling=Resampling.average)
    return out


@pytest.mark.parametrize("offset", [(0, 0), (3, -2), (-5, 4), (44, 37)])
def test_reader_averages_exactly_what_gdal_averages(band_10m, offset):
    """Aligned 20 m windows, inside, across and beyond the file's edges: the exact mean of
    the valid 10 m pixels; GDAL's warper agrees except at exact halves (its area weights'
    rounding noise) and just outside the file."""
    path, data = band_10m
    dy, dx = offset
    gbox = GeoBox((30, 25), rasterio.Affine(20, 0, 500_000 + 20 * dx, 0, -20,
                                            5_600_000 - 20 * dy), "EPSG:32633")
    roi, pix = read_aligned(str(path), 1, _cfg(), gbox)
    full = np.zeros(gbox.shape.yx, np.uint16)
    full[roi] = pix
    want = _slow_block_mean(data, 2, gbox.shape.yx, 2 * dy, 2 * dx, 0, 0)
    np.testing.assert_array_equal(full, want)
    # the returned window is exactly the output pixels that meet the file
    rows = [i for i in range(30) if 2 * (dy + i) + 2 > 0 and 2 * (dy + i) < 96]
    cols = [j for j in range(25) if 2 * (dx + j) + 2 > 0 and 2 * (dx + j) < 80]
    assert (roi[0].start, roi[0].stop) == ((rows[0], rows[-1] + 1) if rows else (0, 0))
    assert (roi[1].start, roi[1].stop) == ((cols[0], cols[-1] + 1) if cols else (0, 0))
    diff = pix.astype(int) - _gdal(path, gbox)[roi].astype(int)
    assert np.abs(diff).max(initial=0) <= 1


@pytest.mark.parametrize("change", ["half-pixel", "other-crs", "float", "nearest",
                                    "overviews", "non-integer", "finer", "cast"])
def test_reader_leaves_other_grids_to_gdal(band_10m, tmp_path, change):
    path, _ = band_10m
    aff = rasterio.Affine(20, 0, 500_000, 0, -20, 5_600_000)
    cfg, crs = _cfg(), "EPSG:32633"
    if change == "half-pixel":
        aff = rasterio.Affine(20, 0, 500_005, 0, -20, 5_600_000)
    elif change == "other-crs":
        crs = "EPSG:32632"
    elif change == "float":
        path = _cog(tmp_path / "f.tif", np.ones((8, 8), np.float32))
        cfg = _cfg().patch(dtype="float32")
    elif change == "nearest":
        cfg = _cfg().patch(resampling="nearest")
    elif change == "overviews":
        cfg = _cfg().patch(use_overviews=True)
    elif change == "non-integer":
        aff = rasterio.Affine(25, 0, 500_000, 0, -25, 5_600_000)
    elif change == "finer":
        aff = rasterio.Affine(5, 0, 500_000, 0, -5, 5_600_000)
    elif change == "cast":
        cfg = _cfg().patch(dtype="float32")
    assert read_aligned(str(path), 1, cfg, GeoBox((8, 8), aff, crs)) is None


@pytest.mark.parametrize("resampling", ["nearest", "average", "bilinear"])
@pytest.mark.parametrize("offset", [(0, 0), (3, -2), (-5, 4), (90, 70), (200, 0)])
def test_reader_pastes_the_same_grid_as_odc_loader(band_10m, offset, resampling):
    """On the file's own grid (any resampling: none happens) the window is what
    odc-loader's reader pastes, nodata replaced by the fill value."""
    from odc.loader import RasterSource, RioDriver

    path, _ = band_10m
    dy, dx = offset
    gbox = GeoBox((30, 25), rasterio.Affine(10, 0, 500_000 + 10 * dx, 0, -10,
                                            5_600_000 - 10 * dy), "EPSG:32633")
    cfg = _cfg().patch(fill_value=7, resampling=resampling)
    roi, pix = read_aligned(str(path), 1, cfg, gbox)
    driver = RioDriver()
    with driver.restore_env(driver.capture_env(), driver.new_load(gbox)) as ctx:
        want_roi, want = driver.open(RasterSource(str(path)), ctx).read(cfg, gbox)
    assert pix.dtype == want.dtype == np.uint16
    got_full, want_full = np.full((30, 25), 7, np.uint16), np.full((30, 25), 7, np.uint16)
    got_full[roi], want_full[want_roi] = pix, want
    np.testing.assert_array_equal(got_full, want_full)
    assert (roi[0].stop - roi[0].start) * (roi[1].stop - roi[1].start) == want.size


def test_metadata_says_when_no_aligned_read_is_possible(band_10m):
    from odc.loader import RasterSource

    path, _ = band_10m
    own = GeoBox((96, 80), rasterio.Affine(10, 0, 500_000, 0, -10, 5_600_000), "EPSG:32633")
    at20 = GeoBox((8, 8), rasterio.Affine(20, 0, 500_000, 0, -20, 5_600_000), "EPSG:32633")
    laea = GeoBox((8, 8), rasterio.Affine(20, 0, 4_500_000, 0, -20, 3_000_000), "EPSG:3035")
    src, bare = RasterSource(str(path), geobox=own), RasterSource(str(path))
    assert may_align(src, _cfg(), at20)
    assert may_align(bare, _cfg(), laea)  # no grid declared: the file decides
    assert not may_align(src, _cfg(), laea)  # a reprojection: the file is not opened
    assert not may_align(src, _cfg().patch(resampling="nearest"), at20)
    assert may_align(src, _cfg().patch(resampling="nearest"), own)
    assert not may_align(src, _cfg().patch(use_overviews=True), at20)


def test_a_reprojected_cube_never_tries_the_aligned_read(sample, monkeypatch):
    import cup4soil
    from cup4soil.cube import readers

    items = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)[:2]

    def no(*args, **kwargs):
        raise AssertionError("read_aligned tried for a reprojection")

    monkeypatch.setattr(readers, "read_aligned", no)
    cube = cup4soil.load_s2(items, bands=["B02", "B11"], crs="EPSG:3035", resolution=20)
    assert int(cube.B02.max().compute()) > 0
