"""Soil samples: a table, point coordinates and their CRS, from a (Geo)DataFrame or a file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd

from .._xrutil import crs_label
from ..errors import SampleError
from ._typing import BoolArray, FloatArray

__all__ = ["SampleSource", "Samples", "read_samples", "sample_crs", "target_values"]

#: What ``train`` accepts as samples: a (Geo)DataFrame or a CSV/Parquet/GeoPackage/... path.
SampleSource: TypeAlias = pd.DataFrame | str | Path

#: Coordinate column pairs recognised without ``coords=``, in order of preference.
COORD_PAIRS = (("x", "y"), ("X", "Y"), ("easting", "northing"), ("lon", "lat"),
               ("longitude", "latitude"))


@dataclass(frozen=True)
class Samples:
    """A sample table with its point coordinates.

    Attributes
    ----------
    table : pandas.DataFrame
        The samples' columns (without a geometry column).
    x, y : ndarray of float64 or None
        Point coordinates in ``crs``; None when the samples have none.
    crs : str or None
        ``"EPSG:<code>"`` or WKT; None when unknown.
    """

    table: pd.DataFrame
    x: FloatArray | None
    y: FloatArray | None
    crs: str | None

    def subset(self, keep: BoolArray) -> Samples:
        """The rows where ``keep`` is true, renumbered from 0."""
        return Samples(self.table[keep].reset_index(drop=True),
                       None if self.x is None else self.x[keep],
                       None if self.y is None else self.y[keep], self.crs)


def sample_crs(crs: Any) -> str:
    """``"EPSG:<code>"`` or WKT of a CRS given by the user.

    Raises
    ------
    SampleError
        pyproj does not understand ``crs``.
    """
    try:
        return crs_label(crs)
    except ValueError as exc:
        raise SampleError(str(exc)) from None


def read_samples(samples: SampleSource, *, crs: Any, coords: tuple[str, str] | None
                 ) -> Samples:
    """A table plus point coordinates and their CRS, from a (Geo)DataFrame or a file.

    Coordinates come from the geometry (points), ``coords=(xcol, ycol)``, one of
    :data:`COORD_PAIRS` (``lon``/``lat``: EPSG:4326) or LimeSoDa's ``x_EPSG``/``y_EPSG``
    (the CRS from the name); ``crs`` overrides a CRS found from column names.

    Raises
    ------
    SampleError
        A missing file, an unsupported object, non-point geometries, a ``crs`` that
        contradicts the GeoDataFrame's, or a ``coords`` column that does not exist.
    """
    if isinstance(samples, str | Path):
        path = Path(samples)
        if not path.exists():
            raise SampleError(f"sample file {path} does not exist.")
        if path.suffix.lower() in (".csv", ".txt"):
            samples = pd.read_csv(path)
        elif path.suffix.lower() == ".parquet":
            samples = pd.read_parquet(path)
        else:  # GeoPackage, GeoJSON, shapefile ...
            import geopandas

            samples = geopandas.read_file(path)
    if not isinstance(samples, pd.DataFrame):
        raise SampleError(f"samples must be a (Geo)DataFrame or a file path, not "
                          f"{type(samples).__name__}.")
    table = pd.DataFrame(samples).copy()
    geometry = getattr(samples, "geometry", None) if "geometry" in samples else None
    if geometry is not None and hasattr(geometry, "x"):
        if not (geometry.geom_type == "Point").all():
            raise SampleError("sample geometries must be points.")
        gcrs = samples.crs.to_string() if samples.crs is not None else None
        if crs is not None and gcrs is not None and sample_crs(crs) != sample_crs(gcrs):
            raise SampleError(f"crs={crs!r} contradicts the samples' own CRS {gcrs}.")
        table = table.drop(columns="geometry")
        return Samples(table, geometry.x.to_numpy(float), geometry.y.to_numpy(float),
                       gcrs or (sample_crs(crs) if crs is not None else None))
    pair, found_crs = coords, None
    if pair is None:
        for a, b in COORD_PAIRS:
            if a in table and b in table:
                pair = (a, b)
                found_crs = "EPSG:4326" if a in ("lon", "longitude") else None
                break
    if pair is None:  # LimeSoDa style: x_25833, y_25833
        for col in table.columns:
            m = re.fullmatch(r"x_(\d{4,5})", str(col))
            if m and f"y_{m.group(1)}" in table:
                pair, found_crs = (str(col), f"y_{m.group(1)}"), f"EPSG:{m.group(1)}"
                break
    if pair is None:
        return Samples(table, None, None, sample_crs(crs) if crs is not None else None)
    for c in pair:
        if c not in table:
            raise SampleError(f"coordinate column {c!r} not in the samples; columns are "
                              f"{', '.join(map(str, table.columns))}.")
    out_crs = sample_crs(crs) if crs is not None else found_crs
    return Samples(table, table[pair[0]].to_numpy(float), table[pair[1]].to_numpy(float),
                   out_crs)


def target_values(table: pd.DataFrame, target: str) -> pd.Series:
    """The target column as numbers (NaN where a value is missing or not a number).

    Raises
    ------
    SampleError
        The column does not exist, or is text (more than 5 % of its values are no numbers).
    """
    if target not in table:
        raise SampleError(f"target column {target!r} is not in the samples; columns are "
                          f"{', '.join(map(str, table.columns))}.")
    yv = pd.to_numeric(table[target], errors="coerce")
    if yv.isna().all() or not (pd.api.types.is_numeric_dtype(table[target])
                               or yv.notna().mean() > 0.95):
        raise SampleError(f"target column {target!r} is not numeric (e.g. "
                          f"{table[target].iloc[0]!r}).")
    return yv
