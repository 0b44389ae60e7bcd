"""Stage 5 — soil property models: samples, design matrix, cross-validation, prediction.

Knows no storage beyond a model's own files (``SoilModel.save``/``load``).
"""

from __future__ import annotations

from .model import (
    PROPERTIES,
    SoilModel,
    cv_metrics,
    load,
    sample_covariates,
    to_conventional,
    train,
)

__all__ = [
    "PROPERTIES", "SoilModel", "cv_metrics", "load", "sample_covariates", "to_conventional",
    "train",
]
