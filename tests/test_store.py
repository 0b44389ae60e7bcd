"""Zarr products: CRS round trip, completion marker, refusal of incomplete products."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import cup4soil
from cup4soil import masks, store
from cup4soil.errors import Cup4SoilError, ParameterError


@pytest.fixture(scope="module")
def vpc(sample):
    items = cup4soil.search(sample.bbox, "2019", catalog=sample.catalog)
    return masks.valid_pixel_count(cup4soil.load_s2(items)).to_dataset()


def test_round_trip_keeps_grid_and_crs(vpc, tmp_path):
    url = str(tmp_path / "vpc.zarr")
    info = store.write(vpc, url)
    assert info.variables == ("VPC",)
    back = store.open(url)
    np.testing.assert_array_equal(back.VPC.values, vpc.VPC.values)
    assert back.odc.geobox == vpc.odc.geobox
    assert back.rio.crs.to_epsg() == 32633


def test_stackstac_cube_writes_to_zarr(sample, tmp_path):
    items = cup4soil.search(sample.bbox, "2019-06", catalog=sample.catalog)
    cube = cup4soil.load_s2(items, bands=["B04", "SCL"], engine="stackstac")
    store.write(cube, str(tmp_path / "cube.zarr"))
    back = store.open(str(tmp_path / "cube.zarr"))
    np.testing.assert_array_equal(back.B04.values, cube.B04.values)


def test_existing_product_is_not_overwritten_silently(vpc, tmp_path):
    url = str(tmp_path / "p.zarr")
    store.write(vpc, url)
    with pytest.raises(ParameterError, match="already exists"):
        store.write(vpc, url)
    store.write(vpc, url, mode="w")


def test_incomplete_product_is_refused(vpc, tmp_path):
    url = tmp_path / "half.zarr"
    vpc.to_zarr(url, zarr_format=3, consolidated=False)  # written, but never marked complete
    with pytest.raises(Cup4SoilError, match="incomplete"):
        store.open(str(url))
    assert isinstance(store.open(str(url), allow_incomplete=True), xr.Dataset)
    with pytest.raises(Cup4SoilError, match="no product"):
        store.open(str(tmp_path / "absent.zarr"))
