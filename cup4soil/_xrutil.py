"""Small xarray rules shared by several stages (infrastructure: imports no stage).

- :func:`layers`: variables with one extra dimension (``SRC`` over ``(band, y, x)``) as named
  2-D layers ``SRC_B02``, ... -- DLR's SoilSuite naming, used by models (features), products
  (GeoTIFF bands) and SCMaP (:func:`cup4soil.scmap.to_soilsuite`);
- :func:`crs_label`: ``"EPSG:32633"`` where an EPSG code exists, else the WKT;
- :func:`is_nan`: whether a declared nodata value is NaN.
"""

from __future__ import annotations

import math
from typing import Any

import xarray as xr

__all__ = ["crs_label", "is_nan", "layers"]

#: A dimension with more labels than this is not a band axis (e.g. time): refuse to split it.
MAX_LABELS = 256


def layers(ds: xr.Dataset, *, dims: tuple[str, str] = ("y", "x"),
           max_labels: int = MAX_LABELS) -> dict[str, xr.DataArray]:
    """The dataset's raster variables as named 2-D ``dims`` layers.

    A variable over ``dims`` keeps its name; one with a single extra dimension gives one
    layer per label, named ``f"{name}_{label}"``. Variables without both ``dims`` (scalars,
    tables) are left out.

    Raises
    ------
    ValueError
        A variable has more than one extra dimension, or more than ``max_labels`` labels
        along it; the message names the variable and says to select a slice first.
    """
    out: dict[str, xr.DataArray] = {}
    for name, var in ds.data_vars.items():
        if not all(d in var.dims for d in dims):
            continue
        extra = [d for d in var.dims if d not in dims]
        if not extra:
            out[str(name)] = var.transpose(*dims)
        elif len(extra) == 1 and var.sizes[extra[0]] <= max_labels:
            for label in var[extra[0]].values:
                out[f"{name}_{label}"] = var.sel({extra[0]: label}, drop=True).transpose(*dims)
        else:
            raise ValueError(
                f"variable {name!r} has dimensions {var.dims}; select one slice first, e.g. "
                f"ds.sel(year=2021), so every layer is 2-D or has one band dimension.")
    return out


def crs_label(crs: Any) -> str:
    """``"EPSG:<code>"`` for a CRS with an EPSG code, else its WKT.

    Raises
    ------
    ValueError
        ``crs`` is not something pyproj understands.
    """
    from pyproj import CRS

    try:
        c = CRS.from_user_input(crs)
    except Exception as exc:  # pyproj.exceptions.CRSError
        raise ValueError(f"cannot understand CRS {crs!r}: {exc}") from None
    epsg = c.to_epsg()
    return f"EPSG:{epsg}" if epsg else str(c.to_wkt())


def is_nan(value: Any) -> bool:
    """Whether a nodata value (attribute or encoding) is NaN; ``None`` and numbers are not."""
    try:
        return isinstance(value, (float, int)) and math.isnan(value)
    except TypeError:
        return False
