"""load_s2 on the sample archive: laziness, engines, harmonisation, errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dask
import numpy as np
import pystac
import pytest
import rasterio

import cup4soil
from cup4soil import masks
from cup4soil.cube import kernels as cube_kernels
from cup4soil.errors import (
    AssetReadError,
    BandError,
    CRSError,
    NoItemsError,
    ParameterError,
)

from helpers import CallCounter, raise_if_dask_computes

ENGINES = ["odc-stac", "stackstac"]


@pytest.fixture(scope="module")
def items(sample):
    return cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)


@pytest.mark.parametrize("engine", ENGINES)
def test_building_the_cube_reads_nothing(items, monkeypatch, engine):
    def no_open(*args, **kwargs):
        raise AssertionError("a raster was opened while building the graph")

    monkeypatch.setattr(rasterio, "open", no_open)
    monkeypatch.setattr(rasterio.io.DatasetReader, "__init__", no_open)
    with raise_if_dask_computes():
        cube = cup4soil.load_s2(items, engine=engine)
        vpc = masks.valid_pixel_count(cube)
    assert vpc.chunks is not None
    assert all(isinstance(v.data, dask.array.Array) for v in cube.data_vars.values())


def test_cube_layout(items, sample):
    cube = cup4soil.load_s2(items)
    assert list(cube.data_vars) == [*cup4soil.sources.sentinel2.REFLECTANCE_BANDS, "SCL"]
    assert cube.B02.dims == ("time", "y", "x") and cube.B02.dtype == np.uint16
    assert cube.SCL.dtype == np.uint8 and cube.B02.attrs["nodata"] == 0
    assert cube.odc.geobox.crs == "EPSG:32633"  # UTM zone of the AOI
    assert cube.rio.crs.to_epsg() == 32633
    assert abs(cube.odc.geobox.resolution.x) == 20.0
    # One time step per solar day; the duplicate delivery is one of them.
    days = cube.time.values.astype("datetime64[D]")
    assert len(set(days.tolist())) == cube.sizes["time"] == len(items)
    assert cube.sza.dims == ("time",) and float(cube.sza.min()) > 20
    assert (np.diff(cube.time.values) > np.timedelta64(0)).all()


def test_target_crs_and_chunks(items):
    cube = cup4soil.load_s2(items[:3], crs="EPSG:3035", resolution=30, chunks={"x": 16, "y": 16})
    assert cube.odc.geobox.crs == "EPSG:3035"
    assert cube.B03.data.chunksize == (1, 16, 16)


@pytest.mark.parametrize("resolution", [20.0, 10.0])
def test_engines_agree_on_grid_and_values(items, resolution):
    sub = items[:6]
    a = cup4soil.load_s2(sub, resolution=resolution, chunks={"x": 32, "y": 32})
    b = cup4soil.load_s2(sub, resolution=resolution, engine="stackstac", chunks={"x": 32, "y": 32})
    np.testing.assert_array_equal(a.x.values, b.x.values)
    np.testing.assert_array_equal(a.y.values, b.y.values)
    np.testing.assert_array_equal(a.time.values, b.time.values)
    assert a.odc.geobox == b.odc.geobox
    a, b = a.compute(), b.compute()
    # No resampling for bands at their native resolution: identical values.
    for band in ("B05", "B11", "SCL") if resolution == 20 else ("B02", "B08"):
        np.testing.assert_array_equal(a[band].values, b[band].values, err_msg=band)
    # stackstac's coordinates are plain enough for Zarr.
    assert all(c.dtype != object for c in b.coords.values())


def test_harmonised_series_is_consistent_across_baseline_04(items, sample):
    cube = cup4soil.load_s2(items, bands=["B02", "B08", "SCL"])
    valid = masks.valid(cube).compute()
    wc = rasterio.open(sample.truth_dir / "worldcover.tif").read(1)[::2, ::2]
    # The cube grid is wider than the sample raster; find the forest pixels in it.
    gb = cube.odc.geobox
    with rasterio.open(sample.truth_dir / "worldcover.tif") as src:
        col0 = round((src.transform.c - gb.affine.c) / 20)
        row0 = round((gb.affine.f - src.transform.f) / 20)
    forest = np.zeros((cube.sizes["y"], cube.sizes["x"]), bool)
    forest[row0:row0 + wc.shape[0], col0:col0 + wc.shape[1]] = wc == 10
    b08 = cube.B08.values.astype(float)
    new = cube.time.values >= np.datetime64("2022-01-25")
    assert new.any() and (~new).any()
    before = np.median(b08[~new][(valid.values[~new]) & forest[None]])
    after = np.median(b08[new][(valid.values[new]) & forest[None]])
    # Forest NIR is 2500 DN on both sides; without harmonisation "after" would be ~3500.
    assert abs(before - 2500) < 60 and abs(after - before) < 60


def test_duplicate_delivery_harmonises_to_the_same_values(sample):
    root = Path(sample.root) / "sentinel-2-l2a"
    dup = sorted(p for p in root.iterdir() if p.name.endswith("T120000"))
    assert len(dup) == 1
    stamp = dup[0].name.split("_")[2]
    orig = [p for p in root.iterdir() if stamp in p.name and p != dup[0]]
    a = pystac.Item.from_file(str(orig[0] / f"{orig[0].name}.json")).make_asset_hrefs_absolute()
    b = pystac.Item.from_file(str(dup[0] / f"{dup[0].name}.json")).make_asset_hrefs_absolute()
    assert a.properties["s2:processing_baseline"] < "04" <= b.properties["s2:processing_baseline"]
    raw_a = rasterio.open(a.assets["B04"].href).read(1).astype(int)
    raw_b = rasterio.open(b.assets["B04"].href).read(1).astype(int)
    assert ((raw_b - raw_a)[raw_a > 0] == 1000).all()  # the files differ by the offset
    ca = cup4soil.load_s2([a], bands=["B04", "B11"], bbox=sample.bbox).compute()
    cb = cup4soil.load_s2([b], bands=["B04", "B11"], bbox=sample.bbox).compute()
    np.testing.assert_array_equal(ca.B04.values, cb.B04.values)
    np.testing.assert_array_equal(ca.B11.values, cb.B11.values)
    # Both deliveries in one cube: a solar day mixing baselines is loaded per offset and fused.
    # (Averaged bands may differ between engines at the raster's outer edge, where GDAL's
    # warper in stackstac spreads edge pixels: compare each engine with itself.)
    for engine in ("odc-stac", "stackstac"):
        one = cup4soil.load_s2([a], bands=["B04", "B11"], bbox=sample.bbox, engine=engine)
        both = cup4soil.load_s2([a, b], bands=["B04", "B11"], bbox=sample.bbox, engine=engine)
        assert both.sizes["time"] == 1
        np.testing.assert_array_equal(both.B04.values, one.B04.values)
        np.testing.assert_array_equal(both.B11.values, ca.B11.values)


def test_plan_reads_into_out_and_a_shared_window(items):
    """``ReadPlan.read(out=, window=)`` gives what odc.stac.load reads (pre-04.00 items: no
    DN shift), whatever ``out`` held, and what a read without them gives."""
    from cup4soil.cube.readplan import plan_of

    old = [it for it in items if it.properties["s2:processing_baseline"] < "04"]
    bands = ["B02", "B11", "SCL"]
    cube = cup4soil.load_s2(old, bands=bands)
    ref = _odc_stac_reference(old, bands, cube.odc.geobox)
    plan, _ = plan_of(cube.B02.data)
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    rows, cols = (3, ny - 2), (5, nx - 1)
    window = plan.window(rows, cols)
    for band in bands:
        for t in range(0, cube.sizes["time"], 7):
            want = ref[band][t, rows[0]:rows[1], cols[0]:cols[1]]
            out = np.full_like(want, 7, dtype=cube[band].dtype)  # overwritten
            got = plan.read(band, t, rows, cols, out=out, window=window)
            assert got is out
            np.testing.assert_array_equal(got, want, err_msg=band)
            np.testing.assert_array_equal(plan.read(band, t, rows, cols), want)
    with pytest.raises(ParameterError, match="out= is uint8"):
        plan.read("B02", 0, rows, cols, out=np.zeros((ny - 5, nx - 6), np.uint8))


def test_shift_dn_keeps_nodata_and_clips():
    dn = np.array([0, 1, 999, 1000, 1001, 65535], np.uint16)
    np.testing.assert_array_equal(cube_kernels.shift_dn(dn, -1000), [0, 1, 1, 1, 1, 64535])
    assert cube_kernels.shift_dn(dn, 0) is dn


def _item(path_json: Path) -> pystac.Item:
    return pystac.Item.from_file(str(path_json)).make_asset_hrefs_absolute()


@pytest.mark.parametrize("engine", ENGINES)
def test_unreadable_asset_names_href_without_token(items, tmp_path, engine):
    broken = items[0].clone()
    missing = tmp_path / "gone" / "B02.tif"
    broken.assets["B02"].href = f"{missing}?se=2099&sig=TOPSECRETTOKEN"
    cube = cup4soil.load_s2([broken], bands=["B02"], engine=engine)
    with pytest.raises(AssetReadError) as info:
        cube.compute()
    text = str(info.value)
    assert str(missing) in text and "TOPSECRETTOKEN" not in text and "se=2099" not in text


def test_missing_band_is_named(items):
    item = items[0].clone()
    del item.assets["B8A"]
    with pytest.raises(BandError, match=f"item '{item.id}' has no asset for band B8A"):
        cup4soil.load_s2([item])


def test_mixed_crs_without_target(shared_data):
    import json

    feats = json.loads((shared_data / "stac/extracted/pc_sentinel-2-l2a_2019-01-01_items.json")
                       .read_text())["features"]
    mixed = [pystac.Item.from_dict(f) for f in feats if f["properties"]["proj:epsg"]
             in (32659, 32660)][:4]
    assert len({cup4soil.sources.assets.item_epsg(it) for it in mixed}) == 2
    with pytest.raises(CRSError, match=r"several CRSs.*Pass crs="):
        cup4soil.load_s2(mixed)
    # With a target CRS the plan is made (nothing is read: these are remote assets).
    cube = cup4soil.load_s2(mixed, crs="EPSG:32660", resolution=200)
    assert cube.odc.geobox.crs == "EPSG:32660"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"resolution": 0}, ParameterError, "positive pixel size"),
        ({"resolution": -20}, ParameterError, "positive pixel size"),
        ({"resolution": "fine"}, ParameterError, "not a number"),
        ({"engine": "gdal"}, ParameterError, "engine='gdal' is unknown"),
        ({"bands": ["B02", "NDVI"]}, BandError, "not a cup4soil band"),
        ({"crs": "EPSG:nope"}, CRSError, "not a coordinate reference system"),
        ({"chunks": {"time": 4}}, ParameterError, "must be 1"),
    ],
)
def test_bad_cube_input(items, kwargs, error, message):
    with pytest.raises(error, match=message):
        cup4soil.load_s2(items, **kwargs)


def test_no_items():
    with pytest.raises(NoItemsError, match="no items to load"):
        cup4soil.load_s2([])


def test_sun_zenith_from_item_metadata(items):
    cube = cup4soil.load_s2(items)
    expected = [it.properties["s2:mean_solar_zenith"] for it in items]
    np.testing.assert_allclose(cube.sza.values, expected, rtol=1e-5)
    when = [dt.datetime.fromisoformat(str(t)[:19]) for t in cube.time.values]
    assert when == [it.datetime.replace(tzinfo=None) for it in items]


def test_reader_logs_carry_no_token(items, tmp_path, caplog):
    broken = items[0].clone()
    broken.assets["B02"].href = f"{tmp_path}/gone.tif?sv=1&sig=LOGGEDSECRET"
    with pytest.raises(AssetReadError):
        cup4soil.load_s2([broken], bands=["B02"]).compute()
    assert "LOGGEDSECRET" not in caplog.text


def test_odc_engine_equals_odc_stac_load(items, sample):
    """The planned cube reads exactly what odc.stac.load reads (same parsing, grouping,
    reader and fuser), on the pre-04.00 items, which need no DN shift; the 10 m bands are
    averaged exactly (odc.stac.load's own 10 m read, 2 x 2 means rounded half up), where
    GDAL's warper is off by one DN at a few exact halves."""
    old = [it for it in items if it.properties["s2:processing_baseline"] < "04"]
    bands = ["B02", "B11", "SCL"]
    cube = cup4soil.load_s2(old, bands=bands, chunks={"x": 24, "y": 24})
    ref = _odc_stac_reference(old, bands, cube.odc.geobox)
    np.testing.assert_array_equal(cube.time.values, ref["time"])
    cube = cube.compute()
    for band in bands:
        np.testing.assert_array_equal(cube[band].values, ref[band], err_msg=band)
    off = cube.B02.values.astype(int) - ref["B02 warped"].astype(int)
    assert np.abs(off).max() <= 1 and (off != 0).mean() < 1e-3


def _odc_stac_reference(items, bands, geobox) -> dict[str, np.ndarray]:
    """odc.stac.load's read of ``bands`` on ``geobox`` (items needing no DN shift); the
    10 m band as the exact 2 x 2 mean (rounded half up) of odc.stac.load's own 10 m read,
    and as its warped 20 m read (``"B02 warped"``)."""
    import odc.stac

    norm = [cup4soil.cube.load._normalise(it, bands) for it in items]
    ref = odc.stac.load(norm, bands=bands, geobox=geobox, groupby="solar_day",
                        chunks={"x": 24, "y": 24}, use_overviews=False,
                        resampling=cup4soil.cube.load._resampling(bands, 20.0)).compute()
    fine = odc.stac.load(norm, bands=["B02"], geobox=geobox.zoom_out(0.5),
                         groupby="solar_day", use_overviews=False).B02.values
    out = {b: ref[b].values for b in bands}
    out["time"], out["B02 warped"] = ref.time.values, out["B02"]
    t, ny, nx = out["B02"].shape
    blocks = fine.reshape(t, ny, 2, nx, 2).astype(np.int64)
    n = (blocks != 0).sum(axis=(2, 4))
    out["B02"] = np.where(n > 0, (2 * blocks.sum(axis=(2, 4)) + n) // np.maximum(2 * n, 1),
                          0).astype(out["B02"].dtype)
    return out


def test_cube_graph_is_one_layer_per_band(items, monkeypatch):
    import dask.task_spec

    # Count the graph nodes (tasks, data, lists of arguments) created while building.
    created = CallCounter(lambda *a, **k: None, key=lambda node, *a, **k: type(node).__name__)
    for cls in (dask.task_spec.Task, dask.task_spec.DataNode, dask.task_spec.Alias):
        def counted(self, *args, _init=cls.__init__, **kwargs):
            created(self)
            return _init(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counted)
    built = []
    for some in (items[:5], items):
        created.calls.clear()
        cube = cup4soil.load_s2(some)
        built.append(created.total)
        layers = cube.B04.data.dask.layers
        assert len(layers) == 2 and any(k.startswith("read-plan-") for k in layers)
        assert not layers[cube.B04.data.name].is_materialized()
    # Building costs the same for 5 and for 40 scenes: one lazy Blockwise layer per band
    # (and the plan, one graph node), although it stands for 8 times as many tasks.
    assert len(items) >= 8 * 5 and built[0] == built[1] > 0
    assert created.calls["DataNode"] == 1
    assert len(cube.B04.data.dask) == len(items) + 1  # one task per scene (1 chunk) + plan
