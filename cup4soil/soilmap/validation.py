"""Validation of a soil map at independent points (the seed's "external validation").

:func:`validate` samples a :meth:`SoilMapModel.predict` product (nearest pixel, CRS-aware)
at points that took no part in training and reports ME, RMSE, MEC, CCC, PICP90 and n in
the map's units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ParameterError, SampleError
from ..models import PROPERTIES
from ..models.cv import cv_metrics
from ..models.design import sample_covariates
from ..models.samples import SampleSource, read_samples
from ..models.units import resolve_property
from .maps import layer_name

__all__ = ["validate"]


def validate(maps: xr.Dataset, points: SampleSource, property: str, *,
             unit: str | None = None, column: str | None = None, crs: Any = None,
             coords: tuple[str, str] | None = None) -> tuple[dict[str, float], pd.DataFrame]:
    """Accuracy of a property's map at independent points.

    Parameters
    ----------
    maps : xarray.Dataset
        SoilGrids-named layers (``soc_0-30cm_Q0.5``, ``_Q0.05``, ``_Q0.95``).
    points : DataFrame, GeoDataFrame or path
        Observations with coordinates.
    property : str
        SoilGrids name (``soc``, ...).
    unit : str, optional
        Unit of the observations (converted to the map's mapped units); default: mapped.
    column : str, optional
        Observation column (default: ``property``).

    Returns
    -------
    metrics : dict
        ``MEC``, ``RMSE``, ``ME``, ``CCC``, ``PICP90``, ``n`` (mapped units).
    table : pandas.DataFrame
        Per point: ``x``, ``y``, ``observed``, ``predicted``, ``q05``, ``q95``.

    Raises
    ------
    ParameterError
        Not a SoilGrids property, or the maps lack its layers.
    SampleError
        No observation column, or no point on the map.
    """
    if property not in PROPERTIES:
        raise ParameterError(f"property {property!r}: one of {', '.join(PROPERTIES)}.")
    names = [layer_name(property, s) for s in ("Q0.5", "Q0.05", "Q0.95")]
    absent = [n for n in names if n not in maps]
    if absent:
        raise ParameterError(f"the maps lack {', '.join(absent)}.")
    s = read_samples(points, crs=crs, coords=coords)
    col = column or property
    if col not in s.table:
        raise SampleError(f"no column {col!r} in the points; pass column=.")
    if s.x is None or s.y is None:
        raise SampleError("the points have no coordinates.")
    _, _, factor = resolve_property(property, property, unit or PROPERTIES[property].units)
    obs = pd.to_numeric(s.table[col], errors="coerce").to_numpy(float) * factor
    at = sample_covariates(maps[names], s.x, s.y, crs=s.crs, missing="drop")
    table = pd.DataFrame({"x": s.x, "y": s.y, "observed": obs,
                          "predicted": at[names[0]].to_numpy(float),
                          "q05": at[names[1]].to_numpy(float),
                          "q95": at[names[2]].to_numpy(float)})
    table = table[np.isfinite(table[["observed", "predicted"]]).all(axis=1)]
    if table.empty:
        raise SampleError("no point has both an observation and a mapped value.")
    metrics = cv_metrics(table["observed"], table["predicted"], table["q05"], table["q95"])
    return metrics, table.reset_index(drop=True)
