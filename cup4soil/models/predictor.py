"""One predictor for the cross-validation folds and the final model: fit, quantiles per row,
quantiles per pixel block.

A quantile regression forest (``method="qrf"``) predicts quantiles itself; any other
regressor predicts a value, and its interval comes from the quantiles of residuals of an
inner cross-validation on its training rows (split-conformal style). Fitted forests are
compiled (:mod:`cup4soil.models.forest`) so maps are predicted without the estimator.

The default, ``method="ensemble"``, stacks the quantile forest with learners that win where
forests lose on few samples: ridge regression on standardised features (``RidgeCV``), an
RBF support-vector regressor (standardised features and target) and gradient-boosted trees.
Their weights are non-negative least squares on out-of-fold predictions of an inner 5-fold
CV *on the training rows only* (normalised to sum to 1), so a learner that does not help
gets weight 0. The map is the weighted mean; the interval is the forest's conditional
distribution moved to it and scaled by how much smaller the ensemble's inner-CV error is than
the forest's (``point + s · (Q - Q0.5)``, ``s = RMSE_ensemble / RMSE_forest`` <= 1, so the
interval stays per-pixel adaptive but is not as wide as the forest's own error), which the
conformal calibration of :mod:`cup4soil.models.calibration` then widens or narrows like any
other.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from ..errors import ModelError, ParameterError
from . import forest as forest_kernels
from ._typing import Features, FloatArray, IntArray, Predicts, Regressor
from .forest import CompiledForest

__all__ = [
    "ENSEMBLE_MEMBERS",
    "FOREST_DEFAULTS",
    "TUNE_GRID",
    "CompiledBoostingMember",
    "LinearMember",
    "Method",
    "Predictor",
    "RBFSVRMember",
    "Tune",
    "check_quantiles",
    "fast_member",
    "interval",
    "member_predict",
    "member_template",
    "predict_block",
    "quantile_name",
    "rbf_svr_predict",
    "resolve_method",
]

log = logging.getLogger(__name__)

#: cup4soil's forest defaults: 100 trees, ranger's regression leaf size, mtry = 1/3.
FOREST_DEFAULTS: dict[str, Any] = {"n_estimators": 100, "min_samples_leaf": 5,
                                   "max_features": 1 / 3}
#: The learners stacked with the forest by ``method="ensemble"`` (in this order).
ENSEMBLE_MEMBERS: tuple[str, ...] = ("ridge", "svr", "gbm")
#: Folds of the inner CV whose out-of-fold predictions weigh the ensemble's members.
ENSEMBLE_FOLDS = 5
#: The grid searched by ``tune=True`` (the parameters the estimator has).
TUNE_GRID: dict[str, list[Any]] = {"max_features": [1 / 3, 0.6, 1.0],
                                   "min_samples_leaf": [1, 5, 10]}
#: ``tune=``: no tuning, the default grid, or a grid of one's own.
Tune: TypeAlias = bool | Mapping[str, Sequence[Any]]


# --- quantiles -----------------------------------------------------------------------------

def check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    """The quantiles as floats.

    Raises
    ------
    ParameterError
        Fewer than three, no 0.5, or one outside (0, 1).
    """
    q = tuple(float(v) for v in quantiles)
    if not any(math.isclose(v, 0.5) for v in q) or any(not 0 < v < 1 for v in q) or len(q) < 3:
        raise ParameterError(f"quantiles={quantiles}: give at least a lower, 0.5 and an upper "
                             "quantile, each strictly between 0 and 1.")
    return q


def interval(quantiles: Sequence[float]) -> tuple[int, int, int]:
    """Positions of the lowest quantile, the median and the highest quantile."""
    median = next(i for i, v in enumerate(quantiles) if math.isclose(v, 0.5))
    return int(np.argmin(quantiles)), median, int(np.argmax(quantiles))


def quantile_name(q: float) -> str:
    """``q05`` for 0.05, ``q97_5`` for 0.975: the suffix of a quantile's column/variable."""
    pct = q * 100
    return f"q{pct:02.0f}" if abs(pct - round(pct)) < 1e-9 else f"q{pct:g}".replace(".", "_")


# --- methods -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Method:
    """A regression method, resolved from ``train(method=...)``.

    Attributes
    ----------
    name : str
        ``"qrf"``, ``"rf"`` or the estimator's class name (the model card's ``method``).
    template : Regressor
        Unfitted estimator, cloned for every fit.
    quantile_regressor : bool
        The estimator predicts quantiles itself (QRF); otherwise intervals come from
        residual quantiles.
    compilable : bool
        A random forest that :func:`cup4soil.models.forest.compile_forest` flattens.
    members : tuple of str
        For ``"ensemble"``: the learners stacked with the forest
        (:data:`ENSEMBLE_MEMBERS`); empty otherwise.
    """

    name: str
    template: Regressor
    quantile_regressor: bool
    compilable: bool
    members: tuple[str, ...] = ()


def resolve_method(method: str | Regressor, *, random_state: int,
                   params: Mapping[str, Any]) -> Method:
    """``"ensemble"`` (the quantile forest stacked with :data:`ENSEMBLE_MEMBERS`; ``params``
    go to the forest), ``"qrf"``, ``"rf"`` (with cup4soil's forest defaults and
    ``params``) or a clone of a scikit-learn regressor with ``params`` set.

    Raises
    ------
    ParameterError
        An unknown name, or an object that is not a scikit-learn regressor.
    """
    from sklearn.base import clone, is_regressor

    if isinstance(method, str):
        kw = {**FOREST_DEFAULTS, "random_state": random_state, "n_jobs": -1, **params}
        if method in ("qrf", "ensemble"):
            from quantile_forest import RandomForestQuantileRegressor

            members = ENSEMBLE_MEMBERS if method == "ensemble" else ()
            return Method(method, RandomForestQuantileRegressor(**kw), True, True, members)
        if method == "rf":
            from sklearn.ensemble import RandomForestRegressor

            return Method("rf", RandomForestRegressor(**kw), False, True)
        raise ParameterError(f"method={method!r}: use 'ensemble', 'qrf', 'rf' or a "
                             "scikit-learn regressor.")
    if not is_regressor(method):
        raise ParameterError(f"method {type(method).__name__} is not a scikit-learn regressor.")
    est = clone(method)
    if params:
        est.set_params(**params)
    return Method(type(method).__name__, est, False, False)


# --- the predictor -------------------------------------------------------------------------

@dataclass(eq=False)
class Predictor:
    """A fitted estimator that predicts quantiles.

    Attributes
    ----------
    quantiles : tuple of float
        The quantiles predicted, in this order.
    estimator : Regressor or None
        The fitted estimator; None where a compiled forest predicts without it (a model
        loaded from disk, or a copy shipped to Dask workers).
    forest : CompiledForest or None
        The compiled forest of a random forest, or None.
    residual_quantiles : ndarray of float64 or None
        Per quantile, the residual added to a point prediction (0 at the median); None for a
        quantile regressor, which predicts quantiles itself.
    interval_offset : float
        Conformal calibration (:mod:`cup4soil.models.calibration`): the lowest quantile
        moves down and the highest up by this much (target units; negative narrows), never
        past the median.
    members : tuple of Regressor
        An ensemble's fitted learners besides the forest (empty for one estimator).
    weights : ndarray of float64 or None
        An ensemble's weights: the forest's mean first, then one per member (sum 1).
    spread : float
        An ensemble's scale of the forest's quantiles around its median (1 otherwise).
    """

    quantiles: tuple[float, ...]
    estimator: Regressor | None
    forest: CompiledForest | None = None
    residual_quantiles: FloatArray | None = None
    interval_offset: float = 0.0
    members: tuple[Predicts, ...] = ()
    weights: FloatArray | None = None
    spread: float = 1.0

    @classmethod
    def fit(cls, method: Method, x: FloatArray, y: FloatArray, *,
            quantiles: tuple[float, ...], groups: IntArray | None = None, tune: Tune = False,
            random_state: int = 0) -> Predictor:
        """Fit a fresh clone of ``method.template`` on ``(x, y)``.

        Parameters
        ----------
        method : Method
        x : ndarray of float64, shape (n, n_features)
        y : ndarray of float64, shape (n,)
        quantiles : tuple of float
        groups : ndarray of int, optional
            Spatial block fold of each row: tuning's inner CV keeps them together.
        tune : bool or dict
            Tune hyper-parameters by grid search on these rows only.
        random_state : int
            Seed of the inner CVs (tuning, residuals).
        """
        from sklearn.base import clone

        est = clone(method.template)
        if tune:
            est = _tuned(est, x, y, groups, tune, random_state)
        else:
            est.fit(x, y)
        residual = None
        if not method.quantile_regressor:
            residual = _residual_quantiles(est, x, y, quantiles, random_state)
        compiled = None
        if method.compilable:
            try:
                compiled = forest_kernels.compile_forest(est)
            except ValueError as exc:  # e.g. max_samples_leaf != 1: fall back to predict
                log.info("forest not compiled (%s); using the estimator's predict", exc)
        if not method.members:
            return cls(quantiles, est, compiled, residual)
        members, weights, spread = _stack(method, est, x, y, groups, random_state)
        return cls(quantiles, est, compiled, residual, members=members, weights=weights,
                   spread=spread)

    def for_prediction(self) -> Predictor:
        """This predictor without what prediction does not need (the estimator, when a
        compiled forest predicts), its ensemble members in their fast form
        (:func:`fast_member`): small and quick to ship to Dask workers."""
        out = replace(self, members=tuple(fast_member(m) for m in self.members))
        return replace(out, estimator=None) if self.forest is not None else out

    def predict_quantiles(self, x: Features) -> FloatArray:
        """Quantiles per row, the outer two calibrated by :attr:`interval_offset`.

        Parameters
        ----------
        x : ndarray, shape (n, n_features)

        Returns
        -------
        ndarray of float64, shape (n, len(quantiles))
            NaN rows where a feature is not finite.
        """
        return self._calibrated(self._raw_quantiles(x))

    def predict_mean(self, x: Features) -> FloatArray:
        """The mean prediction per row (a forest's average of its trees; for a quantile
        regressor without a compiled forest, the median; for an ensemble, its weighted
        mean), NaN where a feature is missing."""
        if self.weights is not None:
            return self._ensemble(x)[1]
        if self.forest is not None:
            out: FloatArray = forest_kernels.predict_mean(self.forest, x)
            return out
        if self.residual_quantiles is None:
            _, med, _ = interval(self.quantiles)
            return self._raw_quantiles(x)[:, med]
        est = self.require_estimator()
        return _on_finite_rows(x, 1, est.predict)[:, 0]

    def _raw_quantiles(self, x: Features) -> FloatArray:
        """Quantiles per row before calibration.

        Parameters
        ----------
        x : ndarray, shape (n, n_features)

        Returns
        -------
        ndarray of float64, shape (n, len(quantiles))
            NaN rows where a feature is not finite.
        """
        if self.weights is not None:
            return self._ensemble(x)[0]
        if self.residual_quantiles is None:  # a quantile regressor
            if self.forest is not None:
                return forest_kernels.predict_quantiles(self.forest, x, self.quantiles)
            est = self.require_estimator()
            return _on_finite_rows(x, len(self.quantiles), lambda v: est.predict(
                v.astype(np.float32), quantiles=list(self.quantiles)))
        if self.forest is not None:
            point = forest_kernels.predict_mean(self.forest, x)
        else:
            est = self.require_estimator()
            point = _on_finite_rows(x, 1, est.predict)[:, 0]
        out: FloatArray = point[:, None] + self.residual_quantiles[None, :]
        return out

    def predict_quantiles_and_mean(self, x: Features) -> tuple[FloatArray, FloatArray]:
        """:meth:`predict_quantiles` and :meth:`predict_mean` of the same rows, walking a
        compiled quantile forest's trees once for both."""
        if self.weights is not None:
            q, mean = self._ensemble(x)
        elif self.forest is not None and self.forest.quantile and (
                self.residual_quantiles is None):
            q, mean = forest_kernels.predict_quantiles_and_mean(self.forest, x,
                                                                self.quantiles)
        else:
            return self.predict_quantiles(x), self.predict_mean(x)
        return self._calibrated(q), mean

    def _ensemble(self, x: Features) -> tuple[FloatArray, FloatArray]:
        """An ensemble's raw quantiles (the forest's distribution moved to the weighted
        mean) and its weighted mean, per row."""
        assert self.weights is not None
        if self.forest is not None:
            fq, fmean = forest_kernels.predict_quantiles_and_mean(self.forest, x,
                                                                  self.quantiles)
        else:
            est = self.require_estimator()
            fq = _on_finite_rows(x, len(self.quantiles), lambda v: est.predict(
                v.astype(np.float32), quantiles=list(self.quantiles)))
            fmean = _on_finite_rows(x, 1, lambda v: est.predict(
                v.astype(np.float32), quantiles="mean"))[:, 0]
        point = self.weights[0] * fmean
        for w, member in zip(self.weights[1:], self.members, strict=True):
            if w > 0:  # a member without weight is not evaluated
                point = point + w * _on_finite_rows(x, 1, member.predict)[:, 0]
        _, med, _ = interval(self.quantiles)
        q: FloatArray = point[:, None] + self.spread * (fq - fq[:, med:med + 1])
        return q, point

    def _calibrated(self, q: FloatArray) -> FloatArray:
        if self.interval_offset:
            lo, med, hi = interval(self.quantiles)
            q[:, lo] = np.minimum(q[:, lo] - self.interval_offset, q[:, med])
            q[:, hi] = np.maximum(q[:, hi] + self.interval_offset, q[:, med])
        return q

    def predict_block(self, block: Features) -> npt.NDArray[np.float32]:
        """Quantiles of a ``(feature, y, x)`` block as a float32 ``(quantile, y, x)`` block."""
        f, h, w = block.shape
        q = self.predict_quantiles(np.ascontiguousarray(block.reshape(f, h * w).T))
        return np.ascontiguousarray(q.T.reshape(len(self.quantiles), h, w), dtype=np.float32)

    def require_estimator(self) -> Regressor:
        """The fitted estimator.

        Raises
        ------
        ModelError
            This predictor has none (a compiled forest predicts without it).
        """
        if self.estimator is None:
            raise ModelError("this predictor has neither a compiled forest nor an estimator; "
                             "load the model again.")
        return self.estimator


def predict_block(block: Features, predictor: Predictor) -> npt.NDArray[np.float32]:
    """:meth:`Predictor.predict_block` as a function of the block first (for ``map_blocks``,
    where the predictor is one key of the graph)."""
    return predictor.predict_block(block)


def _on_finite_rows(x: Features, width: int, predict: Callable[[Features], Any]
                    ) -> FloatArray:
    """``predict`` of the rows of ``x`` without a missing feature, as ``(n, width)``;
    NaN rows elsewhere (scikit-learn refuses NaN)."""
    ok = np.isfinite(x).all(axis=1)
    if ok.all():  # a map block's usual case: no copy of the rows
        return np.asarray(predict(x), np.float64).reshape(x.shape[0], width)
    out: FloatArray = np.full((x.shape[0], width), np.nan)
    if ok.any():
        out[ok] = np.asarray(predict(x[ok])).reshape(ok.sum(), width)
    return out


#: Rows per kernel matrix of :func:`rbf_svr_predict` (rows x support vectors x 8 bytes).
_SVR_ROWS = 4096


@dataclass(frozen=True)
class RBFSVRMember:
    """A fitted RBF SVR member as arrays; ``predict`` is :func:`rbf_svr_predict`."""

    parts: tuple[Any, ...]

    def predict(self, x: Features) -> FloatArray:
        """Predictions per row."""
        return rbf_svr_predict(x, *self.parts)


@dataclass(frozen=True)
class LinearMember:
    """A fitted ``StandardScaler -> Ridge/RidgeCV/LinearRegression`` pipeline folded into one
    linear map, ``x @ coef + intercept`` in float64 (the pipeline validates its input and
    standardises a copy of it first: about 3x slower on map blocks)."""

    coef: FloatArray
    intercept: float

    def predict(self, x: Features) -> FloatArray:
        """Predictions per row."""
        out: FloatArray = np.asarray(x, np.float64) @ self.coef + self.intercept
        return out


@dataclass(frozen=True)
class CompiledBoostingMember:
    """A fitted least-squares ``GradientBoostingRegressor`` as a compiled forest:
    ``init + learning_rate * sum of its trees' leaf values`` (the same float32 comparisons
    as scikit-learn; its own ``predict`` walks the trees at ~0.3 M px/s here)."""

    forest: CompiledForest
    init: float
    factor: float

    def predict(self, x: Features) -> FloatArray:
        """Predictions per row."""
        mean = forest_kernels.predict_mean(self.forest, np.asarray(x))
        return self.init + self.factor * mean


def fast_member(member: Predicts) -> Predicts:
    """A fitted ensemble member in the form maps predict it with: the RBF SVR of
    :func:`member_template` as :class:`RBFSVRMember`, its ridge regression as
    :class:`LinearMember`, its gradient boosting as
    :class:`CompiledBoostingMember`, anything else as it is. Predictions equal the
    member's own to rounding (``tests/test_models.py``)."""
    parts = _rbf_svr_parts(member)
    if parts is not None:
        return RBFSVRMember(parts)
    linear = _linear(member)
    if linear is not None:
        return linear
    boosted = _compiled_boosting(member)
    return boosted if boosted is not None else member


def _linear(member: Predicts) -> LinearMember | None:
    """The ridge member (:func:`member_template`) as one linear map, or None for any other
    model: ``((x - m) / s) @ c + b = x @ (c / s) + (b - (m / s) @ c)``."""
    from sklearn.linear_model import LinearRegression, Ridge, RidgeCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if not (isinstance(member, Pipeline) and len(member.steps) == 2):
        return None
    scaler, reg = member.steps[0][1], member.steps[1][1]
    if not (isinstance(scaler, StandardScaler)
            and isinstance(reg, Ridge | RidgeCV | LinearRegression)
            # a member the ensemble gave no weight stays unfitted (it is never evaluated)
            and hasattr(scaler, "scale_") and hasattr(reg, "coef_")
            and np.ndim(reg.coef_) == 1 and np.ndim(reg.intercept_) == 0):
        return None
    coef = np.asarray(reg.coef_, np.float64)
    mean = np.asarray(scaler.mean_ if scaler.with_mean else np.zeros_like(coef), np.float64)
    scale = np.asarray(scaler.scale_ if scaler.with_std else np.ones_like(coef), np.float64)
    folded = coef / scale
    return LinearMember(folded, float(reg.intercept_) - float(mean @ folded))


def member_predict(member: Predicts) -> Callable[[Features], Any]:
    """How a fitted ensemble member's fast form (:func:`fast_member`) predicts rows."""
    return fast_member(member).predict


def _compiled_boosting(member: Predicts) -> CompiledBoostingMember | None:
    from types import SimpleNamespace

    from sklearn.dummy import DummyRegressor
    from sklearn.ensemble import GradientBoostingRegressor

    if not (isinstance(member, GradientBoostingRegressor) and member.loss == "squared_error"
            and isinstance(getattr(member, "init_", None), DummyRegressor)
            and member.init_.strategy == "mean"):
        return None
    trees = list(member.estimators_[:, 0])
    try:
        forest = forest_kernels.compile_forest(
            SimpleNamespace(estimators_=trees, n_features_in_=member.n_features_in_))
    except ValueError:
        return None
    return CompiledBoostingMember(forest, float(np.ravel(member.init_.constant_)[0]),
                                  float(member.learning_rate) * len(trees))


def _rbf_svr_parts(member: Predicts) -> tuple[Any, ...] | None:
    """(feature mean, feature scale, support vectors, dual coefficients, intercept, gamma,
    target mean, target scale) of a fitted ``TransformedTargetRegressor(StandardScaler ->
    SVR(kernel="rbf"), transformer=StandardScaler())``, or None for any other model."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    from .._compat import svr_gamma

    if not isinstance(member, TransformedTargetRegressor):
        return None
    pipe, target = getattr(member, "regressor_", None), getattr(member, "transformer_", None)
    if not (isinstance(pipe, Pipeline) and isinstance(target, StandardScaler)
            and len(pipe.steps) == 2 and isinstance(pipe.steps[0][1], StandardScaler)
            and isinstance(pipe.steps[1][1], SVR) and pipe.steps[1][1].kernel == "rbf"):
        return None
    scaler, svr = pipe.steps[0][1], pipe.steps[1][1]
    if not (scaler.with_mean and scaler.with_std and target.with_mean and target.with_std):
        return None
    return (scaler.mean_, scaler.scale_, svr.support_vectors_, svr.dual_coef_[0],
            float(svr.intercept_[0]), svr_gamma(svr), float(target.mean_[0]),
            float(target.scale_[0]))


def rbf_svr_predict(x: Features, mean: FloatArray, scale: FloatArray, sv: FloatArray,
                    dual: FloatArray, intercept: float, gamma: float, y_mean: float,
                    y_scale: float) -> FloatArray:
    """An RBF support-vector regressor's prediction with matrix products.

    Hand-written because libsvm's ``predict`` evaluates the kernel one row and one support
    vector at a time (about 60 k px/s here); as a matrix product per batch of rows it is
    BLAS work, tens of times faster, and equal to within rounding (``tests/test_models.py``).
    ``exp(-gamma * |x - sv|^2) @ dual + intercept`` on standardised features, mapped back to
    the target's scale.
    """
    svs = np.asarray(sv, dtype=np.float64)
    sv_sq = np.einsum("ij,ij->i", svs, svs)
    out: FloatArray = np.empty(x.shape[0])
    for start in range(0, x.shape[0], _SVR_ROWS):
        xs = (np.asarray(x[start:start + _SVR_ROWS], dtype=np.float64) - mean) / scale
        d2 = np.einsum("ij,ij->i", xs, xs)[:, None] + sv_sq[None, :] - 2.0 * (xs @ svs.T)
        np.maximum(d2, 0.0, out=d2)  # rounding can make a zero distance slightly negative
        np.multiply(d2, -gamma, out=d2)
        np.exp(d2, out=d2)
        out[start:start + _SVR_ROWS] = (d2 @ dual + intercept) * y_scale + y_mean
    return out


def _tuned(est: Regressor, x: FloatArray, y: FloatArray, groups: IntArray | None, tune: Tune,
           random_state: int) -> Regressor:
    """Hyper-parameters chosen by an inner CV on the training rows only."""
    from sklearn.model_selection import GridSearchCV, GroupKFold, KFold

    grid = dict(tune) if isinstance(tune, Mapping) else {
        k: v for k, v in TUNE_GRID.items() if k in est.get_params()}
    if not grid:
        est.fit(x, y)  # scikit-learn's fit returns the estimator itself
        return est
    if groups is not None and len(np.unique(groups)) >= 3:
        cv = GroupKFold(n_splits=min(5, len(np.unique(groups))))
    else:
        cv = KFold(n_splits=min(5, len(y)), shuffle=True, random_state=random_state)
        groups = None
    search = GridSearchCV(est, grid, cv=cv, scoring="neg_root_mean_squared_error", refit=True)
    search.fit(x, y, groups=groups)
    best: Regressor = search.best_estimator_
    return best


def member_template(name: str, *, random_state: int) -> Regressor:
    """An unfitted ensemble member: ``"ridge"`` (``RidgeCV`` on standardised features, its
    penalty chosen by efficient leave-one-out on the training rows), ``"svr"`` (RBF SVR on
    standardised features and target) or ``"gbm"`` (gradient-boosted depth-3 trees, 200 of
    them, learning rate 0.05, 80 % of the rows and half the features per tree/split)."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    if name == "ridge":
        est: Regressor = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 25)))
    elif name == "svr":
        est = TransformedTargetRegressor(make_pipeline(StandardScaler(), SVR(C=1.0)),
                                         transformer=StandardScaler())
    elif name == "gbm":
        # half the features per split: half the fitting time (many covariates), and
        # decorrelated trees
        est = GradientBoostingRegressor(n_estimators=200, learning_rate=0.05, max_depth=3,
                                        subsample=0.8, max_features=0.5,
                                        random_state=random_state)
    else:
        raise ParameterError(f"unknown ensemble member {name!r}; use one of "
                             f"{', '.join(ENSEMBLE_MEMBERS)}.")
    return est


def _stack(method: Method, forest: Regressor, x: FloatArray, y: FloatArray,
           groups: IntArray | None, random_state: int
           ) -> tuple[tuple[Regressor, ...], FloatArray, float]:
    """Fit the ensemble's members on all rows and weigh them (with the forest's mean) by
    non-negative least squares on out-of-fold predictions of an inner CV of these rows;
    also the interval's spread (the ensemble's out-of-fold RMSE over the forest's, at most
    1)."""
    from scipy.optimize import nnls
    from sklearn.base import clone
    from sklearn.model_selection import GroupKFold, KFold

    templates = [member_template(m, random_state=random_state) for m in method.members]
    if groups is not None and len(np.unique(groups)) >= 3:
        splits = list(GroupKFold(n_splits=min(ENSEMBLE_FOLDS, len(np.unique(groups))))
                      .split(x, y, groups))
    else:
        splits = list(KFold(n_splits=min(ENSEMBLE_FOLDS, len(y)), shuffle=True,
                            random_state=random_state).split(x, y))
    oof = np.zeros((y.size, 1 + len(templates)))
    for tr, te in splits:
        f = clone(forest).fit(x[tr], y[tr])
        # the compiled forest's mean, as the fitted ensemble will predict it
        oof[te, 0] = forest_kernels.predict_mean(forest_kernels.compile_forest(f), x[te])
        for j, t in enumerate(templates):
            oof[te, j + 1] = clone(t).fit(x[tr], y[tr]).predict(x[te])
    w, _ = nnls(oof, y)
    # all weight on the forest when nothing fits (e.g. a constant target)
    w = w / w.sum() if w.sum() > 0 else np.eye(1, oof.shape[1])[0]
    members = tuple(t.fit(x, y) if wj > 0 else t for t, wj in zip(templates, w[1:],
                                                                   strict=True))
    rmse_forest = float(np.sqrt(np.mean((oof[:, 0] - y) ** 2)))
    rmse = float(np.sqrt(np.mean((oof @ w - y) ** 2)))
    spread = min(1.0, rmse / rmse_forest) if rmse_forest > 0 else 1.0
    return members, np.asarray(w, np.float64), spread


def _residual_quantiles(est: Regressor, x: FloatArray, y: FloatArray,
                        quantiles: tuple[float, ...], random_state: int) -> FloatArray:
    """Empirical quantiles of cross-validated residuals (split-conformal style intervals
    for regressors that predict a single value)."""
    from sklearn.base import clone
    from sklearn.model_selection import KFold, cross_val_predict

    cv = KFold(n_splits=min(5, len(y)), shuffle=True, random_state=random_state)
    pred = cross_val_predict(clone(est), x, y, cv=cv)
    q = np.array(quantiles)
    # the median of the residuals is not added: the point prediction stays the model's
    res: FloatArray = np.quantile(y - pred, q)
    res[np.isclose(q, 0.5)] = 0.0
    return res
