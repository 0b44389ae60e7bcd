"""Covariates on recorded real items and real rasters (../shared/data), through the code a
user runs: searches of static catalogs, read plans, the block tasks. No network: items whose
assets are remote are only planned (nothing computes)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.transform import Affine
from rasterio.warp import Resampling, reproject

from cup4soil import covariates, search
from cup4soil.errors import AOIError, BandError, CollectionError, CoverageError, LayerError
from cup4soil.sources import dem as demmeta
from cup4soil.sources import landcover as lcmeta
from cup4soil.sources import sentinel1 as s1meta
from cup4soil.sources.assets import fix_transform, normalised, raster_info

from helpers import raise_if_dask_computes

OPERA = "s1/dist-s1_opera-rtc-s1_T137-292324-IW2"
PYROSAR = "s1/pyroSAR/S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"
SAO_TOME_DEM = "dem/rio-tiler-pds_copernicus-dem/Copernicus_DSM_COG_10_N00_00_E006_00_DEM.tif"
WORLDCOVER = ("worldcover/stactools-esa-worldcover_N00E006/"
              "ESA_WorldCover_10m_2021_v200_N00E006_Map.tif")


def _write(path: Path, items: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return path


def _file_item(path: Path, item_id: str, when: dt.datetime, assets: dict[str, Path],
               collection: str, **props) -> dict:
    """A STAC item for local files, as a user makes one (e.g. with rio-stac)."""
    with rasterio.open(next(iter(assets.values()))) as src:
        gbox = GeoBox(src.shape, src.transform, src.crs)
        t = src.transform
    outline = gbox.extent.to_crs("EPSG:4326").geom
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id, "collection": collection,
        "geometry": outline.__geo_interface__, "bbox": list(outline.bounds),
        "properties": {"datetime": when.isoformat().replace("+00:00", "Z"),
                       "proj:epsg": gbox.crs.epsg, "proj:shape": list(gbox.shape.yx),
                       "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f], **props},
        "assets": {k: {"href": str(p), "type": "image/tiff; application=geotiff",
                       "roles": ["data"]}
                   for k, p in assets.items()},
        "links": [],
    }


# ------------------------------------------------------------------------ Sentinel-1 metadata


@pytest.fixture(scope="module")
def pc_rtc(shared_data) -> list[dict]:
    return json.loads((shared_data / "stac/stac-geoparquet-tests/sentinel-1-rtc-pc.json")
                      .read_text())


def test_planetary_computer_rtc_items_are_understood(pc_rtc, shared_data):
    items = [pystac.Item.from_dict(d) for d in pc_rtc]
    for it in items:
        s1meta.check_map_geometry(it)
        assert [s1meta.asset_key(it, p) for p in ("vv", "vh")] == ["vv", "vh"]
        assert s1meta.orbit_state(it) == "descending"
        assert s1meta.nodata(it, "vv") == -32768 and not s1meta.in_db(it, "vv")


def test_planetary_computer_rtc_plan_is_lazy_and_offline(pc_rtc, shared_data, tmp_path):
    """The recorded JSON list of items, searched as a static catalog; the statistics over a
    grid inside the scenes are planned (their COGs are remote: nothing may be read)."""
    path = shared_data / "stac/stac-geoparquet-tests/sentinel-1-rtc-pc.json"
    grid = GeoBox.from_bbox((560000, 3390000, 566000, 3396000), "EPSG:32633", resolution=20)
    with raise_if_dask_computes():
        ds = covariates.sentinel1(grid, "2024-04-19", catalog=path)
    # Two slices of the datatake cover the grid; one solar day: one time step.
    assert ds.attrs["n_items"] == 2 and ds.attrs["n_scenes"] == 1
    assert ds.VV_mean.attrs["source"] == "sentinel-1-rtc (2 items)"
    assert ds.VV_mean.attrs["resampling"] == "average"  # 10 m onto 20 m, in linear power
    assert ds.attrs["orbits_present"] == ["descending"]
    assert "blob.core.windows.net" not in json.dumps(ds.attrs, default=str)


def test_sar_geometry_is_refused(shared_data, tmp_path):
    mixed = json.loads((shared_data / "stac/extracted/earthsearch_v1_mixed_filter_items.json")
                       .read_text())["features"]
    grd = [f for f in mixed if f.get("collection") == "sentinel-1-grd"]
    assert grd
    item = pystac.Item.from_dict(grd[0])
    with pytest.raises(CollectionError, match=r"SAR .* geometry.*sentinel-1-rtc"):
        s1meta.check_map_geometry(item)
    w, s = grd[0]["bbox"][:2]
    path = _write(tmp_path / "grd.json", grd)
    grid = covariates.as_geobox((w + 0.5, s + 0.5, w + 0.6, s + 0.6))
    with pytest.raises(CollectionError, match="uncalibrated"):
        covariates.sentinel1(grid, "2025-07-31", catalog=path, collections="sentinel-1-grd")
    # Named catalogs' GRD collections are refused before any search.
    for catalog, coll in (("earth-search", None), ("planetary-computer", "sentinel-1-grd")):
        with pytest.raises(CollectionError, match="Use Planetary Computer's sentinel-1-rtc"):
            covariates.sentinel1(grid, "2025", catalog=catalog, collections=coll)
    pc_grd = json.loads((shared_data / "stac/extracted/collection_planetarycomputer_"
                         "sentinel-1-grd.json").read_text())
    assert any(k.startswith("schema-calibration-") for k in pc_grd["item_assets"])


def test_cdse_dialect_gdal_order_transforms_and_stac_1_1_fields(shared_data):
    # openeo-geopyspark-driver's tests quote CDSE's sentinel-1-global-mosaics and DEM
    # transforms in GDAL order; rasterio order is left alone.
    assert fix_transform([600000, 20, 0, 5700000, 0, -20]) == [20, 0, 600000, 0, -20, 5700000]
    assert fix_transform([4.999791666666667, 0.0004166666666667, 0, 52.00013888888889, 0,
                          -0.0002777777777778]) == pytest.approx(
        [0.0004166666666667, 0, 4.999791666666667, 0, -0.0002777777777778, 52.00013888888889])
    assert fix_transform([20, 0, 600000, 0, -20, 5700000]) == [20, 0, 600000, 0, -20, 5700000]
    assert fix_transform([20, 0, 0, 0, -20, 0]) == [20, 0, 0, 0, -20, 0]
    nine = [3.0, 0.00025, 0.0, 51.0, 0.0, -0.00025, 0.0, 0.0, 1.0]
    assert fix_transform(nine) == [0.00025, 0.0, 3.0, 0.0, -0.00025, 51.0, 0.0, 0.0, 1.0]
    doc = json.loads((shared_data / "stac/covariates/cdse_sentinel-2-global-mosaics_search.json")
                     .read_text())["features"][0]
    item = pystac.Item.from_dict(doc)
    info = raster_info(item.assets["B02"])
    assert (info.data_type, info.nodata) == ("int16", -32768)
    # A CDSE S1 mosaic item in the same dialect: VV/VH, GDAL-order transform, fixed when the
    # item is normalised for the read plan.
    s1 = item.clone()
    s1.assets = {"VV": item.assets["B02"].clone(), "VH": item.assets["B03"].clone()}
    for a in s1.assets.values():
        a.extra_fields["proj:transform"] = [600000, 20, 0, 5700000, 0, -20]
    assert s1meta.asset_key(s1, "vv") == "VV"
    norm = normalised(s1, {"vv": "VV"}, data_type="float32", nodata=-32768)
    assert norm.assets["vv"].extra_fields["proj:transform"] == [20, 0, 600000, 0, -20, 5700000]
    assert norm.assets["vv"].extra_fields["raster:bands"] == [
        {"data_type": "float32", "nodata": -32768.0}]


# ------------------------------------------------------------------------ Sentinel-1 pixels


@pytest.fixture(scope="module")
def opera(shared_data, tmp_path_factory) -> tuple[Path, GeoBox]:
    """OPERA RTC-S1 crops as a user's static ItemCollection (collection opera-rtc-s1)."""
    folder = shared_data / OPERA
    items = []
    for day in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = {p.name.rsplit("_", 1)[1][:2]: p for p in day.glob("*.tif")}
        start = dt.datetime.strptime(files["VV"].name.split("_")[4], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=dt.UTC)
        item = _file_item(files["VV"], day.name, start, {"VV": files["VV"], "VH": files["VH"]},
                          "opera-rtc-s1", **{"sat:orbit_state": "ascending"})
        for a in item["assets"].values():  # gamma0, linear power, NaN nodata (as the files)
            a["raster:bands"] = [{"data_type": "float32", "nodata": "nan"}]
        items.append(item)
    path = _write(tmp_path_factory.mktemp("opera") / "opera.json", items)
    with rasterio.open(next(folder.glob("*/*_VV.tif"))) as src:
        grid = GeoBox(src.shape, src.transform, src.crs)
    return path, grid


def _opera_series(shared_data, pol: str, years: tuple[int, ...] | None = None) -> np.ndarray:
    """The files' values, masked as documented (below the -35 dB noise floor: NaN)."""
    out = []
    for p in sorted((shared_data / OPERA).glob(f"*/*_{pol}.tif")):
        if years is None or int(p.parent.name[:4]) in years:
            with rasterio.open(p) as src:
                v = src.read(1).astype(np.float64)
            v[~(v > 10 ** -3.5)] = np.nan
            out.append(v)
    return np.stack(out)


def test_opera_rtc_statistics_equal_the_direct_computation(opera, shared_data):
    path, grid = opera
    ds = covariates.sentinel1(grid, "2021/2025", catalog=path, collections="opera-rtc-s1",
                              by="year").compute()
    assert list(ds.year.values) == [2021, 2022, 2023, 2025]
    vv = _opera_series(shared_data, "VV", (2023,))
    assert np.isfinite(vv).all()  # VV stays above the noise floor here
    np.testing.assert_allclose(ds.VV_mean.sel(year=2023), 10 * np.log10(vv.mean(0)), rtol=1e-5)
    np.testing.assert_allclose(ds.VV_p95.sel(year=2023),
                               10 * np.log10(np.percentile(vv, 95, axis=0)), rtol=1e-5)
    vh = np.nanmean(_opera_series(shared_data, "VH", (2023,)), 0)
    np.testing.assert_allclose(ds.RVI.sel(year=2023), 4 * vh / (vv.mean(0) + vh), rtol=1e-5)
    assert (ds.S1_count.sel(year=2023) == 9).all()
    # The real soil-moisture signal: the wet 1 January 2023 lifts that year's upper tail.
    wet = float(ds.VV_p95.sel(year=2023).median())
    dry = float(ds.VV_p95.sel(year=2021).median())
    assert wet > dry + 2.0 and -20 < float(ds.VV_mean.median()) < -8


def test_pyrosar_db_geotiff_as_a_declared_db_item(shared_data, tmp_path):
    tif = shared_data / PYROSAR
    item = _file_item(tif, "pyrosar", dt.datetime(2015, 3, 9, 17, 30, 17, tzinfo=dt.UTC),
                      {"VV": tif}, "pyrosar-s1", **{"sat:orbit_state": "ascending"})
    with rasterio.open(tif) as src:
        grid = GeoBox(src.shape, src.transform, src.crs)
        db = src.read(1).astype(np.float64)
    declared = json.loads(json.dumps(item))
    declared["assets"]["VV"]["raster:bands"] = [{"data_type": "float32", "nodata": -99,
                                                 "unit": "dB"}]
    path = _write(tmp_path / "db.json", [declared])
    ds = covariates.sentinel1(grid, "2015", catalog=path, collections="pyrosar-s1",
                              polarizations=("vv",), stats=("mean",)).compute()
    assert set(ds.data_vars) == {"VV_mean", "S1_count"}  # no ratio or RVI without VH
    ok = (db != -99) & (db > -35)
    np.testing.assert_allclose(ds.VV_mean.values[ok], db[ok], atol=1e-4)
    assert np.isnan(ds.VV_mean.values[~ok]).all()
    # The same file declared as nothing (taken as linear power): refused, not averaged.
    undeclared = json.loads(json.dumps(item))
    undeclared["assets"]["VV"]["raster:bands"] = [{"data_type": "float32", "nodata": -99}]
    path = _write(tmp_path / "lin.json", [undeclared])
    ds = covariates.sentinel1(grid, "2015", catalog=path, collections="pyrosar-s1",
                              polarizations=("vv",), stats=("mean",))
    with pytest.raises(LayerError, match="look like dB"):
        ds.compute()


# ------------------------------------------------------------------------------------ DEM


def _polar(lon: float, lat: float) -> tuple[float, float]:
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 3031, always_xy=True).transform(lon, lat)
    return float(x), float(y)


def test_pc_and_earth_search_dem_items(shared_data):
    listed = shared_data / "stac/covariates/pc_cop-dem-glo-30_items.json"
    items = search((-179.9, -89.9, -176.5, -88.1), "2021", catalog=listed,
                   collections="cop-dem-glo-30")
    assert len(items) == 4 and {demmeta.asset_key(it) for it in items} == {"data"}
    assert raster_info(items[0].assets["data"]).nodata is None  # PC declares no raster:bands
    es = json.loads((shared_data / "stac/covariates/earthsearch_cop-dem-glo-30_search.json")
                    .read_text())["features"]
    info = raster_info(pystac.Item.from_dict(es[0]).assets["data"])
    assert (info.unit, info.data_type, info.nodata) == ("meter", "float32", None)
    with pytest.raises(BandError, match="no elevation asset"):
        demmeta.asset_key(pystac.Item.from_dict({**es[0], "assets": {}}))


def test_terrain_from_the_pc_dem_items_is_planned_offline_and_checks_coverage(shared_data):
    listed = shared_data / "stac/covariates/pc_cop-dem-glo-30_items.json"
    # EPSG:3031 (Antarctic polar stereographic): metres, north-up; inside the 4-degree wedge
    # of the tiles, 78 km from the pole.
    x, y = _polar(-178.0, -89.3)
    pole = GeoBox.from_bbox((x - 800, y - 800, x + 800, y + 800), "EPSG:3031", resolution=100)
    with raise_if_dask_computes():
        ds = covariates.terrain(pole, catalog=listed, tpi_radii=(300,))
    assert ds.elevation.attrs["source"].startswith("cop-dem-glo-30 (")
    far = GeoBox.from_bbox((500000, 500000, 510000, 510000), "EPSG:3031", resolution=100)
    with pytest.raises(AOIError, match="outside the coverage"):
        covariates.terrain(far, catalog=listed, tpi_radii=(300,))
    x, y = _polar(-176.0, -89.3)  # on the eastern edge of the last tile: half covered
    edge = GeoBox.from_bbox((x - 800, y - 800, x + 800, y + 800), "EPSG:3031", resolution=100)
    with pytest.raises(CoverageError, match="does not cover the grid"):
        covariates.terrain(edge, catalog=listed, tpi_radii=(300,))


def test_terrain_from_the_sao_tome_tile(shared_data):
    """A whole real GLO-30 tile, point-registered, ocean at 0.0 (no nodata), given as a
    user DEM; the grid covers Pico de Sao Tome and the sea west of it."""
    grid = GeoBox.from_bbox((218000, 22000, 234000, 38000), "EPSG:32632", resolution=40)
    ds = covariates.terrain(grid, dem=shared_data / SAO_TOME_DEM).compute()
    with rasterio.open(shared_data / SAO_TOME_DEM) as src:
        ref = np.full(grid.shape.yx, np.nan, np.float32)
        # Bilinear interpolation proper (a 1-pixel radius, as odc-geo asks GDAL for).
        reproject(rasterio.band(src, 1), ref, dst_transform=grid.affine, dst_crs=str(grid.crs),
                  resampling=Resampling.bilinear, XSCALE=1, YSCALE=1)
    assert 1000 < float(ds.elevation.max()) < 2100 and float(ds.elevation.min()) < 5
    # GDAL places pixels to within 1/8 pixel (its approximate transformer), in windows that
    # differ between the two: a few cm on steep slopes.
    np.testing.assert_allclose(ds.elevation.values, ref, atol=0.25)
    assert float(ds.slope.max()) > 30 and np.isfinite(ds.to_array().values).all()
    sea = ds.elevation.values == 0
    assert sea.any() and (ds.slope.values[sea] == 0).mean() > 0.9


def test_terrain_mosaics_the_los_angeles_tiles_across_their_edges(shared_data, tmp_path):
    folder = shared_data / "dem/dem-stitcher_glo30-crops"
    items = [_file_item(p, p.stem, dt.datetime(2021, 4, 22, tzinfo=dt.UTC), {"data": p},
                        "cop-dem-glo-30") for p in sorted(folder.glob("los_angeles_tile_*.tif"))]
    path = _write(tmp_path / "la.json", items)
    # A grid over the corner where the four tiles meet (118 W, 34 N).
    grid = GeoBox.from_bbox((406000, 3760000, 410000, 3764000), "EPSG:32611", resolution=30)
    ds = covariates.terrain(grid, catalog=path, tpi_radii=(150,)).compute()
    assert np.isfinite(ds.elevation.values).all()
    # Reference: the four tiles merged on their common grid, reprojected once.
    from rasterio.merge import merge

    sources = [rasterio.open(p) for p in sorted(folder.glob("los_angeles_tile_*.tif"))]
    mosaic, transform = merge(sources)
    crs = sources[0].crs
    for s in sources:
        s.close()
    ref = np.full(grid.shape.yx, np.nan, np.float32)
    reproject(mosaic[0], ref, src_transform=transform, src_crs=crs, dst_transform=grid.affine,
              dst_crs=str(grid.crs), resampling=Resampling.bilinear, XSCALE=1, YSCALE=1)
    # The seams (x = -118, y = 34) run through the grid; no jump there.
    np.testing.assert_allclose(ds.elevation.values, ref, atol=0.05)


def test_terrain_from_non_square_and_polar_tiles(shared_data):
    fairbanks = shared_data / "dem/dem-stitcher_glo30-crops/fairbanks_tile_0.tif"
    with rasterio.open(fairbanks) as src:  # 2" x 1" pixels at 64.8 N
        assert src.res[0] == pytest.approx(2 * src.res[1])
        lon, lat = src.xy(src.height // 2, src.width // 2)
    grid = covariates.as_geobox((lon - 0.02, lat - 0.01, lon + 0.02, lat + 0.01), resolution=30)
    ds = covariates.terrain(grid, dem=fairbanks, tpi_radii=(90,)).compute()
    assert np.isfinite(ds.to_array().values).all() and float(ds.elevation.std()) > 0
    pole = (shared_data / "dem/rio-tiler-pds_copernicus-dem/"
            "Copernicus_DSM_COG_30_S90_00_W164_00_DEM.tif")
    x, y = _polar(-163.5, -89.1)  # inside the tile's 1-degree wedge, 100 km from the pole
    grid = GeoBox.from_bbox((x - 270, y - 270, x + 270, y + 270), "EPSG:3031", resolution=90)
    ds = covariates.terrain(grid, dem=pole, tpi_radii=(180,)).compute()
    assert float(ds.elevation.min()) >= 2814 and float(ds.elevation.max()) <= 2962


# ----------------------------------------------------------------------------- WorldCover


@pytest.fixture(scope="module")
def worldcover_catalog(shared_data, tmp_path_factory) -> Path:
    """The stactools item of the real tile, its href rewritten to the local file."""
    doc = json.loads((shared_data / "stac/covariates/stactools_ESA_WorldCover_10m_2021_v200_"
                      "N00E006.json").read_text())
    doc["assets"] = {"map": {**doc["assets"]["map"], "href": str(shared_data / WORLDCOVER)}}
    doc["collection"] = "esa-worldcover"
    doc["links"] = []
    return _write(tmp_path_factory.mktemp("wc") / "wc.json", [doc])


def test_worldcover_from_the_real_tile(worldcover_catalog, shared_data):
    grid = GeoBox.from_bbox((226000, 28000, 232000, 34000), "EPSG:32632", resolution=20)
    wc = covariates.worldcover(grid, catalog=worldcover_catalog).compute()
    assert wc.attrs["resampling"] == "mode" and wc.attrs["source"] == "esa-worldcover (1 item)"
    classes = set(np.unique(wc.values).tolist())
    assert classes <= set(lcmeta.CLASSES) | {0} and 10 in classes
    with rasterio.open(shared_data / WORLDCOVER) as src:
        ref = np.zeros(grid.shape.yx, np.uint8)
        reproject(rasterio.band(src, 1), ref, dst_transform=grid.affine, dst_crs=str(grid.crs),
                  resampling=Resampling.mode)
    assert (wc.values == ref).mean() > 0.97


def test_worldcover_tile_as_a_user_raster(shared_data):
    grid = GeoBox.from_bbox((226000, 28000, 228000, 30000), "EPSG:32632", resolution=20)
    with pytest.raises(LayerError, match="colour table"):
        covariates.raster(shared_data / WORLDCOVER, grid)
    hot = covariates.raster(shared_data / WORLDCOVER, grid, kind="categorical", one_hot=True)
    assert list(hot["class"].values) == list(lcmeta.CLASSES)  # from the file's legend tag
    with pytest.raises(LayerError, match="not integer classes"):
        covariates.raster(shared_data / SAO_TOME_DEM, grid, kind="categorical")
    assert Affine(*covariates.as_geobox(grid).affine[:6]) == grid.affine
