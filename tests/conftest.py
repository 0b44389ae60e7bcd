"""Shared fixtures: paths to the real data in ../shared/data, a small sample archive,
and a loopback HTTP server. No test reaches beyond 127.0.0.1 (see pyproject's addopts)."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from cup4soil.sample import SampleCatalog, make_catalog

from helpers import free_port

# Hypothesis profiles: "dev" (default, fast) and "ci" (more examples, derandomised, so a CI
# run is reproducible); chosen by $HYPOTHESIS_PROFILE (.ci/run sets "ci").
settings.register_profile("dev", max_examples=30, deadline=None)
settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CUP4SOIL_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(
            f"real test data not found at {SHARED_DATA}; clone the project next to shared/ "
            "or set CUP4SOIL_SHARED_DATA"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleCatalog:
    """A small sample archive: 80 x 80 px at 10 m, 2018-2022, 8 scenes a year."""
    return make_catalog(tmp_path_factory.mktemp("sample"), size=80, scenes_per_year=8, seed=3)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def serve_dir() -> Iterator[callable]:
    """Serve folders over HTTP on 127.0.0.1; returns a function folder -> base URL."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# --- a real S3 endpoint on 127.0.0.1 (moto's server mode) ------------------------------

S3_KEY, S3_SECRET = "AKIACUP4SOILTESTKEY", "cup4soil-test-secret-do-not-log"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> tuple[str, dict]:
    """A fresh bucket; returns (``s3://bucket``, storage_options for s3fs)."""
    import re

    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:50].strip("-")
    name = f"t-{name}-{free_port()}"[:63]
    boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=S3_KEY,
                 aws_secret_access_key=S3_SECRET, region_name="us-east-1").create_bucket(
        Bucket=name)
    options = {"key": S3_KEY, "secret": S3_SECRET, "endpoint_url": s3_endpoint,
               "client_kwargs": {"region_name": "us-east-1"}}
    return f"s3://{name}", options


@pytest.fixture(params=["local", "s3"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict | None]:
    """(base URL, storage_options): a local folder, or a fresh bucket on moto's S3."""
    if request.param == "local":
        return str(tmp_path), None
    return request.getfixturevalue("s3_bucket")
