"""Transient network failures, injected by a server on 127.0.0.1 serving the sample COGs:
HTTP 5xx, connection resets, truncated responses and delays are retried, and the product is
bit-identical to a fault-free run; a failure that does not go away ends within the asset's
retry budget in an AssetRetryError naming the asset, the status and the tries."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pystac
import pytest

import cup4soil
from cup4soil import scmap
from cup4soil.cube import readers
from cup4soil.errors import AssetReadError, AssetRetryError, ParameterError

from helpers import FaultyHTTPServer

KINDS = ["5xx", "reset", "truncate", "delay"]
ENGINES = ["odc-stac", "stackstac"]


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch):
    """GDAL waits 0.05 s before its first retry (cup4soil starts from the same wait)."""
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.05")
    monkeypatch.setenv("GDAL_HTTP_LOW_SPEED_TIME", "1")
    monkeypatch.delenv(readers.READ_RETRY_ENV, raising=False)


@pytest.fixture(scope="module")
def local_items(sample):
    items = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)
    return [it.clone() for it in list(items)[:3]]


def _served(items: list[pystac.Item], root: Path, base: str) -> list[pystac.Item]:
    """``items`` with their assets behind ``base`` (a new server: nothing in GDAL's cache)."""
    out = []
    for it in items:
        c = it.clone()
        for asset in c.assets.values():
            asset.href = f"{base}/{Path(asset.href).relative_to(root).as_posix()}"
        out.append(c)
    return out


def _equal(a, b) -> bool:
    return all(np.array_equal(a[v].values, b[v].values, equal_nan=True) for v in b.data_vars)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_transient_faults_are_retried_bit_identical(kind, engine, local_items, sample):
    # Three scenes, eleven bands: 66 requests without faults, a fifth of them faulty.
    clean = cup4soil.load_s2(local_items, engine=engine).compute()
    with FaultyHTTPServer(sample.root, faults=(kind,), rate=0.2, delay=0.2,
                          suffixes=(".tif",), seed=KINDS.index(kind)) as server:
        items = _served(local_items, sample.root, server.url)
        got = cup4soil.load_s2(items, engine=engine).compute()
        assert server.injected[kind] >= 3  # the faults did happen
    assert _equal(got, clean)


@pytest.mark.parametrize("engine", ENGINES)
def test_composite_under_faults_is_bit_identical(engine, local_items, sample):
    # odc-stac: the composite reads through the cube's read plan; stackstac: through the
    # cube's graph. Every fault kind at once.
    clean = scmap.composite(cup4soil.load_s2(local_items, engine=engine), 0.1,
                            products=["SRC", "VPC", "BSC", "MASK"]).compute()
    with FaultyHTTPServer(sample.root, faults=tuple(KINDS), rate=0.1, delay=0.2,
                          suffixes=(".tif",), seed=11) as server:
        cube = cup4soil.load_s2(_served(local_items, sample.root, server.url), engine=engine)
        got = scmap.composite(cube, 0.1, products=["SRC", "VPC", "BSC", "MASK"]).compute()
        assert sum(server.injected.values()) >= 4
    assert _equal(got, clean)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("kind", "status"), [
    ("5xx", "HTTP 50"), ("reset", "connection reset"), ("truncate", "truncated"),
    ("delay", "timed out")])
def test_lasting_faults_end_in_asset_retry_error(kind, status, engine, local_items, sample,
                                                 monkeypatch):
    monkeypatch.setenv(readers.READ_RETRY_ENV, "2")
    # GDAL's own retries off: with them (0.5 + 1 + 2 s of back-off) one try alone would
    # outlast the 2 s budget. The readers pass the variable on explicitly, so a GDAL option
    # left over from an earlier test cannot hide it (see the test at the end).
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    with FaultyHTTPServer(sample.root, faults=(kind,), rate=1.0, delay=3.0,
                          suffixes=(".tif",)) as server:
        items = _served(local_items[:1], sample.root, server.url)
        for it in items:  # a signing token must not show
            it.assets["B02"].href += "?se=2099&sig=FAULTSECRET"
        with pytest.raises(AssetRetryError) as info:
            cup4soil.load_s2(items, bands=["B02"], engine=engine).compute()
        requests = sum(server.requests.values())
    err = info.value
    text = str(err)
    assert status in text and "B02.tif" in text and "FAULTSECRET" not in text
    assert err.tries >= 2 and f"{err.tries} tries" in text
    assert "CUP4SOIL_READ_RETRY_SECONDS" in text
    # Bounded: a few tries, each of at most two requests (open, read) that GDAL tries at
    # most 1 + GDAL_HTTP_MAX_RETRY (3) times: not the thousands of an unbounded run.
    assert requests <= 2 * 4 * err.tries + 4
    assert isinstance(err, AssetReadError)  # what callers catch today still catches it


def test_retry_error_pickles_as_itself():
    err = AssetRetryError("https://host/B02.tif?sig=SECRET", "HTTP 503", 7, 61.0)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is AssetRetryError and str(back) == str(err)
    assert back.tries == 7 and back.status == "HTTP 503" and "SECRET" not in str(back)


def test_local_file_errors_are_not_retried(local_items, tmp_path):
    broken = local_items[0].clone()
    broken.assets["B02"].href = str(tmp_path / "gone" / "B02.tif")
    calls = []

    def attempt():
        calls.append(1)
        raise OSError("No such file or directory")

    with pytest.raises(OSError):
        readers.with_retries(broken.assets["B02"].href, attempt)
    assert len(calls) == 1
    with pytest.raises(AssetReadError) as info:
        cup4soil.load_s2([broken], bands=["B02"]).compute()
    assert not isinstance(info.value, AssetRetryError)


def test_missing_remote_file_is_not_retried(local_items, sample, monkeypatch):
    monkeypatch.setenv(readers.READ_RETRY_ENV, "30")
    with FaultyHTTPServer(sample.root) as server:
        item = _served(local_items[:1], sample.root, server.url)[0]
        item.assets["B02"].href = f"{server.url}/nowhere/B02.tif"
        with pytest.raises(AssetReadError) as info:
            cup4soil.load_s2([item], bands=["B02"]).compute()
        assert server.requests["/nowhere/B02.tif"] <= 2  # a 404 is an answer, not a fault
    assert not isinstance(info.value, AssetRetryError) and "404" in str(info.value)


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_retry_budget_must_be_seconds(value, monkeypatch):
    monkeypatch.setenv(readers.READ_RETRY_ENV, value)
    with pytest.raises(ParameterError, match="CUP4SOIL_READ_RETRY_SECONDS"):
        readers.read_retry_seconds()


def test_gdal_retry_settings_bounded_unless_the_user_set_them(monkeypatch):
    for k in readers.GDAL_READ_DEFAULTS:
        monkeypatch.delenv(k, raising=False)
    env = readers.SafeRioDriver().capture_env()
    # odc-loader alone: 10 retries from 0.5 s (gaps up to 13 minutes), no time-out
    assert env["GDAL_HTTP_MAX_RETRY"] == "3" and env["GDAL_HTTP_LOW_SPEED_TIME"] == "30"
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "9")  # the user's choice, passed on as set
    assert readers.SafeRioDriver().capture_env()["GDAL_HTTP_MAX_RETRY"] == "9"
    assert readers.gdal_read_options()["GDAL_HTTP_MAX_RETRY"] == "9"
    import rasterio

    with rasterio.Env(GDAL_HTTP_RETRY_DELAY="2"):
        assert readers.SafeRioDriver().capture_env()["GDAL_HTTP_RETRY_DELAY"] == "2"


@pytest.mark.parametrize("engine", ENGINES)
def test_environment_wins_over_a_leftover_gdal_option(engine, local_items, sample,
                                                      monkeypatch):
    # Leaving its outermost Env, rasterio makes every option it found set a process-wide
    # GDAL option; one left from an earlier read must not hide the environment's time-out.
    from rasterio.env import set_gdal_config

    monkeypatch.setenv(readers.READ_RETRY_ENV, "0")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    set_gdal_config("GDAL_HTTP_LOW_SPEED_TIME", "30")
    try:
        with FaultyHTTPServer(sample.root, faults=("delay",), rate=1.0, delay=3.0,
                              suffixes=(".tif",)) as server:
            items = _served(local_items[:1], sample.root, server.url)
            with pytest.raises(AssetRetryError, match="timed out"):
                cup4soil.load_s2(items, bands=["B02"], engine=engine).compute()
    finally:
        set_gdal_config("GDAL_HTTP_LOW_SPEED_TIME", None)
