"""The PVIR2 bare-soil threshold as an object: ``Threshold.on(geobox)`` gives its values.

Three kinds, all frozen (they travel to the block tasks):

- :class:`ConstantThreshold` -- one value everywhere;
- :class:`GridThreshold` -- an array on (a window of) the cube's grid, NumPy or Dask;
- :class:`RasterThreshold` -- a raster held in memory, reprojected bilinearly per block.

:func:`as_threshold` turns what users pass (:data:`ThresholdLike`) into one of them and
checks it covers the cube. :meth:`Threshold.restrict` cuts a threshold down to one block
before it is sent to that block's task (a grid threshold ships only the block's pixels).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox

from ..cube.windows import AnyArray
from ..errors import ParameterError, ThresholdError
from ..sources import resources as _resources

__all__ = [
    "ConstantThreshold", "GridThreshold", "RasterThreshold", "Threshold", "ThresholdLike",
    "as_threshold", "on_grid", "read_raster", "threshold_array",
]

#: The values PVIR2 = NDVI + NBR can take: a threshold outside cannot mean anything.
PVIR2_RANGE = (-2.0, 2.0)
#: What users may pass as a threshold: a PVIR2 value, a DataArray (on the cube grid, or with
#: a CRS to be reprojected), a raster path/URL, or ``"dlr-europe"`` (DLR's raster).
ThresholdLike: TypeAlias = "float | str | os.PathLike[str] | xr.DataArray"


@runtime_checkable
class Threshold(Protocol):
    """A PVIR2 threshold that can be evaluated on any window of the cube's grid."""

    def on(self, geobox: GeoBox) -> np.ndarray:
        """The threshold on ``geobox`` as float32 ``(y, x)`` values."""
        ...

    def restrict(self, geobox: GeoBox) -> Threshold:
        """The part of the threshold :meth:`on` needs for ``geobox`` (sent to one task)."""
        ...


@dataclass(frozen=True)
class ConstantThreshold:
    """One PVIR2 value everywhere."""

    value: float

    def on(self, geobox: GeoBox) -> np.ndarray:
        return np.full(geobox.shape.yx, self.value, dtype=np.float32)

    def restrict(self, geobox: GeoBox) -> ConstantThreshold:
        return self


@dataclass(frozen=True)
class GridThreshold:
    """Values on ``geobox`` (float32, NumPy or Dask); any window of that grid can be asked.

    A Dask-backed ``data`` in a task argument is a dependency of that task (``dask.delayed``
    looks into dataclasses), so the task receives NumPy values.
    """

    data: AnyArray  # (y, x) float32
    geobox: GeoBox

    def on(self, geobox: GeoBox) -> np.ndarray:
        rows, cols = _window(self.geobox, geobox)
        return np.asarray(self.data[rows, cols], dtype=np.float32)

    def restrict(self, geobox: GeoBox) -> GridThreshold:
        rows, cols = _window(self.geobox, geobox)
        return GridThreshold(self.data[rows, cols], geobox)


@dataclass(frozen=True)
class RasterThreshold:
    """A threshold raster held in memory (north-up), reprojected bilinearly on demand."""

    data: np.ndarray  # float32, NaN = nodata
    transform: Affine
    crs: str

    def on(self, geobox: GeoBox) -> np.ndarray:
        from rasterio.warp import Resampling, reproject

        out = np.full(geobox.shape.yx, np.nan, dtype=np.float32)
        reproject(
            self.data, out, src_transform=self.transform, src_crs=self.crs, src_nodata=np.nan,
            dst_transform=geobox.affine, dst_crs=str(geobox.crs), dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
        return out

    def restrict(self, geobox: GeoBox) -> RasterThreshold:
        # Resampled inside the task: building the graph computes nothing.
        return self

    def check_covers(self, geobox: GeoBox) -> None:
        """Raise :class:`ThresholdError` unless the raster covers all of ``geobox``."""
        from odc.geo.geom import box

        h, w = self.data.shape
        t = self.transform
        raster = box(t.c, t.f + t.e * h, t.c + t.a * w, t.f, self.crs)
        extent = geobox.extent.to_crs(self.crs)
        if not raster.contains(extent):
            b = raster.boundingbox
            raise ThresholdError(
                f"the threshold raster (covering {b.left:.2f}..{b.right:.2f}, {b.bottom:.2f}.."
                f"{b.top:.2f} in {self.crs}) does not cover the cube. DLR's raster covers Europe "
                "only; elsewhere pass threshold=<float> or your own raster."
            )


def _window(outer: GeoBox, inner: GeoBox) -> tuple[slice, slice]:
    """Rows and columns of ``outer`` that ``inner`` (a window of the same grid) covers."""
    col, row = ~outer.affine * (inner.affine.c, inner.affine.f)
    r0, c0 = round(row), round(col)
    h, w = inner.shape.yx
    if (inner.crs != outer.crs or inner.affine.a != outer.affine.a
            or inner.affine.e != outer.affine.e or abs(row - r0) > 1e-6
            or abs(col - c0) > 1e-6 or r0 < 0 or c0 < 0
            or r0 + h > outer.shape.y or c0 + w > outer.shape.x):
        raise ThresholdError("a grid threshold was asked for a window outside its grid.")
    return slice(r0, r0 + h), slice(c0, c0 + w)


def read_raster(source: str | os.PathLike[str]) -> RasterThreshold:
    """A threshold raster read into memory, flipped north-up, nodata as NaN."""
    import rasterio

    try:
        with rasterio.open(source) as src:
            data = src.read(1).astype(np.float32)
            transform, crs, nodata = src.transform, src.crs, src.nodata
    except rasterio.RasterioIOError as exc:
        raise ThresholdError(f"could not read the threshold raster {source}: {exc}") from None
    if nodata is not None:
        data[data == nodata] = np.nan
    if transform.e > 0:
        # DLR's raster is south-up (positive y pixel size): flip it to north-up.
        data = data[::-1].copy()
        transform = Affine(transform.a, transform.b, transform.c, transform.d, -transform.e,
                           transform.f + transform.e * data.shape[0])
    return RasterThreshold(data, transform, crs.to_string() if crs else "EPSG:4326")


def on_grid(da: xr.DataArray, geobox: GeoBox) -> bool:
    """Whether a (y, x) DataArray has exactly the pixel centres of ``geobox``."""
    from odc.geo.xr import xr_coords

    coords = xr_coords(geobox)
    return bool(
        da.dims == ("y", "x") and da.shape == geobox.shape
        and np.allclose(da.x.values, coords["x"].values)
        and np.allclose(da.y.values, coords["y"].values)
    )


def as_threshold(threshold: ThresholdLike, geobox: GeoBox) -> Threshold:
    """The :class:`Threshold` for ``geobox`` of what the user passed.

    Raises
    ------
    ParameterError
        Not a finite float, a DataArray, a path/URL or ``"dlr-europe"``.
    ThresholdError
        A raster that cannot be read or does not cover ``geobox``; a DataArray that cannot
        be put on the grid.
    """
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        if not math.isfinite(threshold):
            raise ParameterError(f"threshold={threshold} must be a finite PVIR2 value.")
        if not PVIR2_RANGE[0] <= threshold <= PVIR2_RANGE[1]:
            raise ParameterError(
                f"threshold={threshold} is outside PVIR2's range [{PVIR2_RANGE[0]:g}, "
                f"{PVIR2_RANGE[1]:g}] (PVIR2 = NDVI + NBR); DLR's regional thresholds for "
                "Europe lie between about -0.1 and 0.55.")
        return ConstantThreshold(float(threshold))
    if isinstance(threshold, xr.DataArray):
        if on_grid(threshold, geobox):
            return GridThreshold(threshold.astype("float32").data, geobox)
        try:
            reprojected = threshold.odc.reproject(geobox, resampling="bilinear").astype("float32")
        except Exception as exc:
            raise ThresholdError(
                f"the threshold DataArray could not be put on the cube grid ({exc}). Give it "
                "a CRS (rioxarray/odc-geo) or the cube's y/x coordinates."
            ) from None
        return GridThreshold(reprojected.data, geobox)
    if isinstance(threshold, (str, os.PathLike)):
        source = (_resources.dlr_threshold_path() if str(threshold) == "dlr-europe"
                  else threshold)
        raster = read_raster(source)
        raster.check_covers(geobox)
        finite = raster.data[np.isfinite(raster.data)]
        if finite.size and (finite.min() < PVIR2_RANGE[0] or finite.max() > PVIR2_RANGE[1]):
            raise ThresholdError(
                f"the threshold raster {source} holds values from {finite.min():g} to "
                f"{finite.max():g}, outside PVIR2's range [{PVIR2_RANGE[0]:g}, "
                f"{PVIR2_RANGE[1]:g}] (PVIR2 = NDVI + NBR): is it another index, or scaled? "
                "Give PVIR2 thresholds, with the raster's nodata set.")
        return raster
    raise ParameterError(
        f"threshold={threshold!r} is not a float, a DataArray, a raster path/URL or "
        "'dlr-europe'."
    )


def threshold_array(threshold: Threshold, geobox: GeoBox) -> AnyArray:
    """The threshold over all of ``geobox``: lazy if it is a Dask-backed grid threshold."""
    if isinstance(threshold, GridThreshold) and threshold.geobox == geobox:
        return threshold.data
    return threshold.on(geobox)
