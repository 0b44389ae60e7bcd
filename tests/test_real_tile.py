"""The real Sentinel-2 L2A tile (29RKH, 2020-02-19, 10x downsampled COGs) through both engines,
checked against direct rasterio reads."""

from __future__ import annotations

import numpy as np
import pystac
import pytest
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling

import cup4soil
from cup4soil import masks
from cup4soil.sources import sentinel2 as _s2meta

TILE = "s2_l2a/rio-tiler-pds_S2A_29RKH_20200219_0_L2A"


@pytest.fixture(scope="module")
def tile_item(shared_data) -> pystac.Item:
    """The Earth Search v1 item, hrefs pointed at the local files and its projection metadata
    made to match the downsampled rasters (the JSON still describes the 10 m originals)."""
    folder = shared_data / TILE
    item = pystac.Item.from_file(str(folder / "S2A_29RKH_20200219_0_L2A.json"))
    for band in _s2meta.ALL_BANDS:
        asset = item.assets[_s2meta.asset_key(item, band)]
        path = folder / f"{band}.tif"
        asset.href = str(path)
        with rasterio.open(path) as src:
            asset.extra_fields["proj:shape"] = list(src.shape)
            asset.extra_fields["proj:transform"] = list(src.transform)[:6]
            asset.extra_fields["gsd"] = src.res[0]
    return item


def _grid(shared_data, band: str) -> GeoBox:
    with rasterio.open(shared_data / TILE / f"{band}.tif") as src:
        return GeoBox(src.shape, src.transform, src.crs)


@pytest.mark.parametrize("engine", ["odc-stac", "stackstac"])
def test_native_grid_values_equal_rasterio(tile_item, shared_data, engine):
    gbox = _grid(shared_data, "B05")  # the 200 m grid of the 20 m bands
    cube = cup4soil.load_s2([tile_item], geobox=gbox, engine=engine,
                            chunks={"x": 256, "y": 256}).isel(time=0).compute()
    assert cube.odc.geobox == gbox
    for band in ("B05", "B8A", "B11", "B12", "SCL"):
        with rasterio.open(shared_data / TILE / f"{band}.tif") as src:
            direct = src.read(1)
        np.testing.assert_array_equal(cube[band].values, direct, err_msg=band)
    assert _s2meta.dn_offset(tile_item, "B05") == 0  # baseline 02.14, raster offset 0


def test_coarser_bands_are_averaged(tile_item, shared_data):
    gbox = _grid(shared_data, "B05")
    a = cup4soil.load_s2([tile_item], bands=["B02", "B08"], geobox=gbox).isel(time=0).compute()
    b = cup4soil.load_s2([tile_item], bands=["B02", "B08"], geobox=gbox,
                         engine="stackstac").isel(time=0).compute()
    for band in ("B02", "B08"):
        # The file's own overviews were made by nearest neighbour: read around them.
        with rasterio.open(shared_data / TILE / f"{band}.tif", OVERVIEW_LEVEL="NONE") as src:
            fine = src.read(1).astype(float)
            direct = src.read(1, out_shape=gbox.shape, resampling=Resampling.average)
        # The 2 x 2 block mean of the 100 m pixels.
        blocks = fine[:1098, :1098].reshape(549, 2, 549, 2).mean(axis=(1, 3))
        inside = (fine[:1098, :1098].reshape(549, 2, 549, 2) > 0).all(axis=(1, 3))
        for engine, got in (("odc-stac", a[band].values), ("stackstac", b[band].values)):
            assert np.abs(got[inside] - blocks[inside]).max() <= 1.0, (engine, band)
            assert np.abs(got.astype(int) - direct.astype(int))[inside].max() <= 1, (engine, band)


def test_valid_mask_and_pvir2_on_the_real_tile(tile_item, shared_data):
    gbox = _grid(shared_data, "B05")
    cube = cup4soil.load_s2([tile_item], geobox=gbox).compute()
    valid = masks.valid(cube).isel(time=0).values
    with rasterio.open(shared_data / TILE / "SCL.tif") as src:
        scl = src.read(1)
    # Direct computation: usable classes, minus a 100 m (at 200 m pixels: 0 px) cloud buffer.
    usable = ~np.isin(scl, [0, 1, 2, 3, 7, 8, 9, 10, 11])
    np.testing.assert_array_equal(valid, usable & (cube.B05.isel(time=0).values > 0))
    assert valid.mean() > 0.8  # mostly clear desert
    assert float(cube.sza[0]) == pytest.approx(90 - 48.293248430895)
