"""Type aliases shared by the models modules (no runtime behaviour)."""

from __future__ import annotations

from typing import Any, Protocol, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = ["BoolArray", "Features", "FloatArray", "IntArray", "ModelCard", "Predicts",
           "Regressor"]

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.int64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
#: Feature values, one row per sample or pixel (float64 tables, float32 pixel blocks).
Features: TypeAlias = npt.NDArray[np.floating[Any]]
#: The JSON model card (``model-card.json``): plain JSON values only.
ModelCard: TypeAlias = dict[str, Any]


class Regressor(Protocol):
    """What cup4soil uses of a scikit-learn regressor (scikit-learn has no type hints)."""

    def fit(self, x: Any, y: Any, /) -> Any: ...

    def predict(self, x: Any, /, **kwargs: Any) -> Any: ...

    def get_params(self, deep: bool = True) -> dict[str, Any]: ...


class Predicts(Protocol):
    """Anything that predicts one value per row: a fitted regressor, or an ensemble
    member's fast form (:func:`cup4soil.models.predictor.fast_member`)."""

    def predict(self, x: Any, /) -> Any: ...
