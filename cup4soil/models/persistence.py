"""A model's own files: the model card, the compiled forest, the estimator, the CV
predictions; format and library-version checks. Standard library, NumPy and joblib only."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ModelError, ParameterError
from ._typing import FloatArray, ModelCard, Regressor
from .design import Design
from .forest import CompiledForest
from .predictor import Predictor
from .units import PROPERTIES

__all__ = ["CARD", "CV_PREDICTIONS", "ESTIMATOR", "FOREST", "MEMBERS", "MODEL_FORMAT",
           "load_estimator", "model_card", "read_model", "training_hash", "versions", "write_model"]

MODEL_FORMAT = "cup4soil-model/1"
CARD = "model-card.json"
FOREST = "forest.npz"
ESTIMATOR = "estimator.joblib"
#: An ensemble's learners besides the forest (ridge, SVR, gradient boosting).
MEMBERS = "members.joblib"
CV_PREDICTIONS = "cv-predictions.csv"

# numpy's stubs type savez's **kwds as if they could fill allow_pickle (a bool)
_savez: Callable[..., None] = np.savez


def training_hash(features: tuple[str, ...] | list[str], x: FloatArray, y: FloatArray) -> str:
    """SHA-256 of the feature names and the training table (features and target)."""
    h = hashlib.sha256()
    h.update(json.dumps(list(features)).encode())
    h.update(np.ascontiguousarray(x).tobytes())
    h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a saved model depends on."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("cup4soil", "scikit-learn", "quantile-forest", "numpy", "numba"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:  # pragma: no cover
            out[pkg] = "unknown"
    return out


def model_card(*, name: str, target: str, units: str, unit: str | None, factor: float,
               design: Design, quantiles: tuple[float, ...], method: str,
               params: Mapping[str, Any], folds: str, tuned: bool,
               metrics: dict[str, float]) -> ModelCard:
    """The model card: what the model predicts, from what, how well, made by which versions.

    Parameters
    ----------
    name, units : str
        Output name and units (SoilGrids' for a known property).
    target, unit : str
        The samples' column and its unit; ``factor`` converts it to ``units``.
    params : mapping
        The final estimator's parameters (values that are not JSON scalars as their repr).
    """
    prop = PROPERTIES.get(name)
    return {
        "format": MODEL_FORMAT, "property": name, "target": target,
        "long_name": prop.long_name if prop else name, "units": units,
        "conversion_factor": prop.factor if prop else 1,
        "conventional_units": prop.conventional if prop else units,
        "target_unit": unit, "target_factor": factor, "depth": "0-30 cm",
        "features": list(design.features), "crs": design.crs,
        "sample_crs": design.samples.crs, "quantiles": list(quantiles), "method": method,
        "params": {k: (v if isinstance(v, int | float | str | bool | None) else repr(v))
                   for k, v in params.items()},
        "folds": folds, "tuned": tuned, "cv": metrics,
        "training_hash": training_hash(design.features, design.x, design.y),
        "n_samples": int(design.y.size),
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "versions": versions(),
    }


def write_model(path: str | Path, *, card: ModelCard, predictor: Predictor,
                estimator: Regressor | None, cv_predictions: pd.DataFrame,
                overwrite: bool = False) -> Path:
    """Write ``forest.npz``, ``estimator.joblib``, ``cv-predictions.csv`` and, last (it
    marks a complete model), ``model-card.json`` into the directory ``path``.

    Raises
    ------
    ParameterError
        ``path`` holds a model (and ``overwrite`` is false) or other files.
    """
    import joblib

    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        if not (path / CARD).exists():
            raise ParameterError(f"{path} exists and is not a cup4soil model; choose "
                                 "another directory.")
        raise ParameterError(f"a model exists at {path}; pass overwrite=True to replace "
                             "it.")
    path.mkdir(parents=True, exist_ok=True)
    (path / CARD).unlink(missing_ok=True)  # the card goes last: it marks completeness
    if predictor.forest is not None:
        _savez(path / FOREST, **predictor.forest.to_arrays())
    if estimator is not None:
        joblib.dump(estimator, path / ESTIMATOR)
    if predictor.weights is not None:
        joblib.dump(predictor.members, path / MEMBERS)
    cv_predictions.to_csv(path / CV_PREDICTIONS, index=False)
    card = dict(card)
    if predictor.residual_quantiles is not None:
        card["residual_quantiles"] = [float(v) for v in predictor.residual_quantiles]
    card["interval_offset"] = float(predictor.interval_offset)
    if predictor.weights is not None:
        card["ensemble_weights"] = [float(w) for w in predictor.weights]
        card["ensemble_spread"] = float(predictor.spread)
    (path / CARD).write_text(json.dumps(card, indent=2))
    return path


def read_model(path: Path) -> tuple[ModelCard, Predictor, pd.DataFrame]:
    """The card, the predictor and the CV predictions of a model directory.

    The estimator is loaded only where no compiled forest predicts without it.

    Raises
    ------
    ModelError
        The directory is not a complete model, or was written in another model format.
    """
    card_file = path / CARD
    if not card_file.exists():
        raise ModelError(f"{path} is not a (complete) cup4soil model: {CARD} is missing.")
    try:
        card: ModelCard = json.loads(card_file.read_text())
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
    if (path / FOREST).exists():
        with np.load(path / FOREST, allow_pickle=False) as z:
            forest = CompiledForest.from_arrays(z)
    elif card["method"] in ("qrf", "rf"):
        raise ModelError(f"{path} lacks {FOREST}; save the model again.")
    residual = card.get("residual_quantiles")
    cv_file = path / CV_PREDICTIONS
    cvp = pd.read_csv(cv_file) if cv_file.exists() else pd.DataFrame()
    weights = card.get("ensemble_weights")
    members: tuple[Regressor, ...] = ()
    if weights is not None:
        members = tuple(load_estimator(path, card, MEMBERS))
    predictor = Predictor(
        tuple(card["quantiles"]), None if forest is not None else load_estimator(path, card),
        forest, None if residual is None else np.asarray(residual, np.float64),
        float(card.get("interval_offset", 0.0)), members,
        None if weights is None else np.asarray(weights, np.float64),
        float(card.get("ensemble_spread", 1.0)))
    return card, predictor, cvp


def load_estimator(path: Path, card: ModelCard, name: str = ESTIMATOR) -> Any:
    """The fitted estimator (or, ``name=MEMBERS``, an ensemble's members) of a model
    directory.

    Raises
    ------
    ModelError
        No estimator file, or one pickled by another scikit-learn minor version.
    """
    import joblib
    import sklearn

    f = path / name
    if not f.exists():
        raise ModelError(f"{path} has no {name}; save the model again.")
    saved = card.get("versions", {}).get("scikit-learn", "unknown")
    if saved.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise ModelError(
            f"{path} holds a {card['method']} estimator saved with scikit-learn {saved}; this "
            f"environment has {sklearn.__version__}. Install scikit-learn=={saved} or retrain.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return joblib.load(f)
