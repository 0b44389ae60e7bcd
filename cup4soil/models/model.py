"""Soil property models: training with honest cross-validation, chunk-wise prediction with
a per-pixel prediction interval, in SoilGrids units.

ISRIC's practice for SoilGrids 2.0 is a quantile regression forest (QRF) predicting the
5 %, 50 % and 95 % quantiles, evaluated by cross-validation with the model efficiency
coefficient (MEC), RMSE and the prediction-interval coverage probability (PICP).

cup4soil's default, ``method="ensemble"``, stacks that QRF with ridge regression, an RBF SVR
and gradient boosting, weighted by non-negative least squares on an inner CV of the training
rows only; the interval is the QRF's conditional distribution centred on the ensemble's
prediction and conformally calibrated on the ensemble's out-of-fold residuals (see
:mod:`cup4soil.models.predictor`). On LimeSoDa with the paper's folds it beats the paper's
tuned random forest where the QRF alone fell short; ``method="qrf"`` keeps the forest alone.

>>> model = cup4soil.models.train("samples.csv", "SOC_target", unit="%",
...                               features=["B02", "B03"], folds=10)  # doctest: +SKIP
>>> model.cv  # doctest: +SKIP
{'MEC': 0.61, 'RMSE': 22.4, 'ME': -0.3, 'CCC': 0.75, 'PICP90': 0.9, 'n': 250}
>>> soc = model.predict(composites)  # lazy: soc, soc_q05, soc_q95  # doctest: +SKIP

The stages of :func:`train` live in their own modules: :mod:`.samples` (reading samples),
:mod:`.design` (the design matrix), :mod:`.cv` (folds, the CV loop, metrics),
:mod:`.predictor` (fit and predict quantiles), :mod:`.persistence` (the model's files) and
:mod:`.units` (SoilGrids units).
"""

from __future__ import annotations

import builtins
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize
from dask.delayed import delayed

from .._limits import check_size, resolve_max_pixels
from ..errors import CovariateError, ParameterError, SampleError
from ._typing import ModelCard, Regressor
from .cv import Folds, FoldSpec, assign_folds, cross_validate
from .design import Missing, design_matrix, feature_stack
from .persistence import load_estimator, model_card, read_model, write_model
from .predictor import (
    Predictor,
    Tune,
    check_quantiles,
    predict_block,
    quantile_name,
    resolve_method,
)
from .samples import Samples, SampleSource, read_samples, target_values
from .units import PROPERTIES, resolve_property

__all__ = ["SoilModel", "load", "train"]


@dataclass(eq=False)
class SoilModel:
    """A trained soil property model.

    Attributes
    ----------
    property_name : str
        Output name (SoilGrids name such as ``soc`` when known); also readable as
        ``property``.
    units : str
        Units of predictions (SoilGrids mapped units for known properties).
    features : tuple of str
        Covariate names, in the order the model uses them.
    cv : dict
        Cross-validation metrics (``MEC``, ``RMSE``, ``ME``, ``CCC``, ``PICP90``, ``n``).
    cv_predictions : pandas.DataFrame
        Per sample: ``observed``, ``predicted``, ``q05``, ``q95`` (the outer quantiles)
        and ``fold``.
    card : dict
        The model card saved with the model.
    """

    property_name: str
    units: str
    features: tuple[str, ...]
    cv: dict[str, float]
    cv_predictions: pd.DataFrame
    card: ModelCard
    _predictor: Predictor = field(repr=False)
    _path: Path | None = field(default=None, repr=False)

    @property
    def quantiles(self) -> tuple[float, ...]:
        """Predicted quantiles; the median is the map, the outer two the interval."""
        return self._predictor.quantiles

    @property
    def calibration(self) -> dict[str, float]:
        """Interval calibration: ``PICP90_before``/``_after``, ``width90_before``/``_after``
        (mean out-of-fold interval width, model units) and the final ``offset``."""
        return dict(self.card.get("calibration", {}))

    @property
    def predictor(self) -> Predictor:
        """The fitted predictor (quantiles and mean per feature row)."""
        return self._predictor

    @property
    def method(self) -> str:
        """``"ensemble"``, ``"qrf"``, ``"rf"`` or the scikit-learn estimator's class name."""
        return str(self.card["method"])

    @property
    def crs(self) -> str | None:
        """CRS of the covariates the model was trained on (None for a feature table)."""
        crs = self.card.get("crs")
        return None if crs is None else str(crs)

    @property
    def estimator(self) -> Regressor:
        """The fitted scikit-learn / quantile-forest estimator (loaded on first use)."""
        if self._predictor.estimator is None and self._path is not None:
            self._predictor.estimator = load_estimator(self._path, self.card)
        return self._predictor.require_estimator()

    def cv_table(self) -> str:
        """The cross-validation metrics as a small text table."""
        head = f"{self.property_name} ({self.units}), {self.card['folds']}, {self.method}"
        cells = []
        for k, v in self.cv.items():
            cells.append(f"{k:>7} {v:>10d}" if k == "n" else f"{k:>7} {v:>10.3f}")
        return "\n".join([head, *cells])

    def __repr__(self) -> str:
        m = ", ".join(f"{k}={v:.3g}" if k != "n" else f"n={v}" for k, v in self.cv.items())
        return (f"SoilModel({self.property_name} [{self.units}] ~ {len(self.features)} "
                f"features, {self.method}; CV {m})")

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
        q = self._predictor.predict_quantiles(x)
        return pd.DataFrame({name: q[:, i] for i, name in enumerate(self._output_names())})

    def _output_names(self) -> list[str]:
        names = []
        for q in self.quantiles:
            names.append(self.property_name if math.isclose(q, 0.5) else
                         f"{self.property_name}_{quantile_name(q)}")
        if not any(math.isclose(q, 0.5) for q in self.quantiles):
            raise ParameterError("the model has no median quantile 0.5 to map.")
        return names

    def predict(self, covariates: xr.Dataset | xr.DataArray, *,
                chunks: int | Mapping[str, int] | None = None,
                max_pixels: float | None = None) -> xr.Dataset:
        """Map the property, lazily and chunk by chunk.

        Parameters
        ----------
        covariates : xarray.Dataset or DataArray
            Layers named as :attr:`features` (a ``(band, y, x)`` variable ``SRC`` provides
            ``SRC_B02`` ...); extra layers are ignored. A DataArray with a feature
            dimension must list exactly the features, in order.
        chunks : int or dict, optional
            Spatial chunk size in pixels (default: the covariates' chunks, or 1024).
        max_pixels : float, optional
            Most pixels (y x x) one prediction maps; default
            :data:`cup4soil._limits.DEFAULT_MAX_PIXELS`. A larger map, or one of more than
            a million tasks, is refused before any graph is made (``math.inf``: no limit).

        Returns
        -------
        xarray.Dataset
            ``<property>`` (median) and ``<property>_qNN`` per other quantile, float32,
            NaN where any covariate is missing; units and conversion attributes as
            SoilGrids; the covariates' grid and CRS.
        """
        limit = resolve_max_pixels(max_pixels)
        stack, first = feature_stack(covariates, self.features, chunks=chunks)
        nq = len(self.quantiles)
        _, ny, nx = stack.shape
        check_size("the prediction", shape={"y": ny, "x": nx},
                   nbytes=float(ny) * nx * 4 * (len(self.features) + nq),
                   tasks=2 * int(stack.npartitions), max_pixels=limit,
                   chunks_hint="larger chunks=")
        # the predictor travels once per graph (a single key), not once per task
        predictor = delayed(self._predictor.for_prediction(), pure=True)
        out = da.map_blocks(  # type: ignore[no-untyped-call]  # dask.array has no hints
            predict_block, stack, predictor, dtype=np.float32,
            chunks=((nq,), stack.chunks[1], stack.chunks[2]),
            # map_blocks takes a given name as the whole key: the token keeps two
            # predictions (other covariates, same model) apart in one graph
            name=f"cup4soil-predict-{self.card['training_hash'][:8]}-"
                 f"{tokenize(stack, predictor)}",
            meta=np.empty((0, 0, 0), np.float32),
        )
        coords = {k: v for k, v in first.coords.items() if set(v.dims) <= {"y", "x"}}
        for k, v in (covariates.coords.items() if isinstance(covariates, xr.Dataset) else []):
            if not v.dims and k not in coords:  # spatial_ref and friends
                coords[k] = v
        names = self._output_names()
        data_vars = {}
        for i in sorted(range(len(names)), key=lambda j: names[j] != self.property_name):
            data_vars[names[i]] = xr.DataArray(out[i], dims=("y", "x"), coords=coords,
                                               attrs=self._variable_attrs(self.quantiles[i]))
        return xr.Dataset(data_vars, attrs={
            "cup4soil_model": self.card["training_hash"], "property": self.property_name,
            "method": self.method, "cv": json.dumps(self.cv)})

    def _variable_attrs(self, q: float) -> dict[str, Any]:
        """CF-style attributes of the map of quantile ``q`` (SoilGrids units)."""
        prop = PROPERTIES.get(self.property_name)
        what = "median" if math.isclose(q, 0.5) else f"{q:.0%} quantile"
        attrs: dict[str, Any] = {
            "units": self.units, "quantile": q,
            "long_name": f"{prop.long_name if prop else self.property_name}, {what} "
                         "prediction, 0-30 cm",
            "nodata": float("nan")}
        if prop:
            attrs.update(conversion_factor=prop.factor, conventional_units=prop.conventional)
        return attrs

    # persistence -----------------------------------------------------------------------

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model to a directory: ``model-card.json`` (target, units, features in
        order, CRS, CV metrics, training-data hash, library versions), ``forest.npz`` (the
        compiled forest: plain arrays, loaded without pickle), ``estimator.joblib`` and
        ``cv-predictions.csv``."""
        return write_model(path, card=self.card, predictor=self._predictor,
                           estimator=self.estimator, cv_predictions=self.cv_predictions,
                           overwrite=overwrite)

    # Last in the class body: below this line ``property`` would name this alias, not the
    # builtin (hence ``builtins.property``).
    @builtins.property
    def property(self) -> str:
        """Alias of :attr:`property_name` (read-only)."""
        return self.property_name


def load(path: str | Path) -> SoilModel:
    """Load a model written by :meth:`SoilModel.save`.

    Raises
    ------
    ModelError
        The directory is not a complete model, or was written in another model format.
    """
    path = Path(path)
    card, predictor, cvp = read_model(path)
    return SoilModel(property_name=card["property"], units=card["units"],
                     features=tuple(card["features"]), cv=card["cv"], cv_predictions=cvp,
                     card=card, _predictor=predictor, _path=path)


def train(samples: SampleSource, target: str, *, features: Sequence[str] | None = None,
          covariates: xr.Dataset | None = None, method: str | Regressor = "ensemble",
          folds: FoldSpec = 10,
          quantiles: tuple[float, float, float] = (0.05, 0.5, 0.95), random_state: int = 0,
          tune: Tune = False, property: str | None = None,
          unit: str | None = None, crs: Any = None, coords: tuple[str, str] | None = None,
          missing: Missing = "raise", calibrate: bool = True, **params: Any) -> SoilModel:
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
    method : {"ensemble", "qrf", "rf"} or scikit-learn regressor
        ``"ensemble"`` (default): the quantile regression forest stacked with ridge
        regression, an RBF SVR and gradient boosting, weighted by non-negative least squares
        on an inner CV of the training rows (see :mod:`cup4soil.models.predictor`); its
        interval is the forest's conditional distribution centred on the ensemble's
        prediction, then conformally calibrated. ``"qrf"``: the quantile regression forest
        alone (quantiles as quantile-forest predicts them); ``"rf"``: a random forest; or
        any regressor. The last two get intervals from the quantiles of cross-validated
        residuals.
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
    calibrate : bool
        Conformalise the 90 % interval (CQR on the out-of-fold predictions of ``folds``,
        see :mod:`cup4soil.models.calibration`): the CV's ``PICP90`` is then the calibrated
        interval's, fold by fold from the other folds' scores; :attr:`SoilModel.calibration`
        has the figures before and after.
    **params
        Estimator hyper-parameters (of the forest for ``"ensemble"``; cup4soil's forest
        defaults: 100 trees, ``min_samples_leaf=5``, ``max_features=1/3``).

    Returns
    -------
    SoilModel
    """
    if missing not in ("raise", "drop"):
        raise ParameterError(f"missing={missing!r}: use 'raise' or 'drop'.")
    s = read_samples(samples, crs=crs, coords=coords)
    return fit(s, target, features=features, covariates=covariates, method=method,
               folds=folds, quantiles=quantiles, random_state=random_state, tune=tune,
               property=property, unit=unit, missing=missing, calibrate=calibrate,
               **params)


#: Column (kept out of the features) that carries each sample's row number through
#: :func:`~cup4soil.models.design.design_matrix`, so folds made for all samples follow
#: the rows a property keeps.
_ROW = "__cup4soil_row__"


def fit(s: Samples, target: str, *, features: Sequence[str] | None,
        covariates: xr.Dataset | None, method: str | Regressor, folds: FoldSpec | Folds,
        quantiles: Sequence[float], random_state: int, tune: Tune, property: str | None,
        unit: str | None, missing: Missing, calibrate: bool = True, factor: float | None = None,
        **params: Any) -> SoilModel:
    """:func:`train` on samples already read; ``folds`` may be :class:`Folds` made for all
    rows of ``s`` (as :func:`cup4soil.soilmap.train` shares them between properties), and
    ``factor`` overrides the unit conversion (a derived target such as a log-ratio)."""
    observed = target_values(s.table, target)
    q = check_quantiles(quantiles)
    name, units, conv = resolve_property(target, property, unit)
    if factor is not None:
        conv = factor
    shared = folds if isinstance(folds, Folds) else None
    if shared is not None:
        table = s.table.assign(**{_ROW: np.arange(len(s.table))})
        s = Samples(table, s.x, s.y, s.crs)
    design = design_matrix(s, observed.to_numpy(np.float64) * conv, features=features,
                           covariates=covariates, missing=missing)
    if shared is not None:
        rows = design.samples.table[_ROW].to_numpy()
        fold = Folds(np.unique(shared.labels[rows], return_inverse=True)[1].ravel(),
                     shared.description, shared.grouped)
        if fold.labels.max() < 1:
            raise SampleError(f"the {int(design.y.size)} samples with {target} all fall in "
                              "one fold; use smaller blocks or more folds.")
    else:
        assert not isinstance(folds, Folds)
        fold = assign_folds(folds, design.samples, np.random.default_rng(random_state))
    how = resolve_method(method, random_state=random_state, params=params)
    cv = cross_validate(how, design, fold, quantiles=q, tune=tune, random_state=random_state,
                        calibrate=calibrate)
    final = Predictor.fit(how, design.x, design.y, quantiles=q,
                          groups=fold.groups(np.arange(design.y.size)), tune=tune,
                          random_state=random_state)
    final = replace(final, interval_offset=cv.calibration["offset"])
    card = model_card(name=name, target=target, units=units, unit=unit, factor=conv,
                      design=design, quantiles=q, method=how.name,
                      params=final.require_estimator().get_params(), folds=fold.description,
                      tuned=bool(tune), metrics=cv.metrics)
    card["calibration"] = cv.calibration
    if final.weights is not None:
        card["ensemble"] = {"members": ["forest", *how.members],
                            "weights": [float(w) for w in final.weights],
                            "spread": final.spread}
    return SoilModel(property_name=name, units=units, features=design.features,
                     cv=cv.metrics, cv_predictions=cv.predictions, card=card, _predictor=final)
