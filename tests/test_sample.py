"""The sample archive's covariate sources and its multi-property truth (issue 13).

The Sentinel-1, DEM and WorldCover items must look like the real collections' items (the
recorded ones in ../shared/data), the truth must relate its properties to each other and
to what the sensors see, and the Sentinel-2 scenes must not change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from scipy import ndimage

from cup4soil.errors import ParameterError
from cup4soil.sample import make_catalog

PROPERTIES = ("soc", "nitrogen", "phh2o", "bdod", "clay", "silt", "sand")


def _items(sample, collection: str) -> list[pystac.Item]:
    root = pystac.read_file(str(sample.catalog))
    return list(root.get_child(collection).get_items())


def _on_disk(item: pystac.Item) -> dict:
    """The item's JSON as written (pystac migrates extension fields when it reads)."""
    return json.loads(Path(item.get_self_href()).read_text())


def test_the_catalog_holds_the_covariates_collections(sample):
    assert sample.collections == {"sentinel-2-l2a": sample.n_items, "sentinel-1-rtc": 60,
                                  "cop-dem-glo-30": 1, "esa-worldcover": 1}
    root = pystac.read_file(str(sample.catalog))
    assert next(c.id for c in root.get_children()) == "sentinel-2-l2a"


def test_sentinel1_items_are_laid_out_like_planetary_computers(sample, shared_data):
    real = json.loads((shared_data / "stac/stac-geoparquet-tests/sentinel-1-rtc-pc.json")
                      .read_text())[0]
    items = _items(sample, "sentinel-1-rtc")
    doc = _on_disk(items[0])
    # Every property a model of the real items needs (not: provenance of the real SAFE).
    needed = set(real["properties"]) - {
        "s1:shape", "s1:slice_number", "s1:total_slices", "s1:instrument_configuration_ID",
        "sat:platform_international_designator"}
    assert needed <= set(doc["properties"])
    assert doc["collection"] == "sentinel-1-rtc" and doc["id"].endswith("_rtc")
    for key in ("vv", "vh"):
        assert doc["assets"][key]["raster:bands"][0] == real["assets"][key]["raster:bands"][0]
        assert doc["assets"][key]["type"] == real["assets"][key]["type"]
    assert {it.properties["sat:orbit_state"] for it in items} == {"ascending", "descending"}
    with rasterio.open(items[0].assets["vv"].get_absolute_href()) as src:
        assert src.dtypes[0] == "float32" and src.nodata == -32768
        assert src.crs.to_epsg() == 32633 and src.res == (10.0, 10.0)


def test_sentinel1_scenes_have_speckle_border_noise_and_a_tillage_signal(sample):
    items = _items(sample, "sentinel-1-rtc")
    with rasterio.open(sample.truth_dir / "management.tif") as src:
        tillage = src.read(1)
    noise_floor = nodata = zeros = 0
    winter_contrast = []
    for it in items:
        with rasterio.open(it.assets["vv"].get_absolute_href()) as src:
            vv = src.read(1)
        nodata += int((vv == -32768).sum())
        zeros += int((vv == 0).sum())
        noise_floor += int(((vv > 0) & (vv < 10 ** -3.8)).sum())
        if it.datetime.month in (11, 12, 1, 2):
            db = 10 * np.log10(np.where(vv > 0, vv, np.nan))
            winter_contrast.append(np.nanmedian(db[tillage == 1]) - np.nanmedian(db[tillage == 2]))
    assert nodata and zeros and noise_floor  # what users must mask
    # Ploughed (conventional) fields are radar-bright over winter, mulched ones are not.
    assert np.median(winter_contrast) > 2.0


def test_dem_item_and_grid_are_those_of_glo30(sample, shared_data):
    real = json.loads((shared_data / "stac/covariates/pc_cop-dem-glo-30_items.json")
                      .read_text())[0]
    (item,) = _items(sample, "cop-dem-glo-30")
    doc = _on_disk(item)
    assert set(doc["properties"]) == set(real["properties"])
    assert doc["properties"]["datetime"] == real["properties"]["datetime"]
    assert set(doc["assets"]) == {"data"} and "raster:bands" not in doc["assets"]["data"]
    assert doc["id"].startswith("Copernicus_DSM_COG_10_") and doc["id"].endswith("_DEM")
    with rasterio.open(item.assets["data"].get_absolute_href()) as src:
        t = src.transform
        assert src.tags()["AREA_OR_POINT"] == "Point" and src.nodata is None
        assert src.dtypes[0] == "float32" and src.crs.to_epsg() == 4326
        # 1.5" x 1" at 52 degrees north; pixel centres on whole steps, corners half off.
        assert t.a == pytest.approx(1.5 / 3600) and t.e == pytest.approx(-1 / 3600)
        assert (t.c + t.a / 2) / t.a == pytest.approx(round((t.c + t.a / 2) / t.a), abs=1e-6)
        assert (t.f + t.e / 2) / t.e == pytest.approx(round((t.f + t.e / 2) / t.e), abs=1e-6)
        assert list(doc["properties"]["proj:transform"]) == pytest.approx(list(t)[:6])


def test_worldcover_item_is_laid_out_like_the_real_one(sample, shared_data):
    real = json.loads((shared_data / "stac/covariates/stactools_ESA_WorldCover_10m_2021_v200_"
                       "N00E006.json").read_text())
    (item,) = _items(sample, "esa-worldcover")
    doc = _on_disk(item)
    assert doc["properties"]["datetime"] is None
    assert doc["properties"]["start_datetime"].startswith("2021-01-01")
    assert doc["properties"]["esa_worldcover:product_version"] == "2.0.0"
    got, want = doc["assets"]["map"], real["assets"]["map"]
    assert [c["value"] for c in got["classification:classes"]] == \
        [c["value"] for c in want["classification:classes"]]
    assert got["raster:bands"][0]["nodata"] == want["raster:bands"][0]["nodata"] == 0
    with rasterio.open(item.assets["map"].get_absolute_href()) as src:
        assert src.res == pytest.approx((1 / 12000, 1 / 12000))
        assert src.colormap(1)[40][:3] == (0xF0, 0x96, 0xFF)  # cropland pink
        classes = set(np.unique(src.read(1)).tolist())
    with rasterio.open(sample.truth_dir / "worldcover.tif") as src:
        assert classes == set(np.unique(src.read(1)).tolist())


def _truth(sample, name: str) -> np.ndarray:
    with rasterio.open(sample.truth_dir / f"{name}.tif") as src:
        return src.read(1).astype(np.float64)


def test_truth_has_every_property_with_realistic_relations(sample):
    layers = sample.truth()["layers"]
    assert set(PROPERTIES) | {"elevation", "management"} <= set(layers)
    t = {p: _truth(sample, p) for p in PROPERTIES}
    crop = _truth(sample, "management") > 0
    assert np.allclose(t["clay"] + t["silt"] + t["sand"], 100.0, atol=1e-3)
    r = {p: np.corrcoef(t["soc"][crop], t[p][crop])[0, 1] for p in PROPERTIES}
    assert r["nitrogen"] > 0.85        # C:N ratio about 10
    assert r["bdod"] < -0.6            # organic matter loosens the soil
    assert 1.0 < float(np.median(t["soc"][crop] * 10 / t["nitrogen"][crop])) < 13.0
    assert t["bdod"].min() >= 0.9 and t["bdod"].max() <= 1.8
    assert t["phh2o"].min() >= 3.8 and t["phh2o"].max() <= 8.2
    # More SOC in depressions: SOC against the topographic position (height above the
    # surroundings within ~150 m).
    elev = _truth(sample, "elevation")
    tpi = elev - ndimage.uniform_filter(elev, 31, mode="nearest")
    assert np.corrcoef(t["soc"].ravel(), tpi.ravel())[0, 1] < -0.3
    # Forest soils are acid, cropland limed.
    cover = _truth(sample, "worldcover")
    assert t["phh2o"][cover == 10].mean() < t["phh2o"][cover == 40].mean() - 1.0


def test_truth_on_serves_each_property_with_its_units(sample):
    from odc.geo.geobox import GeoBox

    left, bottom, right, top = (455500.0, 5829400.0, 456500.0, 5830400.0)
    gbox = GeoBox.from_bbox((left, bottom, right, top), sample.crs, resolution=20)
    units = {"soc": "percent", "nitrogen": "g/kg", "phh2o": "pH", "bdod": "kg/dm3",
             "clay": "percent", "elevation": "m"}
    for name, unit in units.items():
        layer = sample.truth_on(name, gbox)
        assert layer.attrs["units"] == unit and layer.shape == gbox.shape
    assert sample.truth_on("management", gbox).dtype == np.uint8


def test_soil_samples_carry_every_property_in_soilgrids_units(sample):
    table = sample.soil_samples(120, seed=4)
    assert list(table.columns[:4]) == ["x", "y", "soc", "field"]
    assert set(PROPERTIES) <= set(table.columns)
    assert (table.clay + table.silt + table.sand == 1000).all()
    # SOC as before: the truth at the sample's pixel, percent -> dg/kg.
    soc = _truth(sample, "soc")
    with rasterio.open(sample.truth_dir / "soc.tif") as src:
        rows, cols = rasterio.transform.rowcol(src.transform, table.x, table.y)
    np.testing.assert_allclose(table.soc, np.round(soc[rows, cols] * 100, 1))
    np.testing.assert_allclose(table.nitrogen, np.round(_truth(sample, "nitrogen")[rows, cols]
                                                        * 100))
    assert table.phh2o.between(38, 82).all() and table.bdod.between(90, 180).all()
    assert np.corrcoef(table.soc, table.nitrogen)[0, 1] > 0.85


def test_new_concerns_leave_the_sentinel2_scenes_unchanged(tmp_path):
    """Sentinel-1, the relief and the soil properties draw from their own streams: an
    archive without Sentinel-1 has the same Sentinel-2 scenes, byte for byte."""
    with_s1 = make_catalog(tmp_path / "a", size=20, years=(2020, 2020), scenes_per_year=3,
                           seed=5)
    without = make_catalog(tmp_path / "b", size=20, years=(2020, 2020), scenes_per_year=3,
                           seed=5, s1_scenes_per_year=0)
    assert "sentinel-1-rtc" in with_s1.collections
    assert "sentinel-1-rtc" not in without.collections
    assert with_s1.truth()["scenes"] == without.truth()["scenes"]
    for a, b in zip(_items(with_s1, "sentinel-2-l2a"), _items(without, "sentinel-2-l2a"),
                    strict=True):
        assert a.id == b.id
        for band in ("B04", "SCL"):
            pa, pb = (Path(x.assets[band].get_absolute_href()) for x in (a, b))
            assert pa.read_bytes() == pb.read_bytes()


@pytest.mark.parametrize("years", [2021, (2021,), [2021], (2021, 2021)])
def test_one_year_in_any_spelling(years, tmp_path):
    cat = make_catalog(tmp_path, size=20, years=years, scenes_per_year=2, s1_scenes_per_year=0)
    assert cat.time_range == "2021/2021"


@pytest.mark.parametrize("years", [(), (2018, 2019, 2020), (2018.5, 2020), "2021", None])
def test_years_that_are_not_a_span_are_refused(years, tmp_path):
    with pytest.raises(ParameterError, match="years="):
        make_catalog(tmp_path, size=20, years=years, scenes_per_year=2)
