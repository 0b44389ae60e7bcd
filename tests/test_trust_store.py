"""Issue 12 §1: never lose a user's data, locally and on S3 (moto's server on 127.0.0.1).

A folder that is not a cup4soil product is never touched in any mode; ``mode="w"`` replaces
only a product and only once the new write is safely under way; products round-trip
through ``open`` -> ``write``; status checks never trust a cached listing; two writers on
one product: one refuses; a full disk leaves an incomplete, resumable product.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import dask
import fsspec
import numpy as np
import pytest
import xarray as xr

from cup4soil import store
from cup4soil.errors import (
    IncompleteProductError,
    NotAProductError,
    ParameterError,
    ProductLockedError,
    StorageFullError,
    StoreError,
)
from cup4soil.products.lease import Lease

from _store_writer import product
from helpers import objects

WRITER = Path(__file__).parent / "_store_writer.py"


def _fs(url: str, options: dict | None):
    return fsspec.core.url_to_fs(url, **(options or {}))


def _put(url: str, options: dict | None, files: dict[str, bytes]) -> None:
    fs, root = _fs(url, options)
    for name, data in files.items():
        if fs.protocol in ("file", ("file", "local")) or "file" in fs.protocol:
            os.makedirs(os.path.dirname(f"{root}/{name}"), exist_ok=True)
        fs.pipe_file(f"{root}/{name}", data)


USER_FILES = {"notes.txt": b"field notes", "raw/scene-1.tif": b"not really a tiff",
              "raw/deep/keep.csv": b"a,b\n1,2\n"}


# --- a folder that is not a product is never touched ------------------------------------

@pytest.mark.parametrize("mode", ["w-", "w", "resume"])
def test_a_folder_of_other_files_is_refused_and_kept(where, mode):
    base, options = where
    url = f"{base}/mine.zarr"
    _put(url, options, USER_FILES)
    before = objects(url, options)
    with pytest.raises(NotAProductError, match=r"not a cup4soil product.*notes\.txt"):
        store.write(product(), url, storage_options=options, mode=mode)
    assert objects(url, options) == before


@pytest.mark.parametrize("mode", ["w", "resume"])
def test_a_zarr_store_of_another_tool_is_refused_and_kept(where, mode):
    base, options = where
    url = f"{base}/theirs.zarr"
    product().to_zarr(url, storage_options=options, consolidated=False)  # no cup4soil plan
    before = objects(url, options)
    with pytest.raises(NotAProductError, match="Zarr store that cup4soil did not write"):
        store.write(product(), url, storage_options=options, mode=mode)
    assert objects(url, options) == before


@pytest.mark.parametrize("mode", ["w-", "w"])
def test_an_existing_file_as_target_is_refused_and_kept(tmp_path, mode):
    path = tmp_path / "report.zarr"
    path.write_bytes(b"a file")
    with pytest.raises(NotAProductError, match="is a file, not a product folder") as err:
        store.write(product(), str(path), mode=mode)
    assert "bucket" not in str(err.value)
    assert path.read_bytes() == b"a file"


def test_a_file_in_the_way_of_the_folder_is_not_a_bucket_problem(tmp_path):
    (tmp_path / "plain").write_bytes(b"x")
    with pytest.raises(StoreError, match="file is in the way") as err:
        store.write(product(), str(tmp_path / "plain" / "p.zarr"))
    assert "bucket" not in str(err.value)


def test_replacing_a_product_that_holds_other_files_deletes_nothing(where):
    base, options = where
    url = f"{base}/p.zarr"
    store.write(product(), url, storage_options=options)
    _put(url, options, {"README.txt": b"my notes about this product"})
    before = objects(url, options)
    with pytest.raises(NotAProductError, match=r"README\.txt, which cup4soil did not write"):
        store.write(product().assign_attrs(title="new"), url, storage_options=options, mode="w")
    assert objects(url, options) == before
    with warnings.catch_warnings():  # zarr: README.txt "is not recognized"
        warnings.simplefilter("ignore")
        assert store.open(url, storage_options=options).attrs["title"] == "kill test"


def test_replace_starts_only_once_the_new_write_can_be_encoded(tmp_path):
    url = str(tmp_path / "p.zarr")
    store.write(product(), url)
    before = objects(url, None)
    bad = product()
    bad["soc"].attrs["bands"] = {"B02", "B03"}  # a set: not JSON, fails when encoded
    with pytest.raises(ParameterError, match="cannot be written as Zarr"):
        store.write(bad, url, mode="w")
    assert objects(url, None) == before  # the old product is intact and complete
    np.testing.assert_array_equal(store.open(url).soc.values, product().soc.values)


def test_a_write_stopped_before_its_metadata_is_recognised_and_redone(tmp_path):
    """The plan is written first: a store whose metadata is partial is cup4soil's."""
    url = tmp_path / "p.zarr"
    store.write(product(), str(url))
    side = Path(f"{url}{store.SIDECAR}")
    plan = json.loads((side / "plan.json").read_text())
    (side / "plan.json").write_text(json.dumps({**plan, "state": "template"}))
    (side / "complete.json").unlink()
    shutil.rmtree(side / "regions")
    shutil.rmtree(url / "soc")  # the stop came before this array was created
    with pytest.raises(IncompleteProductError):
        store.open(str(url))
    assert store.write(product(), str(url), mode="resume").computed == 16
    np.testing.assert_array_equal(store.open(str(url)).soc.values, product().soc.values)


def test_sidecar_prefix_holding_other_files_is_refused(tmp_path):
    url = tmp_path / "p.zarr"
    side = Path(f"{url}{store.SIDECAR}")
    side.mkdir()
    (side / "diary.txt").write_text("mine")
    with pytest.raises(NotAProductError, match=r"diary\.txt"):
        store.write(product(), str(url))
    assert (side / "diary.txt").read_text() == "mine"


# --- open -> write round trips ------------------------------------------------------------

@pytest.mark.parametrize("zarr_format", [3, 2])
def test_open_then_write_round_trips(where, zarr_format):
    base, options = where
    src = product()
    src["count"].attrs["nodata"] = 0
    src["soc"].attrs["nodata"] = float("nan")
    url, copy = f"{base}/a.zarr", f"{base}/b.zarr"
    store.write(src, url, storage_options=options, zarr_format=zarr_format)
    opened = store.open(url, storage_options=options)
    assert np.isnan(opened.soc.attrs["nodata"]) and opened["count"].attrs["nodata"] == 0
    store.write(opened, copy, storage_options=options, zarr_format=zarr_format)
    back = store.open(copy, storage_options=options)
    for v in ("soc", "count"):
        xr.testing.assert_identical(back[v].load(), opened[v].load())
    assert back["count"].dtype == np.uint16


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_plain_open_zarr_gives_the_values_of_store_open(tmp_path, zarr_format):
    """MASK stays uint8, BSC's 0 (never bare) stays 0: no fill value turns them into NaN."""
    n = 8
    ds = xr.Dataset(
        {"MASK": (("y", "x"), np.tile(np.arange(4, dtype=np.uint8), (n, 2)),
                  {"nodata": 0, "units": "1"}),
         "BSC": (("y", "x"), np.arange(n * n, dtype=np.uint16).reshape(n, n) % 3,
                 {"nodata": 0, "units": "1"}),
         "BSF": (("y", "x"), np.where(np.eye(n) > 0, np.nan, 0.5).astype(np.float32),
                 {"nodata": float("nan")}),
         "SRC": (("y", "x"), np.full((n, n), -9999.0, np.float32), {"nodata": -9999.0})},
        coords={"y": 5.83e6 - 20.0 * np.arange(n), "x": 4.55e5 + 20.0 * np.arange(n)},
    ).odc.assign_crs("EPSG:32633")
    url = str(tmp_path / "p.zarr")
    store.write(ds, url, zarr_format=zarr_format)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the sidecar is not in the Zarr hierarchy either
        plain = xr.open_zarr(url, consolidated=False)
    ours = store.open(url)
    for v in ds.data_vars:
        assert plain[v].dtype == ours[v].dtype == ds[v].dtype, v
        np.testing.assert_array_equal(plain[v].values, ours[v].values)
        np.testing.assert_array_equal(plain[v].values, ds[v].values)


# --- status never trusts a cached listing -----------------------------------------------

_RESUMER = """
import json, sys
sys.path.insert(0, {tests!r})
from _store_writer import product
from helpers import objects
from cup4soil import store
store.write(product(), sys.argv[1], storage_options=json.loads(sys.argv[2]), mode="resume")
"""


def test_status_is_read_fresh_after_another_process_finishes(s3_bucket):
    bucket, options = s3_bucket
    url = f"{bucket}/p.zarr"
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError):
        store.write(_failing(5), url, storage_options=options)
    with pytest.raises(IncompleteProductError, match=r"\d+ of 16 regions"):
        store.open(url, storage_options=options)
    # a notebook looks at the product: fsspec caches these listings in this process
    fs, root = _fs(url, options)
    for path in (root, f"{root}{store.SIDECAR}", f"{root}{store.SIDECAR}/regions"):
        fs.ls(path)
    code = _RESUMER.format(tests=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", code, url, json.dumps(options)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    np.testing.assert_array_equal(store.open(url, storage_options=options).soc.values,
                                  product().soc.values)
    info = store.info(url, storage_options=options)
    assert info["complete"] and info["regions"] == [16, 16]


def _failing(after: int):
    ds = product()
    count = {"n": 0}

    def maybe_fail(x):
        count["n"] += 1
        if count["n"] > after:
            raise RuntimeError("simulated crash")
        return x

    ds["soc"] = ds.soc.copy(data=ds.soc.data.map_blocks(maybe_fail, dtype=np.float32))
    return ds


# --- two writers ----------------------------------------------------------------------------

def test_two_writers_one_refuses_then_the_product_is_whole(tmp_path):
    url = str(tmp_path / "p.zarr")
    regions = Path(f"{url}{store.SIDECAR}") / "regions"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    with subprocess.Popen([sys.executable, str(WRITER), url, "w", str(tmp_path / "log")],
                          env=env, stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.time() + 60
        while time.time() < deadline and not (regions.exists() and any(regions.iterdir())):
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            time.sleep(0.02)
        for mode in ("resume", "w"):  # neither interleaves nor deletes under the writer
            with pytest.raises(ProductLockedError, match=r"being written by .*:\d+"):
                store.write(product(), url, mode=mode)
        assert proc.wait(timeout=120) == 0, proc.stderr.read()[-2000:]
    np.testing.assert_array_equal(store.open(url).soc.values, product().soc.values)
    assert not (Path(f"{url}{store.SIDECAR}") / "lease.json").exists()  # released


def test_two_writers_on_s3_one_refuses(s3_bucket):
    bucket, options = s3_bucket
    url = f"{bucket}/p.zarr"
    slow = product()
    started, release = threading.Event(), threading.Event()

    def block(x):
        started.set()
        release.wait(60)  # the first writer holds on until the second has been refused
        return x

    slow["soc"] = slow.soc.copy(data=slow.soc.data.map_blocks(
        block, meta=np.array((), np.float32)))  # meta given: no call while building
    errors: list[BaseException] = []

    def first():
        try:
            with dask.config.set(scheduler="synchronous"):
                store.write(slow, url, storage_options=options)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert started.wait(60)
        with pytest.raises(ProductLockedError, match="being written by"):
            store.write(product(), url, storage_options=options, mode="w")
    finally:
        release.set()
    t.join(120)
    assert not errors, errors
    np.testing.assert_array_equal(store.open(url, storage_options=options).soc.values,
                                  product().soc.values)


def test_an_expired_lease_is_taken_over_and_a_live_one_refused(where):
    base, options = where
    fs, root = _fs(f"{base}/p.zarr", options)
    path = f"{root}{store.SIDECAR}/lease.json"
    record = {"owner": "elsewhere:1", "host": "elsewhere", "pid": 1, "token": "x",
              "acquired": "2020-01-01T00:00:00+00:00", "expires": "2999-01-01T00:00:00+00:00",
              "expires_at": time.time() + 3600}
    if "file" in fs.protocol:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    fs.pipe_file(path, json.dumps(record).encode())
    with pytest.raises(ProductLockedError, match=r"elsewhere:1.*expires at 2999"):
        Lease(fs, path, "p.zarr").acquire()
    fs.pipe_file(path, json.dumps({**record, "expires_at": time.time() - 1}).encode())
    lease = Lease(fs, path, "p.zarr", timeout=30).acquire()
    try:
        mine = json.loads(fs.cat_file(path))
        assert mine["token"] == lease.owner["token"] and mine["timeout"] == 30
        lease.check()
    finally:
        lease.release()
    fs.invalidate_cache()
    assert not fs.exists(path)


def test_a_lease_taken_over_while_writing_stops_the_finish(tmp_path):
    fs, root = _fs(str(tmp_path / "p.zarr"), None)
    path = f"{root}{store.SIDECAR}/lease.json"
    lease = Lease(fs, path, "p.zarr").acquire()
    try:
        other = json.loads(Path(path).read_text())
        Path(path).write_text(json.dumps({**other, "token": "someone-else",
                                          "owner": "other-host:7"}))
        with pytest.raises(ProductLockedError, match="taken over by other-host:7"):
            lease.check()
    finally:
        lease.release()
    assert json.loads(Path(path).read_text())["token"] == "someone-else"  # not theirs to drop


def test_bad_lease_timeout(tmp_path):
    with pytest.raises(ParameterError, match="lease_timeout"):
        store.write(product(), str(tmp_path / "p.zarr"), lease_timeout=0)


# --- a disk that fills up ---------------------------------------------------------------------

def test_disk_full_is_clear_leaves_incomplete_and_resumes(tmp_path, monkeypatch):
    """ENOSPC simulated at the storage layer (zarr's LocalStore) after a few chunks."""
    import zarr.storage

    url = str(tmp_path / "p.zarr")
    real_set = zarr.storage.LocalStore.set
    calls = {"n": 0}

    async def full_after_some(self, key, value):
        if "/c/" in key:
            calls["n"] += 1
            if calls["n"] > 9:
                raise OSError(errno.ENOSPC, "No space left on device")
        return await real_set(self, key, value)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", full_after_some)
    with dask.config.set(scheduler="synchronous"), \
            pytest.raises(StorageFullError, match=r"disk .* is full: free space") as err:
        store.write(product(), url)
    assert "bucket" not in str(err.value) and "resume" in str(err.value)
    with pytest.raises(IncompleteProductError, match=r"\d+ of 16 regions are written"):
        store.open(url)
    monkeypatch.setattr(zarr.storage.LocalStore, "set", real_set)  # space freed
    info = store.write(product(), url, mode="resume")
    assert 0 < info.computed < 16
    np.testing.assert_array_equal(store.open(url).soc.values, product().soc.values)


_FULL_DISK = """
import errno, json, os, subprocess, sys
sys.path.insert(0, {tests!r})
import numpy as np
from _store_writer import product
from helpers import objects
from cup4soil import store
from cup4soil.errors import IncompleteProductError, StorageFullError
mnt = sys.argv[1]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt], check=True)
st = os.statvfs(mnt)
filler = os.path.join(mnt, "filler")
with open(filler, "wb") as f:
    f.write(b"x" * (st.f_bavail * st.f_frsize - 120 * 1024))
url = os.path.join(mnt, "p.zarr")
out = {{}}
try:
    store.write(product(), url, chunks=32)
    out["first"] = "written"
except StorageFullError as exc:
    out["first"] = str(exc)
try:
    store.open(url)
    out["open"] = "complete"
except IncompleteProductError as exc:
    out["open"] = str(exc)
os.remove(filler)
info = store.write(product(), url, mode="resume")
out["computed"] = info.computed
out["equal"] = bool(np.array_equal(store.open(url).soc.values, product().soc.values))
print(json.dumps(out))
"""


def test_disk_full_on_a_real_small_filesystem(tmp_path):
    """A 1 MiB tmpfs in a private mount namespace (unshare), when this machine permits it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1): cannot mount a small file system here")
    probe = subprocess.run([unshare, "-rm", "sh", "-c",
                            f"mount -t tmpfs -o size=64k tmpfs {tmp_path}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {probe.stderr.strip()}")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = _FULL_DISK.format(tests=str(Path(__file__).parent))
    done = subprocess.run([unshare, "-rm", sys.executable, "-c", code, str(mnt)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "No space left on device" in out["first"] and "free space" in out["first"]
    assert "incomplete" in out["open"]
    assert out["computed"] > 0 and out["equal"]
