"""Covariates from the sample archive: Sentinel-1 statistics, terrain, land cover, user
rasters and the covariate sets, against direct computations from the COGs."""

from __future__ import annotations

import warnings

import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox
from rasterio.transform import Affine

from cup4soil import covariates
from cup4soil.cube import readplan
from cup4soil.errors import (
    CollectionError,
    CoverageError,
    GridMismatchError,
    LayerError,
    NoItemsError,
    ParameterError,
)

from helpers import CallCounter, raise_if_dask_computes


@pytest.fixture(scope="module")
def area(sample) -> GeoBox:
    """The sample area's own 10 m grid (that of its COGs)."""
    with rasterio.open(sample.truth_dir / "soc.tif") as src:
        return GeoBox(src.shape, src.transform, src.crs)


@pytest.fixture(scope="module")
def grid(sample) -> GeoBox:
    """A 20 m grid over the sample's bbox (the grid a composite of it has)."""
    return covariates.as_geobox(sample.bbox, resolution=20.0)


def _s1_items(sample, orbit: str | None = None) -> list[pystac.Item]:
    root = pystac.read_file(str(sample.catalog))
    items = list(root.get_child("sentinel-1-rtc").get_items())
    return [it for it in items if orbit is None or it.properties["sat:orbit_state"] == orbit]


def _direct(sample, pol: str, *, orbit: str | None = None, year: int | None = None,
            floor_db: float = -35.0) -> np.ndarray:
    """The series of one polarisation read straight from the COGs, masked as documented:
    nodata, <= 0 and below the noise floor are NaN."""
    series = []
    for it in sorted(_s1_items(sample, orbit), key=lambda i: i.datetime):
        if year is not None and it.datetime.year != year:
            continue
        with rasterio.open(it.assets[pol].get_absolute_href()) as src:
            v = src.read(1).astype(np.float64)
        v[(v == -32768) | ~np.isfinite(v) | (v <= 10 ** (floor_db / 10))] = np.nan
        series.append(v)
    return np.stack(series)


def _db(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10 * np.log10(x)


@pytest.fixture(scope="module")
def s1_area(sample, area) -> xr.Dataset:
    return covariates.sentinel1(area, sample.time_range, catalog=sample.catalog).compute()


def test_sentinel1_statistics_equal_a_direct_computation(sample, s1_area):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels of the reference
        for pol in ("vv", "vh"):
            s = _direct(sample, pol)
            p = pol.upper()
            np.testing.assert_allclose(s1_area[f"{p}_mean"], _db(np.nanmean(s, 0)), rtol=1e-5)
            np.testing.assert_allclose(s1_area[f"{p}_std"], _db(np.nanstd(s, 0, ddof=1)),
                                       rtol=1e-5)
            for q in (5, 95):
                np.testing.assert_allclose(s1_area[f"{p}_p{q:02d}"],
                                           _db(np.nanpercentile(s, q, axis=0)), rtol=1e-5)
            np.testing.assert_allclose(s1_area[f"{p}_range"],
                                       s1_area[f"{p}_p95"] - s1_area[f"{p}_p05"], atol=1e-5)
        vv, vh = np.nanmean(_direct(sample, "vv"), 0), np.nanmean(_direct(sample, "vh"), 0)
    np.testing.assert_allclose(s1_area.RVI, 4 * vh / (vv + vh), rtol=1e-5)
    np.testing.assert_allclose(s1_area.VHVV_ratio, _db(vh / vv), rtol=1e-5, atol=1e-5)
    assert np.array_equal(s1_area.S1_count, np.isfinite(_direct(sample, "vv")).sum(0))
    # Border noise, zeros and nodata were in the scenes: fewer observations than scenes.
    assert s1_area.S1_count.min() < len(_s1_items(sample)) == s1_area.attrs["n_scenes"]


def test_sentinel1_attributes_name_units_source_span(s1_area):
    for name, var in s1_area.data_vars.items():
        assert var.attrs["units"] == ("1" if name in ("RVI", "S1_count") else "dB")
        assert var.attrs["source"] == "sentinel-1-rtc (60 items)"
        assert var.attrs["resampling"] == "nearest" and var.attrs["orbit"] == "both"
        assert var.attrs["time_start"].startswith("2018") and var.attrs["time_end"] >= "2022"
    assert s1_area.attrs["orbits_present"] == ["ascending", "descending"]


def test_sentinel1_is_lazy_reads_each_window_once_and_blocks_do_not_matter(
        sample, area, s1_area, monkeypatch):
    counter = CallCounter(readplan.ReadPlan.read,
                          key=lambda plan, band, t, rows, cols: (plan.token, band, t, rows, cols))
    monkeypatch.setattr(readplan.ReadPlan, "read", lambda *a, **k: counter(*a, **k))
    with raise_if_dask_computes():
        # A budget for 16 x 16 px blocks of 60 scenes: 25 block tasks instead of one.
        ds = covariates.sentinel1(area, sample.time_range, catalog=sample.catalog,
                                  task_memory=16 * 16 * 60 * 2 * 6)
    assert counter.total == 0
    out = ds.compute(scheduler="threads")
    n_blocks = 5 * 5
    assert counter.most == 1 and counter.total == n_blocks * 60 * 2
    for name in s1_area.data_vars:
        np.testing.assert_array_equal(out[name].values, s1_area[name].values)


def test_sentinel1_by_year_and_orbit(sample, area):
    ds = covariates.sentinel1(area, sample.time_range, catalog=sample.catalog, by="year",
                              orbit="descending", stats=("mean", "p50")).compute()
    assert list(ds.year.values) == [2018, 2019, 2020, 2021, 2022]
    assert set(ds.data_vars) == {"VV_mean", "VV_p50", "VH_mean", "VH_p50", "VHVV_ratio", "RVI",
                                 "S1_count"}
    assert ds.attrs["orbit"] == "descending" and ds.VV_mean.attrs["orbit"] == "descending"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s = _direct(sample, "vv", orbit="descending", year=2020)
        np.testing.assert_allclose(ds.VV_mean.sel(year=2020), _db(np.nanmean(s, 0)), rtol=1e-5)
        np.testing.assert_allclose(ds.VV_p50.sel(year=2020), _db(np.nanmedian(s, 0)), rtol=1e-5)
    assert int(ds.S1_count.sel(year=2020).max()) == len(s)


def test_sentinel1_averages_linear_power_onto_a_coarser_grid(sample, grid):
    ds = covariates.sentinel1(grid, "2020", catalog=sample.catalog, stats=("mean",))
    assert ds.VV_mean.attrs["resampling"] == "average"
    assert ds.odc.geobox == grid
    v = ds.VV_mean.values
    assert np.isfinite(v).mean() > 0.5 and -25 < np.nanmedian(v) < -5


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"time": "2010"}, NoItemsError, r"sentinel-1-rtc .* between 2010-01-01 and 2010-12-31"),
    ({"catalog": "earth-search"}, CollectionError, r"SAR \(ground-range\) geometry"),
    ({"orbit": "sideways"}, ParameterError, "orbit="),
    ({"stats": ("median",)}, ParameterError, "not a statistic"),
    ({"polarizations": ("hh",)}, ParameterError, "polarizations"),
    ({"by": "month"}, ParameterError, "by="),
])
def test_sentinel1_refuses_bad_input(sample, grid, kwargs, error, match):
    args = {"time": sample.time_range, "catalog": sample.catalog} | kwargs
    with pytest.raises(error, match=match):
        covariates.sentinel1(grid, args.pop("time"), **args)


def test_terrain_is_exact_across_chunks_and_follows_the_relief(sample, grid):
    one = covariates.terrain(grid, catalog=sample.catalog)
    with raise_if_dask_computes():
        chunked = covariates.terrain(grid, catalog=sample.catalog, chunks={"y": 9, "x": 13})
    assert chunked.elevation.data.chunksize == (9, 13)
    a, b = one.compute(), chunked.compute()
    assert set(a.data_vars) == {"elevation", "slope", "northness", "eastness",
                                "profile_curvature", "plan_curvature", "tpi_100", "tpi_500"}
    for name in a.data_vars:
        assert np.array_equal(a[name].values, b[name].values), name
        assert np.isfinite(a[name].values).all(), name
    truth = sample.truth_on("elevation", grid).values  # NaN beyond the sample area
    inside = np.isfinite(truth)
    assert inside.mean() > 0.5
    assert np.corrcoef(truth[inside], a.elevation.values[inside])[0, 1] > 0.98
    assert np.allclose(a.northness**2 + a.eastness**2, 1, atol=1e-5) or (a.slope == 0).any()
    assert a.elevation.attrs["units"] == "m" and a.slope.attrs["units"] == "degree"
    assert a.tpi_500.attrs["source"] == "cop-dem-glo-30 (1 item)"


def test_terrain_refuses_a_dem_that_does_not_cover_the_grid(sample, grid, shared_data):
    with pytest.raises(CoverageError, match="does not cover the grid"):
        covariates.terrain(grid, catalog=sample.catalog, tpi_radii=(100, 3000))
    sao_tome = (shared_data / "dem/rio-tiler-pds_copernicus-dem/"
                "Copernicus_DSM_COG_10_N00_00_E006_00_DEM.tif")
    with pytest.raises(CoverageError, match="does not cover"):
        covariates.terrain(grid, dem=sao_tome)
    with pytest.raises(ParameterError, match="one pixel"):
        covariates.terrain(grid, catalog=sample.catalog, tpi_radii=(5,))


def test_worldcover_from_the_archive(sample, area, grid):
    wc = covariates.worldcover(area, catalog=sample.catalog).compute()
    truth = sample.truth_on("worldcover", area).values
    assert wc.dtype == np.uint8 and (wc.values == truth).mean() > 0.9
    assert wc.attrs["resampling"] == "nearest"
    coarse = covariates.worldcover(grid, catalog=sample.catalog)
    assert coarse.attrs["resampling"] == "mode" and coarse.attrs["flag_values"][0] == 10
    with pytest.raises(NoItemsError, match="2020"):
        covariates.worldcover(grid, catalog=sample.catalog, year=2020)
    with pytest.raises(ParameterError, match="2020, 2021"):
        covariates.worldcover(grid, catalog=sample.catalog, year=2019)


def _asset(sample, collection: str, key: str) -> str:
    root = pystac.read_file(str(sample.catalog))
    (item,) = root.get_child(collection).get_items()
    return item.assets[key].get_absolute_href()


def test_user_rasters_categorical_and_continuous(sample, grid, tmp_path):
    wc_path = _asset(sample, "esa-worldcover", "map")
    dem_path = _asset(sample, "cop-dem-glo-30", "data")
    with pytest.raises(LayerError, match=r"holds classes .*colour table"):
        covariates.raster(wc_path, grid, kind="continuous")
    with pytest.raises(LayerError, match="float32 values, not integer classes"):
        covariates.raster(dem_path, grid, kind="categorical")
    hot = covariates.raster(wc_path, grid, kind="categorical", one_hot=True).compute()
    assert list(hot["class"].values) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100]
    assert (hot.sum("class") == 1).all()
    classes = covariates.raster(wc_path, grid, kind="categorical", name="lc").compute()
    assert classes.name == "lc" and classes.attrs["resampling"] == "mode"
    elev = covariates.raster(dem_path, grid).compute()
    ref = covariates.terrain(grid, catalog=sample.catalog).elevation.values
    assert elev.attrs["resampling"] == "bilinear" and np.nanmax(abs(elev.values - ref)) < 0.1

    # A raster without CRS metadata: refused; with its CRS written in, read.
    bare = tmp_path / "no-crs.tif"
    left, _, _, top = grid.boundingbox
    with rasterio.open(bare, "w", driver="GTiff", width=10, height=10, count=1,
                       dtype="float32", transform=Affine(200, 0, left, 0, -200, top)) as dst:
        dst.write(np.arange(100, dtype="float32").reshape(10, 10), 1)
    with pytest.raises(LayerError, match="no CRS metadata"):
        covariates.raster(bare, grid)
    with rasterio.open(bare, "r+") as dst:
        dst.crs = grid.crs.to_wkt()
    fixed = covariates.raster(bare, grid, resampling="nearest").compute()
    assert fixed.values[0, 0] == 0 and np.nanmax(fixed.values) > 0


def _fake_composite(grid: GeoBox) -> xr.Dataset:
    """SCMaP products on the grid (values made up; the sets only combine them)."""
    from odc.geo.xr import xr_coords

    rng = np.random.default_rng(0)
    ny, nx = grid.shape.yx
    bands = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]
    coords = dict(xr_coords(grid, crs_coord_name="spatial_ref"))
    bsc = rng.integers(0, 8, (ny, nx)).astype("uint16")
    bsc[bsc < 3] = 0
    src = rng.uniform(500, 3000, (10, ny, nx)).astype("float32")
    src[:, bsc == 0] = np.nan
    mref = rng.uniform(300, 4000, (10, ny, nx)).astype("float32")
    band = {**coords, "band": bands}
    return xr.Dataset(
        {"SRC": (("band", "y", "x"), src, {"units": "1e-4 reflectance"}),
         "MREF": (("band", "y", "x"), mref, {"units": "1e-4 reflectance"}),
         "BSC": (("y", "x"), bsc)},
        coords=band,
        attrs={"time_start": "2018-01-03T10:06:33", "time_end": "2022-12-30T10:06:31",
               "n_scenes": 40})


def test_stack_builds_the_three_sets_lazily(sample, grid):
    comp = _fake_composite(grid)
    with raise_if_dask_computes():
        sets = {s: covariates.stack(comp, set=s, catalog=sample.catalog) for s in (1, 2, 3)}
    one, two, three = (set(sets[s].data_vars) for s in (1, 2, 3))
    assert {"elevation", "slope", "tpi_500", "worldcover", "VV_mean", "VH_p95", "RVI"} <= one
    assert two - one == {f"MREF_{b}" for b in comp.band.values}
    assert three - one == {f"MOSAIC_{b}" for b in comp.band.values} | {"MOSAIC_SOURCE"}
    for ds in sets.values():
        assert ds.odc.geobox == grid
        for name, var in ds.data_vars.items():
            assert var.dims == ("y", "x"), name
            assert {"units", "source", "resampling"} <= set(var.attrs), name
            assert "http" not in str(var.attrs["source"]) and "sig=" not in str(var.attrs)
    ds = sets[3].compute()
    use_src = comp.BSC.values >= 3
    np.testing.assert_array_equal(ds.MOSAIC_B04.values[use_src],
                                  comp.SRC.sel(band="B04").values[use_src])
    np.testing.assert_array_equal(ds.MOSAIC_B04.values[~use_src],
                                  comp.MREF.sel(band="B04").values[~use_src])
    assert ((ds.MOSAIC_SOURCE.values == 1) == use_src).all()
    assert ds.MOSAIC_B04.attrs["time_start"] == "2018-01-03"
    assert ds.VV_mean.attrs["time_start"] >= "2018" and ds.attrs["covariate_set"] == 3


def test_stack_refuses_misaligned_or_missing_inputs(sample, grid):
    comp = _fake_composite(grid)
    s1 = covariates.sentinel1(grid, "2020", catalog=sample.catalog, stats=("mean",))
    half = s1.assign_coords(x=s1.x + 10.0)  # half a 20 m pixel east
    with pytest.raises(GridMismatchError, match=r"\+0\.500 px in x"):
        covariates.stack(comp, set=1, sentinel1=half, catalog=sample.catalog)
    smaller = s1.isel(x=slice(1, None))
    with pytest.raises(GridMismatchError, match="px, the composite"):
        covariates.stack(comp, set=1, sentinel1=smaller, terrain=False, landcover=False)
    with pytest.raises(ParameterError, match=r"set 3 .* pass the composite"):
        covariates.stack(set=3, geobox=grid, catalog=sample.catalog)
    with pytest.raises(ParameterError, match="year dimension"):
        covariates.stack(comp.expand_dims(year=[2020]), set=2)
    with pytest.raises(ParameterError, match="1, 2 and 3"):
        covariates.stack(comp, set=4)
    # Given layers on the grid are used as they are.
    ds = covariates.stack(comp, set=1, sentinel1=s1, terrain=False, landcover=False)
    assert set(ds.data_vars) == set(s1.data_vars)


def test_covariates_command_writes_set_3(sample, grid, tmp_path, capsys):
    from cup4soil import store
    from cup4soil.cli import main

    comp = _fake_composite(grid)
    store.write(comp, str(tmp_path / "scmap.zarr"))
    out = tmp_path / "cov.zarr"
    assert main(["covariates", "--set", "3", "--composite", str(tmp_path / "scmap.zarr"),
                 "--catalog", str(sample.catalog), "--out", str(out), "--orbit",
                 "ascending"]) == 0
    ds = store.open(str(out))
    assert "MOSAIC_SOURCE" in ds and ds.VV_mean.attrs["orbit"] == "ascending"
    assert ds.odc.geobox == grid
    assert main(["covariates", "--set", "2", "--aoi", ",".join(map(str, sample.bbox)),
                 "--catalog", str(sample.catalog), "--out", str(tmp_path / "x.zarr")]) == 2
    assert "--set 2 adds composite layers" in capsys.readouterr().err
    one = tmp_path / "one.zarr"
    assert main(["covariates", "--set", "1", "--aoi", ",".join(map(str, sample.bbox)),
                 "--time", "2021", "--catalog", str(sample.catalog), "--out", str(one),
                 "--extra", f"{_asset(sample, 'esa-worldcover', 'map')}:categorical",
                 "--zarr-format", "2"]) == 0
    assert "ESA_WorldCover_10m_2021_v200_N51E012_Map" in store.open(str(one))
    assert (one / ".zgroup").is_file() and not (one / "zarr.json").exists()  # format 2


def test_scmap_takes_worldcover_auto_from_the_catalog(sample, tmp_path, capsys):
    """SCMaP's land-cover input built without the user: 'auto' (from a catalog) or a path;
    water and the village are never bare and are MASK 3, as with the layer given by hand."""
    import cup4soil
    from cup4soil import scmap, store
    from cup4soil.cli import main

    items = cup4soil.search(sample.bbox, "2019/2020", catalog=sample.catalog)
    cube = cup4soil.load_s2(items, resolution=20.0)
    with raise_if_dask_computes():
        auto = scmap.composite(cube, 0.137, worldcover="auto", worldcover_catalog=sample.catalog,
                               products=["BSC", "MASK"])
    by_hand = scmap.composite(
        cube, 0.137, products=["BSC", "MASK"],
        worldcover=covariates.worldcover(cube.odc.geobox, catalog=sample.catalog))
    path = scmap.composite(cube, 0.137, products=["BSC", "MASK"],
                           worldcover=_asset(sample, "esa-worldcover", "map"))
    a, b, c = (ds.compute() for ds in (auto, by_hand, path))
    assert (a.MASK.values == 3).any()
    assert np.array_equal(a.MASK.values, b.MASK.values)
    assert np.array_equal(a.MASK.values, c.MASK.values)
    assert a.attrs["worldcover_source"] == "esa-worldcover (1 item)"
    other = sample.truth_on("worldcover", cube.odc.geobox).values
    assert (a.MASK.values[np.isin(other, (50, 80))] == 3).mean() > 0.8
    out = tmp_path / "c.zarr"
    w, s, e, n = sample.bbox
    assert main(["composite", "--aoi", f"{w},{s},{e},{n}", "--time", "2019/2020",
                 "--catalog", str(sample.catalog), "--threshold", "0.137", "--out", str(out),
                 "--worldcover", "auto"]) == 0
    assert (store.open(str(out)).MASK.values == 3).any()
