"""Many soil properties in one call: :func:`train` and :class:`SoilMapModel`.

One model per property (each on the samples that have it), all cross-validated with the
same folds (made once for all samples, duplicated locations in one fold), intervals
calibrated by conformalised quantile regression on the out-of-fold predictions
(:mod:`cup4soil.models.calibration`), texture through additive log-ratios
(:mod:`.texture`). :meth:`SoilMapModel.predict` maps every property in one lazy pass over
the covariates, named and scaled as SoilGrids names its layers (``soc_0-30cm_mean``,
``soc_0-30cm_Q0.05``, ``soc_0-30cm_Q0.5``, ``soc_0-30cm_Q0.95``,
``soc_0-30cm_uncertainty``).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr
from dask.base import tokenize
from dask.delayed import delayed

from .._limits import check_size, resolve_max_pixels
from ..errors import ParameterError, SampleError
from ..models import PROPERTIES, SoilModel
from ..models.calibration import conformal_offset, cross_conformal
from ..models.cv import Folds, FoldSpec, assign_folds, cv_metrics
from ..models.design import Missing, feature_stack, sample_covariates
from ..models.model import fit
from ..models.predictor import Predictor, Tune
from ..models.samples import Samples, SampleSource, read_samples
from ..models.units import resolve_property
from .extrapolation import FLAG_NODATA, MARGIN, extrapolated_block, training_ranges
from .texture import FRACTIONS, from_alr, interval_from_alr, to_alr

__all__ = ["DEPTH", "MIN_SAMPLES", "PLAUSIBLE", "QUANTILES", "SoilMapModel", "layer_name",
           "train"]

#: The topsoil layer every CUP4SOIL map describes (SoilGrids' depth label).
DEPTH = "0-30cm"
#: The quantiles of every map: the 90 % interval and the median.
QUANTILES = (0.05, 0.5, 0.95)
#: Fewest samples a property is trained on: ten folds of two points each is the least a
#: cross-validation (and a conformal offset of a 90 % interval, which needs ≥ 19 scores
#: to be finite) can say anything with.
MIN_SAMPLES = 20
#: Plausible medians of topsoil samples, in SoilGrids mapped units (after conversion):
#: a median outside says the declared unit is wrong (e.g. SOC in % declared as dg/kg).
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "soc": (5.0, 3000.0),        # 0.05 % .. 30 % organic carbon
    "nitrogen": (5.0, 2000.0),   # 0.05 .. 20 g/kg
    "phh2o": (30.0, 100.0),      # pH 3 .. 10
    "bdod": (20.0, 200.0),       # 0.2 .. 2.0 kg/dm³
    "clay": (5.0, 950.0), "sand": (5.0, 990.0), "silt": (5.0, 950.0),  # g/kg
}
#: What the SoilGrids layers of one property are, in order.
STATISTICS = ("mean", "Q0.05", "Q0.5", "Q0.95", "uncertainty")
_ALR = ("alr_sand", "alr_silt")


def layer_name(prop: str, statistic: str, depth: str = DEPTH) -> str:
    """SoilGrids' layer name, e.g. ``soc_0-30cm_Q0.05``."""
    return f"{prop}_{depth}_{statistic}"


@dataclass(frozen=True)
class _Texture:
    """The two log-ratio models and each fraction's conformal offset (g/kg)."""

    a_sand: SoilModel
    a_silt: SoilModel
    offsets: dict[str, float]


@dataclass(frozen=True)
class _Plan:
    """What a block task needs: predictors and offsets (small, shipped once per graph)."""

    names: tuple[str, ...]
    predictors: tuple[Predictor, ...]
    texture: tuple[Predictor, Predictor, dict[str, float]] | None


@dataclass(eq=False)
class SoilMapModel:
    """Models of several soil properties trained with the same folds.

    Attributes
    ----------
    properties : tuple of str
        SoilGrids names of the mapped properties, in order.
    features : tuple of str
        Covariate layers, in order.
    models : dict of str to SoilModel
        One model per property outside texture (calibrated intervals); texture is modelled
        as two log-ratios (:attr:`texture_models`).
    cv : pandas.DataFrame
        Per property (index): ``MEC``, ``RMSE``, ``ME``, ``CCC``, ``PICP90``, ``n``
        (mapped units), ``PICP90_before``, ``width90_before``, ``width90_after``.
    cv_predictions : dict of str to DataFrame
        Out-of-fold predictions per property (``observed``, ``predicted``, ``q05``,
        ``q95``, ``fold``, coordinates).
    folds : str
        The folds' description.
    time_start, time_end : str or None
        The covariates' time span (from their attributes), carried into the maps.
    feature_ranges : numpy.ndarray or None
        Per feature (row) the minimum and maximum over the training samples: the
        ``extrapolated`` layer of :meth:`predict` (:mod:`.extrapolation`).
    """

    properties: tuple[str, ...]
    features: tuple[str, ...]
    models: dict[str, SoilModel]
    cv: pd.DataFrame
    cv_predictions: dict[str, pd.DataFrame]
    folds: str
    time_start: str | None = None
    time_end: str | None = None
    _texture: _Texture | None = field(default=None, repr=False)
    #: Per feature its training minimum and maximum, (features, 2); None: not recorded.
    feature_ranges: npt.NDArray[np.float64] | None = field(default=None, repr=False)

    @property
    def texture_models(self) -> tuple[SoilModel, SoilModel] | None:
        """The models of ln(sand/clay) and ln(silt/clay), when texture is mapped."""
        return None if self._texture is None else (self._texture.a_sand, self._texture.a_silt)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the models to a directory (one cup4soil model per property, the texture
        log-ratio models, the CV; a card written last); read back with
        :func:`cup4soil.soilmap.load`. Never writes into a directory it did not write.

        Raises
        ------
        ParameterError
            ``path`` holds other files, or a model and ``overwrite`` is false.
        """
        from .persistence import save

        return save(self, path, overwrite=overwrite)

    def __repr__(self) -> str:
        cells = ", ".join(f"{p} MEC={self.cv.loc[p, 'MEC']:.2f}" for p in self.properties)
        return f"SoilMapModel({cells}; {len(self.features)} features, {self.folds})"

    def _plan(self) -> _Plan:
        names = tuple(p for p in self.properties if p in self.models)
        tex = None
        if self._texture is not None:
            tex = (self._texture.a_sand.predictor.for_prediction(),
                   self._texture.a_silt.predictor.for_prediction(), dict(self._texture.offsets))
        return _Plan(names, tuple(self.models[p].predictor.for_prediction() for p in names),
                     tex)

    def _output_properties(self) -> list[str]:
        """Properties in the order of the predicted block's layers (5 per property)."""
        plan_names = [p for p in self.properties if p in self.models]
        tex = [f for f in FRACTIONS if f in self.properties] if self._texture else []
        return plan_names + tex

    def predict_table(self, table: pd.DataFrame) -> pd.DataFrame:
        """Every property's five SoilGrids statistics for a table of features."""
        absent = [f for f in self.features if f not in table]
        if absent:
            raise ParameterError(f"the table lacks features {', '.join(absent)}.")
        x = table[list(self.features)].to_numpy(np.float64)
        out = _predict_rows(x, self._plan(), self._output_properties())
        cols = {layer_name(p, s): out[i * 5 + j]
                for i, p in enumerate(self._output_properties())
                for j, s in enumerate(STATISTICS)}
        return pd.DataFrame(cols)

    def predict(self, covariates: xr.Dataset, *,
                chunks: int | Mapping[str, int] | None = None,
                max_pixels: float | None = None) -> xr.Dataset:
        """Map every property, lazily, in one pass over the covariates.

        Parameters
        ----------
        covariates : xarray.Dataset
            Layers named as :attr:`features` (e.g. :func:`cup4soil.covariates.stack`).
        chunks : int or dict, optional
            Spatial chunk size in pixels (default: the covariates' chunks, or 1024).
        max_pixels : float, optional
            Most pixels (y x x) one prediction maps, as :meth:`cup4soil.models.SoilModel.
            predict` (``math.inf``: no limit); refused before any graph is made.

        Returns
        -------
        xarray.Dataset
            Per property ``<p>_0-30cm_mean``, ``_Q0.05``, ``_Q0.5``, ``_Q0.95`` (float32,
            SoilGrids mapped units) and ``_uncertainty`` ((Q0.95 − Q0.05) / Q0.5,
            dimensionless), NaN where a covariate is missing; attributes ``units``,
            ``conversion``, ``depth``; the dataset carries the covariates' ``time_start`` /
            ``time_end`` (the STAC item's datetime range) and the CV figures. With
            :attr:`feature_ranges` (recorded by :func:`train`), ``extrapolated`` (uint8):
            1 where a covariate lies more than 10 % of its training range outside it, 0
            inside, 255 where a covariate is missing (:mod:`.extrapolation`).
        """
        limit = resolve_max_pixels(max_pixels)
        stack, first = feature_stack(covariates, self.features, chunks=chunks)
        props = self._output_properties()
        n_out = 5 * len(props)
        _, ny, nx = stack.shape
        check_size("the soil maps", shape={"y": ny, "x": nx},
                   nbytes=float(ny) * nx * 4 * (len(self.features) + n_out),
                   tasks=2 * int(stack.npartitions), max_pixels=limit,
                   chunks_hint="larger chunks=")
        plan = delayed(self._plan(), pure=True)
        out = da.map_blocks(  # type: ignore[no-untyped-call]  # dask.array has no hints
            _predict_block, stack, plan, props, dtype=np.float32,
            chunks=((n_out,), stack.chunks[1], stack.chunks[2]),
            name=f"cup4soil-soilmap-{tokenize(stack, plan, props)}",
            meta=np.empty((0, 0, 0), np.float32),
        )
        coords = {k: v for k, v in first.coords.items() if set(v.dims) <= {"y", "x"}}
        for k, v in covariates.coords.items():
            if not v.dims and k not in coords:
                coords[k] = v
        data_vars: dict[str, xr.DataArray] = {}
        for i, p in enumerate(props):
            for j, stat in enumerate(STATISTICS):
                var = xr.DataArray(out[i * 5 + j], dims=("y", "x"), coords=coords,
                                   attrs=_attrs(p, stat))
                if "spatial_ref" in coords:
                    var.encoding["grid_mapping"] = "spatial_ref"
                data_vars[layer_name(p, stat)] = var
        if self.feature_ranges is not None:
            data_vars["extrapolated"] = _extrapolated_layer(stack, self.feature_ranges,
                                                            coords)
        start, end = _span(covariates)
        attrs: dict[str, Any] = {
            "title": "CUP4SOIL topsoil (0-30 cm) soil property maps (cup4soil.soilmap)",
            "properties": list(props), "depth": DEPTH, "folds": self.folds,
            "features": list(self.features),
            "cv": json.dumps({p: {k: _json(v) for k, v in row.items()}
                              for p, row in self.cv.to_dict("index").items()}),
            "interval": "90 % prediction interval, conformally calibrated (CQR) on "
                        "out-of-fold predictions",
            "texture": "additive log-ratios ln(sand/clay), ln(silt/clay); sums to 1000 g/kg"
                       if self._texture is not None else "not mapped",
        }
        if start is not None:
            attrs["time_start"] = start
        if end is not None:
            attrs["time_end"] = end
        if "covariate_set" in covariates.attrs:
            attrs["covariate_set"] = covariates.attrs["covariate_set"]
        return xr.Dataset(data_vars, attrs=attrs)


def _json(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return v


def _span(covariates: xr.Dataset) -> tuple[str | None, str | None]:
    """The covariates' time span: their own attributes, else the widest of their layers'."""
    starts = [str(covariates.attrs["time_start"])] if "time_start" in covariates.attrs else []
    ends = [str(covariates.attrs["time_end"])] if "time_end" in covariates.attrs else []
    if not starts:
        starts = [str(v.attrs["time_start"]) for v in covariates.data_vars.values()
                  if "time_start" in v.attrs]
    if not ends:
        ends = [str(v.attrs["time_end"]) for v in covariates.data_vars.values()
                if "time_end" in v.attrs]
    return (min(starts) if starts else None), (max(ends) if ends else None)


def _extrapolated_layer(stack: da.Array, ranges: npt.NDArray[np.float64],
                        coords: Mapping[Any, Any]) -> xr.DataArray:
    """The lazy flag of pixels outside the training range (:mod:`.extrapolation`)."""
    flag = da.map_blocks(  # type: ignore[no-untyped-call]  # dask.array has no hints
        extrapolated_block, stack, ranges, MARGIN, dtype=np.uint8, drop_axis=0,
        name=f"cup4soil-extrapolated-{tokenize(stack, ranges, MARGIN)}",
        meta=np.empty((0, 0), np.uint8))
    var = xr.DataArray(flag, dims=("y", "x"), coords=dict(coords), attrs={
        "long_name": "covariates outside the training range (prediction extrapolates)",
        "units": "1", "flag_values": [0, 1], "flag_meanings": "inside extrapolated",
        "nodata": FLAG_NODATA, "margin": MARGIN,
        "rule": f"1 where any covariate lies more than {MARGIN:g} x its training range "
                "(max - min over the training samples) below the minimum or above the "
                "maximum"})
    if "spatial_ref" in coords:
        var.encoding["grid_mapping"] = "spatial_ref"
    return var


def _feature_ranges(s: Samples, features: Sequence[str],
                    covariates: xr.Dataset | None) -> npt.NDArray[np.float64] | None:
    """Training minimum/maximum per feature, over all samples (the union of every
    property's rows); None when the features cannot be read at the points."""
    if covariates is not None and s.x is not None and s.y is not None:
        table = sample_covariates(covariates, s.x, s.y, crs=s.crs, features=features,
                                  missing="drop")
    elif all(f in s.table for f in features):
        table = s.table
    else:
        return None
    return training_ranges(table[list(features)].to_numpy(np.float64))


def _attrs(prop: str, stat: str) -> dict[str, Any]:
    p = PROPERTIES[prop]
    if stat == "uncertainty":
        return {"units": "1", "long_name": f"{p.long_name}, relative 90 % interval width "
                "(Q0.95 - Q0.05) / Q0.5, 0-30 cm", "depth": DEPTH, "statistic": stat,
                "nodata": float("nan")}
    what = {"mean": "mean", "Q0.05": "5 % quantile", "Q0.5": "median",
            "Q0.95": "95 % quantile"}[stat]
    out: dict[str, Any] = {
        "units": p.units, "conversion": f"divide by {p.factor:g} for {p.conventional}",
        "conversion_factor": p.factor, "conventional_units": p.conventional,
        "depth": DEPTH, "statistic": stat, "long_name": f"{p.long_name}, {what}, 0-30 cm",
        "nodata": float("nan")}
    if stat.startswith("Q"):
        out["quantile"] = float(stat[1:])
    return out


def _five(mean: npt.NDArray[np.float64], lo: npt.NDArray[np.float64],
          med: npt.NDArray[np.float64], hi: npt.NDArray[np.float64]
          ) -> list[npt.NDArray[np.float64]]:
    with np.errstate(divide="ignore", invalid="ignore"):
        unc = np.where(med > 0, (hi - lo) / med, np.nan)
    return [mean, lo, med, hi, unc]


def _predict_rows(x: npt.NDArray[Any], plan: _Plan, props: Sequence[str]
                  ) -> list[npt.NDArray[np.float64]]:
    out: list[npt.NDArray[np.float64]] = []
    for pred in plan.predictors:
        q, mean = pred.predict_quantiles_and_mean(x)  # one walk of the trees for both
        out += _five(mean, q[:, 0], q[:, 1], q[:, 2])
    if plan.texture is not None:
        p_sand, p_silt, offsets = plan.texture
        (qs, ms), (qt, mt) = (p_sand.predict_quantiles_and_mean(x),
                              p_silt.predict_quantiles_and_mean(x))
        means = from_alr(ms, mt)
        meds = from_alr(qs[:, 1], qt[:, 1])
        ends = interval_from_alr(qs[:, 0], qs[:, 2], qt[:, 0], qt[:, 2])
        for k, frac in enumerate(FRACTIONS):
            if frac not in props:
                continue
            lo, hi = ends[frac]
            off = offsets[frac]
            lo = np.clip(np.minimum(lo - off, meds[k]), 0.0, 1000.0)
            hi = np.clip(np.maximum(hi + off, meds[k]), 0.0, 1000.0)
            out += _five(means[k], lo, meds[k], hi)
    return out


def _predict_block(block: npt.NDArray[Any], plan: _Plan, props: Sequence[str]
                   ) -> npt.NDArray[np.float32]:
    f, h, w = block.shape
    # pixel rows in C order once: every model's kernels then walk them in place
    rows = _predict_rows(np.ascontiguousarray(block.reshape(f, h * w).T), plan, props)
    return np.stack([r.reshape(h, w) for r in rows]).astype(np.float32)


# --- training ------------------------------------------------------------------------

def _shared_folds(folds: FoldSpec, s: Samples, random_state: int) -> Folds:
    """Folds for all samples; duplicated locations always share a fold (warned)."""
    rng = np.random.default_rng(random_state)
    if s.x is not None and s.y is not None:
        loc = np.stack([s.x, s.y], 1)
        _, group = np.unique(loc, axis=0, return_inverse=True)
        group = group.ravel()
        n_dup = int(len(group) - group.max() - 1)
        if n_dup:
            warnings.warn(f"{n_dup} samples repeat another sample's location; they are kept "
                          "in the same cross-validation fold (else they would inflate the "
                          "CV figures).", UserWarning, stacklevel=3)
            if isinstance(folds, int) and not isinstance(folds, bool):
                k = int(folds)
                n_groups = int(group.max()) + 1
                if k < 2:
                    raise ParameterError(f"folds={k}: cross-validation needs at least 2 folds.")
                if k > n_groups:
                    raise SampleError(f"{n_groups} distinct locations are fewer than "
                                      f"folds={k}.")
                lab = rng.permutation(np.arange(n_groups) % k)[group]
                return Folds(lab, f"random {k}-fold by location ({n_groups} locations)",
                             grouped=True)
    return assign_folds(folds, s, rng)


def _check_plausible(name: str, values: pd.Series, unit: str | None) -> None:
    lo, hi = PLAUSIBLE[name]
    med = float(values.median())
    p = PROPERTIES[name]
    if not lo <= med <= hi:
        raise SampleError(
            f"{name}: the samples' median is {med:g} {p.units} after conversion from "
            f"{unit or p.units!r}, implausible for topsoil (expected {lo:g}-{hi:g} "
            f"{p.units}); is the unit right? Accepted units: {', '.join(p.accepted)}.")


def train(samples: SampleSource, properties: Mapping[str, str | None] | Sequence[str], *,
          covariates: xr.Dataset | None = None, features: Sequence[str] | None = None,
          folds: FoldSpec = "2 km", method: str = "ensemble", random_state: int = 0,
          tune: Tune = False, crs: Any = None, coords: tuple[str, str] | None = None,
          missing: Missing = "drop", **params: Any) -> SoilMapModel:
    """Train one model per soil property, all with the same folds.

    Parameters
    ----------
    samples : DataFrame, GeoDataFrame or path
        Samples with a column per property (named as the SoilGrids property or an alias);
        a property's missing values leave only that property without the point.
    properties : dict of name to unit, or sequence of names
        E.g. ``{"soc": "%", "phh2o": "pH", "nitrogen": "g/kg", "bdod": "g/cm3",
        "clay": "%", "sand": "%", "silt": "%"}``; a name alone (or unit None) means the
        column is in SoilGrids mapped units. Clay, sand and silt are mapped together
        (all three are needed) so that they sum to 100 %.
    covariates : xarray.Dataset, optional
        Covariate layers sampled at the points (e.g. :func:`cup4soil.covariates.stack`).
    features : sequence of str, optional
        Feature columns (without covariates) or a subset of the covariate layers.
    folds : int, str or float
        As :func:`cup4soil.models.train`: k, a fold column, or a block size (default
        ``"2 km"`` blocks). Made once for all samples and shared by every property.
    method, random_state, tune, crs, coords, missing, **params
        As :func:`cup4soil.models.train` (``missing`` defaults to ``"drop"``).

    Returns
    -------
    SoilMapModel

    Raises
    ------
    SampleError
        A property column missing, a median implausible for the declared unit, a property
        with fewer than :data:`MIN_SAMPLES` samples, texture fractions not summing to
        ~100 %.
    ParameterError
        An unknown property, only one or two of the three texture fractions.
    """
    spec: dict[str, str | None] = (dict(properties) if isinstance(properties, Mapping)
                                   else {str(p): None for p in properties})
    if not spec:
        raise ParameterError("give at least one property, e.g. properties={'soc': '%'}.")
    s = read_samples(samples, crs=crs, coords=coords)
    resolved: dict[str, tuple[str, str | None, float]] = {}  # name -> column, unit, factor
    for col, unit in spec.items():
        if col not in s.table:
            raise SampleError(f"property column {col!r} is not in the samples; columns are "
                              f"{', '.join(map(str, s.table.columns))}.")
        name, _, factor = resolve_property(col, None, unit)
        if name not in PROPERTIES:
            raise ParameterError(f"{col!r} is no SoilGrids property; map one of "
                                 f"{', '.join(PROPERTIES)} (or use cup4soil.models.train).")
        values = pd.to_numeric(s.table[col], errors="coerce") * factor
        n = int(values.notna().sum())
        if n < MIN_SAMPLES:
            raise SampleError(f"{name}: {n} samples; a map needs at least {MIN_SAMPLES} to be "
                              "cross-validated and to calibrate its interval.")
        _check_plausible(name, values.dropna(), unit)
        resolved[name] = (col, unit, factor)
    tex = [f for f in FRACTIONS if f in resolved]
    if tex and len(tex) < 3:
        raise ParameterError(f"texture is mapped as a whole (sand + silt + clay = 100 %); "
                             f"give all three, not only {', '.join(tex)}.")
    shared = _shared_folds(folds, s, random_state)
    common = {"covariates": covariates, "features": features, "method": method,
              "folds": shared, "quantiles": QUANTILES, "random_state": random_state,
              "tune": tune, "missing": missing, **params}
    fitted: dict[str, SoilModel] = {}
    rows_cv: dict[str, dict[str, float]] = {}
    cvp: dict[str, pd.DataFrame] = {}
    for name, (col, unit, _) in resolved.items():
        if name in FRACTIONS:
            continue
        has = s.table[col].notna().to_numpy()
        m = fit(_subset(s, has), col, property=name, unit=unit or PROPERTIES[name].units,
                calibrate=True,
                folds=_subset_folds(shared, has), **{k: v for k, v in common.items()
                                                     if k != "folds"})
        fitted[name] = m
        rows_cv[name] = {**m.cv, **_calib(m.calibration)}
        cvp[name] = m.cv_predictions
    texture = None
    if tex:
        texture, tex_cv, tex_cvp = _train_texture(s, resolved, shared, common)
        rows_cv.update(tex_cv)
        cvp.update(tex_cvp)
    feats = next(iter(fitted.values())).features if fitted else (
        texture.a_sand.features if texture else ())
    order = tuple(n for n in PROPERTIES if n in resolved)
    cv = pd.DataFrame.from_dict(rows_cv, orient="index").loc[list(order)]
    start, end = _span(covariates) if covariates is not None else (None, None)
    return SoilMapModel(order, tuple(feats), fitted, cv, cvp, shared.description, start, end,
                        texture, _feature_ranges(s, feats, covariates))


def _calib(c: Mapping[str, float]) -> dict[str, float]:
    return {"PICP90_before": c["PICP90_before"], "width90_before": c["width90_before"],
            "width90_after": c["width90_after"]}


def _subset(s: Samples, keep: npt.NDArray[np.bool_]) -> Samples:
    return s.subset(keep)


def _subset_folds(f: Folds, keep: npt.NDArray[np.bool_]) -> Folds:
    return Folds(f.labels[keep], f.description, f.grouped)


def _train_texture(s: Samples, resolved: Mapping[str, tuple[str, str | None, float]],
                   shared: Folds, common: Mapping[str, Any]
                   ) -> tuple[_Texture, dict[str, dict[str, float]], dict[str, pd.DataFrame]]:
    """Log-ratio models, their back-transformed CV and each fraction's conformal offset."""
    vals = {f: pd.to_numeric(s.table[resolved[f][0]], errors="coerce").to_numpy(float)
            * resolved[f][2] for f in FRACTIONS}
    has = np.isfinite(vals["clay"]) & np.isfinite(vals["sand"]) & np.isfinite(vals["silt"])
    total = vals["clay"][has] + vals["sand"][has] + vals["silt"][has]
    if np.any(np.abs(total - 1000.0) > 50.0):
        bad = int(np.sum(np.abs(total - 1000.0) > 50.0))
        raise SampleError(f"clay + sand + silt differ from 100 % by more than 5 points at {bad} "
                          f"samples (e.g. {total[np.abs(total - 1000) > 50][0] / 10:g} %); "
                          "check the units and the columns.")
    a1, a2 = to_alr(vals["clay"], vals["sand"], vals["silt"])
    sub = s.subset(has)
    table = sub.table.assign(**{_ALR[0]: a1[has], _ALR[1]: a2[has]})
    sub = Samples(table, sub.x, sub.y, sub.crs)
    kw = {k: v for k, v in common.items() if k != "folds"}
    folds = _subset_folds(shared, has)
    ms = fit(sub, _ALR[0], property=_ALR[0], unit="1", calibrate=False, factor=1.0,
             folds=folds, **kw)
    mt = fit(sub, _ALR[1], property=_ALR[1], unit="1", calibrate=False, factor=1.0,
             folds=folds, **kw)
    ps, pt = ms.cv_predictions, mt.cv_predictions
    # both log-ratios are modelled on the same rows (same features, same samples)
    obs = from_alr(ps["observed"].to_numpy(), pt["observed"].to_numpy())
    med = from_alr(ps["predicted"].to_numpy(), pt["predicted"].to_numpy())
    ends = interval_from_alr(ps["q05"].to_numpy(), ps["q95"].to_numpy(),
                             pt["q05"].to_numpy(), pt["q95"].to_numpy())
    fold = ps["fold"].to_numpy()
    offsets: dict[str, float] = {}
    rows: dict[str, dict[str, float]] = {}
    cvp: dict[str, pd.DataFrame] = {}
    for k, frac in enumerate(FRACTIONS):
        lo, hi = ends[frac]
        y = obs[k]
        offsets[frac] = conformal_offset(y, lo, hi, level=0.9)
        before = cv_metrics(y, med[k], lo, hi)
        clo, chi = cross_conformal(y, lo, hi, fold, level=0.9)
        clo = np.clip(np.minimum(clo, med[k]), 0, 1000)
        chi = np.clip(np.maximum(chi, med[k]), 0, 1000)
        after = cv_metrics(y, med[k], clo, chi)
        rows[frac] = {**after, "PICP90_before": before["PICP90"],
                      "width90_before": float(np.mean(hi - lo)),
                      "width90_after": float(np.mean(chi - clo))}
        frame = ps.drop(columns=["observed", "predicted", "q05", "q95"]).assign(
            observed=y, predicted=med[k], q05=clo, q95=chi)
        cvp[frac] = frame
    return _Texture(ms, mt, offsets), rows, cvp
