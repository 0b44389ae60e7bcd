"""``cup4soil openeo export | run-local | submit`` end to end, offline: a sample archive for
the local run, the client's DummyBackend for the submission."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cup4soil
from cup4soil import scmap, store
from cup4soil.cli import main
from cup4soil.sample import make_catalog

pytest.importorskip("openeo_processes_dask")
pytest.importorskip("requests_mock")

from openeo.rest._testing import DummyBackend

from openeo_cubes import as_openeo_result, assert_equivalent, netcdf_bytes

URL = "https://openeo.test"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_catalog(tmp_path_factory.mktemp("openeo-cli"), size=48, years=(2021, 2021),
                        scenes_per_year=6, seed=5)


@pytest.fixture(scope="module")
def exported(small, tmp_path_factory):
    w, s, e, n = small.bbox
    path = tmp_path_factory.mktemp("graph") / "scmap.json"
    assert main(["openeo", "export", "--aoi", f"{w},{s},{e},{n}", "--time", "2021",
                 "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def native(small, exported, shared_data):
    """What the graph computes, natively on the cube run-local builds."""
    from cup4soil.openeo.graph import graph_inputs

    inputs = graph_inputs(json.loads(exported.read_text())["process_graph"])
    items = cup4soil.search(inputs.bbox, inputs.time, catalog=small.catalog)
    cube = cup4soil.load_s2(items, bbox=inputs.bbox, resolution=20).compute()
    wc = small.truth_on("worldcover", cube.odc.geobox)
    thr = shared_data / "scmap/th_S2_s2cr_buffered_cog.tif"
    return scmap.composite(cube, str(thr), worldcover=wc).compute(), wc


def test_export(exported, capsys):
    graph = json.loads(exported.read_text())
    assert {n["arguments"].get("id") for n in graph["process_graph"].values()
            if n["process_id"] == "load_collection"} == {"SENTINEL2_L2A",
                                                         "ESA_WORLDCOVER_10M_2021_V2"}
    before = exported.read_text()
    assert main(["openeo", "export", "--aoi", "oderbruch", "--time", "2020",
                 "--out", str(exported)]) == 2
    assert "--overwrite" in capsys.readouterr().err and exported.read_text() == before


def test_run_local_equals_native(small, exported, native, shared_data, tmp_path, capsys):
    ref, wc = native
    wc_tif = tmp_path / "worldcover.tif"
    wc.rio.to_raster(wc_tif)
    out = tmp_path / "local.zarr"
    base = ["openeo", "run-local", str(exported), "--catalog", str(small.catalog),
            "--threshold", str(shared_data / "scmap/th_S2_s2cr_buffered_cog.tif")]
    assert main([*base, "--out", str(out)]) == 2  # the graph loads WorldCover
    assert "--worldcover" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--worldcover", str(wc_tif), "--out", str(out)]) == 0
    ds = store.open(str(out)).compute()
    assert_equivalent(ds, ref)
    assert set(np.unique(ref.MASK.values)) >= {1, 3}


def test_submit_writes_the_result(exported, native, tmp_path, requests_mock):
    ref, _ = native
    dummy = DummyBackend.at_url(URL, requests_mock=requests_mock)
    dummy.setup_file_format("netCDF")
    dummy.next_result = netcdf_bytes(as_openeo_result(ref), tmp_path)
    out, kept = tmp_path / "cdse.zarr", tmp_path / "cdse.nc"
    assert main(["openeo", "submit", str(exported), "--backend", URL, "--no-auth",
                 "--out", str(out), "--keep-result", str(kept), "--zarr-format", "2"]) == 0
    graph = json.loads(exported.read_text())["process_graph"]
    assert len(dummy.get_sync_pg()) == len(graph) + 1  # and save_result
    assert kept.is_file()
    assert_equivalent(store.open(str(out)).compute(), ref)
