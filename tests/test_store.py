"""Zarr products on local disk and on a real S3 endpoint (moto's server on 127.0.0.1):
region writes, resume, kill tests, CF/CRS metadata, STAC items, COGs, faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import dask
import fsspec
import numpy as np
import pystac
import pytest
import rasterio
import xarray as xr

import cup4soil
from cup4soil import masks, store
from cup4soil.errors import (
    Cup4SoilError,
    IncompleteProductError,
    NotAProductError,
    ParameterError,
    StoreError,
)

from _store_writer import product
from helpers import CallCounter, objects

WRITER = Path(__file__).parent / "_store_writer.py"


@pytest.fixture(scope="module")
def vpc(sample):
    items = cup4soil.search(sample.bbox, "2019", catalog=sample.catalog)
    return masks.valid_pixel_count(cup4soil.load_s2(items)).to_dataset()


def _sidecar(url: str | Path) -> Path:
    """The local product's sidecar folder (plan, manifests, STAC item, marker)."""
    return Path(f"{url}{store.SIDECAR}")


def test_round_trip_keeps_grid_crs_and_cf_metadata(vpc, where):
    base, options = where
    url = f"{base}/vpc.zarr"
    info = store.write(vpc, url, storage_options=options, chunks=32)
    assert info.variables == ("VPC",) and info.regions == 4 and info.computed == 4
    back = store.open(url, storage_options=options)
    np.testing.assert_array_equal(back.VPC.values, vpc.VPC.values)
    assert back.odc.geobox == vpc.odc.geobox and back.rio.crs.to_epsg() == 32633
    assert back.VPC.encoding["chunks"] == (32, 32) and back.VPC.dtype == np.uint16
    sr = back.spatial_ref.attrs
    assert sr["epsg"] == 32633 and "WGS 84 / UTM zone 33N" in sr["crs_wkt"]
    assert sr["grid_mapping_name"] == "transverse_mercator"
    assert back.VPC.encoding["grid_mapping"] == "spatial_ref"
    assert back.x.attrs["standard_name"] == "projection_x_coordinate"
    assert back.attrs["Conventions"] == "CF-1.8" and back.attrs["cup4soil_version"]
    assert back.attrs["input_items"] and len(back.attrs["processing_baselines"]) == len(
        back.attrs["input_items"])


def test_gdal_reads_the_grid(vpc, tmp_path):
    # GDAL 3.10 (rasterio's wheels) reads Zarr v2; its v3 reader predates the codec names
    url = str(tmp_path / "vpc2.zarr")
    store.write(vpc, url, zarr_format=2)
    with rasterio.open(f'ZARR:"{url}":/VPC') as src:
        assert src.crs.to_epsg() == 32633
        assert tuple(src.transform)[:6] == tuple(vpc.odc.geobox.affine)[:6]
        np.testing.assert_array_equal(src.read(1), vpc.VPC.values)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_spatial_variables_are_blosc_lz4_shuffled(tmp_path, zarr_format):
    ds = product()
    url = str(tmp_path / f"p{zarr_format}.zarr")
    store.write(ds, url, zarr_format=zarr_format)
    for name in ("soc", "count"):
        if zarr_format == 3:
            meta = json.loads((tmp_path / f"p3.zarr/{name}/zarr.json").read_text())
            (codec,) = [c for c in meta["codecs"] if c["name"] == "blosc"]
            conf = codec["configuration"]
            assert conf["shuffle"] == "shuffle" and conf["typesize"] == ds[name].dtype.itemsize
        else:
            conf = json.loads((tmp_path / f"p2.zarr/{name}/.zarray").read_text())["compressor"]
            assert conf["id"] == "blosc" and conf["shuffle"] == 1
        assert (conf["cname"], conf["clevel"]) == ("lz4", 5)
    back = store.open(url)
    for name in ("soc", "count"):
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    if zarr_format == 2:  # GDAL decodes the floats too
        with rasterio.open(f'ZARR:"{url}":/soc') as src:
            np.testing.assert_array_equal(src.read(1), ds.soc.values)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_template_is_encoded_once_and_written_as_checked(tmp_path, monkeypatch, zarr_format):
    import zarr

    ds = product().assign_coords(label=("label", ["a", "b"]))
    calls = CallCounter(xr.Dataset.to_zarr)
    monkeypatch.setattr(xr.Dataset, "to_zarr", lambda self, *a, **k: calls(self, *a, **k))
    url = str(tmp_path / "p.zarr")
    store.write(ds, url, zarr_format=zarr_format)
    assert calls.total == 1  # the check's encoding, written as it is
    monkeypatch.undo()
    # the same objects as zarr writes itself, pixels aside
    ref = str(tmp_path / "ref.zarr")
    from cup4soil.products import writer

    layout = writer._layout(ds, None, None)
    writer._template(layout, zarr_format).to_zarr(ref, mode="w-", compute=False,
                                                  zarr_format=zarr_format, consolidated=False)
    meta = {".zarray", ".zattrs", ".zgroup", "zarr.json"}
    got = {p.relative_to(url).as_posix() for p in Path(url).rglob("*") if p.is_file()}
    want = {p.relative_to(ref).as_posix() for p in Path(ref).rglob("*") if p.is_file()}
    assert {k for k in got if k.rsplit("/", 1)[-1] in meta} == {
        k for k in want if k.rsplit("/", 1)[-1] in meta}
    back, mine = zarr.open_group(url, mode="r"), zarr.open_group(ref, mode="r")
    assert sorted(back.array_keys()) == sorted(mine.array_keys())
    for name in ("label", "x", "y"):
        np.testing.assert_array_equal(back[name][...], mine[name][...])
    np.testing.assert_array_equal(store.open(url).soc.values, ds.soc.values)


def test_floats_have_nan_fill_and_ints_keep_nodata(tmp_path):
    ds = product()
    ds["count"].attrs["nodata"] = 0
    store.write(ds, str(tmp_path / "p.zarr"))
    meta = json.loads((tmp_path / "p.zarr/soc/zarr.json").read_text())
    assert meta["fill_value"] == "NaN"
    assert json.loads((tmp_path / "p.zarr/count/zarr.json").read_text())["fill_value"] == 0


def test_existing_product_is_not_overwritten_silently(vpc, tmp_path):
    url = str(tmp_path / "p.zarr")
    store.write(vpc, url)
    with pytest.raises(ParameterError, match="already exists"):
        store.write(vpc, url)
    store.write(vpc, url, mode="w")


def test_incomplete_or_foreign_store_is_refused(vpc, tmp_path):
    url = tmp_path / "half.zarr"
    vpc.to_zarr(url, zarr_format=3, consolidated=False)  # a Zarr store without cup4soil's plan
    with pytest.raises(NotAProductError, match="Zarr store that cup4soil did not write"):
        store.open(str(url))
    assert isinstance(store.open(str(url), allow_incomplete=True), xr.Dataset)
    with pytest.raises(Cup4SoilError, match="no product"):
        store.open(str(tmp_path / "absent.zarr"))


def test_stackstac_cube_writes_to_zarr(sample, tmp_path):
    items = cup4soil.search(sample.bbox, "2019-06", catalog=sample.catalog)
    cube = cup4soil.load_s2(items, bands=["B04", "SCL"], engine="stackstac")
    store.write(cube, str(tmp_path / "cube.zarr"))
    back = store.open(str(tmp_path / "cube.zarr"))
    np.testing.assert_array_equal(back.B04.values, cube.B04.values)


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_labels_and_ungeoreferenced_grids_round_trip_without_warnings(tmp_path, zarr_format):
    """Band labels (variable-length strings in Zarr v3), a grid without CRS (no grid
    mapping), and the product's own objects outside the Zarr hierarchy: no warning."""
    ds = xr.Dataset(
        {"src": (("band", "y", "x"), np.arange(32.0).reshape(2, 4, 4)),
         "n": (("y", "x"), np.ones((4, 4), np.uint16))},
        coords={"band": ["B02", "B11"], "y": np.arange(4.0), "x": np.arange(4.0)})
    url = str(tmp_path / "labels.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store.write(ds, url, zarr_format=zarr_format, chunks=2)
        back = store.open(url).load()
        info = store.info(url)
    assert back.band.dtype == ds.band.dtype and list(back.band.values) == ["B02", "B11"]
    xr.testing.assert_equal(back.src, ds.src)
    assert "grid_mapping" not in back.src.encoding and "spatial_ref" not in back.coords
    assert info["complete"] and info["regions"] == [4, 4]


def test_products_of_cup4soil_0_1_still_open_and_resume(tmp_path):
    """0.1 kept plan, manifests, STAC item and marker inside the Zarr store."""
    url = tmp_path / "old.zarr"
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError):
        store.write(_failing(6), str(url))
    side = _sidecar(url)
    (side / "plan.json").rename(url / ".cup4soil-plan.json")
    (side / "regions").rename(url / ".cup4soil-regions")
    (side / "lease.json.lock").unlink()  # the lock file of the write lease (0.1 had none)
    side.rmdir()
    with pytest.raises(IncompleteProductError, match=r"\d+ of 16 regions are written"):
        store.open(str(url))
    info = store.write(product(), str(url), mode="resume")
    assert 0 < info.computed < 16 and (url / ".cup4soil-complete.json").exists()
    assert not (side / "plan.json").exists()  # resumed where it is (the lease is beside)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*not recognized")
        back = store.open(str(url))
    np.testing.assert_array_equal(back.soc.values, product().soc.values)
    assert store.info(str(url))["regions"] == [16, 16]
    store.write(product(), str(url), mode="w")  # replaced by a product of today's layout
    assert not (url / ".cup4soil-complete.json").exists() and (side / "complete.json").exists()


def test_resume_of_a_sidecar_without_its_store_starts_afresh(tmp_path):
    import shutil

    url = tmp_path / "moved.zarr"
    store.write(product(), str(url))
    shutil.rmtree(url)  # the store went away, its sidecar stayed
    with pytest.raises(ParameterError, match="no product"):
        store.open(str(url))
    assert store.write(product(), str(url), mode="resume").computed == 16
    np.testing.assert_array_equal(store.open(str(url)).soc.values, product().soc.values)


# --- resume ----------------------------------------------------------------------------

def _failing(after: int):
    """The kill-test product, failing on every block after the first ``after``."""
    ds = product()
    count = {"n": 0}

    def maybe_fail(x):
        count["n"] += 1
        if count["n"] > after:
            raise RuntimeError("simulated crash")
        return x

    ds["soc"] = ds.soc.copy(data=ds.soc.data.map_blocks(maybe_fail, dtype=np.float32))
    return ds


def _shared_block(counter: list, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    counter.append(1)
    return {"a": np.ones(shape, np.float32), "b": np.full(shape, 2, np.uint16)}


def test_a_task_shared_by_variables_is_computed_once_per_region(tmp_path):
    """Like an SCMaP block: one task makes every variable of its block."""
    import threading

    calls: list = []
    lock = threading.Lock()

    def block(shape):
        with lock:
            return _shared_block(calls, shape)

    rows = []
    for _ in range(2):
        row = {"a": [], "b": []}
        for _ in range(2):
            task = dask.delayed(block, pure=False)((8, 8))
            row["a"].append(dask.array.from_delayed(task["a"], (8, 8), np.float32))
            row["b"].append(dask.array.from_delayed(task["b"], (8, 8), np.uint16))
        rows.append(row)
    data = {v: dask.array.block([[c for c in row[v]] for row in rows]) for v in ("a", "b")}
    ds = xr.Dataset({v: (("y", "x"), d) for v, d in data.items()},
                    coords={"y": np.arange(16.0), "x": np.arange(16.0)})
    info = store.write(ds, str(tmp_path / "shared.zarr"), chunks=8)
    assert info.regions == 4 and len(calls) == 4  # not 8: once per block, not per variable
    out = store.open(str(tmp_path / "shared.zarr"))
    assert float(out.a.sum()) == 256 and int(out.b.sum()) == 512


def test_resume_computes_only_what_is_missing(where):
    base, options = where
    url, ref_url = f"{base}/p.zarr", f"{base}/ref.zarr"
    store.write(product(), ref_url, storage_options=options)
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError,
                                                                 match="simulated"):
        store.write(_failing(5), url, storage_options=options)
    with pytest.raises(IncompleteProductError, match=r"\d+ of 16 regions are written"):
        store.open(url, storage_options=options)
    info = store.write(product(), url, storage_options=options, mode="resume")
    assert 0 < info.computed < 16
    a, b = (store.open(u, storage_options=options).load() for u in (url, ref_url))
    for v in ("soc", "count"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    # the chunk objects themselves are identical
    objs, ref = objects(url, options), objects(ref_url, options)
    chunks = [k for k in ref if "/c/" in k]
    assert chunks and all(objs[k] == ref[k] for k in chunks)
    # nothing left: resuming again computes no block
    counted = product()
    blocks = CallCounter(lambda x: x)
    counted["soc"] = counted.soc.copy(data=counted.soc.data.map_blocks(
        blocks, meta=np.array((), np.float32)))
    again = store.write(counted, url, storage_options=options, mode="resume")
    assert again.computed == 0 and blocks.total == 0


def test_resume_refuses_another_dataset_and_recomputes_corrupt_regions(tmp_path):
    url = str(tmp_path / "p.zarr")
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError):
        store.write(_failing(8), url)
    other = product().assign_attrs(title="something else")
    with pytest.raises(ParameterError, match="different dataset"):
        store.write(other, url, mode="resume")
    # damage one finished region: its checksum no longer matches, so it is redone
    done = sorted((_sidecar(url) / store.REGIONS).iterdir())
    iy, ix = map(int, done[0].stem.split("-"))
    import zarr

    arr = zarr.open_array(str(tmp_path / "p.zarr/soc"), mode="r+")
    arr[iy * 32, ix * 32] = -1
    info = store.write(product(), url, mode="resume")
    assert info.computed == 16 - len(done) + 1
    np.testing.assert_array_equal(store.open(url).soc.values, product().soc.values)


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 4, 9])
def test_sigkill_then_resume(tmp_path, kill_after):
    url = str(tmp_path / "k.zarr")
    log = tmp_path / "blocks.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    regions = _sidecar(url) / store.REGIONS
    with subprocess.Popen([sys.executable, str(WRITER), url, "w", str(log)], env=env,
                          stderr=subprocess.PIPE, text=True) as proc:  # waits, closes pipes
        deadline = time.time() + 60
        while time.time() < deadline:
            if regions.exists() and len(list(regions.glob("*.json"))) >= kill_after:
                break
            if proc.poll() is not None:
                pytest.fail(f"the writer exited early: {proc.stderr.read()[-2000:]}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    written = len(list(regions.glob("*.json")))  # not a manifest killed while written
    assert kill_after <= written < 16
    with pytest.raises(IncompleteProductError, match=f"{written} of 16 regions"):
        store.open(url)
    log.write_text("")
    done = subprocess.run([sys.executable, str(WRITER), url, "resume", str(log)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    computed = len(log.read_text().splitlines())
    assert computed <= 2 * (16 - written)  # two variables share each block's graph
    ref = product().compute()
    back = store.open(url)
    for v in ("soc", "count"):
        np.testing.assert_array_equal(back[v].values, ref[v].values)


# --- faults on S3 ----------------------------------------------------------------------

class _FlakyProxy:
    """A loopback HTTP proxy to the S3 endpoint that answers some PUTs with 5xx."""

    def __init__(self, upstream: str, fail: callable) -> None:
        import http.client
        import http.server
        import threading
        from urllib.parse import urlparse

        up = urlparse(upstream)
        proxy = self
        self.failures: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _relay(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                code = fail(self.command, self.path)
                if code:
                    proxy.failures.append(self.path)
                    msg = b"<Error><Code>InternalError</Code></Error>"
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    self.wfile.write(msg)
                    return
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = f"{up.hostname}:{up.port}"
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_transient_s3_errors_are_retried(s3_bucket, s3_endpoint):
    bucket, options = s3_bucket
    seen: set[str] = set()

    def fail(method, path):  # the first PUT of every soc chunk gets a 503
        if method == "PUT" and "/soc/c/" in path and path not in seen:
            seen.add(path)
            return 503
        return 0

    proxy = _FlakyProxy(s3_endpoint, fail)
    try:
        opts = {**options, "endpoint_url": proxy.url}
        store.write(product(), f"{bucket}/flaky.zarr", storage_options=opts)
        assert len(proxy.failures) >= 16
        back = store.open(f"{bucket}/flaky.zarr", storage_options=options)
        np.testing.assert_array_equal(back.soc.values, product().soc.values)
    finally:
        proxy.close()


def test_permanent_s3_error_names_the_object_not_the_credentials(s3_bucket, s3_endpoint):
    bucket, options = s3_bucket
    proxy = _FlakyProxy(s3_endpoint, lambda m, p: 500 if m == "PUT" and "/soc/c/1/" in p
                        else 0)
    try:
        opts = {**options, "endpoint_url": proxy.url,
                "config_kwargs": {"retries": {"max_attempts": 2}}}
        with pytest.raises(StoreError) as err:
            store.write(product(), f"{bucket}/broken.zarr", storage_options=opts)
        msg = str(err.value)
        assert "broken.zarr/soc/c/1/" in msg and "resume" in msg
        assert options["secret"] not in msg and options["key"] not in msg
        with pytest.raises(IncompleteProductError):
            store.open(f"{bucket}/broken.zarr", storage_options=options)
    finally:
        proxy.close()


@pytest.mark.slow
def test_concurrent_workers_write_distinct_regions(tmp_path):
    from distributed import Client, LocalCluster

    url = str(tmp_path / "dist.zarr")
    ref = str(tmp_path / "ref.zarr")
    store.write(product(), ref)
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        info = store.write(product(), url)
    assert info.computed == 16
    for name in ("zarr.json", "soc/zarr.json", "count/zarr.json", "spatial_ref/zarr.json"):
        a = json.loads((tmp_path / "dist.zarr" / name).read_text())
        b = json.loads((tmp_path / "ref.zarr" / name).read_text())
        for meta in (a, b):  # write times differ, nothing else may
            meta.get("attributes", {}).pop("cup4soil_written", None)
        assert a == b
    np.testing.assert_array_equal(store.open(url).soc.values, store.open(ref).soc.values)


# --- metadata: secrets, STAC, info, COGs -----------------------------------------------

def test_no_secret_reaches_the_product(s3_bucket):
    bucket, options = s3_bucket
    ds = product().assign_attrs(
        source="https://example.blob.core.windows.net/c/B04.tif?st=2024&sig=SECRETSIG",
        sas_token="st=2024&sig=SECRETSIG", parameters={"api_key": "SECRETSIG", "n": 3})
    url = f"{bucket}/clean.zarr"
    store.write(ds, url, storage_options=options,
                provenance={"catalog": "https://pc/?token=SECRETSIG"})
    found = {**objects(url, options), **objects(url + store.SIDECAR, options)}
    assert any(k.endswith(store.STAC_ITEM) for k in found)  # the sidecar is scanned too
    blob = b"".join(found.values())
    for secret in (b"SECRETSIG", options["secret"].encode(), options["key"].encode()):
        assert secret not in blob
    attrs = store.open(url, storage_options=options).attrs
    assert attrs["source"] == "https://example.blob.core.windows.net/c/B04.tif"
    assert attrs["parameters"] == {"n": 3} and "sas_token" not in attrs


def _validate_core(d: dict) -> None:
    """Validate against the STAC core schemas bundled with pystac (offline)."""
    from jsonschema import Draft7Validator
    from pystac.validation.local_validator import get_local_schema_cache
    from referencing import Registry, Resource

    cache = get_local_schema_cache()
    registry = Registry().with_resources(
        [(uri, Resource.from_contents(s)) for uri, s in cache.items()])
    kind = "item" if d["type"] == "Feature" else "collection"
    schema = cache[f"https://schemas.stacspec.org/v1.1.0/{kind}-spec/json-schema/{kind}.json"]
    core = {**d, "stac_extensions": []}
    errors = list(Draft7Validator(schema, registry=registry).iter_errors(core))
    assert not errors, errors[0].message


def test_stac_item_and_collection(vpc, tmp_path):
    url = str(tmp_path / "vpc.zarr")
    store.write(vpc, url)
    written = json.loads((_sidecar(url) / store.STAC_ITEM).read_text())
    item = store.stac_item(url, cogs=store.to_cogs(store.open(url), str(tmp_path / "cogs")))
    d = item.to_dict(transform_hrefs=False)
    for doc in (written, d):
        _validate_core(doc)
        assert doc["properties"]["proj:code"] == "EPSG:32633"
        assert doc["properties"]["proj:shape"] == list(vpc.odc.geobox.shape)
        assert doc["properties"]["proj:transform"] == list(vpc.odc.geobox.affine)[:6]
        assert doc["properties"]["cube:variables"]["VPC"]["dimensions"] == ["y", "x"]
        assert doc["assets"]["zarr"]["type"] == "application/vnd+zarr"
    assert d["assets"]["VPC"]["raster:bands"][0]["data_type"] == "uint16"
    assert "start_datetime" in d["properties"]
    # the geometry covers the sample area
    w, s, e, n = d["bbox"]
    g = vpc.odc.geobox.geographic_extent.boundingbox
    assert (w, s, e, n) == pytest.approx((g.left, g.bottom, g.right, g.top))
    coll = store.stac_collection([item], id="cup4soil-vpc", description="valid pixel counts")
    coll.normalize_hrefs(str(tmp_path / "stac"))
    _validate_core(coll.to_dict(include_self_link=False, transform_hrefs=False))
    assert isinstance(pystac.Item.from_dict(written), pystac.Item)


def test_info(vpc, tmp_path):
    url = str(tmp_path / "vpc.zarr")
    store.write(vpc, url, chunks=16)
    i = store.info(url)
    assert i["complete"] and i["regions"] == [9, 9]
    assert i["variables"]["VPC"] == {"dims": ["y", "x"], "dtype": "uint16", "units": "1",
                                     "long_name": "valid pixel count"}
    assert i["grid"]["crs"] == "EPSG:32633" and i["grid"]["resolution"] == [20.0, 20.0]
    assert "input_items" in i["provenance"]


def test_cogs_local_and_s3(where):
    base, options = where
    n = 600  # large enough for overviews at 256 px tiles
    yy, xx = np.mgrid[0:n, 0:n]
    soc = (np.sin(yy / 30) * np.cos(xx / 20) * 100).astype(np.float32)
    soc[:10, :10] = np.nan
    ds = xr.Dataset(
        {"soc": (("y", "x"), soc, {"units": "dg/kg"}),
         "src": (("band", "y", "x"), np.stack([soc, 2 * soc]), {"units": "1"})},
        coords={"y": 5.83e6 - 10.0 * np.arange(n) - 5, "x": 4.55e5 + 10.0 * np.arange(n) + 5,
                "band": ["B02", "B03"]},
    ).odc.assign_crs("EPSG:32633")
    out = store.to_cogs(ds, f"{base}/cogs", storage_options=options)
    assert set(out) == {"soc", "src_B02", "src_B03"}
    fs, _ = fsspec.core.url_to_fs(out["soc"], **(options or {}))
    with rasterio.MemoryFile(fs.cat_file(out["soc"])) as mem, mem.open() as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.overviews(1) and src.crs.to_epsg() == 32633
        assert tuple(src.transform)[:6] == tuple(ds.odc.geobox.affine)[:6]
        np.testing.assert_array_equal(src.read(1), soc)


def test_bad_arguments(tmp_path):
    with pytest.raises(ParameterError, match="mode='x'"):
        store.write(product(), str(tmp_path / "a.zarr"), mode="x")
    with pytest.raises(ParameterError, match="Dataset"):
        store.write(product().soc, str(tmp_path / "a.zarr"))
    with pytest.raises(ParameterError, match="no spatial dimensions"):
        store.write(xr.Dataset({"a": ("t", [1, 2])}), str(tmp_path / "b.zarr"))
    with pytest.raises(ParameterError, match="its own folder or prefix"):
        store.write(product(), "memory://")  # its sidecar would be another bucket
