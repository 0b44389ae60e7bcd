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


#: Nodata of the scaled-integer layers (SoilGrids' int16 convention).
INT16_NODATA = -32768
_INT16_MAX = 32767


def _scaling(var: xr.DataArray) -> float | None:
    """How a layer is stored as a scaled integer: the multiplier from its values to the
    stored integers, or None for a layer that keeps its type. SoilGrids property layers are
    in mapped units already (dg/kg, pH×10, cg/kg, cg/cm³, g/kg: multiplier 1); the
    relative ``uncertainty`` is stored ×10 as SoilGrids does."""
    if not np.issubdtype(var.dtype, np.floating):
        return None
    if var.attrs.get("statistic") == "uncertainty":
        return 10.0
    if "conversion_factor" in var.attrs and "statistic" in var.attrs:
        return 1.0
    return None


def _to_int16(name: str, var: xr.DataArray, mult: float) -> xr.DataArray:
    """``round(value × mult)`` as int16 with :data:`INT16_NODATA`; GDAL scale ``1/mult``.

    Raises
    ------
    ParameterError
        A value does not fit int16 after scaling.
    """
    x = np.asarray(var.values, np.float64) * mult
    finite = np.isfinite(x)
    if finite.any():
        lo, hi = float(np.min(x[finite])), float(np.max(x[finite]))
        if lo < -_INT16_MAX - 0.5 or hi > _INT16_MAX + 0.5:
            raise ParameterError(
                f"{name}: values {lo / mult:g} to {hi / mult:g} {var.attrs.get('units', '')} "
                f"do not fit a scaled int16 (x {mult:g}, |value| <= {_INT16_MAX}); write this "
                "product without scaled=True (float COGs).")
    out = np.where(finite, np.rint(x), INT16_NODATA).astype(np.int16)
    attrs = {k: v for k, v in var.attrs.items() if k != "nodata"}
    attrs.update(nodata=INT16_NODATA, scale_factor=1.0 / mult, add_offset=0.0,
                 stored_as=f"int16: round(value x {mult:g}); value = stored x "
                           f"{1 / mult:g}; nodata {INT16_NODATA}")
    scaled = var.copy(data=out)  # coordinates (and spatial_ref) kept
    scaled.attrs = attrs
    return scaled


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
            storage_options: Mapping[str, Any] | None = None,
            scaled: bool = False) -> dict[str, str]:
    """One Cloud-Optimized GeoTIFF per 2-D variable, with overviews.

    Banded variables are split SoilSuite-style (``SRC`` → ``SRC_B02`` ...); other extra
    dimensions likewise (``BSC_2021``). Files are written locally, then copied to
    ``prefix`` when it is a remote URL.

    Parameters
    ----------
    ds : xarray.Dataset
        The product.
    prefix : str
        Folder (path or URL) of the COGs.
    storage_options : mapping, optional
        fsspec options for a remote ``prefix``.
    scaled : bool
        Write SoilGrids property layers (:meth:`cup4soil.soilmap.SoilMapModel.predict`:
        ``soc_0-30cm_mean``, ``_Q0.05`` ...) as SoilGrids-style scaled integers: int16 of
        the value in mapped units (dg/kg, pH×10, cg/kg, cg/cm³, g/kg), the relative
        ``_uncertainty`` ×10, nodata −32768, GDAL band scale/offset (value = stored ×
        scale), and the ``units``/``conversion`` attributes as GDAL metadata. Other layers
        keep their type.

    Returns
    -------
    dict
        Variable name → href of its COG.

    Raises
    ------
    ParameterError
        A variable has more than one dimension besides y/x; with ``scaled``, a value that
        does not fit int16.
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
            mult = _scaling(var) if scaled else None
            _write_cog(var if mult is None else _to_int16(name, var, mult), path)
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
