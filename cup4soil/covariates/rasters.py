"""User rasters as covariates: any file or URL (a JRC parent-material map, a geology map),
lazily reprojected onto the grid.

The file becomes an in-memory STAC item made from its header and is read through the same
read plan as catalog layers (:mod:`.loading`): odc-loader's rasterio reader reprojects each
chunk (odc-geo computes the windows). Categorical layers are resampled by mode (coarser
grid) or nearest and may be one-hot encoded; continuous ones by average (coarser) or
bilinear.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import dask.array as dsa
import numpy as np
import shapely.geometry
import xarray as xr
from odc.geo.xr import xr_coords

from ..errors import CoverageError, LayerError, ParameterError
from .grid import as_geobox, chunk_shape, layer_attrs, pixel_metres
from .loading import FileInfo, file_item, lazy_layer, read_header

__all__ = ["raster"]

Kind = Literal["continuous", "categorical"]
_RESAMPLING = ("nearest", "mode", "average", "bilinear", "cubic", "min", "max", "med")


def _looks_categorical(info: FileInfo) -> str | None:
    """Why the header says the raster holds classes (None: it does not say)."""
    if info.palette:
        return "it has a colour table (palette)"
    for tags in (info.band_tags, info.tags):
        for key in tags:
            if key.lower() in ("legend", "classes", "class_names", "categories"):
                return f"its metadata has a {key!r} table"
    return None


def _legend_classes(info: FileInfo) -> list[int]:
    """Class values from a ``legend`` tag such as WorldCover's (``"10  Tree cover\\n..."``)."""
    for tags in (info.band_tags, info.tags):
        for key, text in tags.items():
            if key.lower() == "legend":
                return [int(m) for m in re.findall(r"^\s*(\d+)\b", text, flags=re.M)]
    return []


def _native_m(info: FileInfo) -> float:
    from pyproj import CRS

    size = abs(info.transform[0])
    try:
        geographic = CRS.from_user_input(info.crs).is_geographic
    except Exception:
        geographic = False
    return size * 111_320.0 if geographic else size


def raster(
    path_or_url: str | os.PathLike[str],
    geobox: Any,
    *,
    kind: Kind = "continuous",
    name: str | None = None,
    resampling: str | None = None,
    one_hot: bool = False,
    classes: Sequence[int] | None = None,
    chunks: dict[str, int] | None = None,
) -> xr.DataArray:
    """A user raster on a grid (lazy).

    Parameters
    ----------
    path_or_url
        A GeoTIFF (or any GDAL raster) path or URL.
    geobox
        The target grid: a GeoBox, or a composite whose grid to use.
    kind
        ``"continuous"`` (values: resampled by ``average`` onto coarser grids, else
        ``bilinear``; float32 with NaN nodata) or ``"categorical"`` (classes: ``mode`` onto
        coarser grids, else ``nearest``; the file's integer type and nodata).
    name
        Name of the layer (default: the file's stem).
    resampling
        Override the resampling (``nearest``, ``mode``, ``average``, ``bilinear``, ...).
    one_hot
        Categorical only: one 0/1 layer per class along a ``class`` dimension.
    classes
        The class values for ``one_hot`` (default: the file's ``legend``).
    chunks
        Output chunks (default 1024 px).

    Raises
    ------
    LayerError
        A categorical raster (colour table, legend) asked for as continuous, a float raster
        as categorical, a raster without CRS metadata, one-hot without known classes.
    CoverageError
        The raster does not overlap the grid at all.
    """
    gbox = as_geobox(geobox)
    if kind not in ("continuous", "categorical"):
        raise ParameterError(f"kind={kind!r}: use 'continuous' or 'categorical'.")
    if resampling is not None and resampling not in _RESAMPLING:
        raise ParameterError(f"resampling={resampling!r}: use one of {', '.join(_RESAMPLING)}.")
    info = read_header(path_or_url)
    label = name or Path(info.href).stem
    hint = _looks_categorical(info)
    if kind == "continuous" and hint is not None:
        raise LayerError(
            f"the raster {info.href} holds classes ({hint}), so averaging or interpolating it "
            "would invent classes between its classes. Pass kind='categorical'.")
    if kind == "categorical" and np.dtype(info.dtype).kind == "f":
        raise LayerError(
            f"the raster {info.href} holds {info.dtype} values, not integer classes. Pass "
            "kind='continuous', or convert its classes to an integer raster first.")
    if one_hot and kind != "categorical":
        raise ParameterError("one_hot=True needs kind='categorical'.")
    item = file_item(info)
    footprint = shapely.geometry.shape(item.geometry)
    if not footprint.intersects(gbox.extent.to_crs("EPSG:4326").geom):
        raise CoverageError(
            f"the raster {info.href} does not overlap the grid at all. Check its CRS and "
            "the area.")
    res = pixel_metres(gbox)
    coarser = res > 1.5 * _native_m(info)
    cy, cx = chunk_shape(chunks)
    coords = dict(xr_coords(gbox, crs_coord_name="spatial_ref"))
    source = f"user raster {Path(info.href).name}"
    if kind == "continuous":
        method = resampling or ("average" if coarser else "bilinear")
        nodata = float(info.nodata) if info.nodata is not None else float("nan")
        data = lazy_layer([item], "data", gbox, data_type="float32", nodata=nodata,
                          resampling=method, chunk=(cy, cx))
        if not np.isnan(nodata):
            data = dsa.where(data == np.float32(nodata), np.float32(np.nan), data)
        out = xr.DataArray(data, dims=("y", "x"), coords=coords, name=label)
        out.attrs.update(layer_attrs(units=info.band_tags.get("units", "unknown"),
                                     long_name=label, source=source, resampling=method,
                                     kind="continuous"))
    else:
        method = resampling or ("mode" if coarser else "nearest")
        nodata_c = int(info.nodata) if info.nodata is not None else 0
        data = lazy_layer([item], "data", gbox, data_type=info.dtype, nodata=nodata_c,
                          resampling=method, chunk=(cy, cx))
        attrs = layer_attrs(units="1", long_name=f"{label} class", source=source,
                            resampling=method, kind="categorical", nodata=nodata_c)
        if one_hot:
            values = list(classes) if classes is not None else _legend_classes(info)
            if not values:
                raise LayerError(
                    f"one_hot=True needs the classes of {info.href}, and its metadata has no "
                    "legend: pass classes=[...].")
            codes = np.asarray(values, dtype=data.dtype)
            hot = (data[None] == codes[:, None, None]).astype(np.uint8)
            out = xr.DataArray(hot, dims=("class", "y", "x"),
                               coords={**coords, "class": codes.astype(np.int64)}, name=label)
            attrs["long_name"] = f"{label}: 1 where the pixel is of the class"
            attrs.pop("nodata")
        else:
            out = xr.DataArray(data, dims=("y", "x"), coords=coords, name=label)
        out.attrs.update(attrs)
    out.encoding["grid_mapping"] = "spatial_ref"
    return out
