"""A product's metadata: CF-1.8 conventions, provenance, and attribute values safe to write.

- a ``spatial_ref`` grid-mapping variable (WKT, EPSG, GeoTransform) when the grid has a CRS,
  referenced by every spatial variable's ``grid_mapping``;
- ``standard_name``/``axis``/``units`` on ``x``/``y``; ``units`` and ``long_name`` on every
  data variable; fill values chosen so that a plain ``xarray.open_zarr`` gives the values
  :func:`cup4soil.store.open` gives: ``_FillValue`` NaN for floats (masking NaN changes
  nothing) and none for integers, whose nodata is a value named by the ``nodata``
  attribute (``MASK`` 0, ``BSC`` 0 = never bare) -- as odc-stac and rioxarray users
  handle DN cubes -- not a fill that readers would turn into NaN;
- provenance attributes (version, time written, inputs) made global;
- no credential: attribute keys that look like secrets are dropped, URLs lose their query
  strings.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from .._xrutil import is_nan
from ..errors import ParameterError, redact

__all__ = ["GRID_MAPPING", "json_safe", "prepare", "scrub", "secret_values", "spatial_dims"]

#: Name of the CF grid-mapping variable.
GRID_MAPPING = "spatial_ref"
# attribute names that may hold credentials: never written
_SECRET_KEY = re.compile(r"(token|secret|password|passwd|credential|signature|sas|"
                         r"access_key|api_key|apikey|^key$)", re.IGNORECASE)
# provenance a variable may carry that belongs to the whole product
_GLOBAL = ("input_items", "processing_baselines", "time_start", "time_end")


def scrub(value: Any) -> Any:
    """Attribute values without credentials: URLs lose query strings, secret-named keys go."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: scrub(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def secret_values(options: Mapping[str, Any]) -> list[str]:
    """Values of secret-named options (storage credentials), to blank out of messages."""
    return [str(v) for k, v in options.items()
            if isinstance(v, str) and len(v) >= 4 and _SECRET_KEY.search(str(k))]


def json_safe(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays as Python values (JSON-serialisable)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def spatial_dims(ds: xr.Dataset) -> tuple[str, str]:
    """The (y, x) dimension names of ``ds``."""
    for y, x in (("y", "x"), ("latitude", "longitude"), ("lat", "lon")):
        if y in ds.dims and x in ds.dims:
            return y, x
    raise ParameterError(f"the dataset has no spatial dimensions (y, x); it has "
                         f"{', '.join(map(str, ds.dims))}.")


def _grid_mapping(ds: xr.Dataset, dims: tuple[str, str]) -> xr.Dataset:
    """The CF grid mapping and coordinate attributes; units/long_name on data variables."""
    import odc.geo.xr  # noqa: F401
    import rioxarray  # noqa: F401

    out = ds
    try:
        gbox = ds.odc.geobox
    except Exception:  # not georeferenced: written without a grid mapping
        gbox = None
    crs = None if gbox is None else gbox.crs
    if crs is not None:
        out = out.rio.write_crs(str(crs.to_wkt()), grid_mapping_name=GRID_MAPPING)
        out = out.rio.write_transform(gbox.affine, grid_mapping_name=GRID_MAPPING)
        sr = out[GRID_MAPPING]
        sr.attrs["epsg_code"] = f"EPSG:{crs.epsg}" if crs.epsg else ""
        if crs.epsg:
            sr.attrs["epsg"] = int(crs.epsg)
        geographic = crs.geographic
        for d, axis in zip(dims, ("Y", "X"), strict=True):
            standard = {"Y": "latitude", "X": "longitude"}[axis] if geographic else \
                {"Y": "projection_y_coordinate", "X": "projection_x_coordinate"}[axis]
            out[d].attrs.update(standard_name=standard, axis=axis,
                                units="degrees" if geographic else "m",
                                long_name=f"{'y' if axis == 'Y' else 'x'} coordinate of "
                                          "pixel centre")
    for name in out.data_vars:
        var = out[name]
        attrs = dict(var.attrs)
        attrs.setdefault("long_name", str(name))
        attrs.setdefault("units", "1")
        # A grid without a CRS has no grid-mapping variable to point to.
        if crs is not None and dims[0] in var.dims:
            attrs.pop("grid_mapping", None)
            var.encoding["grid_mapping"] = GRID_MAPPING
        var.attrs = attrs
    return out


# Attributes xarray reads as encodings: the writer sets them itself (a dataset opened with
# mask_and_scale=False carries them as attributes; writing them again would clash).
_ENCODING_ATTRS = ("_FillValue", "missing_value")


def _fill_value(var: xr.Variable) -> Any:
    """CF ``_FillValue``: NaN for floats, none for integers (see the module's docstring)."""
    if np.issubdtype(var.dtype, np.integer):
        return None
    return var.dtype.type(np.nan)


def prepare(ds: xr.Dataset, *, dims: tuple[str, str],
            provenance: Mapping[str, Any] | None) -> xr.Dataset:
    """``ds`` with CF metadata, global provenance and writer-owned encodings.

    Parameters
    ----------
    ds : xarray.Dataset
        The product (lazy or in memory).
    dims : (str, str)
        Its spatial dimensions (see :func:`spatial_dims`).
    provenance : dict, optional
        Extra provenance attributes (secrets are dropped).
    """
    from .._version import __version__

    drop = [n for n, c in ds.coords.items() if c.dtype == object and n not in ds.dims]
    # a shallow copy: the attributes and encodings edited below are the copy's, not the caller's
    out = _grid_mapping(ds.drop_vars(drop).copy(), dims)
    for name, var in out.variables.items():
        # The writer owns encodings: stale ones from a source file can conflict.
        var.encoding = {k: v for k, v in var.encoding.items() if k in ("dtype", "grid_mapping")}
        attrs = dict(var.attrs)
        fills = [attrs.pop(k) for k in _ENCODING_ATTRS if k in attrs]
        if fills and name in out.data_vars and "nodata" not in attrs and not is_nan(fills[0]):
            attrs["nodata"] = fills[0]  # a declared fill stays declared, as nodata
        if isinstance(attrs.get("nodata"), str) and attrs["nodata"].lower() == "nan":
            attrs["nodata"] = float("nan")  # "nan" as written (JSON has no NaN)
        var.attrs = json_safe(scrub(attrs))
        if name in out.data_vars:
            if np.issubdtype(var.dtype, np.integer) or np.issubdtype(var.dtype, np.floating):
                var.encoding["_FillValue"] = _fill_value(var)
            if is_nan(var.attrs.get("nodata")):
                var.attrs["nodata"] = "nan"  # JSON has no NaN
    attrs = scrub(dict(out.attrs))
    for name in out.data_vars:
        for key in _GLOBAL:
            if key in out[name].attrs:
                attrs.setdefault(key, out[name].attrs.pop(key))
    attrs.update({
        "Conventions": "CF-1.8",
        "cup4soil_version": __version__,
        "cup4soil_written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **({"provenance": scrub(dict(provenance))} if provenance else {}),
    })
    out.attrs = json_safe(attrs)
    return out
