"""The design matrix: features per sample, from sample columns or covariates sampled at the
points (nearest pixel, CRS-aware); and the same features stacked per pixel for prediction."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import dask.array as da
import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr

from .._xrutil import crs_label, is_nan, layers
from ..errors import CovariateError, ParameterError, SampleError
from ._typing import FloatArray
from .samples import Samples, sample_crs

__all__ = ["Design", "Missing", "covariate_crs", "covariate_layers", "design_matrix",
           "feature_stack", "sample_covariates"]

#: Samples off the covariate grid or on nodata: refuse them, or drop them.
Missing: TypeAlias = Literal["raise", "drop"]
Covariates: TypeAlias = xr.Dataset | xr.DataArray

#: Chunk size (pixels) given to covariates held in memory.
DEFAULT_CHUNK = 1024


# --- covariates as layers ---------------------------------------------------------------

def covariate_layers(covariates: Covariates) -> dict[str, xr.DataArray]:
    """Covariates as named 2-D layers: a ``(band, y, x)`` variable ``SRC`` gives
    ``SRC_B02``, ... (the SoilSuite naming of :func:`cup4soil.scmap.to_soilsuite`).

    Raises
    ------
    CovariateError
        Not a Dataset/DataArray, a variable with more than one extra dimension, or no
        ``(y, x)`` layer at all.
    """
    if isinstance(covariates, xr.DataArray):
        covariates = _dataarray_to_dataset(covariates)
    if not isinstance(covariates, xr.Dataset):
        raise CovariateError(f"covariates must be an xarray Dataset, not "
                             f"{type(covariates).__name__}.")
    try:
        out = layers(covariates)
    except ValueError as exc:  # a variable that is not one 2-D layer or a band stack
        raise CovariateError(str(exc)) from None
    if not out:
        raise CovariateError("the covariates hold no (y, x) raster layers.")
    return out


def _dataarray_to_dataset(arr: xr.DataArray) -> xr.Dataset:
    extra = [d for d in arr.dims if d not in ("y", "x")]
    if not extra:
        return arr.to_dataset(name=str(arr.name or "covariate"))
    if len(extra) > 1:
        raise CovariateError(f"covariate array has dimensions {arr.dims}; expected "
                             "(feature, y, x).")
    dim = extra[0]
    return xr.Dataset({str(v): arr.sel({dim: v}, drop=True) for v in arr[dim].values})


def _geobox(covariates: Covariates) -> Any:
    import odc.geo.xr  # noqa: F401  (registers the .odc accessor)

    gbox = covariates.odc.geobox
    if gbox is None:
        raise CovariateError(
            "the covariates have no georeferencing (x/y coordinates and a CRS); write one "
            "with ds.rio.write_crs('EPSG:...') or odc.geo's ds.odc.assign_crs(...).")
    return gbox


def covariate_crs(covariates: Covariates) -> str:
    """``"EPSG:<code>"`` (or WKT) of the covariates' grid.

    Raises
    ------
    CovariateError
        The covariates are not georeferenced.
    """
    try:
        return crs_label(_geobox(covariates).crs)
    except ValueError as exc:
        raise CovariateError(str(exc)) from None


# --- training: features at the sample points ---------------------------------------------

def sample_covariates(covariates: xr.Dataset | xr.DataArray, x: npt.ArrayLike,
                      y: npt.ArrayLike, *, crs: Any, features: Sequence[str] | None = None,
                      missing: Missing = "raise") -> pd.DataFrame:
    """Covariate values at points (nearest pixel), CRS-aware.

    Parameters
    ----------
    covariates : xarray.Dataset
        Georeferenced layers (e.g. SCMaP composites); read lazily, only where points are.
    x, y : sequence of float
        Point coordinates in ``crs``.
    crs : str, int or pyproj.CRS
        CRS of the points (required: a point without one could be anywhere).
    features : sequence of str, optional
        Layers to sample (default: all, SoilSuite naming for banded variables).
    missing : {"raise", "drop"}
        Points outside the grid or on nodata raise :class:`SampleError`, or get NaN rows
        (``"drop"``: the caller drops them).

    Returns
    -------
    pandas.DataFrame
        One row per point, one column per feature.
    """
    from pyproj import Transformer

    if crs is None:
        raise SampleError(
            "the samples have no CRS, so they cannot be placed on the covariate grid; give "
            "crs='EPSG:...' (or a GeoDataFrame with a CRS, or x_EPSG/y_EPSG columns).")
    layer = covariate_layers(covariates)
    names = list(features) if features is not None else list(layer)
    absent = [n for n in names if n not in layer]
    if absent:
        raise CovariateError(f"covariates lack {', '.join(absent)}; they hold "
                             f"{', '.join(layer)}.")
    gbox = _geobox(covariates)
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    unplaced = ~(np.isfinite(xs) & np.isfinite(ys))
    if unplaced.any() and missing == "raise":
        bad = np.flatnonzero(unplaced)
        raise SampleError(
            f"{bad.size} of {unplaced.size} samples have no coordinates (missing or not "
            f"finite; rows {', '.join(map(str, bad[:5]))}{' ...' if bad.size > 5 else ''}); "
            "fill them in, or pass missing='drop' to train on the others.")
    tr = Transformer.from_crs(sample_crs(crs), covariate_crs(covariates), always_xy=True)
    px, py = tr.transform(xs, ys)
    fcol, frow = ~gbox.affine * (np.asarray(px, np.float64), np.asarray(py, np.float64))
    fcol, frow = np.floor(fcol), np.floor(frow)
    h, w = gbox.shape
    # decided in floating point: an unplaced (NaN) or far-off point must not reach the cast
    inside = (np.isfinite(fcol) & np.isfinite(frow) & (fcol >= 0) & (fcol < w)
              & (frow >= 0) & (frow < h))
    col = np.where(inside, fcol, 0).astype(np.int64)
    row = np.where(inside, frow, 0).astype(np.int64)
    if not inside.all() and missing == "raise":
        bad = np.flatnonzero(~inside)
        raise SampleError(
            f"{bad.size} of {inside.size} sample points fall outside the covariate grid "
            f"(rows {', '.join(map(str, bad[:5]))}{' ...' if bad.size > 5 else ''}); check the "
            "samples' CRS, or pass missing='drop' to train on the others.")
    r = xr.DataArray(np.clip(row, 0, h - 1), dims="point")
    c = xr.DataArray(np.clip(col, 0, w - 1), dims="point")
    # one compute for all layers: a chunk read for one layer is not read again for another
    at_points = xr.Dataset({n: layer[n] for n in names}).isel(y=r, x=c).compute()
    out = pd.DataFrame({n: np.asarray(at_points[n].values, np.float64) for n in names})
    for n in names:  # integer layers: their declared nodata is missing too
        nodata = layer[n].attrs.get("nodata", layer[n].attrs.get("_FillValue"))
        if nodata is not None and not is_nan(nodata):
            out.loc[out[n] == nodata, n] = np.nan
    out.loc[~inside, :] = np.nan
    on_nodata = inside & out.isna().any(axis=1).to_numpy()
    if on_nodata.any() and missing == "raise":
        bad = np.flatnonzero(on_nodata)
        cols = [n for n in names if out.loc[on_nodata, n].isna().any()]
        raise SampleError(
            f"{bad.size} sample points sit on nodata of {', '.join(cols[:5])} (rows "
            f"{', '.join(map(str, bad[:5]))}{' ...' if bad.size > 5 else ''}); pass "
            "missing='drop' to train on the others.")
    return out


@dataclass(frozen=True)
class Design:
    """The design matrix of a model: usable samples only.

    Attributes
    ----------
    x : ndarray of float64, shape (n, n_features)
        Features, every value finite.
    y : ndarray of float64, shape (n,)
        Target in the model's units.
    features : tuple of str
        Feature names, in the columns' order.
    samples : Samples
        The samples kept (table rows and coordinates), in the rows' order.
    crs : str or None
        CRS of the covariates the features were sampled from; None for feature columns.
    """

    x: FloatArray
    y: FloatArray
    features: tuple[str, ...]
    samples: Samples
    crs: str | None


def design_matrix(samples: Samples, y: FloatArray, *, features: Sequence[str] | None,
                  covariates: Covariates | None, missing: Missing) -> Design:
    """Features of every sample (columns, or covariates sampled at the points) and the
    target; samples lacking the target or a feature are dropped with a warning.

    Raises
    ------
    SampleError
        Missing or non-numeric feature columns, a feature NaN for every sample, covariates
        without point coordinates, or fewer than two usable samples.
    ParameterError
        Neither ``features`` nor ``covariates``.
    """
    table = samples.table
    if covariates is not None:
        if samples.x is None or samples.y is None:
            raise SampleError("sampling covariates needs point coordinates; the samples have "
                              "no geometry and no x/y columns (pass coords=).")
        feats = sample_covariates(covariates, samples.x, samples.y, crs=samples.crs,
                                  features=features, missing=missing)
        feature_names = [str(c) for c in feats.columns]
        crs_out = covariate_crs(covariates)
    else:
        if features is None:
            raise ParameterError("give features=[...] (columns of the samples) or "
                                 "covariates= (a Dataset to sample at the points).")
        feature_names = list(features)
        absent = [f for f in feature_names if f not in table]
        if absent:
            raise SampleError(f"feature columns {', '.join(absent)} are not in the samples.")
        bad = [f for f in feature_names if not pd.api.types.is_numeric_dtype(table[f])]
        if bad:
            raise SampleError(f"feature columns {', '.join(bad)} are not numeric; encode them "
                              "as numbers first.")
        feats = table[feature_names].astype(np.float64).reset_index(drop=True)
        crs_out = None
    all_nan = [f for f in feature_names if feats[f].isna().all()]
    if all_nan:
        raise SampleError(f"features {', '.join(all_nan)} are NaN for every sample.")
    x: FloatArray = feats.to_numpy(np.float64)
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
    if not keep.all():
        # stacklevel 3: the warning points at the caller of train()
        warnings.warn(f"{(~keep).sum()} of {keep.size} samples dropped (missing target or "
                      "feature values).", UserWarning, stacklevel=3)
    if keep.sum() < 2:
        raise SampleError("fewer than two samples have a target and every feature.")
    return Design(x[keep], y[keep], tuple(feature_names), samples.subset(keep), crs_out)


# --- prediction: features per pixel -------------------------------------------------------

def _shift(a: xr.DataArray, b: xr.DataArray) -> str:
    """How far layer ``a``'s pixel centres lie from ``b``'s (same shape): ``""`` if they
    coincide, else e.g. ``"shifted by 1000 m in x"``."""
    parts = []
    for dim in ("x", "y"):
        if dim in a.coords and dim in b.coords:
            da_, db_ = np.asarray(a[dim].values, float), np.asarray(b[dim].values, float)
            if da_.shape == db_.shape and da_.size:
                step = float(abs(db_[1] - db_[0])) if db_.size > 1 else 0.0
                delta = float(np.max(np.abs(da_ - db_)))
                if delta > max(1e-6 * step, 1e-9):
                    offset = da_ - db_
                    if np.allclose(offset, offset[0], atol=max(1e-6 * step, 1e-9)):
                        parts.append(f"{float(offset[0]):+g} in {dim}")
                    else:
                        parts.append(f"another pixel spacing in {dim}")
    return f"off by {' and '.join(parts)} (CRS units)" if parts else ""


def feature_stack(covariates: Covariates, features: Sequence[str], *,
                  chunks: int | Mapping[str, int] | None = None
                  ) -> tuple[da.Array, xr.DataArray]:
    """The ``features`` layers of ``covariates`` as one lazy float32 ``(feature, y, x)``
    array, NaN where a layer is NaN or its ``nodata``, all features in one chunk; and the
    first layer (its coordinates are the output grid's).

    Raises
    ------
    CovariateError
        A DataArray whose feature labels are not exactly ``features`` in order, missing
        layers, or layers of different shapes.
    """
    if isinstance(covariates, xr.DataArray):
        extra = [d for d in covariates.dims if d not in ("y", "x")]
        if extra:
            labels = [str(v) for v in covariates[extra[0]].values]
            if labels != list(features):
                raise CovariateError(
                    f"covariate array lists {labels}, the model needs exactly "
                    f"{list(features)} in this order; pass a Dataset to match by name.")
    layer = covariate_layers(covariates)
    absent = [f for f in features if f not in layer]
    if absent:
        raise CovariateError(
            f"covariates lack {', '.join(absent)}, which the model was trained on "
            f"(features in order: {', '.join(features)}).")
    first = layer[features[0]]
    for f in features[1:]:
        if layer[f].shape != first.shape:
            raise CovariateError(f"covariate {f} has shape {layer[f].shape}, "
                                 f"{features[0]} has {first.shape}; put them on one grid.")
        shift = _shift(layer[f], first)
        if shift:
            raise CovariateError(
                f"covariate {f} is {shift} against {features[0]} (same size, other "
                "coordinates): its pixels would be paired with the wrong places. Put the "
                "layers on one grid (e.g. layer.odc.reproject(first.odc.geobox)).")
    arrays = []
    for f in features:
        a = layer[f]
        if a.chunks is None:  # held in memory: predicted chunk by chunk all the same
            a = a.chunk({"y": DEFAULT_CHUNK, "x": DEFAULT_CHUNK})
        nodata = a.attrs.get("nodata")
        a = a.astype(np.float32)
        if nodata is not None and not is_nan(nodata):
            a = a.where(a != np.float32(nodata))
        arrays.append(a.data)
    stack = da.stack(arrays)  # type: ignore[no-untyped-call]  # dask.array has no hints
    if chunks is not None:
        cy, cx = (chunks, chunks) if isinstance(chunks, int) else (
            chunks.get("y", DEFAULT_CHUNK), chunks.get("x", DEFAULT_CHUNK))
        for name, size in (("y", cy), ("x", cx)):
            if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
                raise ParameterError(f"chunks: {name}={size!r} must be a positive whole "
                                     "number of pixels.")
        stack = stack.rechunk({0: -1, 1: cy, 2: cx})
    else:
        stack = stack.rechunk({0: -1})
    return stack, first
