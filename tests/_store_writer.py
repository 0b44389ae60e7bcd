"""Subprocess used by the kill tests: writes a slow product, one region at a time.

Usage: python _store_writer.py URL MODE LOG  — every computed block appends a line to LOG.
"""

from __future__ import annotations

import sys
import time

import dask
import dask.array as da
import numpy as np
import odc.geo.xr  # noqa: F401
import xarray as xr

from cup4soil import store


def product(log: str | None = None, delay: float = 0.0) -> xr.Dataset:
    """Deterministic 2-variable product, 4 x 4 regions of 32 px."""

    def block(x: np.ndarray, block_info=None) -> np.ndarray:
        loc = block_info[0]["array-location"]
        if log:
            with open(log, "a") as f:
                f.write(f"{loc}\n")
        time.sleep(delay)
        yy, xx = np.mgrid[loc[0][0]:loc[0][1], loc[1][0]:loc[1][1]]
        return (np.sin(yy / 7.0) * np.cos(xx / 5.0) * 1000).astype(np.float32)

    base = da.zeros((128, 128), chunks=32, dtype=np.float32)
    a = base.map_blocks(block, dtype=np.float32)
    ds = xr.Dataset(
        {"soc": (("y", "x"), a, {"units": "dg/kg", "long_name": "SOC"}),
         "count": (("y", "x"), (da.fabs(a) % 7).astype(np.uint16), {"units": "1"})},
        coords={"y": 5.83e6 - 10.0 * np.arange(128) - 5, "x": 4.55e5 + 10.0 * np.arange(128) + 5},
        attrs={"title": "kill test", "time_start": "2018-01-01T00:00:00",
               "time_end": "2022-12-31T00:00:00"},
    )
    return ds.odc.assign_crs("EPSG:32633")


if __name__ == "__main__":
    url, mode, log = sys.argv[1:4]
    with dask.config.set(scheduler="threads", num_workers=1):
        store.write(product(log, delay=0.15), url, mode=mode)
    print("done")
