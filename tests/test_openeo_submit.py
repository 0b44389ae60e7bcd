"""Submission to an openEO back-end, against the client's own ``DummyBackend`` (requests_mock:
no network): the graph sent is the graph built, results come back and open in
``scmap.composite``'s layout; failures are cup4soil errors without secrets."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from cup4soil import scmap
from cup4soil.errors import (
    BackendError,
    OptionalDependencyError,
    ParameterError,
    ProcessGraphError,
)

pytest.importorskip("openeo")
pytest.importorskip("requests_mock")

from openeo.rest._testing import DummyBackend

from cup4soil import openeo as c4o

from openeo_cubes import as_openeo_result, assert_equivalent, netcdf_bytes, random_cube

URL = "https://openeo.test"


@pytest.fixture(scope="module")
def native():
    cube, thr, wc = random_cube(9101, size=12, n_time=8)
    return scmap.composite(cube, thr, worldcover=wc).compute()


@pytest.fixture(scope="module")
def graph():
    return c4o.scmap_graph(temporal_extent="2020/2022", bbox=(14.3, 52.6, 14.4, 52.7))


@pytest.fixture
def dummy(requests_mock):
    backend = DummyBackend.at_url(URL, requests_mock=requests_mock)
    backend.setup_file_format("netCDF")
    backend.setup_file_format("GTiff")
    return backend


def gtiff_bytes(ds: xr.Dataset, tmp_path) -> bytes:
    names = list(ds.data_vars)
    da = xr.concat([ds[n] for n in names], dim="band")
    da = da.assign_coords(band=np.arange(1, 1 + len(names)))
    da = da.rio.write_crs(ds.rio.crs)
    da.attrs["long_name"] = tuple(names)
    path = tmp_path / "made.tif"
    da.rio.to_raster(path)
    return path.read_bytes()


def sent(pg: dict) -> dict:
    """The graph a back-end received without the save_result the client appends."""
    pg = {k: dict(v) for k, v in pg.items()}
    save = [k for k, v in pg.items() if v["process_id"] == "save_result"]
    assert len(save) == 1 and pg[save[0]].get("result")
    data = pg.pop(save[0])["arguments"]["data"]["from_node"]
    pg[data]["result"] = True
    return pg


def test_sync_sends_the_graph_built_and_opens_the_result(dummy, graph, native, tmp_path):
    dummy.next_result = netcdf_bytes(as_openeo_result(native), tmp_path)
    ds = c4o.submit(graph, dummy.connection, job="sync", auth=None)
    assert sent(dummy.get_sync_pg()) == graph["process_graph"]
    save = dummy.get_pg("save_result")
    assert save["arguments"]["format"] == "netCDF"
    assert list(ds.data_vars) == list(native.data_vars)
    assert_equivalent(ds, native)
    assert not list(tmp_path.glob("cup4soil-openeo-*"))  # temporary result removed


def test_batch_job_keeps_the_result_file(dummy, graph, native, tmp_path, capsys):
    dummy.setup_simple_job_status_flow(queued=1, running=1)
    dummy.next_result = netcdf_bytes(as_openeo_result(native), tmp_path)
    out = tmp_path / "results" / "scmap.nc"
    lines: list[str] = []
    ds = c4o.submit(graph, URL, job="batch", auth=None, out=out, title="oderbruch",
                    progress=lines.append, job_options={"executor-memory": "4G"})
    assert sent(dummy.get_batch_pg()) == graph["process_graph"]
    posted = dummy.get_batch_post_data()
    assert posted["title"] == "oderbruch" and posted["job_options"] == {"executor-memory": "4G"}
    assert any("finished" in line for line in lines) and any("running" in line for line in lines)
    assert out.is_file() and not out.with_name("scmap.nc.part").exists()
    assert_equivalent(ds, native)
    assert_equivalent(c4o.open_result(out), native)


def test_gtiff_results_are_named_by_their_band_descriptions(dummy, graph, native, tmp_path):
    dummy.next_result = gtiff_bytes(as_openeo_result(native, dlr_names=True), tmp_path)
    ds = c4o.submit(graph, dummy.connection, format="GTiff", auth=None)
    assert dummy.get_pg("save_result")["arguments"]["format"] == "GTiff"
    assert_equivalent(ds, native)  # DLR's SRC-STD_* labels read as SRC_STD


def test_dlr_udp_parameters_are_bound_by_value(dummy, shared_data, native, tmp_path):
    udp = shared_data / "scmap/scmap_composite.udp.json"
    with pytest.raises(ProcessGraphError, match="not parameters of the process"):
        c4o.submit(udp, dummy.connection, auth=None, parameters={"bbox": [1, 2, 3, 4]})
    with pytest.raises(ProcessGraphError, match="temporal_extent"):
        c4o.submit(udp, dummy.connection, auth=None)  # it has no default
    assert dummy.sync_requests == []
    dummy.next_result = netcdf_bytes(as_openeo_result(native), tmp_path)
    box = {"west": 14.3, "south": 52.6, "east": 14.4, "north": 52.7, "crs": 4326}
    c4o.submit(udp, dummy.connection, auth=None, parameters={
        "bounding_box": box, "temporal_extent": ["2020-01-01", "2023-01-01"],
        "nmad_sigma": 3.5})
    pg = dummy.get_sync_pg()
    s2 = [n["arguments"] for n in pg.values() if n["process_id"] == "load_collection"
          and n["arguments"]["id"] == "SENTINEL2_L2A"]
    assert s2[0]["spatial_extent"] == box
    assert s2[0]["temporal_extent"] == ["2020-01-01", "2023-01-01"]
    # Inside callbacks too (the cloud-cover filter, the NMAD limit): no reference is left.
    assert "'from_parameter': 'nmad_sigma'" not in str(pg) and "3.5" in str(pg)
    assert "'from_parameter': 'max_cloud_cover'" not in str(pg)


def test_authentication_is_the_clients_oidc(dummy, graph, native, tmp_path, monkeypatch):
    import openeo

    calls = []
    monkeypatch.setattr(openeo.Connection, "authenticate_oidc",
                        lambda self, **kw: calls.append(kw) or self)
    dummy.next_result = netcdf_bytes(as_openeo_result(native), tmp_path)
    c4o.submit(graph, dummy.connection, auth="oidc", auth_options={"provider_id": "egi"})
    assert calls == [{"provider_id": "egi"}]
    with pytest.raises(ParameterError, match="auth='token'"):
        c4o.submit(graph, dummy.connection, auth="token")


def test_an_existing_file_is_never_overwritten(dummy, graph, tmp_path):
    out = tmp_path / "mine.nc"
    out.write_bytes(b"field notes")
    with pytest.raises(ParameterError, match="does not overwrite"):
        c4o.submit(graph, dummy.connection, auth=None, out=out)
    assert out.read_bytes() == b"field notes" and dummy.sync_requests == []


def test_a_failed_job_is_a_backend_error(dummy, graph, tmp_path):
    dummy.job_status_updater = lambda job_id, current_status: "error"
    out = tmp_path / "x.nc"
    with pytest.raises(BackendError, match="logs"):
        c4o.submit(graph, dummy.connection, job="batch", auth=None, out=out, progress=None)
    assert not out.exists() and not out.with_name("x.nc.part").exists()


def test_a_refused_request_is_redacted(requests_mock, dummy, graph):
    requests_mock.post(f"{URL}/result", status_code=500, json={
        "code": "Internal", "message": "failed reading https://bucket.example/x.tif?"
                                       "X-Amz-Signature=deadbeef1234 for you"})
    with pytest.raises(BackendError) as info:
        c4o.submit(graph, dummy.connection, auth=None)
    assert "deadbeef1234" not in str(info.value) and "failed reading" in str(info.value)


def test_what_is_not_a_raster_is_refused(dummy, graph, native, tmp_path):
    # DummyBackend's default answer: a JSON document instead of data.
    with pytest.raises(BackendError, match="neither netCDF nor GeoTIFF"):
        c4o.submit(graph, dummy.connection, auth=None)
    ds = as_openeo_result(native).drop_vars(["SRC_B05"])
    dummy.next_result = netcdf_bytes(ds, tmp_path)
    with pytest.raises(BackendError, match="missing B05"):
        c4o.submit(graph, dummy.connection, auth=None)


def test_submit_refuses_what_it_cannot_send(graph):
    with pytest.raises(ParameterError, match="job='later'"):
        c4o.submit(graph, URL, job="later")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="backend="):
        c4o.submit(graph, "openeo.test", auth=None)
    with pytest.raises(ParameterError, match="format="):
        c4o.submit(graph, URL, format="JSON")


def test_the_openeo_extra_is_optional():
    """``import cup4soil`` works without the openeo packages; a call names the extra."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('openeo', 'openeo_processes_dask',\n"
        "                                  'openeo_pg_parser_networkx'):\n"
        "            raise ImportError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import cup4soil, cup4soil.openeo, cup4soil.cli\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'openeo'], 'imported'\n"
        "from cup4soil.errors import OptionalDependencyError\n"
        "try:\n"
        "    cup4soil.openeo.scmap_graph(temporal_extent='2020', bbox='oderbruch')\n"
        "except OptionalDependencyError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert 'pip install "cup4soil[openeo]"' in out.stdout
    assert "openeo.scmap_graph" in out.stdout
    import pickle

    err = OptionalDependencyError("openeo", "openeo.submit", "openeo")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and isinstance(again, ImportError)
