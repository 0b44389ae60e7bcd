"""A :class:`~cup4soil.soilmap.SoilMapModel`'s own files: one model directory per property
(:meth:`cup4soil.models.SoilModel.save`), the texture log-ratio models, the CV table and
out-of-fold predictions, and last a card that marks the folder complete. Standard library,
pandas and the models' own persistence only.

Layout of a saved soil-map model::

    path/soilmap-card.json          format, properties, features, folds, time span, CV,
                                    texture offsets, versions (written last)
    path/models/<property>/         one cup4soil model per property outside texture
    path/models/alr_sand/, alr_silt/  the texture log-ratio models
    path/cv-predictions/<property>.csv
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import ModelError, ParameterError
from ..models import load as load_model
from ..models.persistence import versions

if TYPE_CHECKING:
    from .maps import SoilMapModel

__all__ = ["SOILMAP_CARD", "SOILMAP_FORMAT", "load", "save"]

SOILMAP_FORMAT = "cup4soil-soilmap/1"
SOILMAP_CARD = "soilmap-card.json"
_ALR = ("alr_sand", "alr_silt")


def _num(v: Any) -> Any:
    """A JSON value: NaN/inf as None, numpy scalars as Python numbers."""
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def save(model: SoilMapModel, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model`` to the directory ``path`` (see the module's layout).

    Raises
    ------
    ParameterError
        ``path`` is a file, holds files cup4soil did not write as a soil-map model, or
        holds one and ``overwrite`` is false.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ParameterError(f"{path} is a file; save the soil-map model to a directory.")
    if path.is_dir() and any(path.iterdir()):
        if not (path / SOILMAP_CARD).is_file():
            raise ParameterError(f"{path} exists and is not a cup4soil soil-map model "
                                 f"({SOILMAP_CARD} is missing); choose another directory.")
        if not overwrite:
            raise ParameterError(f"a soil-map model exists at {path}; pass overwrite=True "
                                 "to replace it.")
    path.mkdir(parents=True, exist_ok=True)
    (path / SOILMAP_CARD).unlink(missing_ok=True)  # the card goes last: it marks completeness
    for name, m in model.models.items():
        m.save(path / "models" / name, overwrite=True)
    tex = model._texture
    if tex is not None:
        tex.a_sand.save(path / "models" / _ALR[0], overwrite=True)
        tex.a_silt.save(path / "models" / _ALR[1], overwrite=True)
    (path / "cv-predictions").mkdir(exist_ok=True)
    for name, frame in model.cv_predictions.items():
        frame.to_csv(path / "cv-predictions" / f"{name}.csv", index=False)
    card = {
        "format": SOILMAP_FORMAT, "properties": list(model.properties),
        "features": list(model.features), "models": sorted(model.models),
        "folds": model.folds, "time_start": model.time_start, "time_end": model.time_end,
        "cv_columns": list(map(str, model.cv.columns)),
        "cv": {str(p): {str(k): _num(v) for k, v in row.items()}
               for p, row in model.cv.to_dict("index").items()},
        "feature_ranges": None if model.feature_ranges is None else [
            [_num(v) for v in row] for row in model.feature_ranges],
        "texture": None if tex is None else {"offsets": {k: float(v) for k, v in
                                                         tex.offsets.items()}},
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "versions": versions(),
    }
    (path / SOILMAP_CARD).write_text(json.dumps(card, indent=2))
    return path


def load(path: str | Path) -> SoilMapModel:
    """Load a soil-map model written by :meth:`SoilMapModel.save`.

    Raises
    ------
    ModelError
        The directory is not a complete soil-map model (a single-property model is loaded
        with :func:`cup4soil.models.load`), was written in another format, or lacks one of
        its property models.
    """
    from .maps import SoilMapModel, _Texture

    path = Path(path)
    card_file = path / SOILMAP_CARD
    if not card_file.is_file():
        hint = (" It is a single-property model: load it with cup4soil.models.load."
                if (path / "model-card.json").is_file() else "")
        raise ModelError(f"{path} is not a (complete) cup4soil soil-map model: "
                         f"{SOILMAP_CARD} is missing.{hint}")
    try:
        card = json.loads(card_file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{card_file} is not valid JSON ({exc}).") from None
    fmt = card.get("format") if isinstance(card, dict) else None
    if fmt != SOILMAP_FORMAT:
        made_by = (card.get("versions", {}).get("cup4soil", "an unknown version")
                   if isinstance(card, dict) else "an unknown version")
        raise ModelError(
            f"{path} has soil-map model format {fmt!r} (written by cup4soil {made_by}); this "
            f"cup4soil reads {SOILMAP_FORMAT!r}. Retrain, or load it with that version.")
    models = {}
    for name in card["models"]:
        folder = path / "models" / name
        if not folder.is_dir():
            raise ModelError(f"{path} lacks the model of {name} (models/{name}); save the "
                             "soil-map model again.")
        models[name] = load_model(folder)
    texture = None
    if card.get("texture") is not None:
        a_sand, a_silt = (load_model(path / "models" / n) for n in _ALR)
        texture = _Texture(a_sand, a_silt, dict(card["texture"]["offsets"]))
    cvp = {}
    for name in card["properties"]:
        f = path / "cv-predictions" / f"{name}.csv"
        cvp[name] = pd.read_csv(f) if f.is_file() else pd.DataFrame()
    cv = pd.DataFrame.from_dict(card["cv"], orient="index").reindex(
        index=card["properties"], columns=card["cv_columns"]).astype(float)
    if "n" in cv:
        cv["n"] = cv["n"].astype(int)
    ranges = card.get("feature_ranges")
    return SoilMapModel(tuple(card["properties"]), tuple(card["features"]), models, cv, cvp,
                        str(card["folds"]), card.get("time_start"), card.get("time_end"),
                        texture, None if ranges is None else np.array(
                            [[np.nan if v is None else v for v in row] for row in ranges],
                            np.float64))
