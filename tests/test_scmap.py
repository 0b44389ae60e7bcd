"""SCMaP composites on the sample archive, the real L2A tile and DLR's threshold raster."""

from __future__ import annotations

import datetime as dt

import dask
import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling
from scipy.ndimage import binary_erosion

import cup4soil
from cup4soil import scmap
from cup4soil.errors import BandError, ParameterError
from cup4soil.scmap import block_kernels as _bk
from cup4soil.scmap import engine, graph
from cup4soil.sources import resources
from cup4soil.sources import sentinel2 as _s2meta

from helpers import CallCounter, FakeRasterDriver, raise_if_dask_computes

THRESHOLD = "scmap/th_S2_s2cr_buffered_cog.tif"


@pytest.fixture(scope="module")
def dlr_threshold(shared_data):
    return str(shared_data / THRESHOLD)


@pytest.fixture(scope="module")
def cube(sample):
    items = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)
    return cup4soil.load_s2(items, chunks={"x": 32, "y": 32}).persist()


@pytest.fixture(scope="module")
def worldcover(cube, sample):
    return sample.truth_on("worldcover", cube.odc.geobox)


@pytest.fixture(scope="module")
def products(cube, worldcover, dlr_threshold):
    return scmap.composite(cube, dlr_threshold, worldcover=worldcover).compute()


@pytest.mark.parametrize(("lon", "lat", "expected"), [(14.35, 52.6, 0.137), (11.2, 48.1, 0.231)])
def test_dlr_threshold_raster(dlr_threshold, lon, lat, expected, monkeypatch):
    gbox = GeoBox.from_bbox((lon - 0.01, lat - 0.01, lon + 0.01, lat + 0.01), "EPSG:4326",
                            resolution=0.005)
    thr = scmap.threshold_on(gbox, dlr_threshold)
    assert float(thr.mean()) == pytest.approx(expected, abs=0.01)
    # "dlr-europe" reads the same raster when it is available offline.
    monkeypatch.setenv(scmap.THRESHOLD_ENV, dlr_threshold)
    np.testing.assert_array_equal(scmap.threshold_on(gbox).values, thr.values)


def test_composite_is_lazy(cube, dlr_threshold):
    with raise_if_dask_computes():
        out = scmap.composite(cube, dlr_threshold)
    assert all(isinstance(v.data, dask.array.Array) for v in out.data_vars.values())
    assert out.odc.geobox == cube.odc.geobox


def test_layout_and_attributes(products, cube):
    assert products.SRC.dims == ("band", "y", "x") and products.SRC.dtype == np.float32
    assert list(products.band.values) == list(_s2meta.REFLECTANCE_BANDS)
    assert products.VPC.dtype == np.uint16 and products.MASK.dtype == np.uint8
    assert products.attrs["nmad_sigma"] == 3.0 and products.attrs["min_bare"] == 3
    assert products.rio.crs.to_epsg() == 32633
    bsc = products.BSC.values
    assert ((bsc == 0) | (bsc >= 3)).all()
    assert np.isnan(products.SRC.values[:, bsc == 0]).all()
    np.testing.assert_allclose(
        products.SRC_CI95.values[:, bsc > 0],
        1.96 * products.SRC_STD.values[:, bsc > 0] / np.sqrt(bsc[bsc > 0]), rtol=1e-5)


def test_chunking_invariance(cube, dlr_threshold):
    a = scmap.composite(cube, dlr_threshold, chunks={"y": 13, "x": 29}).compute()
    b = scmap.composite(cube.chunk({"y": 64, "x": 64}), dlr_threshold).compute()
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_land_cover_classes(products, worldcover):
    wc, mask = worldcover.values, products.MASK.values
    crop, forest, grass = wc == 40, wc == 10, wc == 30
    assert (mask[crop] == 1).mean() > 0.8  # fields are bare after tillage and harvest
    assert (mask[forest] == 2).mean() > 0.95 and (mask[grass] == 2).mean() > 0.95
    assert (products.BSC.values[forest | grass] == 0).all()
    for cls in (50, 80):  # village and lake: excluded and MASK 3
        assert (mask[wc == cls] == 3).all() and (products.BSC.values[wc == cls] == 0).all()


def test_src_is_darker_with_more_soc(products, cube, sample):
    soc = sample.truth_on("soc", cube.odc.geobox).values
    bare = products.BSC.values >= 5
    for band in ("B04", "B11"):
        src = products.SRC.sel(band=band).values
        ok = bare & np.isfinite(soc) & np.isfinite(src)
        r = np.corrcoef(src[ok], np.log(soc[ok]))[0, 1]
        assert r < -0.5, (band, r)


def test_bare_fields_found_in_their_bare_windows(cube, sample, dlr_threshold):
    obs = scmap.observations(cube, dlr_threshold).compute()
    fields = sample.truth_on("fields", cube.odc.geobox).values.astype(int)
    scenes = sample.truth()["scenes"]
    truth = {s["datetime"][:10]: set(s["bare_fields"]) for s in scenes}
    green = {s["datetime"][:10]: set(s["green_fields"]) for s in scenes}
    hits = misses = false = 0
    for k, t in enumerate(obs.time.values):
        day = str(t)[:10]
        valid, bare = obs.valid.values[k], obs.bare.values[k]
        for f in np.unique(fields[fields > 0]):
            # Interior pixels only: 20 m pixels on a field edge mix in the neighbour's crop.
            inner = binary_erosion(fields == f) & valid
            if inner.sum() < 4:
                continue
            frac = bare[inner].mean()
            if f in truth.get(day, set()):
                hits += frac > 0.9
                misses += frac <= 0.9
            elif f in green.get(day, set()):
                false += frac > 0.1
    assert hits > 20 and misses <= 0.1 * hits and false <= 0.05 * hits


def test_by_year(cube, dlr_threshold):
    yearly = scmap.composite(cube, dlr_threshold, by="year", products=["VPC", "BSC", "BSF"])
    assert list(yearly.year.values) == [2018, 2019, 2020, 2021, 2022]
    assert yearly.VPC.dims == ("year", "y", "x") and set(yearly.data_vars) == {"VPC", "BSC", "BSF"}
    total = scmap.composite(cube, dlr_threshold, products=["VPC"]).VPC
    np.testing.assert_array_equal(yearly.VPC.sum("year").values, total.values)


def test_products_subset_skips_mref(cube, worldcover, dlr_threshold, products, monkeypatch):
    # The outlier limits are computed per strip of rows: for the bare set always, for the
    # valid set (sigma 4) only when MREF is asked for.
    limits = CallCounter(_bk.nmad_limits,
                         key=lambda *a: (a[2], a[3]) if a[4] else (a[2], None))
    monkeypatch.setattr(_bk, "nmad_limits", limits)
    out = scmap.composite(cube, dlr_threshold, worldcover=worldcover, products=["SRC", "BSC"])
    assert set(out.data_vars) == {"SRC", "BSC"}
    out = out.compute(scheduler="sync")
    assert limits.calls[(3.0, None)] > 0 and limits.total == limits.calls[(3.0, None)]
    # Skipping it changes nothing else.
    for name in ("SRC", "BSC"):
        np.testing.assert_array_equal(out[name].values, products[name].values, err_msg=name)
    assert (out.BSC.values > 0).any() and np.isfinite(out.SRC.values).any()


def test_per_pixel_sun_zenith(cube, dlr_threshold):
    low = cube.drop_vars("sza")
    sza = xr.full_like(low.B02, 30.0, dtype="float32")
    sza[:, :, : low.sizes["x"] // 2] = 80.0  # the western half has the sun too low
    out = scmap.composite(low.assign(sza=sza), dlr_threshold, products=["VPC"]).compute()
    half = low.sizes["x"] // 2
    assert (out.VPC.values[:, :half] == 0).all() and out.VPC.values[:, half:].any()
    ref = scmap.composite(low, dlr_threshold, products=["VPC"]).compute()
    np.testing.assert_array_equal(out.VPC.values[:, half:], ref.VPC.values[:, half:])


def test_to_soilsuite(products):
    suite = scmap.to_soilsuite(products)
    assert {"SRC_B02", "SRC_STD_B12", "MREF_B8A", "VPC", "BSC", "BSF", "MASK"} <= set(suite)
    assert suite.SRC_B02.dims == ("y", "x")


# --------------------------------------------------------------------------------- real tile


@pytest.fixture(scope="module")
def tile(shared_data):
    folder = shared_data / "s2_l2a/rio-tiler-pds_S2A_29RKH_20200219_0_L2A"
    item = pystac.Item.from_file(str(folder / "S2A_29RKH_20200219_0_L2A.json"))
    for band in _s2meta.ALL_BANDS:
        asset = item.assets[_s2meta.asset_key(item, band)]
        asset.href = str(folder / f"{band}.tif")
        with rasterio.open(asset.href) as src:
            asset.extra_fields["proj:shape"] = list(src.shape)
            asset.extra_fields["proj:transform"] = list(src.transform)[:6]
    with rasterio.open(folder / "B05.tif") as src:
        gbox = GeoBox(src.shape, src.transform, src.crs)
    return item, gbox, folder


def test_real_tile_pvir2_bare_and_vpc(tile):
    item, gbox, folder = tile
    cube = cup4soil.load_s2([item], geobox=gbox).compute()
    obs = scmap.observations(cube, 0.137).isel(time=0).compute()

    def read(band):
        with rasterio.open(folder / f"{band}.tif", OVERVIEW_LEVEL="NONE") as src:
            return src.read(1, out_shape=gbox.shape, resampling=Resampling.average)

    b04, b08 = read("B04").astype(float), read("B08").astype(float)
    b12 = read("B12").astype(float)
    direct = (b08 - b04) / (b08 + b04) + (b08 - b12) / (b08 + b12)
    inside = (b04 > 0) & (b08 > 0) & (b12 > 0)
    # 10 m bands averaged to the grid may differ by 1 DN from the block mean (rounding).
    np.testing.assert_allclose(obs.PVIR2.values[inside], direct[inside], atol=2e-3)
    bare = obs.bare.values
    assert bare.mean() > 0.5  # the desert is mostly bare
    decided = np.abs(direct - 0.137) > 5e-3
    np.testing.assert_array_equal(bare[decided & inside],
                                  (obs.valid.values & (direct <= 0.137))[decided & inside])
    # Two acquisitions of the same tile: VPC counts each valid observation once.
    later = item.clone()
    later.id += "-later"
    later.datetime = item.datetime.replace(day=24)
    pair = cup4soil.load_s2([item, later], geobox=gbox)
    out = scmap.composite(pair, 0.137, products=["VPC", "BSC"]).compute()
    np.testing.assert_array_equal(out.VPC.values, 2 * obs.valid.values)


# ---------------------------------------------------------------------------------- bad input


def test_threshold_raster_not_covering_the_cube(tile, dlr_threshold):
    item, gbox, _ = tile
    later = item.clone()
    later.datetime = item.datetime.replace(day=24)
    cube = cup4soil.load_s2([item, later], geobox=gbox)
    with pytest.raises(scmap.ThresholdError, match="does not cover the cube"):
        scmap.composite(cube, dlr_threshold)


def test_dlr_threshold_is_fetched_once_into_the_cache(shared_data, serve_dir, tmp_path,
                                                     monkeypatch):
    base = serve_dir(shared_data / "scmap")
    monkeypatch.delenv(scmap.THRESHOLD_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(resources, "DLR_THRESHOLD_URL", f"{base}/th_S2_s2cr_buffered_cog.tif")
    gbox = GeoBox.from_bbox((14.3, 52.55, 14.4, 52.65), "EPSG:4326", resolution=0.05)
    first = scmap.threshold_on(gbox)
    cached = tmp_path / "cup4soil" / "th_S2_s2cr_buffered_cog.tif"
    assert cached.is_file()
    monkeypatch.setattr(resources, "DLR_THRESHOLD_URL", "http://127.0.0.1:9/unreachable.tif")
    np.testing.assert_array_equal(scmap.threshold_on(gbox).values, first.values)  # no refetch
    cached.unlink()
    with pytest.raises(scmap.ThresholdError, match="set CUP4SOIL_DLR_THRESHOLD"):
        scmap.threshold_on(gbox)


def test_dlr_threshold_with_another_checksum_is_refused(serve_dir, tmp_path, monkeypatch):
    other = tmp_path / "served"
    other.mkdir()
    (other / "th_S2_s2cr_buffered_cog.tif").write_bytes(b"not DLR's raster")
    base = serve_dir(other)
    monkeypatch.delenv(scmap.THRESHOLD_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(resources, "DLR_THRESHOLD_URL", f"{base}/th_S2_s2cr_buffered_cog.tif")
    with pytest.raises(scmap.ThresholdError, match="not the one cup4soil was tested with"):
        resources.dlr_threshold_path()
    cache = tmp_path / "cache" / "cup4soil"
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing unverified is kept


def test_offline_dlr_threshold_without_copy(cube, monkeypatch, tmp_path):
    monkeypatch.setenv(scmap.THRESHOLD_ENV, str(tmp_path / "missing.tif"))
    with pytest.raises(scmap.ThresholdError, match="does not name a file"):
        scmap.composite(cube)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"nmad_sigma": -1}, ParameterError, "nmad_sigma=-1 must be"),
        ({"mref_nmad_sigma": float("nan")}, ParameterError, "mref_nmad_sigma=nan must be"),
        ({"min_bare": 0}, ParameterError, "min_bare=0"),
        ({"products": ["SRC", "NDVI"]}, ParameterError, "choose from"),
        ({"by": "month"}, ParameterError, "by='month' is unknown"),
        ({"threshold": float("inf")}, ParameterError, "finite PVIR2"),
        ({"threshold": [0.1]}, ParameterError, "is not a float"),
    ],
)
def test_bad_parameters(cube, dlr_threshold, kwargs, error, message):
    args = {"threshold": dlr_threshold} | kwargs
    with pytest.raises(error, match=message):
        scmap.composite(cube, args.pop("threshold"), **args)


def test_cube_missing_a_band_or_scl(cube, dlr_threshold):
    with pytest.raises(BandError, match="lacks SCL"):
        scmap.composite(cube.drop_vars("SCL"), dlr_threshold)
    with pytest.raises(BandError, match="lacks B8A"):
        scmap.composite(cube.drop_vars("B8A"), dlr_threshold)


def test_cube_with_one_time_step(cube, dlr_threshold):
    with pytest.raises(ParameterError, match="one time step"):
        scmap.composite(cube.isel(time=[0]), dlr_threshold)


def test_worldcover_on_another_grid(cube, worldcover, dlr_threshold):
    with pytest.raises(ParameterError, match="another grid"):
        scmap.composite(cube, dlr_threshold, worldcover=worldcover.isel(x=slice(1, None)))


@pytest.fixture(scope="module")
def lazy_cube(sample):
    """The same cube as ``cube``, not persisted: composites read it through its read plan."""
    items = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)
    return cup4soil.load_s2(items, chunks={"x": 32, "y": 32})


def test_read_plan_path_equals_graph_path(lazy_cube, cube, dlr_threshold):
    params = engine.Params(3.0, 4.0, 3, 70.0, 5, scmap.PRODUCTS)
    assert graph.planned(lazy_cube, params) is not None
    assert graph.planned(cube, params) is None  # persisted: read from memory
    for by in (None, "year"):
        a = scmap.composite(lazy_cube, dlr_threshold, by=by, chunks={"y": 24, "x": 40})
        b = scmap.composite(cube, dlr_threshold, by=by, chunks={"y": 24, "x": 40})
        a, b = a.compute(), b.compute()
        for name in a.data_vars:
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=f"{by} {name}")


def test_planned_graph_holds_no_cube_and_does_not_grow_with_scenes(sample, dlr_threshold):
    items = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)
    sizes = []
    for some in (items[:12], items):
        cube = cup4soil.load_s2(some, chunks={"x": 32, "y": 32})
        out = scmap.composite(cube, dlr_threshold, chunks={"y": 32, "x": 32})
        graph = dict(out.__dask_graph__())
        read_layers = {v.data.name for v in cube.data_vars.values()}
        assert not any(isinstance(k, tuple) and k[0] in read_layers for k in graph)
        assert sum(str(k).startswith("read-plan-") for k in graph) == 1
        sizes.append(len(graph))
    assert sizes[0] == sizes[1]  # blocks x products, whatever the number of scenes


# ------------------------------------------------------------------- what a block task reads

FAKE_GRID = GeoBox.from_bbox((400000, 5800000, 401280, 5801280), "EPSG:32633", resolution=20)


def _fake_item(i: int, gbox: GeoBox) -> pystac.Item:
    """A Sentinel-2 L2A item whose assets (``mem://``) cover ``gbox``."""
    geom = gbox.extent.to_crs("EPSG:4326")
    item = pystac.Item(
        id=f"S2A_fake_{i}", geometry=geom.json, bbox=list(geom.boundingbox),
        datetime=dt.datetime(2020, 5, 1, 10, tzinfo=dt.UTC) + dt.timedelta(days=10 * i),
        properties={"s2:processing_baseline": "03.01", "s2:mean_solar_zenith": 40.0,
                    "proj:epsg": 32633})
    for band in _s2meta.ALL_BANDS:
        item.add_asset(band, pystac.Asset(
            href=f"mem://{item.id}/{band}", media_type=pystac.MediaType.COG, roles=["data"],
            extra_fields={"proj:shape": list(gbox.shape.yx),
                          "proj:transform": list(gbox.affine)[:6]}))
    return item


@pytest.fixture
def fake_archive(monkeypatch):
    """Three scenes over all of FAKE_GRID (64 x 64 px) and one over its 20 western columns,
    served from memory by a FakeRasterDriver that load_s2 reads through. All clear but one
    cloud pixel, at row 10, column 50 of the first scene."""
    rng = np.random.default_rng(5)
    grids = [FAKE_GRID, FAKE_GRID, FAKE_GRID, FAKE_GRID[:, :20]]
    items, assets = [], {}
    for i, gbox in enumerate(grids):
        item = _fake_item(i, gbox)
        items.append(item)
        for band in _s2meta.ALL_BANDS:
            shape = gbox.shape.yx
            data = (rng.choice(np.array([4, 5], np.uint8), shape) if band == "SCL"
                    else rng.integers(800, 3000, shape).astype(np.uint16))
            if band == "SCL" and i == 0:
                data[10, 50] = 9
            assets[f"mem://{item.id}/{band}"] = (data, gbox)
    driver = FakeRasterDriver(assets)
    monkeypatch.setattr(cup4soil.cube.load, "_SafeRioDriver", lambda: driver)
    return items, driver


@pytest.mark.parametrize("products", [None, ["VPC", "BSC", "MASK"]])
def test_planned_blocks_open_each_asset_once(fake_archive, products):
    items, driver = fake_archive
    cube = cup4soil.load_s2(items, geobox=FAKE_GRID, chunks={"x": 32, "y": 32})
    out = scmap.composite(cube, 0.3, products=products, chunks={"y": 32, "x": 32})
    assert graph.planned(cube, engine.Params(3.0, 4.0, 3, 70.0, 5, scmap.PRODUCTS))
    assert not driver.opens  # building reads nothing
    out = out.compute()
    assert not driver.violations
    # 2 x 2 blocks. Per block, SCL is read once (with its halo), each band once: the outlier
    # step needs no second decode; the western scene only by the two western blocks (its
    # footprint ends at column 20, the eastern blocks' halos begin at column 32 - 5).
    for i, n_blocks in enumerate((4, 4, 4, 2)):
        opens = driver.opens_of(f"S2A_fake_{i}/")
        assert opens.pop(f"mem://S2A_fake_{i}/SCL") == n_blocks
        assert opens == {f"mem://S2A_fake_{i}/{b}": n_blocks
                         for b in _s2meta.REFLECTANCE_BANDS}
    assert all(cols[1] <= 20 for uri, _, cols in driver.windows if "fake_3" in uri)
    assert all(c0 < 32 + 5 for uri, _, (c0, _) in driver.windows if "fake_3" in uri)
    # Every observation is valid but those of the first scene within 5 px of its cloud.
    expected = np.full((64, 64), 3)
    expected[:, :20] += 1
    expected[5:16, 45:56] -= 1
    np.testing.assert_array_equal(out.VPC.values, expected)


def test_planned_blocks_decode_only_scenes_with_a_possibly_valid_pixel(fake_archive):
    items, driver = fake_archive
    # Scene 1 is cloudy over its 32 eastern columns (the two eastern blocks), and scene 2's
    # sun is too low everywhere: their bands are never decoded there; SCL always is.
    driver.assets["mem://S2A_fake_1/SCL"][0][:, 32:] = 9
    items[2].properties["s2:mean_solar_zenith"] = 75.0
    cube = cup4soil.load_s2(items, geobox=FAKE_GRID, chunks={"x": 32, "y": 32})
    out = scmap.composite(cube, 0.3, chunks={"y": 32, "x": 32}).compute()
    assert not driver.violations
    for i, (scl_opens, band_opens) in enumerate(((4, 4), (4, 2), (4, 0), (2, 2))):
        opens = driver.opens_of(f"S2A_fake_{i}/")
        assert opens.pop(f"mem://S2A_fake_{i}/SCL") == scl_opens
        assert opens == {f"mem://S2A_fake_{i}/{b}": band_opens
                         for b in _s2meta.REFLECTANCE_BANDS if band_opens}
    # The western blocks of scene 1 are read only where they are: columns 0..31.
    assert all(c1 <= 32 for uri, _, (_, c1) in driver.windows
               if "fake_1" in uri and not uri.endswith("SCL"))
    expected = np.full((64, 64), 1)  # scene 0; scene 3 in the west; scene 1 west of its cloud
    expected[:, :20] += 1
    expected[:, :27] += 1  # scene 1 within 5 px of its cloud (columns 27..31) not valid
    expected[5:16, 45:56] -= 1  # scene 0's cloud pixel
    np.testing.assert_array_equal(out.VPC.values, expected)
