"""Bad input data refused before it runs, or at the read, with the right diagnosis: AOIs
across the antimeridian, catalogs that are not STAC or cannot be reached, items whose
metadata or files are not what they claim (pictures, float reflectance, a CRS other than
their ``proj:``), and cubes larger than one call should do."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely.geometry

import cup4soil
from cup4soil.errors import (
    AOIError,
    AssetFormatError,
    AssetReadError,
    CatalogError,
    CRSError,
    ItemError,
    ParameterError,
    TooLargeError,
)
from cup4soil.sources.aoi import parse_aoi

from helpers import free_port, raise_if_dask_computes

# --- areas of interest across the antimeridian ---------------------------------------

FIJI_BBOX = (179.5, -17.0, -179.5, -16.0)
FIJI_POLYGON = {"type": "Polygon", "coordinates": [[
    [179.5, -17.0], [-179.5, -17.0], [-179.5, -16.0], [179.5, -16.0], [179.5, -17.0]]]}


@pytest.mark.parametrize("aoi", [FIJI_BBOX, FIJI_POLYGON], ids=["bbox", "geojson"])
def test_antimeridian_aoi_is_split_not_a_band_round_the_world(aoi):
    geom = parse_aoi(aoi)
    # two pieces of one degree in all, each touching +-180: not 359 degrees between them
    assert geom.geom_type == "MultiPolygon" and len(geom.geoms) == 2
    assert math.isclose(geom.area, 1.0)
    assert not geom.intersects(shapely.geometry.Point(0, -16.5))
    assert geom.intersects(shapely.geometry.Point(179.9, -16.5))
    assert geom.intersects(shapely.geometry.Point(-179.9, -16.5))


def test_antimeridian_search_of_a_static_catalog_finds_both_sides(tmp_path, sample):
    # Two items, one on each side of +-180, one far away in Europe.
    base = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)
    template = next(iter(base))
    cat = {"type": "FeatureCollection", "features": []}
    for i, (name, (w, e)) in enumerate({"east": (179.6, 179.9), "west": (-179.9, -179.6),
                                        "europe": (14.0, 14.3)}.items()):
        it = template.clone()
        it.id = name
        it.properties["s2:mgrs_tile"] = f"01K{'ABC'[i]}A"  # three scenes, not duplicates
        it.properties["s2:product_uri"] = f"S2A_MSIL2A_{name}.SAFE"
        it.geometry = shapely.geometry.mapping(shapely.geometry.box(w, -16.8, e, -16.2))
        it.bbox = [w, -16.8, e, -16.2]
        cat["features"].append(it.to_dict())
    path = tmp_path / "items.json"
    path.write_text(json.dumps(cat))
    found = cup4soil.search(FIJI_BBOX, sample.time_range, catalog=str(path))
    assert sorted(it.id for it in found) == ["east", "west"]


@pytest.mark.parametrize("bbox", [(math.nan, 52, 14, 53), (13, 52, math.inf, 53)])
def test_non_finite_bbox_is_refused(bbox):
    with pytest.raises(AOIError, match="not finite"):
        parse_aoi(bbox)


def test_reversed_bbox_far_from_the_antimeridian_is_refused():
    # west > east with 320 degrees between them is a typo, not a crossing of +-180
    with pytest.raises(AOIError, match="reversed"):
        parse_aoi((20.0, 50.0, -20.0, 51.0))


# --- catalogs ------------------------------------------------------------------------

def test_non_stac_url_as_catalog(serve_dir, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<html><body>Welcome</body></html>")
    url = serve_dir(site) + "/index.html"
    with pytest.raises(CatalogError, match="not a STAC catalog") as info:
        cup4soil.search((14, 52, 14.1, 52.1), "2020", catalog=url)
    assert "JSONDecodeError" not in str(info.value)


def test_unreachable_static_catalog():
    url = f"http://127.0.0.1:{free_port()}/catalog.json"
    with pytest.raises(CatalogError) as info:
        cup4soil.search((14, 52, 14.1, 52.1), "2020", catalog=url)
    text = str(info.value)
    assert "127.0.0.1" in text and ("refused" in text or "reach" in text)
    assert "MaxRetryError" not in text


def test_catalog_json_without_a_stac_type(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"name": "not stac", "values": [1, 2]}))
    with pytest.raises(CatalogError, match="STAC"):
        cup4soil.search((14, 52, 14.1, 52.1), "2020", catalog=str(path))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"limit": 0}, "limit=0"), ({"max_cloud_cover": 150}, "max_cloud_cover=150"),
    ({"max_cloud_cover": math.nan}, "max_cloud_cover=nan")])
def test_search_options_out_of_range(sample, kwargs, message):
    with pytest.raises(ParameterError, match=message):
        cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog, **kwargs)


# --- items and their files -----------------------------------------------------------

@pytest.fixture(scope="module")
def items(sample):
    found = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)
    return [it.clone() for it in list(found)[:3]]


def _one(items):
    return [it.clone() for it in items]


def test_png_asset_by_media_type(items):
    bad = _one(items)
    bad[1].assets["B04"].media_type = "image/png"
    with pytest.raises(ItemError, match=r"B04 is a picture \(media type image/png"):
        cup4soil.load_s2(bad)


def test_float_band_declared_in_metadata(items):
    bad = _one(items)
    bad[0].assets["B08"].extra_fields["raster:bands"] = [{"data_type": "float32"}]
    with pytest.raises(ItemError, match=r"B08 .* declared as float32"):
        cup4soil.load_s2(bad)


def test_proj_metadata_contradicting_the_geometry(items):
    # declared EPSG:32632 for a file in EPSG:32633: the same numbers land 6 degrees west
    bad = _one(items)
    bad[2].properties["proj:code"] = "EPSG:32632"
    with pytest.raises(ItemError, match=r"EPSG:32632\) puts the raster at") as info:
        cup4soil.load_s2(bad)
    assert bad[2].id in str(info.value)


@pytest.mark.parametrize("value", [250.0, -5.0, "low"])
def test_sun_zenith_property_that_is_not_an_angle(items, value):
    bad = _one(items)
    bad[0].properties["s2:mean_solar_zenith"] = value
    with pytest.raises(ItemError, match="s2:mean_solar_zenith"):
        cup4soil.load_s2(bad)


def _rewrite(src: str, dst: Path, *, driver: str = "GTiff", crs: str | None = None,
             scale: float | None = None) -> str:
    with rasterio.open(src) as ds:
        data, profile = ds.read(), ds.profile
    profile = {k: v for k, v in profile.items()
               if k in ("width", "height", "count", "dtype", "crs", "transform", "nodata")}
    if scale is not None:
        data, profile["dtype"] = (data / scale).astype("float32"), "float32"
    if crs is not None:
        profile["crs"] = crs
    if driver == "PNG":
        profile = {k: profile[k] for k in ("width", "height", "count")}
        data, profile["dtype"] = (data // 256).astype("uint8"), "uint8"
    with rasterio.open(dst, "w", driver=driver, **profile) as out:
        out.write(data)
    return str(dst)


def _swap_href(items, band, href):
    out = _one(items)
    out[0].assets[band].href = href
    return out


def test_float_reflectance_file_where_dn_are_expected(items, tmp_path):
    href = _rewrite(items[0].assets["B03"].href, tmp_path / "B03.tif", scale=10000.0)
    cube = cup4soil.load_s2(_swap_href(items, "B03", href), bands=["B03"])
    with pytest.raises(AssetFormatError, match="float") as info:
        cube.compute()
    assert "B03.tif" in str(info.value)


def test_png_file_behind_a_tif_href(items, tmp_path):
    href = _rewrite(items[0].assets["B02"].href, tmp_path / "B02.tif", driver="PNG")
    cube = cup4soil.load_s2(_swap_href(items, "B02", href), bands=["B02"])
    with pytest.raises(AssetFormatError, match=r"not a georeferenced raster .*PNG"):
        cube.compute()


def test_file_in_another_crs_than_its_proj_metadata(items, tmp_path):
    # the file says EPSG:32632, the item (and its geometry) EPSG:32633
    href = _rewrite(items[0].assets["B04"].href, tmp_path / "B04.tif", crs="EPSG:32632")
    cube = cup4soil.load_s2(_swap_href(items, "B04", href), bands=["B04"])
    with pytest.raises(AssetFormatError, match="EPSG:32632") as info:
        cube.compute()
    assert "EPSG:32633" in str(info.value)
    assert isinstance(info.value, AssetReadError)


# --- cubes larger than one call should do --------------------------------------------

def test_resolution_far_too_fine_is_refused_at_plan_time(items):
    with raise_if_dask_computes(), pytest.raises(TooLargeError) as info:
        cup4soil.load_s2(items, resolution=1e-3)
    text = str(info.value)
    assert "pixel observations" in text and "TB" in text and "max_pixels" in text
    assert "tiles" in text and "coarser resolution" in text


def test_max_pixels_override_and_its_checks(items):
    with pytest.raises(TooLargeError, match="max_pixels"):
        cup4soil.load_s2(items, max_pixels=1000)
    cube = cup4soil.load_s2(items, max_pixels=math.inf)  # no limit: planned lazily
    assert cube.sizes["time"] == 3
    for bad in (0, -1, math.nan, "many", True):
        with pytest.raises(ParameterError, match="max_pixels"):
            cup4soil.load_s2(items, max_pixels=bad)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"resolution": 0}, "resolution"), ({"resolution": -10}, "resolution"),
    ({"resolution": math.nan}, "resolution"),
    ({"chunks": {"x": 0, "y": 32}}, "chunks"), ({"chunks": {"x": -32}}, "chunks")])
def test_cube_sizes_out_of_range(items, kwargs, message):
    with pytest.raises(ParameterError, match=message):
        cup4soil.load_s2(items, **kwargs)


def test_antimeridian_area_in_lon_lat_is_refused(items):
    bad = _one(items)[:1]
    bad[0].geometry = shapely.geometry.mapping(parse_aoi(FIJI_BBOX))
    bad[0].bbox = [179.5, -17.0, -179.5, -16.0]
    for k in [k for k in bad[0].properties if k.startswith("proj:")]:
        del bad[0].properties[k]
    for a in bad[0].assets.values():
        for k in [k for k in a.extra_fields if k.startswith("proj:")]:
            del a.extra_fields[k]
    with pytest.raises((CRSError, AOIError, ParameterError), match="antimeridian"):
        cup4soil.load_s2(bad, crs="EPSG:4326", resolution=0.001)


def test_faults_do_not_show_as_zeros(items, tmp_path):
    # A COG truncated on disk is not a transient fault: an error naming it, not zeros.
    src = Path(items[0].assets["B05"].href)
    cut = tmp_path / "B05.tif"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    cube = cup4soil.load_s2(_swap_href(items, "B05", str(cut)), bands=["B05"])
    with pytest.raises(AssetReadError, match=r"B05\.tif"):
        np.asarray(cube.B05.values)
