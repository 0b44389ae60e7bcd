"""Write throughput and resume overhead of cup4soil.store, side by side with xarray.

* local disk and a real S3 endpoint (moto's server on 127.0.0.1) for a composite-sized
  Dataset (SRC: 10 bands float32, plus VPC and BSC uint16);
* baseline: ``Dataset.to_zarr`` of the same data (no regions, manifests, STAC or marker);
* resume overhead: ``mode="resume"`` on a complete product, and on a product whose marker
  was lost (every region re-read and checksummed, none recomputed).

Run: ``python benchmarks/store.py`` (``--size`` pixels per side, default 2048 local /
1024 S3).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import time

import dask
import numpy as np
import odc.geo.xr  # noqa: F401
import xarray as xr

from cup4soil import store


def composite(n: int, chunk: int = 512) -> xr.Dataset:
    import dask.array as da

    def smooth(seed: int, dtype) -> da.Array:
        def block(x, block_info=None):
            (y0, y1), (x0, x1) = block_info[0]["array-location"]
            yy, xx = np.mgrid[y0:y1, x0:x1]
            v = 1500 + 400 * np.sin(yy / (40 + seed)) * np.cos(xx / (55 + seed))
            return (v + np.random.default_rng(seed + y0 * 7 + x0).normal(0, 30, v.shape)
                    ).astype(dtype)
        return da.zeros((n, n), chunks=chunk, dtype=dtype).map_blocks(block, dtype=dtype)

    src = da.stack([smooth(b, np.float32) for b in range(10)])
    ds = xr.Dataset(
        {"SRC": (("band", "y", "x"), src, {"units": "1"}),
         "VPC": (("y", "x"), smooth(20, np.uint16) % 60, {"units": "1"}),
         "BSC": (("y", "x"), smooth(21, np.uint16) % 20, {"units": "1"})},
        coords={"band": [f"B{i:02d}" for i in range(10)],
                "y": 5.83e6 - 20.0 * np.arange(n) - 10, "x": 4.5e5 + 20.0 * np.arange(n) + 10},
        attrs={"title": "benchmark composite", "time_start": "2018-01-01T00:00:00",
               "time_end": "2022-12-31T00:00:00"},
    )
    return ds.odc.assign_crs("EPSG:32633")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(where: str, url_base: str, options: dict | None, n: int) -> list[tuple]:
    ds = composite(n).persist()  # measure writing, not generating
    mb = ds.nbytes / 2**20
    base = timed(lambda: ds.to_zarr(f"{url_base}/baseline.zarr", mode="w", consolidated=False,
                                    zarr_format=3, storage_options=options))
    ours = timed(lambda: store.write(ds, f"{url_base}/c4s.zarr", storage_options=options,
                                     mode="w"))
    resume_done = timed(lambda: store.write(ds, f"{url_base}/c4s.zarr",
                                            storage_options=options, mode="resume"))
    import fsspec

    fs, root = fsspec.core.url_to_fs(f"{url_base}/c4s.zarr", **(options or {}))
    fs.rm(f"{root}{store.SIDECAR}/{store.COMPLETE_MARKER}")  # the marker is beside the store
    resume_verify = timed(lambda: store.write(ds, f"{url_base}/c4s.zarr",
                                              storage_options=options, mode="resume"))
    return [(where, n, mb, mb / base, mb / ours, ours, resume_done, resume_verify)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--s3-size", type=int, default=1024)
    ap.add_argument("--smoke", action="store_true", help="a tiny run (tests/test_benchmarks.py)")
    args = ap.parse_args()
    if args.smoke:
        args.size, args.s3_size = 128, 128
    rows = []
    tmp = tempfile.mkdtemp(prefix="cup4soil-store-bench-")
    with dask.config.set(scheduler="threads"):
        try:
            rows += run("local disk", tmp, None, args.size)
            import boto3
            from moto.server import ThreadedMotoServer

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            server.start()
            endpoint = f"http://127.0.0.1:{port}"
            boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k",
                         aws_secret_access_key="s", region_name="us-east-1").create_bucket(
                Bucket="bench")
            opts = {"key": "k", "secret": "s", "endpoint_url": endpoint,
                    "client_kwargs": {"region_name": "us-east-1"}}
            try:
                rows += run("S3 (moto, loopback)", "s3://bench", opts, args.s3_size)
            finally:
                server.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'target':<20} {'px':>5} {'MB':>6} {'xarray MB/s':>12} {'cup4soil MB/s':>14} "
          f"{'write s':>8} {'resume (done) s':>16} {'resume (verify) s':>18}")
    for r in rows:
        print(f"{r[0]:<20} {r[1]:>5} {r[2]:>6.0f} {r[3]:>12.0f} {r[4]:>14.0f} {r[5]:>8.1f} "
              f"{r[6]:>16.2f} {r[7]:>18.1f}")
    print("MB = uncompressed data; resume (done): product complete; resume (verify): marker "
          "lost, every region re-read and checksummed, none recomputed.")


if __name__ == "__main__":
    main()
