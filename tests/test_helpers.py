"""The shared helpers themselves can fail (a helper that cannot fail proves nothing)."""

from __future__ import annotations

import socket

import dask
import dask.array as da
import pytest

from helpers import CallCounter, free_port, raise_if_dask_computes


def test_raise_if_dask_computes_counts() -> None:
    arr = da.ones(10, chunks=5)
    with raise_if_dask_computes():
        total = arr.sum()  # building only
    with raise_if_dask_computes(max_computes=1) as sched:
        assert int(total.compute()) == 10
    assert sched.total_computes == 1
    with pytest.raises(RuntimeError, match="Too many dask computations"), \
            raise_if_dask_computes(max_computes=1):
        total.compute()
        total.compute()


def test_call_counter_counts_per_key() -> None:
    counter = CallCounter(lambda x: x * 2, key=lambda x: int(x[0]) % 2)
    arr = da.from_array(list(range(6)), chunks=1).map_blocks(counter, dtype=int)
    with dask.config.set(scheduler="threads"):
        assert list(arr.compute()) == [0, 2, 4, 6, 8, 10]
    assert counter.total == 6 and counter.calls == {0: 3, 1: 3} and counter.most == 3


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_fake_raster_driver_counts_and_refuses_reads_off_the_footprint() -> None:
    from types import SimpleNamespace

    import numpy as np
    from affine import Affine
    from odc.geo.geobox import GeoBox

    from helpers import FakeRasterDriver

    grid = GeoBox.from_bbox((0, 0, 200, 100), "EPSG:32633", resolution=10)  # 10 x 20 px
    asset = grid[:, 5:15]  # the asset covers columns 5..15 of the grid
    data = np.arange(10 * 10, dtype=np.uint16).reshape(10, 10)
    driver = FakeRasterDriver({"mem://a": (data, asset)}, max_opens=2)
    src, cfg = SimpleNamespace(uri="mem://a"), SimpleNamespace(dtype="uint16")
    with driver.restore_env(driver.capture_env(), driver.new_load(grid)) as ctx:
        roi, pix = driver.open(src, ctx).read(cfg, grid[2:4, 0:8])  # overlaps cols 5..8
    assert roi == (slice(0, 2), slice(5, 8))
    np.testing.assert_array_equal(pix, data[2:4, 0:3])
    assert driver.opens == {"mem://a": 1} and driver.windows == [("mem://a", (2, 4), (0, 3))]
    reader = driver.open(src, None)
    with pytest.raises(AssertionError, match="outside its footprint"):
        reader.read(cfg, grid[:, 15:20])  # east of the asset
    with pytest.raises(AssertionError, match="another grid"):
        reader.read(cfg, GeoBox((5, 5), Affine(10, 0, 3, 0, -10, 100), "EPSG:32633"))
    with pytest.raises(AssertionError, match="opened mem://a 3 times"):
        driver.open(src, None)
    with pytest.raises(AssertionError, match="unknown asset"):
        driver.open(SimpleNamespace(uri="mem://b"), None)
    assert len(driver.violations) == 4
