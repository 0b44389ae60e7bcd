"""Write and open cup4soil products as Zarr stores (local paths or any fsspec URL).

A product is complete only when its completion marker exists; the marker is written
last, after every array and the metadata, so a run that dies leaves a product that
:func:`open` refuses instead of one that looks whole.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import numpy as np
import xarray as xr

from .errors import Cup4SoilError, ParameterError

__all__ = ["COMPLETE_MARKER", "ProductInfo", "open", "write"]

#: Object written last into a product; its presence means "complete".
COMPLETE_MARKER = ".cup4soil-complete.json"


class IncompleteProductError(Cup4SoilError):
    """A product was opened that never finished writing."""


@dataclass(frozen=True)
class ProductInfo:
    """What :func:`write` produced.

    Attributes
    ----------
    url
        Where the Zarr store is.
    variables
        Names of the data variables written.
    nbytes
        Uncompressed size of the data variables, bytes.
    """

    url: str
    variables: tuple[str, ...]
    nbytes: int


def _fs(url: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    """fsspec filesystem and root path of a product URL."""
    fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
    return fs, root.rstrip("/")


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _zarr_ready(ds: xr.Dataset) -> xr.Dataset:
    """Drop coordinates Zarr cannot store (object dtype, e.g. from stackstac)."""
    drop = [n for n, c in ds.coords.items() if c.dtype == object and n not in ds.dims]
    out = ds.drop_vars(drop)
    for name, var in out.variables.items():
        # The writer owns encodings: stale ones from a source file can conflict.
        var.encoding = {k: v for k, v in var.encoding.items() if k in ("dtype", "_FillValue")}
        if name in out.data_vars and np.issubdtype(var.dtype, np.integer):
            # Counts have no nodata: 0 is a value, not a fill (xarray would mask it).
            var.encoding["_FillValue"] = var.attrs.get("nodata")
    return out


def write(
    ds: xr.Dataset,
    url: str,
    *,
    storage_options: dict[str, Any] | None = None,
    mode: Literal["w-", "w"] = "w-",
    zarr_format: int = 3,
) -> ProductInfo:
    """Compute ``ds`` and write it as a Zarr store, then mark the product complete.

    Parameters
    ----------
    ds
        Dataset to write (lazy or in memory).
    url
        Local path or fsspec URL (``s3://bucket/prefix.zarr`` ...).
    storage_options
        Passed to fsspec (credentials, endpoint). Never written into the product.
    mode
        ``"w-"`` refuses to overwrite an existing store; ``"w"`` replaces it.
    zarr_format
        Zarr format version, 2 or 3.
    """
    if mode not in ("w-", "w"):
        raise ParameterError(f"mode={mode!r} is unknown; use 'w-' or 'w'.")
    if zarr_format not in (2, 3):
        raise ParameterError(f"zarr_format={zarr_format} must be 2 or 3.")
    fs, root = _fs(url, storage_options)
    marker_path = f"{root}/{COMPLETE_MARKER}"
    if fs.exists(root):
        if mode == "w-":
            raise ParameterError(
                f"{url} already exists. Pass mode='w' to replace it, or choose another --out."
            )
        if fs.exists(marker_path):
            fs.rm(marker_path)  # the old product stops being complete before it changes
    out = _zarr_ready(ds)
    out.attrs = {**out.attrs, "cup4soil_written": dt.datetime.now(dt.UTC).isoformat()}
    out.to_zarr(
        url, mode="w", zarr_format=zarr_format, consolidated=False,
        storage_options=None if _is_local(url) else storage_options,
    )
    marker = {"complete": True, "variables": sorted(map(str, out.data_vars)),
              "written": out.attrs["cup4soil_written"]}
    fs.pipe_file(marker_path, json.dumps(marker).encode())
    return ProductInfo(
        url=url, variables=tuple(map(str, out.data_vars)),
        nbytes=int(sum(v.nbytes for v in out.data_vars.values())),
    )


def open(
    url: str,
    *,
    storage_options: dict[str, Any] | None = None,
    allow_incomplete: bool = False,
) -> xr.Dataset:
    """Open a product lazily; refuse one whose writing never finished.

    Raises
    ------
    IncompleteProductError
        If the completion marker is missing and ``allow_incomplete`` is False.
    """
    fs, root = _fs(url, storage_options)
    if not fs.exists(root):
        raise Cup4SoilError(f"there is no product at {url}. Check the path or URL.")
    if not fs.exists(f"{root}/{COMPLETE_MARKER}") and not allow_incomplete:
        raise IncompleteProductError(
            f"the product at {url} is incomplete (its writing never finished). Write it again, "
            "or pass allow_incomplete=True to inspect what is there."
        )
    with warnings.catch_warnings():
        # zarr notes the completion marker as an unknown object in the hierarchy; it is ours.
        warnings.filterwarnings("ignore", message=".*is not recognized as a component")
        return xr.open_zarr(
            url,
            consolidated=False,
            storage_options=None if _is_local(url) else storage_options,
            # Integer products stay integer: nodata is a value named by its attribute, as
            # odc-stac and rioxarray users handle DN cubes (not NaN-masked floats).
            mask_and_scale=False,
        )
