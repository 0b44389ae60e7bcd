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
from cup4soil import masks, scmap
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


def _read_on(shared_data, band: str, gbox: GeoBox) -> np.ndarray:
    """A band of the tile averaged onto ``gbox``'s shape, without the file's overviews."""
    with rasterio.open(shared_data / TILE / f"{band}.tif", OVERVIEW_LEVEL="NONE") as src:
        return src.read(1, out_shape=gbox.shape, resampling=Resampling.average)


def _square_dilation(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilation by a (2r+1)^2 square, by shifting and or-ing (beyond the edge: not set)."""
    h, w = mask.shape
    padded = np.pad(mask, r)
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


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
    # PVIR2 = NDVI + NBR(B08, B12), from the files (10 m bands averaged onto the grid).
    b04, b08, b12 = (_read_on(shared_data, b, gbox).astype(float) for b in ("B04", "B08", "B12"))
    direct = (b08 - b04) / (b08 + b04) + (b08 - b12) / (b08 + b12)
    pvir2 = scmap.observations(cube, 0.137).PVIR2.isel(time=0).values
    inside = (b04 > 0) & (b08 > 0) & (b12 > 0)
    assert inside.mean() > 0.9
    # (averaged 10 m bands may differ by 1 DN from GDAL's average: rounding)
    np.testing.assert_allclose(pvir2[inside], direct[inside], atol=2e-3)


def test_cloud_buffer_on_the_real_tile_at_50_m(tile_item, shared_data):
    """At 50 m the 100 m buffer is 2 px: a 5 x 5 square around cloud, shadow and cirrus."""
    coarse = _grid(shared_data, "B05")  # 200 m
    fine = GeoBox((coarse.shape.y * 4, coarse.shape.x * 4),
                  coarse.affine * coarse.affine.scale(0.25), coarse.crs)
    window = fine[0:400, 800:1200]  # 20 x 20 km with cirrus and clouds
    cube = cup4soil.load_s2([tile_item], geobox=window, chunks={"x": 128, "y": 128})
    valid = masks.valid(cube)
    assert valid.attrs["cloud_buffer_px"] == 2
    valid = valid.isel(time=0).values
    with rasterio.open(shared_data / TILE / "SCL.tif") as src:
        scl = src.read(1)[0:100, 200:300]
    scl = scl.repeat(4, axis=0).repeat(4, axis=1)  # each 200 m pixel is 4 x 4 pixels of 50 m
    cloud = np.isin(scl, [3, 8, 9, 10])
    buffered = _square_dilation(cloud, 2)
    usable = ~np.isin(scl, [0, 1, 2, 3, 7, 8, 9, 10, 11])
    data = np.all([cube[b].isel(time=0).values > 0 for b in _s2meta.REFLECTANCE_BANDS], axis=0)
    assert cloud.any() and (buffered & usable & ~cloud).sum() > 100  # the buffer matters
    np.testing.assert_array_equal(valid, usable & data & ~buffered)
