"""Issue 12 §4: outputs other tools read -- STAC items (stackstac, odc-stac, xarray through
the xarray-assets fields), GDAL on Zarr v2 products, the readers ``info`` names.

The official extension JSON schemas cannot be fetched here and no pip package ships them,
so items are validated against the STAC core schemas bundled with pystac, every extension
field is set and read back through pystac's extension classes, and every field prefix used
must belong to a declared extension.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr

from cup4soil import store
from cup4soil.cli import main

from _store_writer import product

# Field prefix -> the extension schema that declares it (pystac's classes' URIs).
PREFIXES = {
    "proj": "https://stac-extensions.github.io/projection/",
    "cube": "https://stac-extensions.github.io/datacube/",
    "raster": "https://stac-extensions.github.io/raster/",
    "xarray": "https://stac-extensions.github.io/xarray-assets/",
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A product, its written STAC item, and an item with COG assets."""
    tmp = tmp_path_factory.mktemp("stac")
    ds = product()
    ds["count"].attrs["nodata"] = 0
    url = str(tmp / "p.zarr")
    store.write(ds, url)
    item = json.loads(Path(f"{url}{store.SIDECAR}/{store.STAC_ITEM}").read_text())
    cogs = store.to_cogs(store.open(url), str(tmp / "cogs"))
    with_cogs = store.stac_item(url, cogs=cogs)
    return url, item, with_cogs, ds.compute()


def _fields(d: dict) -> set[str]:
    keys = set(d["properties"])
    for a in d["assets"].values():
        keys |= set(a)
    return {k for k in keys if ":" in k}


def test_every_field_prefix_is_declared(written):
    _, item, with_cogs, _ = written
    for d in (item, with_cogs.to_dict(transform_hrefs=False)):
        declared = d["stac_extensions"]
        for field in _fields(d):
            prefix = field.split(":", 1)[0]
            assert prefix in PREFIXES, f"{field}: no extension known for this prefix"
            assert any(u.startswith(PREFIXES[prefix]) for u in declared), field
        assert len(declared) == len(set(declared))


def test_fields_read_back_through_pystac_extension_classes(written):
    from pystac.extensions.datacube import DatacubeExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterExtension
    from pystac.extensions.xarray_assets import XarrayAssetsExtension

    _, item_d, with_cogs, ds = written
    assert item_d["properties"]["proj:epsg"] == 32633  # beside proj:code, for stackstac
    item = pystac.Item.from_dict(item_d)
    proj = ProjectionExtension.ext(item)
    assert proj.code == "EPSG:32633" and proj.shape == [128, 128] and proj.epsg == 32633
    assert set(DatacubeExtension.ext(item).variables) == {"soc", "count"}
    xa = XarrayAssetsExtension.ext(item.assets["zarr"])
    assert xa.open_kwargs == {"engine": "zarr", "consolidated": False, "decode_coords": "all"}
    band = RasterExtension.ext(with_cogs.assets["count"]).bands[0]
    assert band.nodata == 0 and band.data_type == "uint16"
    assert RasterExtension.ext(with_cogs.assets["soc"]).bands[0].nodata == "nan"
    # and the Zarr asset opens with exactly those kwargs, grid mapping included
    opened = xr.open_dataset(item.assets["zarr"].href, **xa.open_kwargs)
    assert "spatial_ref" in opened.coords and opened.rio.crs.to_epsg() == 32633
    np.testing.assert_array_equal(opened.soc.values, ds.soc.values)


def test_items_load_with_stackstac(written):
    import stackstac

    _, _, with_cogs, ds = written
    # as an item dict (the JSON file, json.load) and as the pystac Item store.stac_item made
    for item in (json.loads(json.dumps(with_cogs.to_dict(transform_hrefs=False))), with_cogs):
        cube = stackstac.stack([item], assets=["soc", "count"], dtype="float64",
                               fill_value=np.nan)
        assert cube.attrs["crs"] == "epsg:32633"
        np.testing.assert_array_equal(cube.sel(band="soc").isel(time=0).values,
                                      ds.soc.values)
        count = ds["count"].values
        np.testing.assert_array_equal(cube.sel(band="count").isel(time=0).values,
                                      np.where(count == 0, np.nan, count))  # nodata 0


def test_items_load_with_odc_stac(written):
    import odc.stac

    _, _, with_cogs, ds = written
    loaded = odc.stac.load([with_cogs], bands=["soc", "count"]).isel(time=0)
    assert loaded.odc.geobox == ds.odc.geobox
    np.testing.assert_array_equal(loaded.soc.values, ds.soc.values)
    np.testing.assert_array_equal(loaded["count"].values, ds["count"].values)


def test_gdal_reads_a_v2_product_written_by_the_cli(sample, shared_data, tmp_path,
                                                     monkeypatch, capsys):
    monkeypatch.setenv("CUP4SOIL_DLR_THRESHOLD",
                       str(shared_data / "scmap/th_S2_s2cr_buffered_cog.tif"))
    w, s, e, n = sample.bbox
    out = tmp_path / "c.zarr"
    assert main(["composite", "--aoi", f"{w},{s},{e},{n}", "--time", "2019",
                 "--catalog", str(sample.catalog), "--out", str(out),
                 "--zarr-format", "2"]) == 0
    ds = store.open(str(out))
    with rasterio.open(f'ZARR:"{out}":/BSC') as src:
        assert src.crs.to_epsg() == ds.rio.crs.to_epsg()
        np.testing.assert_array_equal(src.read(1), ds.BSC.values)
    with rasterio.open(f'ZARR:"{out}":/MASK') as src:
        assert src.dtypes[0] == "uint8"
        np.testing.assert_array_equal(src.read(1), ds.MASK.values)
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Zarr v2" in text and "GDAL" in text


def test_info_says_gdal_cannot_read_v3(tmp_path, capsys):
    url = str(tmp_path / "p.zarr")
    store.write(product(), url)
    i = store.info(url)
    assert i["zarr_format"] == 3 and not any("GDAL" in r for r in i["readers"])
    assert "zarr_format=2" in i["not_readers"][0]
    assert main(["info", url]) == 0
    assert "Zarr v3" in capsys.readouterr().out
