"""Parsing of user input: areas of interest and time ranges (pure, no I/O but AOI files)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import shapely
import shapely.affinity
import shapely.geometry
from odc.geo.crs import CRS
from shapely.geometry.base import BaseGeometry

from ..errors import AOIError, ParameterError, TimeRangeError

#: Built-in areas of interest, lon/lat (EPSG:4326) bounding boxes.
NAMED_AOIS: dict[str, tuple[float, float, float, float]] = {
    # Oderbruch, the agricultural floodplain on the German-Polish border (CUP4SOIL slides).
    "oderbruch": (13.95, 52.40, 14.65, 52.90),
}

#: An area of interest: a built-in name, a ``west,south,east,north`` string, GeoJSON text or a
#: GeoJSON file path; a lon/lat bbox; a GeoJSON mapping; a shapely geometry.
AOILike: TypeAlias = str | os.PathLike[str] | Sequence[float] | Mapping[str, Any] | BaseGeometry
#: One end of a time range: ``"2018"``, ``"2018-03"``, ``"2018-03-01"``, an ISO datetime
#: string, a year, a date or a datetime.
TimeBound: TypeAlias = str | int | dt.date
#: A time range: ``"start/end"``, a single bound (the whole year, month or day), or a
#: ``(start, end)`` pair of bounds.
TimeLike: TypeAlias = TimeBound | Sequence[TimeBound]


def parse_aoi(aoi: AOILike) -> BaseGeometry:
    """Turn any supported AOI into a valid, non-empty shapely geometry in lon/lat (EPSG:4326).

    Accepted: a ``(west, south, east, north)`` bbox in degrees, a GeoJSON geometry,
    Feature or FeatureCollection (dict or file path), a shapely geometry, or a
    built-in name (see :data:`NAMED_AOIS`).
    """
    if isinstance(aoi, BaseGeometry):
        geom = aoi
    elif isinstance(aoi, str) and aoi.strip().lower() in NAMED_AOIS:
        geom = shapely.geometry.box(*NAMED_AOIS[aoi.strip().lower()])
    elif isinstance(aoi, (str, os.PathLike)):
        geom = _aoi_from_text_or_file(str(aoi))
    elif isinstance(aoi, Mapping):
        geom = _geojson_to_geometry(aoi)
    elif isinstance(aoi, Sequence) and len(aoi) == 4:
        geom = _bbox_to_geometry(aoi)
    else:
        raise AOIError(
            f"the AOI {_short(aoi)} is not a geometry. Pass a lon/lat bbox (west, south, east, "
            f"north), a GeoJSON geometry/Feature (dict or file), a shapely geometry, or one of "
            f"{sorted(NAMED_AOIS)}."
        )
    if geom.is_empty:
        raise AOIError(f"the AOI {_short(aoi)} is empty. Give a geometry with coordinates.")
    w, s, e, n = geom.bounds
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise AOIError(f"the AOI {_short(aoi)} has coordinates that are not finite numbers "
                       "(NaN or infinity). Give lon/lat degrees.")
    if s < -90 or n > 90 or w < -360 or e > 360 or e - w > 360:
        raise AOIError(
            f"the AOI bounds {tuple(round(v, 4) for v in geom.bounds)} are not longitude/latitude "
            "degrees. Reproject the geometry to EPSG:4326 (lon/lat) first."
        )
    geom = _split_at_antimeridian(geom)
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    if geom.is_empty or (geom.geom_type.endswith("Polygon") and geom.area == 0):
        raise AOIError(f"the AOI {_short(aoi)} is empty (a polygon without area). Give a "
                       "geometry with coordinates.")
    return geom


# ---------------------------------------------------------------------------- antimeridian

#: Parts of an AOI on the other side of the antimeridian are shifted by a whole turn.
_TURN = 360.0


def _unwrap_ring(coords: Sequence[Sequence[float]], ref: float | None = None
                 ) -> list[tuple[float, ...]]:
    """A ring or line without jumps of more than 180 degrees of longitude between
    consecutive vertices (each vertex shifted by whole turns towards its predecessor), as
    GeoJSON's edges near the antimeridian mean the short way round (RFC 7946, 3.1.9)."""
    out: list[tuple[float, ...]] = []
    prev = ref
    for c in coords:
        lon = float(c[0])
        if prev is not None:
            lon -= _TURN * round((lon - prev) / _TURN)
        out.append((lon, *(float(v) for v in c[1:])))
        prev = lon
    return out


def _unwrap(geom: BaseGeometry) -> BaseGeometry:
    """``geom`` with every ring and line made continuous in longitude (see _unwrap_ring)."""
    kind = geom.geom_type
    if kind == "Polygon":
        shell = _unwrap_ring(geom.exterior.coords)
        holes = [_unwrap_ring(r.coords, shell[0][0]) for r in geom.interiors]
        return shapely.geometry.Polygon(shell, holes)
    if kind == "LineString":
        return shapely.geometry.LineString(_unwrap_ring(geom.coords))
    if kind in ("MultiPolygon", "MultiLineString", "MultiPoint", "GeometryCollection"):
        return type(geom)([_unwrap(g) for g in geom.geoms])
    return geom


def _split_at_antimeridian(geom: BaseGeometry) -> BaseGeometry:
    """``geom`` in -180..180 degrees of longitude, cut into parts at the antimeridian.

    A polygon whose edges jump by more than 180 degrees (179 -> -179) crosses the
    antimeridian; so does one given with longitudes beyond 180. Its parts on either side
    become one MultiPolygon (as RFC 7946 asks), never a band round the world.
    """
    unwrapped = _unwrap(geom)
    w, _, e, _ = unwrapped.bounds
    if w >= -180 and e <= 180:
        return unwrapped if unwrapped.is_valid else geom
    if e - w > _TURN:
        raise AOIError(
            f"the AOI spans {e - w:.1f} degrees of longitude: more than the whole world. "
            "Give lon/lat degrees, and split areas that cross the antimeridian at +-180.")
    parts = []
    for shift in (-_TURN, 0.0, _TURN):
        window = shapely.geometry.box(-180 - shift, -90, 180 - shift, 90)
        piece = unwrapped.intersection(window)
        if not piece.is_empty:
            parts.append(shapely.affinity.translate(piece, xoff=shift))
    return shapely.union_all(parts)


def crosses_antimeridian(geom: BaseGeometry) -> bool:
    """Whether ``geom`` (lon/lat, split as :func:`parse_aoi` splits) has parts on both
    sides of the antimeridian that meet there."""
    w, _, e, _ = geom.bounds
    if w > -179.999999 or e < 179.999999:
        return False
    parts = list(getattr(geom, "geoms", [geom]))
    west = [p for p in parts if p.bounds[0] <= -179.999999]
    east = [p for p in parts if p.bounds[2] >= 179.999999]
    return bool(west and east) and not any(p in east for p in west)


def unwrapped_bounds(geom: BaseGeometry) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` of ``geom``; for an area across the antimeridian,
    ``west > east`` (STAC's convention), e.g. ``(179.5, -17, -179.5, -16)``."""
    if not crosses_antimeridian(geom):
        w, s, e, n = geom.bounds
        return w, s, e, n
    shifted = shifted_east(geom)
    w, s, e, n = shifted.bounds
    return w, s, e - _TURN if e > 180 else e, n


def shifted_east(geom: BaseGeometry) -> BaseGeometry:
    """``geom`` with its parts west of the antimeridian shifted by +360 degrees, so that an
    area across the antimeridian is in one piece (longitudes up to 540): for its centre, its
    extent. Unchanged if it does not cross."""
    if not crosses_antimeridian(geom):
        return geom
    parts = [shapely.affinity.translate(p, xoff=_TURN) if p.bounds[2] <= 0 else p
             for p in getattr(geom, "geoms", [geom])]
    return shapely.union_all(parts)


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS 84 UTM zone of a point: odc-geo's ``CRS.utm``, computed.

    ``CRS.utm`` asks PROJ's database (about 0.13 s a call, a tenth of loading a 400 x 400
    px cube's worth of reads); inside a zone's 6 degree band, away from the equator and
    the poles, the answer is the band's number. On a band's edge, the equator, or beyond
    80 S / 84 N, ``CRS.utm`` itself answers (its tie rules).

    Parameters
    ----------
    lon, lat
        Point, degrees (EPSG:4326).
    """
    band = (float(lon) + 180.0) / 6.0
    if -80.0 < lat < 84.0 and lat != 0.0 and 0.0 < band < 60.0 and not band.is_integer():
        return CRS(f"EPSG:{(32600 if lat > 0 else 32700) + int(band) + 1}")
    return CRS.utm(lon, lat)


def _short(obj: object, limit: int = 80) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bbox_to_geometry(bbox: Sequence[Any]) -> BaseGeometry:
    try:
        w, s, e, n = (float(v) for v in bbox)
    except (TypeError, ValueError):
        raise AOIError(
            f"the AOI {_short(bbox)} is not a bbox of four numbers (west, south, east, north)."
        ) from None
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise AOIError(f"the bbox {tuple(bbox)} has values that are not finite numbers (NaN "
                       "or infinity). Give (west, south, east, north) in degrees.")
    if w > e and -180 <= e < w <= 180 and s < n and e + _TURN - w <= 180:
        # STAC and GeoJSON bboxes with west > east cross the antimeridian (RFC 7946, 5.2):
        # the two sides, not the 359 degrees in between.
        return shapely.geometry.MultiPolygon([shapely.geometry.box(w, s, 180, n),
                                              shapely.geometry.box(-180, s, e, n)])
    if not (w < e and s < n):
        raise AOIError(
            f"the bbox {tuple(bbox)} is empty or reversed: expected (west, south, east, north) "
            "with west < east and south < north (west > east only for a bbox that crosses "
            "the antimeridian, at most 180 degrees wide)."
        )
    return shapely.geometry.box(w, s, e, n)


def _geojson_to_geometry(obj: Mapping[str, Any]) -> BaseGeometry:
    kind = obj.get("type")
    try:
        if kind == "FeatureCollection":
            parts = [_geojson_to_geometry(f) for f in obj.get("features", [])]
            if not parts:
                raise AOIError("the AOI FeatureCollection has no features. Give at least one.")
            return shapely.union_all(parts)
        if kind == "Feature":
            if obj.get("geometry") is None:
                raise AOIError("the AOI Feature has no geometry. Give a Feature with a geometry.")
            return shapely.geometry.shape(obj["geometry"])
        if kind in {
            "Point", "MultiPoint", "LineString", "MultiLineString",
            "Polygon", "MultiPolygon", "GeometryCollection",
        }:
            return shapely.geometry.shape(obj)
    except AOIError:
        raise
    except Exception as exc:  # shapely raises several types for bad coordinates
        raise AOIError(f"the AOI GeoJSON is malformed ({exc}). Check its coordinates.") from None
    raise AOIError(
        f"the AOI mapping has type {kind!r}, which is not GeoJSON. Give a GeoJSON geometry, "
        "Feature or FeatureCollection."
    )


def _aoi_from_text_or_file(text: str) -> BaseGeometry:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return _geojson_to_geometry(json.loads(stripped))
        except json.JSONDecodeError as exc:
            raise AOIError(f"the AOI is not valid GeoJSON text ({exc}).") from None
    if re.fullmatch(r"\s*[-+]?[\d.]+(e[-+]?\d+)?\s*(,\s*[-+]?[\d.]+(e[-+]?\d+)?\s*){3}",
                    stripped, flags=re.IGNORECASE):
        return _bbox_to_geometry(stripped.split(","))
    path = Path(text).expanduser()
    if path.is_file():
        try:
            return _geojson_to_geometry(json.loads(path.read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise AOIError(f"the AOI file {path} is not GeoJSON ({exc}).") from None
    raise AOIError(
        f"the AOI {text!r} is neither a built-in name ({', '.join(sorted(NAMED_AOIS))}), "
        "a 'west,south,east,north' bbox, GeoJSON text, nor an existing GeoJSON file."
    )


# ----------------------------------------------------------------------------------------- time

_YEAR = re.compile(r"^\d{4}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")


def _bound(value: object, *, end: bool) -> dt.datetime:
    """One end of a time range as an aware UTC datetime (inclusive)."""
    if isinstance(value, dt.datetime):
        out = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return out.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        value = value.isoformat()
    if isinstance(value, int) and 1000 <= value <= 9999:
        value = str(value)
    if not isinstance(value, str):
        raise TimeRangeError(
            f"the time bound {value!r} is not a date. Use 'YYYY', 'YYYY-MM-DD' or a datetime."
        )
    text = value.strip()
    try:
        if _YEAR.match(text):
            year = int(text)
            return (
                dt.datetime(year, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
                if end
                else dt.datetime(year, 1, 1, tzinfo=dt.UTC)
            )
        if _MONTH.match(text):
            year, month = (int(p) for p in text.split("-"))
            first = dt.datetime(year, month, 1, tzinfo=dt.UTC)
            if not end:
                return first
            nxt = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=dt.UTC)
            return nxt - dt.timedelta(microseconds=1)
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            return start + dt.timedelta(days=1, microseconds=-1) if end else start
        return _bound(dt.datetime.fromisoformat(text.replace("Z", "+00:00")), end=end)
    except ValueError:
        raise TimeRangeError(
            f"the time bound {value!r} is malformed. Use 'YYYY', 'YYYY-MM', 'YYYY-MM-DD' "
            "or an ISO 8601 datetime."
        ) from None


def parse_time(time: TimeLike) -> tuple[dt.datetime, dt.datetime]:
    """Parse a time range into inclusive UTC ``(start, end)`` datetimes.

    Accepted: ``"2018/2022"`` (whole years), ``"2018-03-01/2018-10-31"`` (whole days),
    a single ``"2020"`` or ``"2020-06"``, or a pair of dates, datetimes, years or strings.
    """
    parts: list[object]
    if isinstance(time, str):
        texts = time.split("/")
        if len(texts) == 1:
            texts = [texts[0], texts[0]]
        if len(texts) != 2 or not all(p.strip() for p in texts):
            raise TimeRangeError(
                f"the time range {time!r} is malformed. Use 'start/end', e.g. '2018/2022' or "
                "'2018-03-01/2018-10-31'."
            )
        parts = list(texts)
    elif isinstance(time, Sequence) and len(time) == 2:
        parts = list(time)
    elif isinstance(time, (int, dt.date)):
        parts = [time, time]
    else:
        raise TimeRangeError(
            f"the time range {_short(time)} is malformed. Use 'start/end' or a (start, end) pair."
        )
    start, end = _bound(parts[0], end=False), _bound(parts[1], end=True)
    if start > end:
        raise TimeRangeError(
            f"the time range {time!r} is reversed: {start:%Y-%m-%d} is after {end:%Y-%m-%d}. "
            "Swap the two ends."
        )
    return start, end


def format_time_range(start: dt.datetime, end: dt.datetime) -> str:
    """RFC 3339 interval as STAC APIs expect it."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    return f"{start.astimezone(dt.UTC).strftime(fmt)}/{end.astimezone(dt.UTC).strftime(fmt)}"


def resolution_m(resolution: Any) -> float:
    """A pixel size given by a user, checked: a finite positive number of metres.

    Parameters
    ----------
    resolution : float or str
        Pixel size, metres.

    Returns
    -------
    float
        The pixel size, metres.

    Raises
    ------
    ParameterError
        Not a number, not finite, or not positive.
    """
    try:
        res = float(resolution)
    except (TypeError, ValueError):
        raise ParameterError(f"resolution={resolution!r} is not a number of metres.") from None
    if not math.isfinite(res) or res <= 0:
        raise ParameterError(
            f"resolution={resolution} must be a positive pixel size in metres (e.g. 20)."
        )
    return res
