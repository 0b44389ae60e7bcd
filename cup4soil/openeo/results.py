"""An openEO result cube in :func:`cup4soil.scmap.composite`'s layout.

openEO returns one band per product and reflectance band (``SRC_B02``, ``SRC_STD_B02``,
..., ``VPC``, ``BSC``, ``BSF``, ``MASK``; DLR's graph spells the deviations ``SRC-STD_B02``
and ``MREF-STD_B02``) as floats with null as nodata. :func:`to_composite` gathers them into
the variables of a native composite -- ``SRC`` ... over ``(band, y, x)`` in float32 with
NaN, the counts as uint16 and MASK as uint8 with 0 as nodata -- so both worlds compare
variable by variable. :func:`open_result` reads a downloaded result file (netCDF or
GeoTIFF) into that layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import BackendError
from ..sources.sentinel2 import REFLECTANCE_BANDS

__all__ = ["open_result", "to_composite"]

_BAND_PRODUCTS = ("SRC", "SRC_STD", "SRC_CI95", "MREF", "MREF_STD")
#: DLR's spelling of two products.
_ALIASES = {"SRC-STD": "SRC_STD", "MREF-STD": "MREF_STD"}
_ORDER = ("SRC", "SRC_STD", "SRC_CI95", "MREF", "MREF_STD", "VPC", "BSC", "BSF", "MASK")
_COUNTS = {"VPC": "uint16", "BSC": "uint16", "MASK": "uint8"}
_ATTRS: dict[str, dict[str, Any]] = {
    "SRC": {"long_name": "soil reflectance composite: mean of bare observations",
            "units": "1e-4 reflectance"},
    "SRC_STD": {"long_name": "standard deviation of bare observations (n - 1)",
                "units": "1e-4 reflectance"},
    "SRC_CI95": {"long_name": "95 % confidence half-width of SRC", "units": "1e-4 reflectance"},
    "MREF": {"long_name": "mean reflectance composite: mean of valid observations",
             "units": "1e-4 reflectance"},
    "MREF_STD": {"long_name": "standard deviation of valid observations (n - 1)",
                 "units": "1e-4 reflectance"},
    "VPC": {"long_name": "valid pixel count", "units": "1"},
    "BSC": {"long_name": "bare surface count (after NMAD outlier removal)", "units": "1",
            "nodata": 0},
    "BSF": {"long_name": "bare surface frequency BSC / VPC", "units": "1"},
    "MASK": {"long_name": "1 bare soil, 2 permanently vegetated, 3 other surface",
             "units": "1", "nodata": 0, "flag_values": [1, 2, 3],
             "flag_meanings": "bare_soil permanently_vegetated other_surface"},
}


def _label(label: str) -> tuple[str, str | None]:
    """(product, reflectance band or None) of a result band label."""
    for band in REFLECTANCE_BANDS:
        suffix = f"_{band}"
        if label.endswith(suffix):
            product = label[: -len(suffix)]
            product = _ALIASES.get(product, product)
            if product in _BAND_PRODUCTS:
                return product, band
    return label, None


def _layers(result: xr.DataArray | xr.Dataset) -> dict[str, xr.DataArray]:
    """One 2-D (y, x) layer per band label."""
    if isinstance(result, xr.DataArray):
        if "bands" not in result.dims:
            name = str(result.name) if result.name is not None else "result"
            return {name: result}
        return {str(b): result.sel(bands=b, drop=True) for b in result.bands.values}
    return {str(k): v for k, v in result.data_vars.items()
            if {"y", "x"} <= set(v.dims)}


def to_composite(result: xr.DataArray | xr.Dataset) -> xr.Dataset:
    """Gather an openEO SCMaP result into :func:`cup4soil.scmap.composite`'s variables.

    Parameters
    ----------
    result
        A cube over ``(bands, y, x)`` (a local run), or a Dataset with one variable per band
        label (an opened netCDF result); a time dimension of one step is dropped.

    Returns
    -------
    xarray.Dataset
        ``SRC``, ``SRC_STD``, ``SRC_CI95``, ``MREF``, ``MREF_STD`` (float32 over ``(band, y,
        x)``, NaN nodata), ``VPC`` and ``BSC`` (uint16, BSC 0 = nodata), ``BSF`` (float32),
        ``MASK`` (uint8, 0 = nodata), whichever the result holds, and any other band as
        it came. CRS as the result's.
    """
    crs = result.rio.crs
    for dim in ("t", "time"):
        if dim in result.dims:
            if result.sizes[dim] != 1:
                raise BackendError(
                    f"the result has {result.sizes[dim]} time steps; an SCMaP composite has "
                    "none. Check that the graph reduces the time dimension.")
            result = result.isel({dim: 0}, drop=True)
    layers = _layers(result)
    if not layers:
        raise BackendError("the result holds no (y, x) raster to read.")
    grouped: dict[str, dict[str, xr.DataArray]] = {}
    others: dict[str, xr.DataArray] = {}
    for label, layer in layers.items():
        product, band = _label(label)
        if band is None:
            others[product] = layer
        else:
            grouped.setdefault(product, {})[band] = layer
    out: dict[str, xr.DataArray] = {}
    for product, per_band in grouped.items():
        missing = [b for b in REFLECTANCE_BANDS if b not in per_band]
        if missing:
            raise BackendError(
                f"the result has {product} for {len(per_band)} of the ten bands (missing "
                f"{', '.join(missing)}); it is not an SCMaP composite.")
        stacked = xr.concat([per_band[b] for b in REFLECTANCE_BANDS], dim="band")
        out[product] = stacked.assign_coords(band=list(REFLECTANCE_BANDS)).astype("float32")
    for name, layer in others.items():
        if name in _COUNTS:
            out[name] = layer.fillna(0).astype(_COUNTS[name])
        elif name == "BSF":
            out[name] = layer.astype("float32")
        else:
            out[name] = layer
    ordered = {k: out[k] for k in _ORDER if k in out}
    ordered.update({k: v for k, v in out.items() if k not in ordered})
    for name, var in ordered.items():
        var.attrs = dict(_ATTRS.get(name, var.attrs))
        if np.issubdtype(var.dtype, np.floating) and name in _ATTRS:
            var.attrs["nodata"] = float("nan")
    ds = xr.Dataset(ordered)
    drop = [c for c in ds.coords if c not in ("band", "y", "x")]
    ds = ds.drop_vars(drop)
    if crs is not None:
        ds = ds.rio.write_crs(crs)
    return ds


def open_result(path: str | Path) -> xr.Dataset:
    """Read a downloaded openEO result file (netCDF or GeoTIFF) in composite layout.

    A GeoTIFF's band descriptions are its band labels, as openEO back-ends write them.
    """
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"there is no result file {path}.")
    head = path.read_bytes()[:8]
    if head[:4] in (b"II*\x00", b"MM\x00*") or head[:4] in (b"II+\x00", b"MM\x00+"):
        import rioxarray

        da = rioxarray.open_rasterio(path, masked=True)
        assert isinstance(da, xr.DataArray)  # one file, one subdataset
        names = da.attrs.get("long_name")
        if isinstance(names, str):
            names = (names,)
        if not names or len(names) != da.sizes["band"]:
            raise BackendError(
                f"the GeoTIFF {path.name} has no band descriptions, so its bands cannot be "
                "named; download the result as netCDF (format='netCDF').")
        da = da.assign_coords(band=list(names)).rename(band="bands")
        return to_composite(da)
    if head[:4] in (b"CDF\x01", b"CDF\x02") or head[:8] == b"\x89HDF\r\n\x1a\n":
        try:
            ds = xr.open_dataset(path, decode_coords="all", mask_and_scale=True)
        except (ValueError, OSError) as exc:
            raise BackendError(f"could not read the netCDF result {path.name}: {exc}") from None
        return to_composite(ds.load())
    raise BackendError(
        f"{path.name} is neither netCDF nor GeoTIFF (it starts with {head[:8]!r}); the "
        "back-end may have returned an error document instead of data.")
