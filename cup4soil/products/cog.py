"""Cloud-Optimized GeoTIFF export: one COG per 2-D layer of a product."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from .._xrutil import layers
from ..errors import ParameterError, StoreError
from .layout import filesystem, is_local

__all__ = ["to_cogs"]


def _write_cog(var: xr.DataArray, path: str) -> None:
    """One (y, x) layer as a COG: DEFLATE, 256 px tiles, overviews (average for floats,
    nearest for integers), nodata from the ``nodata`` attribute (NaN for floats)."""
    import rioxarray  # noqa: F401

    arr = var.load()
    nodata = arr.attrs.get("nodata")
    if isinstance(nodata, str):  # "nan": JSON has no NaN
        nodata = float(nodata)
    if nodata is None and np.issubdtype(arr.dtype, np.floating):
        nodata = float("nan")
    arr.rio.write_nodata(nodata, encoded=False, inplace=True)
    arr.attrs = {k: v for k, v in arr.attrs.items()
                 if isinstance(v, str | int | float) and k != "nodata"}
    arr.rio.to_raster(path, driver="COG", compress="DEFLATE", overviews="AUTO",
                      blocksize=256, resampling="average"
                      if np.issubdtype(arr.dtype, np.floating) else "nearest")


def to_cogs(ds: xr.Dataset, prefix: str, *,
            storage_options: Mapping[str, Any] | None = None) -> dict[str, str]:
    """One Cloud-Optimized GeoTIFF per 2-D variable, with overviews.

    Banded variables are split SoilSuite-style (``SRC`` → ``SRC_B02`` ...); other extra
    dimensions likewise (``BSC_2021``). Files are written locally, then copied to
    ``prefix`` when it is a remote URL.

    Returns
    -------
    dict
        Variable name → href of its COG.

    Raises
    ------
    ParameterError
        A variable has more than one dimension besides y/x.
    """
    try:
        named = layers(ds)
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    fs, root = filesystem(prefix, storage_options)
    local = is_local(prefix)
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, var in named.items():
            path = os.path.join(root if local else tmp, f"{name}.tif")
            if local:
                fs.makedirs(root, exist_ok=True)
            _write_cog(var, path)
            if local:
                out[name] = path
                continue
            dest = f"{root}/{name}.tif"
            try:
                fs.put_file(path, dest)
            except Exception as exc:
                raise StoreError(dest, f"{type(exc).__name__}: {exc}") from None
            out[name] = f"{prefix.rstrip('/')}/{name}.tif"
    return out
