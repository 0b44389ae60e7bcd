"""Stage 5 — soil property models: samples, design matrix, cross-validation, prediction.

Knows no storage beyond a model's own files (``SoilModel.save``/``load``). Modules, along
the data flow of :func:`train`: ``samples`` (reading samples) → ``design`` (the design
matrix) → ``cv`` (folds, the CV loop, metrics) → ``predictor`` (one predictor for CV folds
and the final model; ``forest``: compiled forests) → ``model`` (:class:`SoilModel`,
:func:`train`, :func:`load`); ``persistence`` (the model's files) and ``units`` (SoilGrids
units) on the side.
"""

from __future__ import annotations

from .cv import cv_metrics
from .design import sample_covariates
from .model import SoilModel, load, train
from .units import PROPERTIES, to_conventional

__all__ = [
    "PROPERTIES", "SoilModel", "cv_metrics", "load", "sample_covariates", "to_conventional",
    "train",
]
