"""Opening products and reading their status: :func:`open` refuses an incomplete product and
says how far its writing got; :func:`info` summarises variables, grid and provenance."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from .._xrutil import crs_label
from ..errors import IncompleteProductError, ParameterError, redact
from .layout import Sidecar, Status, filesystem, is_local, locate, read_status

__all__ = ["info", "open"]


def _status(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Sidecar, Status]:
    """Where the product's sidecar is, and its status; refuses a missing product."""
    fs, root = filesystem(url, storage_options)
    if not fs.exists(root):
        raise ParameterError(f"there is no product at {redact(url)}. Check the path or URL.")
    sidecar = locate(fs, root)
    return sidecar, read_status(fs, sidecar)


def _fixed_length_labels(ds: xr.Dataset) -> xr.Dataset:
    """Label coordinates stored as variable-length strings (Zarr v3) back as fixed-length
    strings, as the dataset had them before writing."""
    labels = {n: c.copy(data=np.array(c.values.tolist(), dtype=str))
              for n, c in ds.coords.items()
              if n in ds.dims and c.dtype.kind in "OT"  # object, numpy.dtypes.StringDType
              and all(isinstance(v, str) for v in c.values.ravel())}
    return ds.assign_coords(labels) if labels else ds


def _open_zarr(url: str, storage_options: Mapping[str, Any] | None, legacy: bool) -> xr.Dataset:
    with warnings.catch_warnings():
        if legacy:  # a 0.1 product keeps its marker and manifests inside the Zarr store
            warnings.filterwarnings("ignore", message=r"Object at .* is not recognized")
        ds = xr.open_zarr(
            url,
            consolidated=False,
            storage_options=None if is_local(url) else dict(storage_options or {}),
            # Integer products stay integer: nodata is a value named by its attribute, as
            # odc-stac and rioxarray users handle DN cubes (not NaN-masked floats).
            mask_and_scale=False,
            decode_coords="all",  # the CF grid mapping comes back as the spatial_ref coord
        )
    return _fixed_length_labels(ds)


def open(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    allow_incomplete: bool = False,
) -> xr.Dataset:
    """Open a product lazily; refuse one whose writing never finished.

    Raises
    ------
    ParameterError
        If there is nothing at ``url``.
    IncompleteProductError
        If the completion marker is missing and ``allow_incomplete`` is False; the message
        says how many regions are written.
    """
    sidecar, status = _status(url, storage_options)
    if not status.complete and not allow_incomplete:
        missing = (f" {status.written} of {status.planned} regions are written;"
                   if status.planned else "")
        raise IncompleteProductError(
            f"the product at {redact(url)} is incomplete (its writing never finished):"
            f"{missing} resume it with store.write(..., mode='resume') (--resume), or pass "
            "allow_incomplete=True to inspect what is there.")
    return _open_zarr(url, storage_options, sidecar.legacy)


def info(url: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A product's variables, grid, completeness and provenance (opens metadata only).

    Returns
    -------
    dict
        ``url``, ``complete``, ``regions`` (written, planned), ``variables`` (name → dims,
        dtype, units, long_name), ``grid`` (crs, shape, resolution, bounds),
        ``provenance`` (the product's global attributes).
    """
    sidecar, status = _status(url, storage_options)
    ds = _open_zarr(url, storage_options, sidecar.legacy)
    grid: dict[str, Any] = {}
    try:
        import odc.geo.xr  # noqa: F401

        g = ds.odc.geobox
        if g is not None:
            grid = {"crs": crs_label(g.crs), "shape": list(g.shape),
                    "resolution": [abs(g.resolution.y), abs(g.resolution.x)],
                    "bounds": list(g.boundingbox)}
    except Exception:  # not georeferenced
        grid = {}
    return {
        "url": redact(url), "complete": status.complete,
        "regions": [status.written, status.planned],
        "variables": {str(n): {"dims": list(map(str, v.dims)), "dtype": str(v.dtype),
                               "units": v.attrs.get("units", ""),
                               "long_name": v.attrs.get("long_name", "")}
                      for n, v in ds.data_vars.items()},
        "grid": grid, "provenance": dict(ds.attrs),
    }
