"""Soil property models: training with honest cross-validation, chunk-wise prediction with
a per-pixel prediction interval, in SoilGrids units.

ISRIC's practice for SoilGrids 2.0 is a quantile regression forest (QRF) predicting the
5 %, 50 % and 95 % quantiles, evaluated by cross-validation with the model efficiency
coefficient (MEC), RMSE and the prediction-interval coverage probability (PICP).

>>> model = cup4soil.models.train("samples.csv", "SOC_target", unit="%",
...                               features=["B02", "B03"], folds=10)  # doctest: +SKIP
>>> model.cv  # doctest: +SKIP
{'MEC': 0.61, 'RMSE': 22.4, 'ME': -0.3, 'CCC': 0.75, 'PICP90': 0.9, 'n': 250}
>>> soc = model.predict(composites)  # lazy: soc, soc_q05, soc_q95  # doctest: +SKIP

Units follow SoilGrids' mapped units (``soc`` dg/kg, ``nitrogen`` cg/kg, ``phh2o`` pH×10,
``bdod`` cg/cm³, ``clay``/``sand``/``silt`` g/kg); :func:`to_conventional` divides by the
conversion factor.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import CovariateError, ModelError, ParameterError, SampleError
from . import forest as _forest

__all__ = [
    "PROPERTIES", "SoilModel", "cv_metrics", "load", "sample_covariates", "to_conventional",
    "train",
]

log = logging.getLogger(__name__)

MODEL_FORMAT = "cup4soil-model/1"
_CARD = "model-card.json"
_FOREST = "forest.npz"
_ESTIMATOR = "estimator.joblib"
_CV = "cv-predictions.csv"


@dataclass(frozen=True)
class _Property:
    long_name: str
    units: str  # SoilGrids mapped units
    factor: float  # mapped / factor = conventional
    conventional: str
    accepted: Mapping[str, float]  # input unit -> multiplier to mapped units
    aliases: tuple[str, ...]


#: SoilGrids 2.0 properties, their mapped units and conversion factors.
PROPERTIES: dict[str, _Property] = {
    "soc": _Property("soil organic carbon content", "dg/kg", 10, "g/kg",
                     {"%": 100, "g/kg": 10, "dg/kg": 1}, ("soc", "oc", "organic_carbon")),
    "nitrogen": _Property("total nitrogen", "cg/kg", 100, "g/kg",
                          {"%": 1000, "g/kg": 100, "cg/kg": 1}, ("nitrogen", "n", "tn")),
    "phh2o": _Property("pH in water", "pH*10", 10, "pH", {"pH": 10, "pH*10": 1},
                       ("phh2o", "ph", "ph_h2o", "ph_water")),
    "bdod": _Property("bulk density of the fine earth fraction", "cg/cm³", 100, "kg/dm³",
                      {"g/cm3": 100, "g/cm³": 100, "kg/dm3": 100, "kg/dm³": 100,
                       "cg/cm3": 1, "cg/cm³": 1}, ("bdod", "bd", "bulk_density")),
    "clay": _Property("clay content", "g/kg", 10, "%", {"%": 10, "g/kg": 1}, ("clay",)),
    "sand": _Property("sand content", "g/kg", 10, "%", {"%": 10, "g/kg": 1}, ("sand",)),
    "silt": _Property("silt content", "g/kg", 10, "%", {"%": 10, "g/kg": 1}, ("silt",)),
}

_FOREST_DEFAULTS = {"n_estimators": 100, "min_samples_leaf": 5, "max_features": 1 / 3}
_TUNE_GRID = {"max_features": [1 / 3, 0.6, 1.0], "min_samples_leaf": [1, 5, 10]}


# --- samples -------------------------------------------------------------------------

@dataclass(frozen=True)
class _Samples:
    table: pd.DataFrame
    x: np.ndarray | None  # point coordinates in ``crs`` (None: the samples have none)
    y: np.ndarray | None
    crs: str | None


_COORD_PAIRS = (("x", "y"), ("X", "Y"), ("easting", "northing"), ("lon", "lat"),
                ("longitude", "latitude"))


def _read_samples(samples: Any, *, crs: Any, coords: tuple[str, str] | None) -> _Samples:
    """A table plus point coordinates and their CRS, from a (Geo)DataFrame or a file."""
    if isinstance(samples, str | Path):
        path = Path(samples)
        if not path.exists():
            raise SampleError(f"sample file {path} does not exist.")
        if path.suffix.lower() in (".csv", ".txt"):
            samples = pd.read_csv(path)
        elif path.suffix.lower() == ".parquet":
            samples = pd.read_parquet(path)
        else:  # GeoPackage, GeoJSON, shapefile ...
            import geopandas

            samples = geopandas.read_file(path)
    if not isinstance(samples, pd.DataFrame):
        raise SampleError(f"samples must be a (Geo)DataFrame or a file path, not "
                          f"{type(samples).__name__}.")
    table = pd.DataFrame(samples).copy()
    geometry = getattr(samples, "geometry", None) if "geometry" in samples else None
    if geometry is not None and hasattr(geometry, "x"):
        if not (geometry.geom_type == "Point").all():
            raise SampleError("sample geometries must be points.")
        gcrs = samples.crs.to_string() if samples.crs is not None else None
        if crs is not None and gcrs is not None and _crs(crs) != _crs(gcrs):
            raise SampleError(f"crs={crs!r} contradicts the samples' own CRS {gcrs}.")
        table = table.drop(columns="geometry")
        return _Samples(table, geometry.x.to_numpy(float), geometry.y.to_numpy(float),
                        gcrs or (_crs(crs) if crs is not None else None))
    pair, found_crs = coords, None
    if pair is None:
        for a, b in _COORD_PAIRS:
            if a in table and b in table:
                pair = (a, b)
                found_crs = "EPSG:4326" if a in ("lon", "longitude") else None
                break
    if pair is None:  # LimeSoDa style: x_25833, y_25833
        for col in table.columns:
            m = re.fullmatch(r"x_(\d{4,5})", str(col))
            if m and f"y_{m.group(1)}" in table:
                pair, found_crs = (str(col), f"y_{m.group(1)}"), f"EPSG:{m.group(1)}"
                break
    if pair is None:
        return _Samples(table, None, None, _crs(crs) if crs is not None else None)
    for c in pair:
        if c not in table:
            raise SampleError(f"coordinate column {c!r} not in the samples; columns are "
                              f"{', '.join(map(str, table.columns))}.")
    out_crs = _crs(crs) if crs is not None else found_crs
    return _Samples(table, table[pair[0]].to_numpy(float), table[pair[1]].to_numpy(float),
                    out_crs)


def _crs(crs: Any) -> str:
    from pyproj import CRS

    try:
        c = CRS.from_user_input(crs)
    except Exception as exc:  # pyproj's CRSError
        raise SampleError(f"cannot understand CRS {crs!r}: {exc}") from None
    epsg = c.to_epsg()
    return f"EPSG:{epsg}" if epsg else c.to_wkt()


def _layers(covariates: xr.Dataset | xr.DataArray) -> dict[str, xr.DataArray]:
    """Covariates as named 2-D layers: a ``(band, y, x)`` variable ``SRC`` gives
    ``SRC_B02``, ... (the SoilSuite naming of :func:`cup4soil.scmap.to_soilsuite`)."""
    if isinstance(covariates, xr.DataArray):
        covariates = _dataarray_to_dataset(covariates)
    if not isinstance(covariates, xr.Dataset):
        raise CovariateError(f"covariates must be an xarray Dataset, not "
                             f"{type(covariates).__name__}.")
    out: dict[str, xr.DataArray] = {}
    for name, var in covariates.data_vars.items():
        extra = [d for d in var.dims if d not in ("y", "x")]
        if "y" not in var.dims or "x" not in var.dims:
            continue  # not a raster layer (e.g. a scalar or a table)
        if not extra:
            out[str(name)] = var.transpose("y", "x")
        elif len(extra) == 1 and var.sizes[extra[0]] <= 256:
            for label in var[extra[0]].values:
                out[f"{name}_{label}"] = var.sel({extra[0]: label}, drop=True).transpose("y", "x")
        else:
            raise CovariateError(
                f"covariate {name!r} has dimensions {var.dims}; select one slice first, "
                f"e.g. ds.sel(year=2021), so every layer is 2-D (or (band, y, x)).")
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


def _geobox(covariates: xr.Dataset | xr.DataArray) -> Any:
    import odc.geo.xr  # noqa: F401  (registers the .odc accessor)

    gbox = covariates.odc.geobox
    if gbox is None:
        raise CovariateError(
            "the covariates have no georeferencing (x/y coordinates and a CRS); write one "
            "with ds.rio.write_crs('EPSG:...') or odc.geo's ds.odc.assign_crs(...).")
    return gbox


def sample_covariates(covariates: xr.Dataset | xr.DataArray, x: Sequence[float],
                      y: Sequence[float], *, crs: Any, features: Sequence[str] | None = None,
                      missing: str = "raise") -> pd.DataFrame:
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
    layers = _layers(covariates)
    names = list(features) if features is not None else list(layers)
    absent = [n for n in names if n not in layers]
    if absent:
        raise CovariateError(f"covariates lack {', '.join(absent)}; they hold "
                             f"{', '.join(layers)}.")
    gbox = _geobox(covariates)
    target = f"EPSG:{gbox.crs.epsg}" if gbox.crs.epsg else gbox.crs.to_wkt()
    tr = Transformer.from_crs(_crs(crs), target, always_xy=True)
    px, py = tr.transform(np.asarray(x, float), np.asarray(y, float))
    col, row = ~gbox.affine * (np.asarray(px), np.asarray(py))
    col, row = np.floor(col).astype(np.int64), np.floor(row).astype(np.int64)
    h, w = gbox.shape
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    if not inside.all() and missing == "raise":
        bad = np.flatnonzero(~inside)
        raise SampleError(
            f"{bad.size} of {inside.size} sample points fall outside the covariate grid "
            f"(rows {', '.join(map(str, bad[:5]))}{' ...' if bad.size > 5 else ''}); check the "
            "samples' CRS, or pass missing='drop' to train on the others.")
    r = xr.DataArray(np.clip(row, 0, h - 1), dims="point")
    c = xr.DataArray(np.clip(col, 0, w - 1), dims="point")
    stacked = xr.Dataset({n: layers[n] for n in names}).isel(y=r, x=c)
    values = {n: np.asarray(v, np.float64) for n, v in dask.compute(
        {n: stacked[n].data for n in names})[0].items()}
    out = pd.DataFrame(values)
    for n in names:  # integer layers: their declared nodata is missing too
        nodata = layers[n].attrs.get("nodata", layers[n].attrs.get("_FillValue"))
        if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
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


# --- metrics -------------------------------------------------------------------------

def cv_metrics(observed: np.ndarray, predicted: np.ndarray, lower: np.ndarray | None = None,
               upper: np.ndarray | None = None, *, level: int = 90) -> dict[str, float]:
    """Validation metrics as SoilGrids reports them.

    Returns
    -------
    dict
        ``MEC`` (model efficiency coefficient, 1 − Σ(y − ŷ)² / Σ(y − ȳ)², the R² of the
        1:1 line), ``RMSE``, ``ME`` (mean error, mean(ŷ − y): positive means
        overestimation), ``CCC`` (Lin's concordance correlation), ``PICP<level>`` (share
        of observations inside [lower, upper]) and ``n``; in the target's units.
    """
    y = np.asarray(observed, float)
    p = np.asarray(predicted, float)
    err = p - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    out = {
        "MEC": 1 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan"),
        "RMSE": float(np.sqrt(np.mean(err**2))),
        "ME": float(np.mean(err)),
    }
    cov = float(np.mean((y - y.mean()) * (p - p.mean())))
    den = y.var() + p.var() + (y.mean() - p.mean()) ** 2
    out["CCC"] = float(2 * cov / den) if den > 0 else float("nan")
    if lower is not None and upper is not None:
        out[f"PICP{level}"] = float(np.mean((y >= lower) & (y <= upper)))
    out["n"] = int(y.size)
    return out


# --- folds ---------------------------------------------------------------------------

_BLOCK = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(m|km)\s*$")


def _folds(folds: int | str | float, s: _Samples, n: int, rng: np.random.Generator
           ) -> tuple[np.ndarray, str]:
    """Fold label per sample and a description for the model card."""
    if isinstance(folds, bool):
        raise ParameterError("folds must be an int, a column name or a block size in metres.")
    if isinstance(folds, int | np.integer):
        k = int(folds)
        if k < 2:
            raise ParameterError(f"folds={k}: cross-validation needs at least 2 folds.")
        if k > n:
            raise SampleError(f"{n} usable samples are fewer than folds={k}; use fewer folds "
                              "or more samples.")
        return rng.permutation(np.arange(n) % k), f"random {k}-fold"
    size: float | None = None
    if isinstance(folds, float):
        size = float(folds)
    elif isinstance(folds, str) and (m := _BLOCK.match(folds)):
        size = float(m.group(1)) * (1000 if m.group(2) == "km" else 1)
    if size is None:
        if not isinstance(folds, str) or folds not in s.table:
            raise ParameterError(
                f"folds={folds!r} is neither an int, a column of the samples nor a block size "
                "such as '2 km' or 2000.0 (metres).")
        labels = s.table[folds].to_numpy()
        if pd.isna(labels).any():
            raise SampleError(f"fold column {folds!r} has missing values.")
        _, codes = np.unique(labels, return_inverse=True)
        if codes.max() < 1:
            raise SampleError(f"fold column {folds!r} holds a single fold.")
        return codes, f"column {folds!r} ({codes.max() + 1} folds)"
    if size <= 0:
        raise ParameterError(f"block size {size} m must be positive.")
    if s.x is None:
        raise SampleError("spatially blocked folds need point coordinates; the samples have "
                          "no x/y columns or geometry.")
    x, y = s.x, s.y
    if s.crs is None:
        warnings.warn("the samples have no CRS; blocked folds take their coordinates as "
                      "metres.", UserWarning, stacklevel=3)
    else:
        from pyproj import CRS, Transformer

        c = CRS.from_user_input(s.crs)
        if c.is_geographic:  # blocks in metres: project to the samples' UTM zone
            from odc.geo.crs import CRS as OdcCRS

            lon, lat = float(np.nanmean(x)), float(np.nanmean(y))
            utm = OdcCRS.utm(lon, lat)
            x, y = Transformer.from_crs(c, utm.to_wkt(), always_xy=True).transform(x, y)
    bx = np.floor(np.asarray(x) / size).astype(np.int64)
    by = np.floor(np.asarray(y) / size).astype(np.int64)
    _, block = np.unique(np.stack([bx, by], 1), axis=0, return_inverse=True)
    block = block.ravel()
    n_blocks = int(block.max()) + 1
    k = min(10, n_blocks)
    if k < 2:
        raise SampleError(f"all samples fall in one {size:g} m block; use smaller blocks.")
    order = rng.permutation(n_blocks)
    return order[block] % k, f"spatial blocks of {size:g} m ({n_blocks} blocks, {k} folds)"


# --- estimators ----------------------------------------------------------------------

def _estimator(method: Any, random_state: int, params: dict[str, Any]) -> tuple[Any, str]:
    from sklearn.base import clone, is_regressor

    if isinstance(method, str):
        if method == "qrf":
            from quantile_forest import RandomForestQuantileRegressor

            kw = {**_FOREST_DEFAULTS, "random_state": random_state, "n_jobs": -1, **params}
            return RandomForestQuantileRegressor(**kw), "qrf"
        if method == "rf":
            from sklearn.ensemble import RandomForestRegressor

            kw = {**_FOREST_DEFAULTS, "random_state": random_state, "n_jobs": -1, **params}
            return RandomForestRegressor(**kw), "rf"
        raise ParameterError(f"method={method!r}: use 'qrf', 'rf' or a scikit-learn regressor.")
    if not is_regressor(method):
        raise ParameterError(f"method {type(method).__name__} is not a scikit-learn regressor.")
    est = clone(method)
    if params:
        est.set_params(**params)
    return est, type(method).__name__


def _tuned(est: Any, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None,
           tune: bool | Mapping[str, Sequence[Any]], random_state: int) -> Any:
    """Hyper-parameters chosen by an inner CV on the training rows only."""
    from sklearn.model_selection import GridSearchCV, GroupKFold, KFold

    grid = dict(tune) if isinstance(tune, Mapping) else {
        k: v for k, v in _TUNE_GRID.items() if k in est.get_params()}
    if not grid:
        return est.fit(x, y)
    if groups is not None and len(np.unique(groups)) >= 3:
        cv = GroupKFold(n_splits=min(5, len(np.unique(groups))))
    else:
        cv = KFold(n_splits=min(5, len(y)), shuffle=True, random_state=random_state)
        groups = None
    search = GridSearchCV(est, grid, cv=cv, scoring="neg_root_mean_squared_error", refit=True)
    search.fit(x, y, groups=groups)
    return search.best_estimator_


class _Fitted:
    """A fitted estimator with a quantile predictor (compiled forest when possible)."""

    def __init__(self, est: Any, method: str, quantiles: tuple[float, ...],
                 residual_q: np.ndarray | None) -> None:
        self.est = est
        self.method = method
        self.quantiles = quantiles
        self.residual_q = residual_q
        self.forest = None
        if method in ("qrf", "rf"):
            try:
                self.forest = _forest.compile_forest(est)
            except ValueError as exc:  # e.g. max_samples_leaf != 1: fall back to predict
                log.info("forest not compiled (%s); using the estimator's predict", exc)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return _predict_quantiles(self.forest, self.est, self.method, self.quantiles,
                                  self.residual_q, x)


def _predict_quantiles(forest: _forest.CompiledForest | None, est: Any, method: str,
                       quantiles: tuple[float, ...], residual_q: np.ndarray | None,
                       x: np.ndarray) -> np.ndarray:
    """(n, n_quantiles) predictions; NaN rows where a feature is missing."""
    if method == "qrf":
        if forest is not None:
            return _forest.predict_quantiles(forest, x, quantiles)
        out = np.full((x.shape[0], len(quantiles)), np.nan)
        ok = np.isfinite(x).all(axis=1)
        if ok.any():
            out[ok] = np.asarray(est.predict(x[ok].astype(np.float32),
                                             quantiles=list(quantiles))).reshape(ok.sum(), -1)
        return out
    if forest is not None:
        point = _forest.predict_mean(forest, x)
    else:
        point = np.full(x.shape[0], np.nan)
        ok = np.isfinite(x).all(axis=1)
        if ok.any():
            point[ok] = est.predict(x[ok])
    assert residual_q is not None
    return point[:, None] + residual_q[None, :]


def _residual_quantiles(est: Any, x: np.ndarray, y: np.ndarray,
                        quantiles: tuple[float, ...], random_state: int) -> np.ndarray:
    """Empirical quantiles of cross-validated residuals (split-conformal style intervals
    for regressors that predict a single value)."""
    from sklearn.base import clone
    from sklearn.model_selection import KFold, cross_val_predict

    cv = KFold(n_splits=min(5, len(y)), shuffle=True, random_state=random_state)
    pred = cross_val_predict(clone(est), x, y, cv=cv)
    q = np.array(quantiles)
    # the median of the residuals is not added: the point prediction stays the model's
    res = np.quantile(y - pred, q)
    res[np.isclose(q, 0.5)] = 0.0
    return res


# --- the model -----------------------------------------------------------------------

def _qname(q: float) -> str:
    pct = q * 100
    return f"q{pct:02.0f}" if abs(pct - round(pct)) < 1e-9 else f"q{pct:g}".replace(".", "_")


@dataclass(eq=False)
class SoilModel:
    """A trained soil property model.

    Attributes
    ----------
    property : str
        Output name (SoilGrids name such as ``soc`` when known).
    units : str
        Units of predictions (SoilGrids mapped units for known properties).
    features : tuple of str
        Covariate names, in the order the model uses them.
    quantiles : tuple of float
        Predicted quantiles; the median is the map, the outer two the interval.
    cv : dict
        Cross-validation metrics (``MEC``, ``RMSE``, ``ME``, ``CCC``, ``PICP90``, ``n``).
    cv_predictions : pandas.DataFrame
        Per sample: ``observed``, ``predicted``, ``q05``, ``q95`` (the outer quantiles)
        and ``fold``.
    card : dict
        The model card saved with the model.
    """

    property: str
    units: str
    features: tuple[str, ...]
    quantiles: tuple[float, ...]
    cv: dict[str, float]
    cv_predictions: pd.DataFrame
    card: dict[str, Any]
    _forest: _forest.CompiledForest | None = field(default=None, repr=False)
    _residual_q: np.ndarray | None = field(default=None, repr=False)
    _path: Path | None = field(default=None, repr=False)
    _est: Any = field(default=None, repr=False)

    @property
    def method(self) -> str:
        """``"qrf"``, ``"rf"`` or the scikit-learn estimator's class name."""
        return str(self.card["method"])

    @property
    def crs(self) -> str | None:
        """CRS of the covariates the model was trained on (None for a feature table)."""
        return self.card.get("crs")

    @property
    def estimator(self) -> Any:
        """The fitted scikit-learn / quantile-forest estimator (loaded on first use)."""
        if self._est is None and self._path is not None:
            self._est = _load_estimator(self._path, self.card)
        return self._est

    def cv_table(self) -> str:
        """The cross-validation metrics as a small text table."""
        head = f"{self.property} ({self.units}), {self.card['folds']}, {self.method}"
        cells = []
        for k, v in self.cv.items():
            cells.append(f"{k:>7} {v:>10d}" if k == "n" else f"{k:>7} {v:>10.3f}")
        return "\n".join([head, *cells])

    def __repr__(self) -> str:
        m = ", ".join(f"{k}={v:.3g}" if k != "n" else f"n={v}" for k, v in self.cv.items())
        return (f"SoilModel({self.property} [{self.units}] ~ {len(self.features)} features, "
                f"{self.method}; CV {m})")

    # prediction ------------------------------------------------------------------------

    def predict_table(self, table: pd.DataFrame | np.ndarray) -> pd.DataFrame:
        """Predictions for a table of features (columns named as :attr:`features`)."""
        if isinstance(table, pd.DataFrame):
            absent = [f for f in self.features if f not in table]
            if absent:
                raise CovariateError(f"the table lacks features {', '.join(absent)}.")
            x = table[list(self.features)].to_numpy(np.float64)
        else:
            x = np.asarray(table, np.float64)
            if x.ndim != 2 or x.shape[1] != len(self.features):
                raise CovariateError(f"expected {len(self.features)} feature columns in the "
                                     f"order {', '.join(self.features)}.")
        q = self._predict_array(x)
        return pd.DataFrame({name: q[:, i] for i, name in enumerate(self._output_names())})

    def _predict_array(self, x: np.ndarray) -> np.ndarray:
        est = None if self._forest is not None else self.estimator
        return _predict_quantiles(self._forest, est,
                                  "qrf" if self.method == "qrf" else "other",
                                  self.quantiles, self._residual_q, x)

    def _output_names(self) -> list[str]:
        names = []
        for q in self.quantiles:
            names.append(self.property if math.isclose(q, 0.5) else
                         f"{self.property}_{_qname(q)}")
        if not any(math.isclose(q, 0.5) for q in self.quantiles):
            raise ParameterError("the model has no median quantile 0.5 to map.")
        return names

    def predict(self, covariates: xr.Dataset | xr.DataArray, *,
                chunks: int | Mapping[str, int] | None = None) -> xr.Dataset:
        """Map the property, lazily and chunk by chunk.

        Parameters
        ----------
        covariates : xarray.Dataset or DataArray
            Layers named as :attr:`features` (a ``(band, y, x)`` variable ``SRC`` provides
            ``SRC_B02`` ...); extra layers are ignored. A DataArray with a feature
            dimension must list exactly the features, in order.
        chunks : int or dict, optional
            Spatial chunk size in pixels (default: the covariates' chunks, or 1024).

        Returns
        -------
        xarray.Dataset
            ``<property>`` (median) and ``<property>_qNN`` per other quantile, float32,
            NaN where any covariate is missing; units and conversion attributes as
            SoilGrids; the covariates' grid and CRS.
        """
        if isinstance(covariates, xr.DataArray):
            extra = [d for d in covariates.dims if d not in ("y", "x")]
            if extra:
                labels = [str(v) for v in covariates[extra[0]].values]
                if labels != list(self.features):
                    raise CovariateError(
                        f"covariate array lists {labels}, the model needs exactly "
                        f"{list(self.features)} in this order; pass a Dataset to match by "
                        "name.")
        layers = _layers(covariates)
        absent = [f for f in self.features if f not in layers]
        if absent:
            raise CovariateError(
                f"covariates lack {', '.join(absent)}, which the model was trained on "
                f"(features in order: {', '.join(self.features)}).")
        first = layers[self.features[0]]
        for f in self.features[1:]:
            if layers[f].shape != first.shape:
                raise CovariateError(f"covariate {f} has shape {layers[f].shape}, "
                                     f"{self.features[0]} has {first.shape}; put them on one grid.")
        arrays = []
        for f in self.features:
            a = layers[f].data
            if not isinstance(a, da.Array):
                a = da.from_array(np.asarray(a), chunks=1024)
            nodata = layers[f].attrs.get("nodata")
            a = a.astype(np.float32)
            if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
                a = da.where(a == np.float32(nodata), np.float32(np.nan), a)
            arrays.append(a)
        stack = da.stack(arrays)  # (feature, y, x)
        if chunks is not None:
            cy, cx = (chunks, chunks) if isinstance(chunks, int) else (
                chunks.get("y", 1024), chunks.get("x", 1024))
            stack = stack.rechunk({0: -1, 1: cy, 2: cx})
        else:
            stack = stack.rechunk({0: -1})
        nq = len(self.quantiles)
        # the model travels once per graph (a single key), not once per task
        forest = dask.delayed(self._forest, pure=True) if self._forest is not None else None
        est = None if self._forest is not None else dask.delayed(self.estimator, pure=True)
        out = da.map_blocks(
            _predict_block, stack, forest, est,
            method="qrf" if self.method == "qrf" else "other", quantiles=self.quantiles,
            residual_q=self._residual_q, dtype=np.float32,
            chunks=((nq,), stack.chunks[1], stack.chunks[2]),
            name=f"cup4soil-predict-{self.card['training_hash'][:8]}",
            meta=np.empty((0, 0, 0), np.float32),
        )
        coords = {k: v for k, v in first.coords.items() if set(v.dims) <= {"y", "x"}}
        for k, v in (covariates.coords.items() if isinstance(covariates, xr.Dataset) else []):
            if not v.dims and k not in coords:  # spatial_ref and friends
                coords[k] = v
        prop = PROPERTIES.get(self.property)
        data_vars = {}
        names = self._output_names()
        for i in sorted(range(len(names)), key=lambda j: names[j] != self.property):
            name = names[i]
            q = self.quantiles[i]
            attrs: dict[str, Any] = {"units": self.units, "quantile": q,
                     "long_name": (f"{prop.long_name if prop else self.property}, "
                                   f"{'median' if math.isclose(q, 0.5) else f'{q:.0%} quantile'}"
                                   f" prediction, 0-30 cm"),
                     "nodata": float("nan")}
            if prop:
                attrs.update(conversion_factor=prop.factor, conventional_units=prop.conventional)
            data_vars[name] = xr.DataArray(out[i], dims=("y", "x"), coords=coords, attrs=attrs)
        return xr.Dataset(data_vars, attrs={
            "cup4soil_model": self.card["training_hash"], "property": self.property,
            "method": self.method, "cv": json.dumps(self.cv)})

    # persistence -----------------------------------------------------------------------

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model to a directory: ``model-card.json`` (target, units, features in
        order, CRS, CV metrics, training-data hash, library versions), ``forest.npz`` (the
        compiled forest: plain arrays, loaded without pickle), ``estimator.joblib`` and
        ``cv-predictions.csv``."""
        import joblib

        path = Path(path)
        if path.exists() and any(path.iterdir()) and not overwrite:
            if not (path / _CARD).exists():
                raise ParameterError(f"{path} exists and is not a cup4soil model; choose "
                                     "another directory.")
            raise ParameterError(f"a model exists at {path}; pass overwrite=True to replace "
                                 "it.")
        path.mkdir(parents=True, exist_ok=True)
        (path / _CARD).unlink(missing_ok=True)  # the card goes last: it marks completeness
        if self._forest is not None:
            np.savez(path / _FOREST, **self._forest.to_arrays())
        if self.estimator is not None:
            joblib.dump(self.estimator, path / _ESTIMATOR)
        self.cv_predictions.to_csv(path / _CV, index=False)
        card = dict(self.card)
        if self._residual_q is not None:
            card["residual_quantiles"] = [float(v) for v in self._residual_q]
        (path / _CARD).write_text(json.dumps(card, indent=2))
        return path


def _versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("cup4soil", "scikit-learn", "quantile-forest", "numpy", "numba"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover
            out[pkg] = "unknown"
    return out


def _load_estimator(path: Path, card: dict[str, Any]) -> Any:
    import joblib
    import sklearn

    f = path / _ESTIMATOR
    if not f.exists():
        raise ModelError(f"{path} has no {_ESTIMATOR}; save the model again.")
    saved = card.get("versions", {}).get("scikit-learn", "unknown")
    if saved.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ModelError(
            f"{path} holds a {card['method']} estimator saved with scikit-learn {saved}; this "
            f"environment has {sklearn.__version__}. Install scikit-learn=={saved} or retrain.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return joblib.load(f)


def load(path: str | Path) -> SoilModel:
    """Load a model written by :meth:`SoilModel.save`.

    Raises
    ------
    ModelError
        The directory is not a complete model, or was written in another model format.
    """
    path = Path(path)
    card_file = path / _CARD
    if not card_file.exists():
        raise ModelError(f"{path} is not a (complete) cup4soil model: {_CARD} is missing.")
    try:
        card = json.loads(card_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{card_file} is not valid JSON ({exc}).") from None
    fmt = card.get("format")
    if fmt != MODEL_FORMAT:
        made_by = card.get("versions", {}).get("cup4soil", "an unknown version")
        raise ModelError(
            f"{path} has model format {fmt!r} (written by cup4soil {made_by}); this cup4soil "
            f"reads {MODEL_FORMAT!r}. Retrain the model, or load it with that cup4soil "
            "version.")
    forest = None
    if (path / _FOREST).exists():
        with np.load(path / _FOREST, allow_pickle=False) as z:
            forest = _forest.CompiledForest.from_arrays(z)
    elif card["method"] in ("qrf", "rf"):
        raise ModelError(f"{path} lacks {_FOREST}; save the model again.")
    residual = card.get("residual_quantiles")
    cv_file = path / _CV
    cvp = pd.read_csv(cv_file) if cv_file.exists() else pd.DataFrame()
    model = SoilModel(
        property=card["property"], units=card["units"], features=tuple(card["features"]),
        quantiles=tuple(card["quantiles"]), cv=card["cv"], cv_predictions=cvp, card=card,
        _forest=forest, _residual_q=None if residual is None else np.asarray(residual),
        _path=path,
    )
    if forest is None:
        model._est = _load_estimator(path, card)
    return model


def _predict_block(block: np.ndarray, forest: _forest.CompiledForest | None, est: Any, *,
                   method: str, quantiles: tuple[float, ...], residual_q: np.ndarray | None
                   ) -> np.ndarray:
    f, h, w = block.shape
    x = block.reshape(f, h * w).T
    q = _predict_quantiles(forest, est, method, quantiles, residual_q, x)
    return np.ascontiguousarray(q.T.reshape(len(quantiles), h, w), dtype=np.float32)


# --- training ------------------------------------------------------------------------

def _resolve_property(target: str, prop: str | None, unit: str | None
                      ) -> tuple[str, str, float]:
    """(output name, units, multiplier from the sample unit to the output unit)."""
    key = prop
    if key is None:
        t = re.sub(r"_target$", "", target.lower())
        key = next((k for k, p in PROPERTIES.items() if t in p.aliases), None)
    if key is None or key not in PROPERTIES:
        if prop is not None and prop.lower() in PROPERTIES:
            key = prop.lower()
        else:
            name = prop or re.sub(r"\W+", "_", target).strip("_")
            return name, unit or "unknown", 1.0
    p = PROPERTIES[key]
    if unit is None:
        if target != key:
            raise ParameterError(
                f"target {target!r} looks like {key} ({p.long_name}); say its unit with "
                f"unit= one of {', '.join(p.accepted)} (SoilGrids maps {key} in {p.units}).")
        unit = p.units  # a column named exactly like the SoilGrids property: its units
    if unit not in p.accepted:
        raise ParameterError(f"unit {unit!r} for {key}: use one of {', '.join(p.accepted)}.")
    return key, p.units, float(p.accepted[unit])


def train(samples: Any, target: str, *, features: Sequence[str] | None = None,
          covariates: xr.Dataset | None = None, method: Any = "qrf",
          folds: int | str | float = 10,
          quantiles: tuple[float, float, float] = (0.05, 0.5, 0.95), random_state: int = 0,
          tune: bool | Mapping[str, Sequence[Any]] = False, property: str | None = None,
          unit: str | None = None, crs: Any = None, coords: tuple[str, str] | None = None,
          missing: str = "raise", **params: Any) -> SoilModel:
    """Train a soil property model and cross-validate it.

    Parameters
    ----------
    samples : DataFrame, GeoDataFrame or path
        Soil samples (CSV, GeoPackage, GeoJSON, Parquet). Point coordinates come from the
        geometry, ``coords=(xcol, ycol)``, or columns ``x``/``y``, ``lon``/``lat`` or
        ``x_EPSG``/``y_EPSG`` (the CRS then comes from the name).
    target : str
        Column to predict.
    features : sequence of str, optional
        Feature columns of the samples, or (with ``covariates``) the covariate layers to
        use (default: all of them).
    covariates : xarray.Dataset, optional
        Layers sampled at the points (nearest pixel, CRS-aware), e.g. SCMaP composites.
    method : {"qrf", "rf"} or scikit-learn regressor
        Quantile regression forest (default; quantiles as quantile-forest predicts them),
        random forest, or any regressor; the last two get intervals from the quantiles of
        cross-validated residuals.
    folds : int, str or float
        k for shuffled k-fold; the name of a fold column; or a spatial block size in metres
        (float, or a string such as ``"2 km"``): blocks of that size are the CV units, the
        honest choice for mapping.
    quantiles : tuple of float
        Quantiles to predict; must contain 0.5 (the map). The outer two give the interval.
    random_state : int
        Seed for folds and estimators.
    tune : bool or dict
        Tune hyper-parameters by grid search inside each training fold (never on the test
        fold), and on all samples for the final model. A dict is the grid.
    property : str, optional
        SoilGrids property name (``soc``, ``nitrogen``, ``phh2o``, ``bdod``, ``clay``,
        ``sand``, ``silt``), guessed from ``target`` when omitted.
    unit : str, optional
        Unit of ``target`` (e.g. ``"%"`` for SOC): values are converted to SoilGrids
        units. Required for a known property unless the column is named like it.
    crs : optional
        CRS of the sample coordinates, when the samples do not carry one.
    coords : (str, str), optional
        Coordinate column names.
    missing : {"raise", "drop"}
        Samples on nodata or off the covariate grid: error, or drop them.
    **params
        Estimator hyper-parameters (cup4soil's forest defaults: 100 trees,
        ``min_samples_leaf=5``, ``max_features=1/3``).

    Returns
    -------
    SoilModel
    """
    if missing not in ("raise", "drop"):
        raise ParameterError(f"missing={missing!r}: use 'raise' or 'drop'.")
    s = _read_samples(samples, crs=crs, coords=coords)
    table = s.table
    if target not in table:
        raise SampleError(f"target column {target!r} is not in the samples; columns are "
                          f"{', '.join(map(str, table.columns))}.")
    yv = pd.to_numeric(table[target], errors="coerce")
    if yv.isna().all() or not (pd.api.types.is_numeric_dtype(table[target])
                               or yv.notna().mean() > 0.95):
        raise SampleError(f"target column {target!r} is not numeric (e.g. "
                          f"{table[target].iloc[0]!r}).")
    q = tuple(float(v) for v in quantiles)
    if not any(math.isclose(v, 0.5) for v in q) or any(not 0 < v < 1 for v in q) or len(q) < 3:
        raise ParameterError(f"quantiles={quantiles}: give at least a lower, 0.5 and an upper "
                             "quantile, each strictly between 0 and 1.")
    name, units, factor = _resolve_property(target, property, unit)

    if covariates is not None:
        if s.x is None:
            raise SampleError("sampling covariates needs point coordinates; the samples have "
                              "no geometry and no x/y columns (pass coords=).")
        feats = sample_covariates(covariates, s.x, s.y, crs=s.crs, features=features,
                                  missing=missing)
        feature_names = list(feats.columns)
        gcrs = _geobox(covariates).crs
        crs_out = f"EPSG:{gcrs.epsg}" if gcrs.epsg else gcrs.to_wkt()
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
    x = feats.to_numpy(np.float64)
    y = yv.to_numpy(np.float64) * factor
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y)
    if not keep.all():
        warnings.warn(f"{(~keep).sum()} of {keep.size} samples dropped (missing target or "
                      "feature values).", UserWarning, stacklevel=2)
    if keep.sum() < 2:
        raise SampleError("fewer than two samples have a target and every feature.")
    kept = _Samples(table[keep].reset_index(drop=True),
                    None if s.x is None else s.x[keep], None if s.y is None else s.y[keep],
                    s.crs)
    x, y = x[keep], y[keep]
    rng = np.random.default_rng(random_state)
    fold, fold_desc = _folds(folds, kept, int(keep.sum()), rng)
    est0, method_name = _estimator(method, random_state, params)
    spatial = "spatial" in fold_desc
    lo_i = int(np.argmin(q))
    hi_i = int(np.argmax(q))
    med_i = next(i for i, v in enumerate(q) if math.isclose(v, 0.5))

    def fit(rows: np.ndarray) -> _Fitted:
        from sklearn.base import clone

        est = clone(est0)
        groups = fold[rows] if spatial else None
        if tune:
            est = _tuned(est, x[rows], y[rows], groups, tune, random_state)
        else:
            est.fit(x[rows], y[rows])
        residual = None
        if method_name != "qrf":
            residual = _residual_quantiles(est, x[rows], y[rows], q, random_state)
        return _Fitted(est, method_name, q, residual)

    pred = np.full((y.size, len(q)), np.nan)
    for k in np.unique(fold):
        test = fold == k
        pred[test] = fit(np.flatnonzero(~test)).predict(x[test])
    level = round((q[hi_i] - q[lo_i]) * 100)
    metrics = cv_metrics(y, pred[:, med_i], pred[:, lo_i], pred[:, hi_i], level=level)
    cvp = pd.DataFrame({"observed": y, "predicted": pred[:, med_i],
                        _qname(q[lo_i]): pred[:, lo_i], _qname(q[hi_i]): pred[:, hi_i],
                        "fold": fold})
    if kept.x is not None:
        cvp.insert(0, "x", kept.x)
        cvp.insert(1, "y", kept.y)
    final = fit(np.arange(y.size))
    h = hashlib.sha256()
    h.update(json.dumps(feature_names).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    prop = PROPERTIES.get(name)
    card = {
        "format": MODEL_FORMAT, "property": name, "target": target,
        "long_name": prop.long_name if prop else name, "units": units,
        "conversion_factor": prop.factor if prop else 1,
        "conventional_units": prop.conventional if prop else units,
        "target_unit": unit, "target_factor": factor, "depth": "0-30 cm",
        "features": feature_names, "crs": crs_out, "sample_crs": kept.crs,
        "quantiles": list(q), "method": method_name,
        "params": {k: (v if isinstance(v, int | float | str | bool | None) else repr(v))
                   for k, v in final.est.get_params().items()},
        "folds": fold_desc, "tuned": bool(tune), "cv": metrics,
        "training_hash": h.hexdigest(), "n_samples": int(y.size),
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "versions": _versions(),
    }
    return SoilModel(property=name, units=units, features=tuple(feature_names), quantiles=q,
                     cv=metrics, cv_predictions=cvp, card=card,
                     _forest=final.forest, _residual_q=final.residual_q, _est=final.est)


def to_conventional(obj: xr.Dataset | xr.DataArray) -> xr.Dataset | xr.DataArray:
    """Divide SoilGrids mapped units by their conversion factor (dg/kg → g/kg, pH×10 → pH,
    cg/cm³ → kg/dm³, g/kg → %). Variables without a ``conversion_factor`` are unchanged."""
    def one(v: xr.DataArray) -> xr.DataArray:
        f = v.attrs.get("conversion_factor")
        if f is None:
            return v
        out = v / f
        out.attrs = {**v.attrs, "units": v.attrs.get("conventional_units", ""),
                     "conversion_factor": 1}
        return out

    if isinstance(obj, xr.DataArray):
        return one(obj)
    return xr.Dataset({k: one(v) for k, v in obj.data_vars.items()}, attrs=obj.attrs)
