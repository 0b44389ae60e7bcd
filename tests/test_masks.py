"""Validity mask: kernels against a slow reference (hypothesis), chunk invariance, laziness."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import cup4soil
from cup4soil import masks
from cup4soil.cube import kernels as cube_kernels
from cup4soil.errors import BandError, ParameterError
from cup4soil.sources.sentinel2 import REFLECTANCE_BANDS

from helpers import raise_if_dask_computes

SCL_VALUES = st.integers(min_value=0, max_value=11)


def _slow_valid(scl: np.ndarray, nodata: np.ndarray, radius: int) -> np.ndarray:
    """Obviously correct per-pixel definition of SCMaP validity."""
    t, h, w = scl.shape
    out = np.zeros_like(scl, dtype=bool)
    for k in range(t):
        for i in range(h):
            for j in range(w):
                if scl[k, i, j] in (0, 1, 2, 3, 7, 8, 9, 10, 11) or nodata[k, i, j]:
                    continue
                rows = slice(max(0, i - radius), i + radius + 1)
                cols = slice(max(0, j - radius), j + radius + 1)
                window = scl[k, rows, cols]
                out[k, i, j] = not np.isin(window, (3, 8, 9, 10)).any()
    return out


@settings(max_examples=min(40, settings().max_examples))  # a Dask graph per example
@given(
    scl=arrays(np.uint8, st.tuples(st.just(2), st.integers(6, 30), st.integers(6, 30)),
               elements=st.sampled_from([4, 4, 4, 5, 8, 9, 3, 0])),
    cy=st.integers(2, 12), cx=st.integers(2, 12), radius=st.integers(1, 5),
)
def test_dilation_is_exact_across_chunk_borders(scl, cy, cx, radius):
    # Chunks may be smaller than the buffer radius (then they are grown for the overlap).
    _, h, w = scl.shape
    res = 100.0 / radius
    x = np.arange(w) * res
    cube = xr.Dataset(
        {"SCL": (("time", "y", "x"), dsa.from_array(scl, chunks=(1, cy, cx))),
         "B02": (("time", "y", "x"), dsa.from_array(np.ones_like(scl, np.uint16) * 500,
                                                    chunks=(1, cy, cx)))},
        coords={"x": x, "y": -np.arange(h) * res},
    )
    got = masks.valid(cube)
    assert got.data.chunks == cube.SCL.data.chunks
    np.testing.assert_array_equal(got.values, _slow_valid(scl, np.zeros(scl.shape, bool), radius))


def test_shift_dn_property():
    rng = np.random.default_rng(0)
    dn = rng.integers(0, 3000, (50, 50)).astype(np.uint16)
    out = cube_kernels.shift_dn(dn, -1000)
    expected = np.where(dn == 0, 0, np.maximum(dn.astype(int) - 1000, 1))
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.uint16


@pytest.fixture(scope="module")
def cube(sample):
    items = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)
    # Read once (several chunks per scene), then every test works from memory.
    return cup4soil.load_s2(items, chunks={"x": 24, "y": 24}).persist()


def test_mask_is_lazy_and_chunk_invariant(cube):
    with raise_if_dask_computes():
        small = masks.valid(cube)
        big = masks.valid(cube.chunk({"x": -1, "y": -1}))
    assert isinstance(small.data, dsa.Array) and small.data.chunksize[1:] == (24, 24)
    np.testing.assert_array_equal(small.values, big.values)
    assert small.attrs["cloud_buffer_px"] == 5  # 100 m at 20 m


def test_sun_zenith_limit(cube):
    hot = cube.assign_coords(sza=cube.sza * 0 + 75.0)
    assert not masks.valid(hot).any()
    unknown = cube.assign_coords(sza=cube.sza * np.nan)
    np.testing.assert_array_equal(masks.valid(unknown).values,
                                  masks.valid(cube.assign_coords(sza=cube.sza * 0)).values)


def test_clouds_and_their_buffer_are_invalid(cube):
    v = masks.valid(cube).values
    scl = cube.SCL.values
    assert not v[np.isin(scl, (0, 3, 8, 9, 10, 11))].any()
    clear = np.isin(scl, (4, 5, 6))
    assert v[clear].mean() > 0.3 and not v[clear].all()  # buffer removes some clear pixels


def test_valid_pixel_count(cube):
    vpc = masks.valid_pixel_count(cube)
    assert vpc.dtype == np.uint16 and vpc.dims == ("y", "x")
    # Counted pixel by pixel from the definition, sun zenith limit included.
    scl = cube.SCL.values
    nodata = np.any([cube[b].values == 0 for b in REFLECTANCE_BANDS], axis=0)
    low_sun = cube.sza.values > 70
    assert low_sun.any() and not low_sun.all()  # the limit matters in this archive
    expected = (_slow_valid(scl, nodata, radius=5) & ~low_sun[:, None, None]).sum(axis=0)
    np.testing.assert_array_equal(vpc.values, expected)


def test_buffer_scales_with_resolution():
    assert masks.cloud_buffer_pixels(20.0) == 5
    assert masks.cloud_buffer_pixels(10.0) == 10
    assert masks.cloud_buffer_pixels(60.0) == 1
    with pytest.raises(ParameterError):
        masks.cloud_buffer_pixels(0)


def test_mask_needs_scl(cube):
    with pytest.raises(BandError, match="no SCL band"):
        masks.valid(cube.drop_vars("SCL"))
