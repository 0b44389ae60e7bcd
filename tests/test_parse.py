import datetime as dt
import json

import pytest
import shapely.geometry

from cup4soil.errors import AOIError, TimeRangeError
from cup4soil.sources.aoi import parse_aoi, parse_time, utm_crs

UTC = dt.UTC


@pytest.mark.parametrize("lon, lat", [
    (14.5, 52.3), (-3.7, 40.4), (5.9999, 60.1), (6.0001, 60.1), (-179.9, -33.0),
    (179.9, 71.0), (25.0, -0.001), (11.0, 83.9), (-70.0, -79.9),
    # on a band's edge, the equator and beyond UTM's latitudes: PROJ's own answer
    (12.0, 52.3), (-180.0, 10.0), (5.0, 0.0), (5.0, 84.0),
])
def test_utm_crs_is_odc_geos_choice(lon, lat):
    from odc.geo.crs import CRS

    assert utm_crs(lon, lat) == CRS.utm(lon, lat)


def test_named_aoi_is_the_oderbruch_box():
    assert parse_aoi("oderbruch").bounds == (13.95, 52.40, 14.65, 52.90)
    assert parse_aoi(" Oderbruch ").bounds == (13.95, 52.40, 14.65, 52.90)


@pytest.mark.parametrize(
    "aoi",
    [
        (14.0, 52.5, 14.1, 52.6),
        "14.0,52.5,14.1,52.6",
        {"type": "Polygon", "coordinates": [[[14.0, 52.5], [14.1, 52.5], [14.1, 52.6],
                                             [14.0, 52.6], [14.0, 52.5]]]},
        shapely.geometry.box(14.0, 52.5, 14.1, 52.6),
    ],
)
def test_aoi_forms_agree(aoi):
    assert parse_aoi(aoi).bounds == pytest.approx((14.0, 52.5, 14.1, 52.6))


def test_aoi_from_feature_collection_file(tmp_path):
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(
            shapely.geometry.box(14.0, 52.5, 14.1, 52.6))},
        {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(
            shapely.geometry.box(14.2, 52.5, 14.3, 52.6))},
    ]}
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps(fc))
    assert parse_aoi(path).bounds == pytest.approx((14.0, 52.5, 14.3, 52.6))


@pytest.mark.parametrize(
    ("aoi", "message"),
    [
        (42, "not a geometry"),
        ({"type": "Banana"}, "not GeoJSON"),
        ((14.1, 52.5, 14.0, 52.6), "reversed"),
        (shapely.geometry.Polygon(), "empty"),
        ({"type": "FeatureCollection", "features": []}, "no features"),
        ("atlantis", "neither a built-in name"),
        ((400000.0, 5800000.0, 410000.0, 5810000.0), "not longitude/latitude"),
    ],
)
def test_bad_aoi_is_named(aoi, message):
    with pytest.raises(AOIError, match=message):
        parse_aoi(aoi)


def test_year_range_covers_whole_years():
    start, end = parse_time("2018/2022")
    assert start == dt.datetime(2018, 1, 1, tzinfo=UTC)
    assert end == dt.datetime(2022, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def test_day_range_is_inclusive():
    start, end = parse_time("2018-03-01/2018-10-31")
    assert start == dt.datetime(2018, 3, 1, tzinfo=UTC)
    assert end.date() == dt.date(2018, 10, 31) and end.hour == 23


@pytest.mark.parametrize("pair", [(2018, 2022), ("2018", "2022"),
                                  (dt.date(2018, 1, 1), dt.date(2022, 12, 31))])
def test_pairs(pair):
    start, end = parse_time(pair)
    assert (start.year, end.year) == (2018, 2022)


def test_month_and_single_year():
    assert parse_time("2020-02")[1].day == 29
    assert parse_time("2020") == parse_time("2020/2020")


@pytest.mark.parametrize(
    ("time", "message"),
    [("2022/2018", "reversed"), ("2018-13-01/2019", "malformed"), ("2018/2019/2020", "malformed"),
     ("yesterday", "malformed"), (3.5, "malformed"), ("/2019", "malformed")],
)
def test_bad_time_is_named(time, message):
    with pytest.raises(TimeRangeError, match=message):
        parse_time(time)
