"""Soil maps: many properties in one call, in SoilGrids conventions, with calibrated 90 %
intervals; the covariate-set comparison; derived indicators (SOC stock, water capacity).

Builds on :mod:`cup4soil.models` (one model per property) and :mod:`cup4soil.covariates`;
knows no storage (the products stage writes what :meth:`SoilMapModel.predict` returns).
Modules: ``maps`` (:func:`train`, :class:`SoilMapModel`), ``texture`` (log-ratios),
``compare`` (the covariate-set table), ``indicators`` and ``kernels`` (SOC stock, AWC,
Monte Carlo), ``validation`` (:func:`validate`), ``persistence`` (:meth:`SoilMapModel.save`,
:func:`load`), ``extrapolation`` (pixels outside the training range).
"""

from __future__ import annotations

from .compare import compare, plot_compare
from .extrapolation import ExtrapolationWarning, check_extrapolation
from .indicators import awc, soc_stock
from .maps import DEPTH, MIN_SAMPLES, QUANTILES, SoilMapModel, layer_name, train
from .persistence import load
from .validation import validate

__all__ = ["DEPTH", "MIN_SAMPLES", "QUANTILES", "ExtrapolationWarning", "SoilMapModel", "awc",
           "check_extrapolation", "compare", "layer_name", "load", "plot_compare",
           "soc_stock", "train", "validate"]
