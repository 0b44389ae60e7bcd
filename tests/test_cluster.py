"""Clusters: a local distributed cluster and a real Dask-Gateway server on 127.0.0.1."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

import cup4soil
from cup4soil import cluster, scmap
from cup4soil.errors import ClusterError, ParameterError
from cup4soil.runtime import progress
from cup4soil.runtime.env import Environment

from helpers import CallCounter, free_port

GATEWAY_PASSWORD = "cup4soil-gateway-test"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """dask-gateway-server with the unsafe local backend, simple auth, one proxy port."""
    tmp = tmp_path_factory.mktemp("gateway")
    api, proxy = free_port(), free_port()
    bindir = Path(sys.executable).parent
    config = tmp / "config.py"
    config.write_text(f"""
c.DaskGateway.address = "127.0.0.1:{api}"
c.Proxy.address = "127.0.0.1:{proxy}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = "{GATEWAY_PASSWORD}"
c.LocalBackend.clusters_directory = "{tmp / 'clusters'}"
c.ClusterConfig.scheduler_cmd = ["{bindir / 'dask'}", "scheduler"]
c.ClusterConfig.worker_cmd = ["{bindir / 'dask'}", "worker"]
c.ClusterConfig.worker_cores = 1
c.ClusterConfig.worker_memory = "1 G"
c.ClusterConfig.idle_timeout = 600
""")
    env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}"}
    log = tmp / "gateway.log"  # a file, not a pipe: nobody reads it while tests run
    with log.open("wb") as out:
        proc = subprocess.Popen([str(bindir / "dask-gateway-server"), "-f", str(config)],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    import urllib.request

    url = f"http://127.0.0.1:{proxy}"  # the public address: API and schedulers alike
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=1):
                break
        except Exception:
            if proc.poll() is not None:
                pytest.fail(log.read_text()[-3000:])
            time.sleep(0.1)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)  # the server and the clusters it started
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _basic(password: str = GATEWAY_PASSWORD):
    from dask_gateway import BasicAuth

    return BasicAuth(username="cup4soil", password=password)


@pytest.fixture(scope="module")
def pipeline(sample, shared_data):
    """The demo's SCMaP composite of the sample archive (lazy) and its local result."""
    items = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)
    cube = cup4soil.load_s2(items, chunks={"x": 32, "y": 32})
    wc = sample.truth_on("worldcover", cube.odc.geobox)
    comp = scmap.composite(cube, str(shared_data / "scmap/th_S2_s2cr_buffered_cog.tif"),
                           worldcover=wc, products=("SRC", "BSC", "VPC", "MASK"))
    with dask.config.set(scheduler="threads"):
        ref = comp.compute()
    return comp, ref


def _equal(a, b) -> None:
    for v in b.data_vars:
        np.testing.assert_array_equal(a[v].values, b[v].values)


@pytest.mark.slow
def test_gateway_runs_the_pipeline(gateway, pipeline, tmp_path):
    comp, ref = pipeline
    client = cluster.connect(gateway, workers=2, auth=_basic(),
                             environment={"CUP4SOIL_TEST_MARK": "gateway"})
    try:
        assert len(client.scheduler_info()["workers"]) == 2
        env = client.run(lambda: (os.environ.get("GDAL_DISABLE_READDIR_ON_OPEN"),
                                  os.environ.get("CUP4SOIL_TEST_MARK")))
        assert set(env.values()) == {("EMPTY_DIR", "gateway")}
        _equal(comp.compute(), ref)
        # a product written through the gateway's workers
        from cup4soil import store

        info = store.write(comp, str(tmp_path / "gw.zarr"), chunks=32)
        assert info.computed == info.regions
        _equal(store.open(str(tmp_path / "gw.zarr")), ref)
    finally:
        cluster.close(client)


@pytest.mark.slow
def test_gateway_refuses_wrong_credentials(gateway):
    with pytest.raises(ClusterError, match="refused the credentials"):
        cluster.connect(gateway, workers=1, auth=_basic("wrong"))


def test_unreachable_gateway(monkeypatch):
    import gc

    unraisable: list = []  # e.g. an exception in a __del__ of the gateway client
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(ClusterError, match="cannot reach the Dask-Gateway"):
        cluster.connect(f"http://127.0.0.1:{free_port()}", workers=1, auth=_basic())
    gc.collect()
    assert not unraisable, unraisable[0].exc_value


@pytest.mark.slow
def test_gateway_client_is_not_closed_again_at_exit(gateway):
    """After ``cluster.close``, the Dask-Gateway cluster's own gateway client must not be
    closed again by its ``__del__``, which runs at interpreter exit once the event loop has
    stopped and used to print "Exception ignored in Gateway.__del__" with a traceback
    after every test run."""
    client = cluster.connect(gateway, workers=1, auth=_basic())
    gateway_cluster = client.cluster
    cluster.close(client)
    gateway_cluster.gateway.__del__()  # what the interpreter does at exit: no error


@pytest.mark.slow
def test_unknown_cluster_option(gateway):
    with pytest.raises(ParameterError, match="not offered"):
        cluster.connect(gateway, workers=1, auth=_basic(), options={"gpus": 1})


@pytest.mark.slow
def test_local_cluster_environment_reaches_late_workers(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    client = cluster.connect("local", workers=1, threads_per_worker=1,
                             environment={"CUP4SOIL_TEST_MARK": "local"})
    try:
        client.cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
        env = client.run(lambda: (os.environ.get("AWS_REGION"),
                                  os.environ.get("CUP4SOIL_TEST_MARK"),
                                  os.environ.get("GDAL_HTTP_MAX_RETRY")))
        assert len(env) == 2 and set(env.values()) == {
            ("eu-central-1", "local", cluster.DEFAULT_WORKER_ENV["GDAL_HTTP_MAX_RETRY"])}
        # captured on the client, restored by a task on a worker (thread-locally)
        captured = Environment.capture({"GDAL_HTTP_MAX_RETRY": "7"})
        assert client.submit(_gdal_option, captured, "GDAL_HTTP_MAX_RETRY").result() == "7"
        # the same scheduler by address
        other = cluster.connect(client.scheduler.address)
        assert other.scheduler_info()["id"] == client.scheduler_info()["id"]
        other.close()
    finally:
        cluster.close(client)


@pytest.mark.slow
def test_workers_missing_a_package(monkeypatch):
    monkeypatch.setattr(cluster, "_REQUIRED", ("cup4soil", "cup4soil_not_installed_pkg"))
    with pytest.raises(ClusterError, match="cannot import cup4soil_not_installed_pkg"):
        cluster.connect("local", workers=1, threads_per_worker=1)


def test_bad_target():
    with pytest.raises(ParameterError, match="target='moon'"):
        cluster.connect("moon")


@pytest.mark.slow
def test_cli_demo_on_a_local_cluster(tmp_path, capsys):
    from cup4soil import store
    from cup4soil.cli import main

    out = tmp_path / "demo"
    # The demo trains on covariate set 3 (MREF where SRC is empty), so every sample keeps its
    # covariates even at 60 px: nothing is dropped and nothing warns (warnings are errors).
    assert main(["demo", "--out", str(out), "--size", "60", "--scenes-per-year", "5",
                 "--cluster", "local"]) == 0
    text = capsys.readouterr().out
    assert "cluster: local" in text and "vs truth" in text
    assert int(store.open(str(out / "scmap.zarr")).BSC.max()) > 0


@pytest.mark.slow
def test_compute_shows_progress_locally_and_on_a_cluster(pipeline, capsys):
    comp, ref = pipeline
    (out,) = cluster.compute(comp)
    _equal(out, ref)
    assert "100% Completed" in capsys.readouterr().out  # dask's local ProgressBar
    client = cluster.connect("local", workers=1, threads_per_worker=2)
    try:
        small, vpc = cluster.compute(comp, comp.VPC)
        _equal(small, ref)
        np.testing.assert_array_equal(vpc.values, ref.VPC.values)
        assert "100% Completed" in capsys.readouterr().out  # distributed's bar
        (quiet,) = cluster.compute(comp.BSC, progress=False)
        assert "Completed" not in capsys.readouterr().out
    finally:
        cluster.close(client)
    np.testing.assert_array_equal(quiet.values, ref.BSC.values)


# --- the captured environment and compute, without a cluster ---------------------------

def _gdal_option(env: Environment, name: str) -> str | None:
    """A task reading with GDAL: its options restored for the task's duration."""
    import rasterio

    with env.restore():
        return rasterio.env.getenv().get(name)


def test_environment_is_captured_once_and_restored_per_task(monkeypatch):
    import rasterio

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-show-me")
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "17")
    env = Environment.capture({"CUP4SOIL_TEST_MARK": "x"})
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "99")  # later changes are not captured
    env = pickle.loads(pickle.dumps(env))  # travels with the graph
    assert env.as_dict()["AWS_SECRET_ACCESS_KEY"] == "do-not-show-me"
    assert env.as_dict()["CUP4SOIL_TEST_MARK"] == "x"
    assert "do-not-show-me" not in repr(env) and "AWS_SECRET_ACCESS_KEY" in repr(env)
    assert "do-not-show-me" not in repr(cluster.WorkerEnvironment(env))
    assert _gdal_option(env, "GDAL_HTTP_TIMEOUT") == "17"
    assert _gdal_option(env, "GDAL_HTTP_MAX_RETRY") == cluster.DEFAULT_WORKER_ENV[
        "GDAL_HTTP_MAX_RETRY"]
    # restoring is per task and thread-local: nothing stays behind
    assert os.environ["GDAL_HTTP_TIMEOUT"] == "99" and "CUP4SOIL_TEST_MARK" not in os.environ
    assert not rasterio.env.hasenv() or "GDAL_HTTP_TIMEOUT" not in rasterio.env.getenv()


def test_worker_plugin_exports_its_environment(monkeypatch):
    monkeypatch.setenv("CUP4SOIL_TEST_MARK", "before")  # restored after the test
    plugin = cluster.WorkerEnvironment(Environment.of({"CUP4SOIL_TEST_MARK": "plugin"}))
    plugin.setup(worker=None)
    assert os.environ["CUP4SOIL_TEST_MARK"] == "plugin"
    assert plugin.env == {"CUP4SOIL_TEST_MARK": "plugin"}
    assert cluster.WorkerEnvironment({"A": "1"}).environment == Environment.of({"A": "1"})


def test_compute_runs_shared_tasks_once_with_a_local_progress_bar(capsys):
    square = CallCounter(lambda x: x * x)
    base = da.arange(8, chunks=2).map_blocks(square, meta=np.array((), dtype=int))
    total, doubled = progress.compute(base.sum(), base * 2)
    assert total == sum(i * i for i in range(8)) and list(doubled) == [2 * i * i
                                                                       for i in range(8)]
    assert square.total == 4  # one call per block, although both results use them
    # not a terminal (captured): one line per quarter, not a bar redrawn 10 times a second
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split("%")[0] for ln in lines] == ["25", "50", "75", "100"]
    assert all("% Completed | " in ln and "\r" not in ln for ln in lines)
    (quiet,) = progress.compute(base.sum(), progress=False)
    assert quiet == total and "Completed" not in capsys.readouterr().out
    assert progress.compute() == ()
