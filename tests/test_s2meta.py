"""Band aliases and harmonisation against every recorded real item in shared/data/stac."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pystac
import pytest

from cup4soil.errors import BandError
from cup4soil.sources import sentinel2 as _s2meta


def _features(path: Path) -> list[dict]:
    doc = json.loads(path.read_text())
    if isinstance(doc, list):
        return doc
    if doc.get("type") == "FeatureCollection":
        return doc["features"]
    return [doc] if doc.get("type") == "Feature" else []


def _real_s2_l2a_items(shared: Path) -> list[pystac.Item]:
    files = [
        *sorted((shared / "stac" / "extracted").glob("*items.json")),
        *sorted((shared / "stac" / "odc-stac-tests").glob("*.json*")),
        *sorted((shared / "stac" / "odc-stac-tests").glob("*.geojson")),
        *sorted((shared / "stac" / "stac-geoparquet-tests").glob("*.json")),
        shared / "s2_l2a/rio-tiler-pds_S2A_29RKH_20200219_0_L2A/S2A_29RKH_20200219_0_L2A.json",
    ]
    items = []
    for path in files:
        for feat in _features(path):
            coll = str(feat.get("collection", ""))
            if "l2a" in coll or "L2A" in feat["id"]:
                items.append(pystac.Item.from_dict(feat))
    return items


@pytest.fixture(scope="module")
def real_items(shared_data):
    items = _real_s2_l2a_items(shared_data)
    assert len(items) >= 60
    return items


def test_every_real_item_resolves_every_band_to_the_right_file(real_items):
    conventions = set()
    for item in real_items:
        for band in _s2meta.ALL_BANDS:
            key = _s2meta.asset_key(item, band)
            href = item.assets[key].href
            # The file name is independent of the asset key: B02.tif, ..._B02_10m.tif, ...
            name = href.rsplit("/", 1)[-1]
            assert band in name, (item.id, band, key, href)
            assert name.endswith((".tif", ".TIF", ".jp2")), href
            conventions.add("pc" if key == band else "es")
    assert conventions == {"pc", "es"}


def _expected_offset(item: pystac.Item) -> int:
    baseline = _s2meta.processing_baseline(item)
    if baseline is None:  # Earth Search v0 items: all before 2022
        assert item.datetime < _s2meta.BASELINE_04_START
        return 0
    return -1000 if baseline >= 4.0 else 0


def test_harmonisation_rule_on_real_items(real_items):
    seen = set()
    for item in real_items:
        expected = _expected_offset(item)
        seen.add(expected)
        for band in _s2meta.REFLECTANCE_BANDS:
            assert _s2meta.dn_offset(item, band) == expected, (item.id, band)
        assert _s2meta.dn_offset(item, "SCL") == 0
    assert seen == {0, -1000}  # both sides of 2022-01-25 are covered by real items


def test_raster_offset_wins_over_the_baseline(real_items):
    es = next(it for it in real_items if "blue" in it.assets and
              _s2meta.processing_baseline(it) >= 4)
    tampered = es.clone()
    tampered.assets["blue"].extra_fields["raster:bands"][0]["offset"] = 0.0
    # An item whose DNs were already shifted says so with offset 0 (Earth Search's rule).
    assert _s2meta.dn_offset(tampered, "B02") == 0
    assert _s2meta.dn_offset(es, "B02") == -1000


def test_cdse_layout_with_stac_1_1_bands():
    item = pystac.Item("S2A_MSIL2A_20230601T101031_N0509_R022_T33UVU_20230601T150000",
                       {"type": "Point", "coordinates": [14.3, 52.6]}, [14.3, 52.6, 14.3, 52.6],
                       dt.datetime(2023, 6, 1, 10, 10, tzinfo=dt.UTC), {})
    for key in ("B02_10m", "B02_20m", "B05_20m", "SCL_20m"):
        extra = {"bands": [{"name": key[:3], "raster:scale": 0.0001, "raster:offset": -0.1}]}
        item.add_asset(key, pystac.Asset(f"s3://eodata/x/{key}.jp2", extra_fields=extra))
    assert _s2meta.asset_key(item, "B02") == "B02_10m"  # the native resolution first
    assert _s2meta.asset_key(item, "SCL") == "SCL_20m"
    assert _s2meta.dn_offset(item, "B05") == -1000
    assert _s2meta.processing_baseline(item) == 5.09  # from the product name
    with pytest.raises(BandError, match="no asset for band B12"):
        _s2meta.asset_key(item, "B12")


def test_baseline_fallback_is_the_date():
    item = pystac.Item("x", None, None, dt.datetime(2022, 1, 26, tzinfo=dt.UTC), {})
    item.add_asset("B02", pystac.Asset("B02.tif"))
    assert _s2meta.dn_offset(item, "B02") == -1000
    item.datetime = dt.datetime(2022, 1, 24, tzinfo=dt.UTC)
    assert _s2meta.dn_offset(item, "B02") == 0


def test_l1c_and_sentinel1_items_lack_l2a_bands(shared_data):
    feats = _features(shared_data / "stac/extracted/earthsearch_v1_mixed_filter_items.json")
    l1c = pystac.Item.from_dict(next(f for f in feats if f["collection"] == "sentinel-2-l1c"))
    with pytest.raises(BandError, match="has no asset for band SCL"):
        _s2meta.asset_key(l1c, "SCL")


def test_duplicates_keep_the_newest_baseline(shared_data):
    feats = _features(shared_data / "stac/extracted/earthsearch_v1_mixed_filter_items.json")
    l2a = [pystac.Item.from_dict(f) for f in feats
           if f["collection"] in ("sentinel-2-l2a", "sentinel-2-c1-l2a")]
    tiles = {(_s2meta.mgrs_tile(it), it.datetime) for it in l2a}
    kept = _s2meta.deduplicate(l2a, collection_priority=("sentinel-2-c1-l2a", "sentinel-2-l2a"))
    assert len(kept) == len(tiles) < len(l2a)
    # Same baseline (05.11) in both collections: collection 1 wins the tie.
    assert all(it.collection_id == "sentinel-2-c1-l2a" for it in kept
               if any(o.collection_id == "sentinel-2-c1-l2a" and
                      _s2meta.mgrs_tile(o) == _s2meta.mgrs_tile(it) for o in l2a))
    # A reprocessed delivery with a newer baseline wins whatever the collection.
    newer = copy.deepcopy(l2a[1].to_dict(transform_hrefs=False))
    newer["id"] += "-reprocessed"
    newer["properties"]["s2:processing_baseline"] = "05.12"
    kept = _s2meta.deduplicate([l2a[1], pystac.Item.from_dict(newer)])
    assert [it.id for it in kept] == [newer["id"]]


def test_mgrs_tile_from_every_convention(real_items):
    tiles = {_s2meta.mgrs_tile(it) for it in real_items}
    assert "60VUK" in tiles and "29RKH" in tiles
    assert all(len(t) == 5 for t in tiles)


def test_sun_zenith_from_pc_and_earth_search(real_items):
    pc = next(it for it in real_items if "s2:mean_solar_zenith" in it.properties)
    es = next(it for it in real_items if "view:sun_elevation" in it.properties)
    assert _s2meta.mean_sun_zenith(pc) == pytest.approx(pc.properties["s2:mean_solar_zenith"])
    assert _s2meta.mean_sun_zenith(es) == pytest.approx(90 - es.properties["view:sun_elevation"])


def test_unknown_band_name():
    with pytest.raises(BandError, match="not a cup4soil band"):
        _s2meta.check_bands(["B02", "NDVI"])
    assert _s2meta.check_bands(["b02", "scl", "B02"]) == ("B02", "SCL")
