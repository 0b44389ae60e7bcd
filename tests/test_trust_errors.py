"""Issue 12 §3: errors that survive a cluster and leak nothing.

Every cup4soil error pickles as itself (also with an unpicklable cause, also through
distributed's tblib path); secrets (query strings, URL user information, credential
headers, key ids) never reach a message or a log record at any level; dependency errors
of opening products become clear cup4soil errors.
"""

from __future__ import annotations

import inspect
import io
import logging
import os
import pickle
import sys
import threading

import numpy as np
import pytest

import cup4soil
from cup4soil import errors, quicklook, store
from cup4soil.errors import (
    AssetReadError,
    BandError,
    Cup4SoilError,
    NotAProductError,
    ParameterError,
    StoreError,
)

from _store_writer import product

SECRET = "SECRETSIG"
PASSWORD = "passw0rd-not-for-logs"


class _Unpicklable(Exception):
    """Like some of rasterio's and botocore's exceptions: cannot be rebuilt from args."""

    def __init__(self, code: int, message: str, handle: object) -> None:
        super().__init__(message)
        self.handle = handle  # e.g. a lock or a C handle


def _raised_from_unpicklable(cls: type, *args: object) -> Cup4SoilError:
    try:
        try:
            raise _Unpicklable(1, f"read failed: https://x/B04.tif?sig={SECRET}",
                               handle=threading.Lock())
        except _Unpicklable as exc:
            raise cls(*args) from exc
    except Cup4SoilError as err:
        return err


def _all_error_classes() -> list[type]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass)
            if issubclass(c, Cup4SoilError)]


def _args(cls: type) -> list[object]:
    """Positional arguments for ``cls``: a signed URL first, then values of each required
    parameter's annotated type (errors with counts or durations take numbers)."""
    params = [p for p in list(inspect.signature(cls.__init__).parameters.values())[1:]
              if p.default is inspect.Parameter.empty
              and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    out: list[object] = ["https://host/a.tif?sig=" + SECRET]
    for p in params[1:]:
        kind = str(p.annotation)
        out.append(3 if kind == "int" else 2.5 if kind == "float" else "reason")
    return out


def _instance(cls: type) -> Cup4SoilError:
    return cls(*_args(cls))


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda c: c.__name__)
def test_every_error_pickles_as_itself_with_an_unpicklable_cause(cls):
    import tblib.pickling_support

    err = _raised_from_unpicklable(cls, *_args(cls))
    tblib.pickling_support.install(err)  # what distributed does before shipping an error
    data = pickle.dumps(err)
    back = pickle.loads(data)
    assert type(back) is cls and str(back) == str(err)
    assert SECRET.encode() not in data and SECRET not in str(back)
    assert "\n" not in str(back)


def test_messages_are_one_line_and_bounded():
    err = ParameterError("first line\n  second line " + "x" * 10_000)
    assert "\n" not in str(err) and str(err).startswith("first line second line")
    assert len(str(err)) <= 4000


@pytest.mark.parametrize(("text", "secret"), [
    ("http://user:" + PASSWORD + "@127.0.0.1:8000/catalog.json", PASSWORD),
    ("https://acct.blob.core.windows.net/c/B04.tif?st=2024&sig=" + SECRET, SECRET),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("{'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAABCDEFGHIJKLMNOP/20240101/"
     "us-east-1/s3/aws4_request, SignedHeaders=host, Signature=deadbeef'}", "deadbeef"),
    ("{'key': 'AKIACUP4SOILTESTKEY', 'secret': 'cup4soil-test-secret-do-not-log'}",
     "cup4soil-test-secret-do-not-log"),
    ("storage key AKIACUP4SOILTESTKEY refused", "AKIACUP4SOILTESTKEY"),
    ("password=hunter22 token=tok123", "hunter22"),
])
def test_redact(text, secret):
    out = errors.redact(text)
    assert secret not in out
    assert secret not in str(errors.CatalogError(f"cannot read {text}"))


def test_redact_keeps_what_is_not_secret():
    text = "could not write s3://bucket/p.zarr/soc/c/1/0: OSError: boom"
    assert errors.redact(text) == text


def _capture() -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    return stream, handler


def test_no_secret_in_any_log_record_of_a_run(sample, serve_dir, monkeypatch):
    """Search a catalog through a basic-auth URL, read signed hrefs with both engines
    (stackstac.timer and rasterio log them at DEBUG), fail a read: every record at DEBUG,
    formatted with its exception text, is free of the secrets."""
    monkeypatch.setenv("CPL_DEBUG", "ON")  # GDAL's debug messages through rasterio's logger
    base = serve_dir(sample.root)
    host = base.removeprefix("http://")
    stream, handler = _capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        try:
            cup4soil.search(sample.bbox, "2019-06",
                            catalog=f"http://cup4soil:{PASSWORD}@{host}/catalog.json")
        except Cup4SoilError as exc:  # whether userinfo URLs work is the search's business
            assert PASSWORD not in str(exc)
        items = cup4soil.search(sample.bbox, "2019-06", catalog=sample.catalog)
        for it in items:
            for a in it.assets.values():
                rel = os.path.relpath(a.get_absolute_href(), str(sample.root))
                a.href = f"{base}/{rel}?st=2024&se=2099&sig={SECRET}"
        for engine in ("stackstac", "odc-stac"):
            cube = cup4soil.load_s2(items, bands=["B04"], engine=engine)
            assert float(cube.B04.mean()) > 0
        broken = items[0].clone()
        broken.assets["B04"].href = f"{base}/missing.tif?sig={SECRET}"
        with pytest.raises(Cup4SoilError) as err:
            cup4soil.load_s2([broken], bands=["B04"], engine="stackstac").B04.compute()
        assert SECRET not in str(err.value)
        logging.getLogger("cup4soil.test").error("failed %s", f"http://u:{PASSWORD}@h/x",
                                                 exc_info=err.value)
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    text = stream.getvalue()
    assert "stackstac.timer" in text and "rasterio" in text  # the leaky loggers did log
    assert SECRET not in text and PASSWORD not in text


@pytest.mark.slow
def test_errors_reach_a_distributed_client_as_themselves():
    from cup4soil import cluster

    stream, handler = _capture()
    logging.getLogger("distributed").addHandler(handler)
    client = cluster.connect("local", workers=1, threads_per_worker=1)
    try:
        for cls, args in ((AssetReadError, (f"https://x/B04.tif?sig={SECRET}", "boom")),
                          (StoreError, ("s3://b/p.zarr/soc/c/0/0", "OSError: boom")),
                          (BandError, ("band B99 is missing",))):
            future = client.submit(_raised_from_unpicklable, cls, *args, pure=False)
            err = future.result()  # returned (not raised): pickled back as a value
            assert type(err) is cls
            raising = client.submit(_raise, cls, args, pure=False)
            with pytest.raises(cls) as info:
                raising.result()
            assert str(info.value) == str(err) and SECRET not in str(info.value)
    finally:
        cluster.close(client)
        logging.getLogger("distributed").removeHandler(handler)
    assert SECRET not in stream.getvalue()


def _raise(cls: type, args: tuple) -> None:
    raise _raised_from_unpicklable(cls, *args)


# --- dependency errors of opening products -------------------------------------------------

def test_open_and_info_of_a_regular_file(tmp_path):
    path = tmp_path / "scmap.zarr"
    path.write_text("not a store")
    for call in (store.open, store.info):
        with pytest.raises(NotAProductError, match="is a file, not a product folder"):
            call(str(path))


def test_open_of_a_folder_that_is_not_zarr(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"jpg")
    with pytest.raises(NotAProductError, match="not a cup4soil product") as err:
        store.open(str(tmp_path / "photos"))
    assert "resume" not in str(err.value) and "incomplete" not in str(err.value).split(
        "allow_incomplete")[0]


def test_unreachable_s3_without_credentials(monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    from helpers import free_port

    options = {"endpoint_url": f"http://127.0.0.1:{free_port()}",
               "client_kwargs": {"region_name": "us-east-1"},
               "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}
    with pytest.raises(StoreError, match=r"No credentials|cannot be reached") as err:
        store.open("s3://bucket/p.zarr", storage_options=options)
    assert "Traceback" not in str(err.value)


def test_unreachable_s3_endpoint(s3_bucket):
    from helpers import free_port

    bucket, options = s3_bucket
    dead = {**options, "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1}}
    for call in (lambda: store.open(f"{bucket}/p.zarr", storage_options=dead),
                 lambda: store.write(product(), f"{bucket}/p.zarr", storage_options=dead)):
        with pytest.raises(StoreError, match="endpoint cannot be reached") as err:
            call()
        assert options["secret"] not in str(err.value) and options["key"] not in str(err.value)


def test_a_missing_bucket_is_a_clear_error(s3_bucket):
    bucket, options = s3_bucket
    store.write(product(), f"{bucket}/p.zarr", storage_options=options)
    # moto accepts any key unless told otherwise: a bucket that does not exist instead
    with pytest.raises(Exception) as err:
        store.write(product(), "s3://no-such-bucket-cup4soil/p.zarr", storage_options=options)
    assert isinstance(err.value, Cup4SoilError), repr(err.value)
    assert options["secret"] not in str(err.value)


def test_quicklook_of_a_composite_without_a_band(tmp_path):
    import xarray as xr

    src = xr.DataArray(np.ones((2, 4, 4)), dims=("band", "y", "x"),
                       coords={"band": ["B04", "B08"]}, name="SRC")
    with pytest.raises(BandError, match=r"B11 missing .* has B04, B08"):
        quicklook.false_colour(src, tmp_path / "q.png")
    with pytest.raises(ParameterError, match="2-D"):
        quicklook.scalar_map(src, tmp_path / "q.png")
    with pytest.raises(ParameterError, match="Dataset"):
        quicklook.product(src, tmp_path / "q")
    assert not list(tmp_path.iterdir())


def test_the_log_redaction_covers_child_loggers_made_later():
    stream, handler = _capture()
    log = logging.getLogger("stackstac.some.new.child")
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.debug("GET %s", f"https://x/B04.tif?sig={SECRET}")
        try:
            raise OSError(f"cannot open https://u:{PASSWORD}@x/B04.tif")
        except OSError:
            log.exception("read failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "GET https://x/B04.tif" in text and "OSError" in text
    assert SECRET not in text and PASSWORD not in text


def test_pickled_error_has_no_secret_even_in_its_attributes():
    err = AssetReadError(f"https://x/B04.tif?sig={SECRET}", f"HTTP 403 for ?sig={SECRET}")
    assert SECRET not in repr(err.__dict__)
    assert SECRET.encode() not in pickle.dumps(err)
    assert sys.getrefcount(err) > 0
