"""Signed URLs are renewed at read time, before their token expires (Planetary Computer).

A loopback server plays the Planetary Computer token service (``PC_SDK_SAS_URL``); the
real planetary-computer client talks to it over HTTP.
"""

from __future__ import annotations

import http.server
import json
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

import cup4soil
from cup4soil.errors import AssetReadError
from cup4soil.sources import signing as _signing

BLOB = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/33/U/VU/B04.tif"


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _signed(href: str, expires_in: timedelta, sig: str = "OLDSECRET") -> str:
    return f"{href}?st=2026-01-01T00%3A00%3A00Z&se={_stamp(datetime.now(UTC) + expires_in)}" \
           f"&sp=rl&sig={sig}"


@pytest.fixture
def token_service(monkeypatch):
    """A token service on 127.0.0.1; ``state['ttl']`` sets the lifetime it hands out."""
    from planetary_computer.sas import TOKEN_CACHE
    from planetary_computer.settings import Settings

    state = {"requests": [], "ttl": timedelta(hours=1)}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            state["requests"].append(self.path)
            expiry = datetime.now(UTC) + state["ttl"]
            body = json.dumps({"msft:expiry": _stamp(expiry), "token":
                               f"se={_stamp(expiry)}&sp=rl&sig=NEW{len(state['requests'])}"})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PC_SDK_SAS_URL", f"http://127.0.0.1:{server.server_port}/token")
    Settings.get.cache_clear()
    TOKEN_CACHE.clear()
    yield state
    server.shutdown()
    server.server_close()
    Settings.get.cache_clear()
    TOKEN_CACHE.clear()


def test_token_far_from_expiry_is_kept(token_service):
    href = _signed(BLOB, timedelta(hours=2))
    assert _signing.fresh_href(href) == href
    assert token_service["requests"] == []


def test_token_near_expiry_is_renewed_once_per_container(token_service):
    href = _signed(BLOB, timedelta(minutes=5))
    new = _signing.fresh_href(href)
    assert new.startswith(BLOB + "?") and "sig=NEW1" in new and "OLDSECRET" not in new
    assert token_service["requests"] == ["/token/sentinel2l2a01/sentinel2-l2"]
    assert _signing.expiry(new) > datetime.now(UTC) + timedelta(minutes=50)
    # Another asset of the container: the new token is cached, no second request.
    other = _signing.fresh_href(_signed(BLOB.replace("B04", "B08"), timedelta(minutes=-1)))
    assert "sig=NEW1" in other and len(token_service["requests"]) == 1


def test_cached_token_near_expiry_is_not_reused(token_service):
    token_service["ttl"] = timedelta(minutes=3)  # the service hands out short tokens
    short = _signing.fresh_href(_signed(BLOB, timedelta(minutes=1)))
    assert "sig=NEW2" in short  # asked twice; the short token is the best there is
    token_service["ttl"] = timedelta(hours=1)
    # planetary-computer would reuse its cached 3-minute token; cup4soil asks again.
    new = _signing.fresh_href(_signed(BLOB, timedelta(minutes=1)))
    assert "sig=NEW3" in new and len(token_service["requests"]) == 3
    assert _signing.expiry(new) > datetime.now(UTC) + timedelta(minutes=50)


def test_unsigned_and_non_azure_urls_are_untouched(token_service):
    for href in (BLOB, "s3://bucket/key.tif", "/data/B04.tif",
                 "https://example.org/B04.tif?se=2000-01-01T00%3A00%3A00Z&sig=x"):
        assert _signing.fresh_href(href) == href
    assert token_service["requests"] == []


def test_unreachable_token_service_is_a_clear_error_without_the_token(monkeypatch):
    from planetary_computer.sas import TOKEN_CACHE
    from planetary_computer.settings import Settings

    monkeypatch.setenv("PC_SDK_SAS_URL", "http://127.0.0.1:9/token")  # discard port: closed
    Settings.get.cache_clear()
    TOKEN_CACHE.clear()
    try:
        with pytest.raises(AssetReadError, match="could not be obtained") as info:
            _signing.fresh_href(_signed(BLOB, timedelta(minutes=-5)))
    finally:
        Settings.get.cache_clear()
    text = str(info.value)
    assert "OLDSECRET" not in text and "sig=" not in text and "PC_SDK_SAS_URL" in text


@pytest.mark.parametrize("engine", ["odc-stac", "stackstac"])
def test_readers_renew_urls_at_compute_time_not_at_build(sample, monkeypatch, engine):
    """Items signed long ago: every asset open goes through the renewal, on the worker."""
    items = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)[:3]
    local = {}
    signed_items = []
    for it in items:
        it = it.clone()
        for key, asset in it.assets.items():
            fake = f"https://acct.blob.core.windows.net/c/{it.id}/{key}.tif"
            local[fake] = asset.get_absolute_href()
            asset.href = _signed(fake, timedelta(minutes=-30))
        signed_items.append(it)
    calls = []

    def renew(href, *, margin_s=None):
        base = href.split("?")[0]
        if base not in local:
            return href
        calls.append(href)
        return local[base]  # "renewed": here, the readable local copy

    monkeypatch.setattr(_signing, "fresh_href", renew)
    cube = cup4soil.load_s2(signed_items, bands=["B04", "SCL"], engine=engine)
    assert calls == []  # building reads and signs nothing
    expected = cup4soil.load_s2(items, bands=["B04", "SCL"], engine=engine).compute()
    got = cube.compute()
    assert len(calls) >= 2 * len(items)
    for band in ("B04", "SCL"):
        np.testing.assert_array_equal(got[band].values, expected[band].values)
