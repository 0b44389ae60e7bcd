"""Opening products and reading their status: :func:`open` refuses an incomplete product and
says how far its writing got; :func:`info` summarises variables, grid, provenance and the
readers that can open the product.

Both decide what is at the URL from fresh reads (:func:`.layout.inspect`): a file, a folder
of other files or a Zarr store another tool wrote is "not a cup4soil product"
(:class:`~cup4soil.errors.NotAProductError`), never "incomplete"; storage that cannot be
reached (credentials, endpoint) is a :class:`~cup4soil.errors.StoreError` saying which.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from .._xrutil import crs_label, is_nan
from ..errors import Cup4SoilError, IncompleteProductError, ParameterError, redact
from .cf import secret_values
from .failures import is_storage_failure, storage_error
from .layout import (
    FOREIGN,
    Found,
    Status,
    filesystem,
    inspect,
    is_local,
    read_status,
    refuse_foreign,
)

__all__ = ["info", "open"]

#: What can read a product, by Zarr format (``info()["readers"]``).
READERS = {
    3: ("cup4soil.store.open", "xarray.open_zarr", "zarr-python >= 3", "odc-geo/rioxarray on "
        "the opened dataset"),
    2: ("cup4soil.store.open", "xarray.open_zarr", "zarr-python", "GDAL's Zarr driver "
        "(rasterio 'ZARR:\"<url>\":/<variable>', QGIS)", "odc-geo/rioxarray on the opened "
        "dataset"),
}
#: Why GDAL is missing for Zarr v3 products.
GDAL_V3 = ("GDAL 3.10 (rasterio's wheels) cannot read Zarr v3 products (its reader predates "
           "the codec names); write with zarr_format=2 (--zarr-format 2) for GDAL-based tools")


def _status(url: str, storage_options: Mapping[str, Any] | None, *,
            allow_foreign: bool = False) -> tuple[Found, Status]:
    """What is at the URL and the product's status; refuses a missing product and what is
    not a product (unless ``allow_foreign`` and it is a Zarr store)."""
    fs, root = filesystem(url, storage_options)
    try:
        found = inspect(fs, root)
        status = read_status(fs, found.sidecar)
    except Exception as exc:
        if isinstance(exc, Cup4SoilError) or not is_storage_failure(exc):
            raise
        raise storage_error(redact(url), exc, secrets=secret_values(storage_options or {}),
                            action="open") from None
    if found.kind == "absent":
        raise ParameterError(f"there is no product at {redact(url)}. Check the path or URL.")
    if found.kind in ("file", FOREIGN) and not (allow_foreign and found.store):
        raise refuse_foreign(found, url, writing=False)
    if found.kind == "product" and not found.store:
        if status.complete:
            raise ParameterError(
                f"there is no product at {redact(url)}: only its sidecar "
                f"{redact(found.sidecar.prefix)} is there (the Zarr store was moved or "
                "deleted). Copy or move a product's store and sidecar together.")
        raise IncompleteProductError(
            f"the product at {redact(url)} is incomplete: its writing stopped before the "
            "Zarr store was created; write it again with mode='resume' (--resume).")
    return found, status


def _fixed_length_labels(ds: xr.Dataset) -> xr.Dataset:
    """Label coordinates stored as variable-length strings (Zarr v3) back as fixed-length
    strings, as the dataset had them before writing."""
    labels = {n: c.copy(data=np.array(c.values.tolist(), dtype=str))
              for n, c in ds.coords.items()
              if n in ds.dims and c.dtype.kind in "OT"  # object, numpy.dtypes.StringDType
              and all(isinstance(v, str) for v in c.values.ravel())}
    return ds.assign_coords(labels) if labels else ds


def _as_written(ds: xr.Dataset) -> xr.Dataset:
    """Attributes as the dataset had them before writing: fill values back in the
    encodings (where xarray keeps them; writing them again as attributes would clash) and
    ``nodata: "nan"`` (JSON has no NaN) as the float NaN."""
    for var in ds.variables.values():
        for key in ("_FillValue", "missing_value"):
            if key in var.attrs:
                var.encoding[key] = var.attrs.pop(key)
        nodata = var.attrs.get("nodata")
        if (isinstance(nodata, str) and nodata.lower() == "nan") or is_nan(nodata):
            var.attrs["nodata"] = float("nan")
    return ds


def _open_zarr(url: str, storage_options: Mapping[str, Any] | None, legacy: bool) -> xr.Dataset:
    with warnings.catch_warnings():
        if legacy:  # a 0.1 product keeps its marker and manifests inside the Zarr store
            warnings.filterwarnings("ignore", message=r"Object at .* is not recognized")
        try:
            ds = xr.open_zarr(
                url,
                consolidated=False,
                storage_options=None if is_local(url) else dict(storage_options or {}),
                # Integer products stay integer: nodata is a value named by its attribute,
                # as odc-stac and rioxarray users handle DN cubes (not NaN-masked floats).
                mask_and_scale=False,
                decode_coords="all",  # the CF grid mapping comes back as the spatial_ref
            )
        except Exception as exc:
            raise storage_error(redact(url), exc,
                                secrets=secret_values(storage_options or {}),
                                action="read") from None
    # Zarr v3 lists a group's arrays in no fixed order: sort the variables, so that the
    # same product opens the same way every time (a model trained on its layers in
    # data_vars order is then reproducible).
    ds = ds[sorted(map(str, ds.data_vars))]
    return _as_written(_fixed_length_labels(ds))


def open(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    allow_incomplete: bool = False,
) -> xr.Dataset:
    """Open a product lazily; refuse one whose writing never finished.

    Parameters
    ----------
    url : str
        Local path or fsspec URL of the product.
    storage_options : dict, optional
        Passed to fsspec.
    allow_incomplete : bool
        Open a product whose writing never finished (and a Zarr store another tool wrote).

    Raises
    ------
    ParameterError
        If there is nothing at ``url``.
    NotAProductError
        If ``url`` is a file, a folder of other files, or a Zarr store without a cup4soil
        plan (the latter opens with ``allow_incomplete=True``).
    IncompleteProductError
        If the completion marker is missing and ``allow_incomplete`` is False; the message
        says how many regions are written.
    StoreError
        If the storage cannot be reached (credentials, endpoint, permissions).
    """
    found, status = _status(url, storage_options, allow_foreign=allow_incomplete)
    if found.kind != "product":
        return _open_zarr(url, storage_options, False)
    if not status.complete and not allow_incomplete:
        missing = (f" {status.written} of {status.planned} regions are written;"
                   if status.planned else "")
        raise IncompleteProductError(
            f"the product at {redact(url)} is incomplete (its writing never finished):"
            f"{missing} resume it with store.write(..., mode='resume') (--resume), or pass "
            "allow_incomplete=True to inspect what is there.")
    return _open_zarr(url, storage_options, found.sidecar.legacy)


def info(url: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A product's variables, grid, completeness and provenance (opens metadata only).

    Returns
    -------
    dict
        ``url``, ``complete``, ``regions`` (written, planned), ``variables`` (name → dims,
        dtype, units, long_name), ``grid`` (crs, shape, resolution, bounds),
        ``provenance`` (the product's global attributes), ``zarr_format`` (2 or 3),
        ``readers`` (tools that can read it) and ``not_readers`` (which cannot, and why).
    """
    found, status = _status(url, storage_options)
    ds = _open_zarr(url, storage_options, found.sidecar.legacy)
    fs, root = filesystem(url, storage_options)
    fmt = 3 if _has(fs, f"{root}/zarr.json") else 2
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
        "zarr_format": fmt, "readers": list(READERS[fmt]),
        "not_readers": [GDAL_V3] if fmt == 3 else [],
    }


def _has(fs: Any, path: str) -> bool:
    try:
        fs.cat_file(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    return True
