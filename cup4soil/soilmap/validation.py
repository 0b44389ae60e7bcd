"""Validation of a soil map at independent points (the seed's "external validation").

:func:`validate` samples a :meth:`SoilMapModel.predict` product (nearest pixel, CRS-aware)
at points that took no part in training and reports ME, RMSE, MEC, CCC, PICP90 and n in
the map's units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import xarray as xr
from pyproj import Transformer

from ..errors import ParameterError, SampleError
from ..models import PROPERTIES
from ..models.cv import cv_metrics
from ..models.design import covariate_crs, sample_covariates
from ..models.samples import SampleSource, read_samples, sample_crs
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
        Per point: ``x``, ``y`` (the points' CRS), ``x_map``, ``y_map`` (the map's CRS,
        ``table.attrs["crs"]``), ``observed``, ``predicted``, ``q05``, ``q95``.

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
    if s.crs is None:  # sample_covariates says why a CRS is needed
        sample_covariates(maps[names], s.x, s.y, crs=None)
    map_crs = covariate_crs(maps)
    tr = Transformer.from_crs(sample_crs(s.crs), map_crs, always_xy=True)
    mx, my = tr.transform(np.asarray(s.x, float), np.asarray(s.y, float))
    # Only points on the map are sampled: indices of points far off it (e.g. a wrong CRS)
    # would not fit an integer.
    on = _on_grid(maps, np.asarray(mx, float), np.asarray(my, float))
    sampled = np.full((on.size, 3), np.nan)
    if on.any():
        at = sample_covariates(maps[names], np.asarray(s.x)[on], np.asarray(s.y)[on],
                               crs=s.crs, missing="drop")
        sampled[on] = at[names].to_numpy(float)
    table = pd.DataFrame({"x": s.x, "y": s.y, "x_map": mx, "y_map": my, "observed": obs,
                          "predicted": sampled[:, 0], "q05": sampled[:, 1],
                          "q95": sampled[:, 2]})
    table = table[np.isfinite(table[["observed", "predicted"]]).all(axis=1)]
    if table.empty:
        raise SampleError(
            f"no point has both an observation and a mapped value ({int(on.sum())} of "
            f"{on.size} points fall on the map, CRS {map_crs}); check the points' CRS "
            "(--crs / crs=) and the observation column.")
    metrics = cv_metrics(table["observed"], table["predicted"], table["q05"], table["q95"])
    table = table.reset_index(drop=True)
    table.attrs["crs"] = map_crs
    return metrics, table


def _on_grid(maps: xr.Dataset, mx: npt.NDArray[np.float64], my: npt.NDArray[np.float64]
             ) -> npt.NDArray[np.bool_]:
    """Which map-CRS points lie within the map's extent (pixel edges)."""
    xs, ys = np.asarray(maps["x"], float), np.asarray(maps["y"], float)
    hx = abs(float(xs[1] - xs[0])) / 2 if xs.size > 1 else 0.0
    hy = abs(float(ys[1] - ys[0])) / 2 if ys.size > 1 else 0.0
    with np.errstate(invalid="ignore"):
        return np.asarray((mx >= xs.min() - hx) & (mx <= xs.max() + hx)
                          & (my >= ys.min() - hy) & (my <= ys.max() + hy), bool)
