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
        samples = _read_file(Path(samples))
    if not isinstance(samples, pd.DataFrame):
        raise SampleError(f"samples must be a (Geo)DataFrame or a file path, not "
                          f"{type(samples).__name__}.")
    if len(samples) == 0:
        columns = ", ".join(map(str, samples.columns))
        raise SampleError(
            "the samples have no rows" + (f" (only the columns {columns})" if columns else "")
            + ". Give at least a few samples with coordinates and the target.")
    if samples.columns.duplicated().any():
        dup = sorted({str(c) for c in samples.columns[samples.columns.duplicated()]})
        raise SampleError(f"the samples have duplicated column names ({', '.join(dup)}); "
                          "rename them so that each feature and the target are one column.")
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


def _read_file(path: Path) -> pd.DataFrame:
    """A sample file as a (Geo)DataFrame; every failure of the readers is a SampleError
    saying what the file is not.

    A CSV whose header holds ``;`` or tabs and no commas (spreadsheet exports in many
    European locales) is read with that separator.
    """
    if not path.exists():
        raise SampleError(f"sample file {path} does not exist.")
    if path.is_dir():
        raise SampleError(f"sample file {path} is a folder; give the CSV, Parquet or "
                          "GeoPackage file itself.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            table = pd.read_csv(path)
            only = str(table.columns[0]) if len(table.columns) == 1 else ""
            for sep in (";", "\t"):
                if sep in only and "," not in only:
                    table = pd.read_csv(path, sep=sep)
                    break
            return table
        if suffix == ".parquet":
            return pd.read_parquet(path)
        import geopandas  # GeoPackage, GeoJSON, shapefile ...

        out: pd.DataFrame = geopandas.read_file(path)
        return out
    except pd.errors.EmptyDataError:
        raise SampleError(f"sample file {path} is empty: no header, no rows. Give a table "
                          "with a header line (coordinates, target, features) and one row "
                          "per sample.") from None
    except UnicodeDecodeError:
        raise SampleError(f"sample file {path} is not text in UTF-8 (a binary file, or "
                          "another encoding?). Save it as a UTF-8 CSV.") from None
    except pd.errors.ParserError as exc:
        raise SampleError(f"sample file {path} is not a well-formed CSV ({exc}).".replace(
            "\n", " ")) from None
    except ImportError as exc:
        raise SampleError(f"reading {path.name} needs a library that is not installed "
                          f"({str(exc).splitlines()[0]}); install it (for Parquet: pip "
                          "install pyarrow) or save the samples as CSV.") from None
    except Exception as exc:  # pyogrio/fiona/pyarrow: not a file of that format
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SampleError(f"sample file {path} cannot be read as {suffix or 'a table'} "
                          f"({type(exc).__name__}: {first[:200]}). Give a CSV, Parquet, "
                          "GeoPackage, GeoJSON or shapefile of the samples.") from None


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
    if len(table) == 0:
        raise SampleError("the samples have no rows. Give at least a few samples.")
    if table[target].isna().all():
        raise SampleError(f"target column {target!r} has no values (all {len(table)} are "
                          "missing). Choose the column that holds the measurements.")
    yv = pd.to_numeric(table[target], errors="coerce")
    if yv.isna().all() or not (pd.api.types.is_numeric_dtype(table[target])
                               or yv.notna().mean() > 0.95):
        raise SampleError(f"target column {target!r} is not numeric (e.g. "
                          f"{table[target].iloc[0]!r}).")
    return yv
