"""Parameters outside physical sense and inputs SCMaP, the models and the cluster cannot use,
refused with their valid range or the right diagnosis -- through the API and the CLI: sun
angles in a user's cube (honoured under every documented spelling, or refused), PVIR2
thresholds, mask parameters, WorldCover or covariates on shifted grids, sample files that
cannot be read, cluster sizes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr

import cup4soil
from cup4soil import models, scmap
from cup4soil.cli import main
from cup4soil.errors import (
    ParameterError,
    SampleError,
    ThresholdError,
    TooLargeError,
)
from cup4soil.runtime import cluster

THRESHOLD = "scmap/th_S2_s2cr_buffered_cog.tif"


@pytest.fixture(scope="module")
def dlr_threshold(shared_data):
    return str(shared_data / THRESHOLD)


@pytest.fixture(scope="module")
def cube(sample):
    items = cup4soil.search(sample.bbox, "2019", catalog=sample.catalog)
    return cup4soil.load_s2(items, chunks={"x": 40, "y": 40}).drop_vars("sza").persist()


def _vpc(cube, **kwargs):
    return scmap.composite(cube, 0.1, products=["VPC"], **kwargs).VPC.values


@pytest.fixture(scope="module")
def vpc_sun_high(cube):
    """VPC with the sun at 30 degrees zenith in every scene."""
    return _vpc(cube.assign_coords(sza=("time", np.full(cube.sizes["time"], 30.0))))


# --- the sun angle of a user's cube --------------------------------------------------

def _per_time(cube, values):
    return np.full(cube.sizes["time"], values, dtype="float64")


@pytest.mark.parametrize(("name", "value", "attrs"), [
    ("sza", 80.0, {}),                                   # a data variable over time
    ("sun_elevation", 10.0, {}),                         # elevation 10 = zenith 80
    ("solar_zenith_angle", math.radians(80.0), {"units": "rad"}),
    ("angle", 80.0, {"standard_name": "solar_zenith_angle"}),
])
def test_sun_too_low_in_a_data_variable_is_honoured(cube, vpc_sun_high, name, value, attrs):
    low = cube.assign({name: xr.DataArray(_per_time(cube, value), dims="time", attrs=attrs)})
    assert (_vpc(low) == 0).all()  # every scene has the sun too low
    assert vpc_sun_high.any()


def test_sun_high_in_a_data_variable_gives_the_coordinate_result(cube, vpc_sun_high):
    high = cube.assign(sza=("time", _per_time(cube, 30.0)))
    np.testing.assert_array_equal(_vpc(high), vpc_sun_high)


def test_masks_read_the_sun_angle_data_variable(cube):
    low = cube.assign(sza=("time", _per_time(cube, 85.0)))
    assert not scmap.masks.valid(low).any().compute()
    assert int(scmap.masks.valid_pixel_count(low).max()) == 0


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c.assign(sza=(("time", "y"), np.full((c.sizes["time"], c.sizes["y"]), 30.0))),
     "dimensions"),
    (lambda c: c.assign(sza=("time", _per_time(c, 200.0))), "outside 0..180"),
    (lambda c: c.assign(sza=("time", _per_time(c, 30.0)),
                        sun_elevation=("time", _per_time(c, 60.0))), "several sun angles"),
])
def test_sun_angle_that_cannot_be_read_is_refused(cube, change, message):
    with pytest.raises(ParameterError, match=message):
        scmap.composite(change(cube), 0.1)


# --- SCMaP parameters ----------------------------------------------------------------

@pytest.mark.parametrize("value", [-5.0, 5.0])
def test_pvir2_threshold_outside_its_range(cube, value):
    with pytest.raises(ParameterError, match=r"PVIR2's range \[-2, 2\]"):
        scmap.composite(cube, value)


def test_threshold_raster_in_percent_is_refused(cube, dlr_threshold, tmp_path):
    with rasterio.open(dlr_threshold) as src:
        data, profile = src.read(), src.profile
    profile.update(driver="GTiff")
    scaled = np.where(data == profile.get("nodata"), data, data * 100).astype(data.dtype)
    path = tmp_path / "threshold_percent.tif"
    with rasterio.open(path, "w", **profile) as out:
        out.write(scaled)
    with pytest.raises(ThresholdError, match="outside PVIR2's range"):
        scmap.composite(cube, str(path))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_sun_zenith": 100}, r"max_sun_zenith=100 must be an angle .* in \[0, 90\]"),
    ({"max_sun_zenith": math.nan}, "max_sun_zenith=nan"),
    ({"buffer_m": -10}, r"buffer_m=-10 must be a distance in metres .* in \[0, 10000\]"),
    ({"buffer_m": 1e9}, "buffer_m"),
    ({"min_bare": math.nan}, "min_bare=nan"),
    ({"min_bare": 2.5}, "min_bare=2.5"),
    ({"chunks": {"y": 0, "x": 32}}, "block size"),
    ({"chunks": {"time": 3}}, "unknown dimensions"),
    ({"task_memory": 10}, "task_memory=10"),
    ({"products": []}, "choose from"),
])
def test_scmap_parameters_outside_their_range(cube, kwargs, message):
    with pytest.raises(ParameterError, match=message):
        scmap.composite(cube, 0.1, **kwargs)


def test_mask_parameters_outside_their_range(cube):
    with pytest.raises(ParameterError, match="buffer_m"):
        scmap.masks.valid(cube, buffer_m=-1)
    with pytest.raises(ParameterError, match="max_sun_zenith"):
        scmap.masks.valid(cube, max_sun_zenith=-5)


def test_composite_size_guard(cube):
    with pytest.raises(TooLargeError, match="max_pixels") as info:
        scmap.composite(cube, 0.1, max_pixels=1000)
    assert "pixel observations" in str(info.value)


def test_worldcover_shifted_by_one_km(cube, sample):
    geobox = cube.odc.geobox
    worldcover = sample.truth_on("worldcover", geobox)
    shifted = worldcover.assign_coords(x=worldcover.x + 1000.0)
    with pytest.raises(ParameterError, match=r"shifted by 1 km \(1 km east") as info:
        scmap.composite(cube, 0.1, worldcover=shifted)
    assert "same size and pixel size" in str(info.value)


# --- soil samples and covariates -----------------------------------------------------

@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"x,y,SOC\n", r"no rows \(only the columns x, y, SOC\)"),
    ("x,y,SOC\n1,2,3\n".encode("utf-16"), "UTF-8"),
    (b"x,y,SOC\n1,2,3\n4,5,6,7,8\n", "well-formed CSV"),
])
def test_sample_files_that_cannot_be_read(tmp_path, content, message):
    path = tmp_path / "samples.csv"
    path.write_bytes(content)
    with pytest.raises(SampleError, match=message):
        models.train(path, "SOC", features=["x"], folds=2, unit="%")


def test_semicolon_separated_csv_is_read_as_such(tmp_path, shared_data):
    table = pd.read_csv(shared_data / "soil/meuse/meuse.csv")
    path = tmp_path / "meuse.csv"
    table.to_csv(path, sep=";", index=False)
    m = models.train(path, "zinc", features=["dist", "elev"], folds=3, n_estimators=10,
                     crs="EPSG:28992")
    assert m.card["n_samples"] == len(table)


def test_target_without_values_and_duplicated_columns(shared_data):
    table = pd.read_csv(shared_data / "soil/meuse/meuse.csv")
    with pytest.raises(SampleError, match="target column 'zinc' has no values"):
        models.train(table.assign(zinc=np.nan), "zinc", features=["dist"], folds=3)
    dup = pd.concat([table, table[["dist"]]], axis=1)
    with pytest.raises(SampleError, match=r"duplicated column names \(dist\)"):
        models.train(dup, "zinc", features=["dist"], folds=3)


@pytest.fixture(scope="module")
def meuse_grid(shared_data):
    g = pd.read_csv(shared_data / "soil/meuse/meuse.grid.csv")
    ds = g.set_index(["y", "x"])[["dist", "ffreq"]].to_xarray()
    return ds.sortby("y", ascending=False).rio.write_crs("EPSG:28992")


def test_samples_without_coordinates_on_a_grid(shared_data, meuse_grid):
    table = pd.read_csv(shared_data / "soil/meuse/meuse.csv")
    table.loc[[3, 7], "x"] = np.nan
    with pytest.raises(SampleError, match="2 of 155 samples have no coordinates"):
        models.train(table, "zinc", covariates=meuse_grid, folds=3, crs="EPSG:28992")


def test_prediction_size_and_chunks_checked(shared_data, meuse_grid):
    table = pd.read_csv(shared_data / "soil/meuse/meuse.csv")
    m = models.train(table, "zinc", covariates=meuse_grid, features=["dist", "ffreq"],
                     folds=3, crs="EPSG:28992", missing="drop", n_estimators=10)
    with pytest.raises(ParameterError, match="chunks"):
        m.predict(meuse_grid, chunks=0)
    with pytest.raises(TooLargeError, match="max_pixels"):
        m.predict(meuse_grid, max_pixels=100)


# --- cluster arguments (checked before any cluster starts) ---------------------------

@pytest.mark.parametrize(("kwargs", "message"), [
    ({"workers": 0}, "workers=0"),
    ({"workers": -2}, "workers=-2"),
    ({"workers": 1.5}, "workers=1.5"),
    ({"threads_per_worker": 0}, "threads_per_worker=0"),
    ({"adaptive": (4, 1)}, "minimum is above"),
    ({"adaptive": 3}, "adaptive=3"),
    ({"worker_memory": "lots"}, "worker_memory='lots'"),
    ({"worker_memory": -1}, "worker_memory=-1"),
    ({"timeout": 0}, "timeout=0"),
    ({"target": ""}, "target=''"),
])
def test_cluster_arguments_outside_their_range(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        cluster.connect(**{"target": "local", **kwargs})


# --- the command line ----------------------------------------------------------------

def _composite_args(sample, out):
    w, s, e, n = sample.bbox
    return ["composite", "--aoi", f"{w},{s},{e},{n}", "--time", "2019",
            "--catalog", str(sample.catalog), "--out", str(out)]


def _one_line_error(capsys, message):
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(("extra", "message"), [
    (["--threshold", "5"], "outside PVIR2's range"),
    (["--threshold", "-5"], "outside PVIR2's range"),
    (["--max-pixels", "1000", "--threshold", "0.1"], "more than one call should do"),
    (["--resolution", "-20", "--threshold", "0.1"], "resolution"),
])
def test_cli_composite_refuses(sample, tmp_path, capsys, extra, message):
    out = tmp_path / "c.zarr"
    assert main([*_composite_args(sample, out), *extra]) == 2
    _one_line_error(capsys, message)
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize("value", ["0", "-5", "many", "nan"])
def test_cli_max_pixels_must_be_positive(sample, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as info:
        main([*_composite_args(sample, tmp_path / "c.zarr"), "--max-pixels", value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--max-pixels" in err and "number of pixels" in err


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"), (b"x,y,SOC\n", "no rows")])
def test_cli_train_on_an_empty_sample_file(tmp_path, capsys, content, message):
    path = tmp_path / "samples.csv"
    path.write_bytes(content)
    args = ["train", str(path), "--target", "SOC", "--unit", "%", "--features", "x",
            "--out", str(tmp_path / "model")]
    assert main(args) == 2
    _one_line_error(capsys, message)


def test_openeo_local_run_honours_the_sun_angle_data_variable(cube):
    pytest.importorskip("openeo_processes_dask")
    from cup4soil import openeo as c4o

    graph = c4o.scmap_graph(temporal_extent="2019/2020", bbox=(14.3, 52.6, 14.4, 52.7),
                            products=["VPC"], threshold=0.1, worldcover=False)
    low = cube.assign(sun_elevation=("time", _per_time(cube, 10.0)))  # zenith 80
    assert (c4o.run_local(graph, low).VPC.values == 0).all()
    high = cube.assign(sun_elevation=("time", _per_time(cube, 60.0)))
    assert c4o.run_local(graph, high).VPC.values.any()
    with pytest.raises(ParameterError, match="several sun angles"):
        c4o.run_local(graph, low.assign(sza=("time", _per_time(cube, 30.0))))
