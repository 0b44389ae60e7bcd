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

from cup4soil.sample import SampleCatalog, make_catalog

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
