"""The EEA reference grid: tiles of a continental run, their codes and their pixel grids.

The grid of the European Environment Agency (INSPIRE "Grid" theme) is in EPSG:3035 (ETRS89
LAEA Europe) with its origin at (0, 0); a cell is named by its lower-left corner in units
of its size: ``10kmE432N321`` is the 10 km cell whose lower-left corner lies at
4 320 000 m E, 3 210 000 m N, ``100kmE43N32`` and ``1kmE4321N3210`` likewise. Its INSPIRE
long code names the corner in metres, northing first: ``CRS3035RES10000mN3210000E4320000``.

The pixels of a cell come from odc-geo's :class:`~odc.geo.gridspec.GridSpec` with
``origin=(0, 0)`` and ``flipy=False``: its tile index ``(ix, iy)`` counts from the origin
eastward and *northward*, so it equals the E/N numbers of the code (with ``flipy=True``
the y index would count southward from the origin and be the negative of N).

A country in :func:`tiles` is looked up in a small bundled table of EU27 bounding boxes
(``eu27.json``, European territory only): a country's tiles are those of its bounding box,
so neighbouring land and sea come along. Pass an outline (GeoJSON) for an exact cover.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from odc.geo import xy_
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from odc.geo.gridspec import GridSpec
from shapely.geometry.base import BaseGeometry

from ..errors import AOIError, ParameterError, TileCodeError
from ..sources.aoi import AOILike, parse_aoi, resolution_m

__all__ = ["CRS", "SIZES", "Tile", "countries", "country_bbox", "grid_spec", "parse_code",
           "tile", "tiles"]

#: The grid's CRS: ETRS89 / LAEA Europe.
CRS = "EPSG:3035"
#: Cell sizes, metres, by name.
SIZES: dict[str, int] = {"1km": 1_000, "10km": 10_000, "100km": 100_000}
_NAMES = {v: k for k, v in SIZES.items()}
_SHORT = re.compile(r"^(?P<size>1|10|100)km[Ee](?P<e>\d+)[Nn](?P<n>\d+)$")
_LONG = re.compile(r"^CRS3035RES(?P<res>\d+)m[Nn](?P<n>\d+)[Ee](?P<e>\d+)$", re.IGNORECASE)
# Largest cell index cup4soil accepts: LAEA Europe's valid area ends well before 10 000 km.
_MAX_M = 10_000_000
# Most cells of one cover (the whole EU27 bounding box holds ~0.3 M cells of 10 km).
_MAX_CELLS = 5_000_000


def _size_m(size: str | int) -> int:
    """Cell size in metres from ``"10km"`` (or 10000)."""
    if isinstance(size, int) and not isinstance(size, bool) and size in _NAMES:
        return size
    if isinstance(size, str) and size.strip().lower() in SIZES:
        return SIZES[size.strip().lower()]
    raise ParameterError(f"size={size!r} is not a cell size of the EEA grid; use one of "
                         f"{', '.join(map(repr, SIZES))}.")


def _resolution(size_m: int, resolution: float) -> float:
    res = resolution_m(resolution)
    n = size_m / res
    if abs(n - round(n)) > 1e-9 or round(n) < 1:
        raise ParameterError(
            f"resolution={resolution} m does not divide the {_NAMES[size_m]} cell ({size_m} m) "
            "into whole pixels, so tiles would not fit the grid; choose a divisor such as 10, "
            "20, 25, 50 or 100.")
    return res


def grid_spec(size: str | int = "10km", *, resolution: float = 20) -> GridSpec:
    """odc-geo's :class:`~odc.geo.gridspec.GridSpec` of the EEA grid at one cell size.

    Parameters
    ----------
    size : {"1km", "10km", "100km"}
        Cell (tile) size.
    resolution : float
        Pixel size, metres; must divide the cell size.

    Returns
    -------
    odc.geo.gridspec.GridSpec
        Tile index ``(ix, iy)`` = the E/N numbers of the cell code.
    """
    size_m = _size_m(size)
    res = _resolution(size_m, resolution)
    n = round(size_m / res)
    return GridSpec(crs=CRS, tile_shape=(n, n), resolution=res, origin=xy_(0, 0),
                    flipy=False)


@dataclass(frozen=True)
class Tile:
    """One cell of the EEA grid and its pixels.

    Attributes
    ----------
    code : str
        Short code, e.g. ``"10kmE432N321"``.
    long_code : str
        INSPIRE code, e.g. ``"CRS3035RES10000mN3210000E4320000"``.
    geobox : odc.geo.geobox.GeoBox
        The cell's pixel grid in EPSG:3035 (north up).
    """

    code: str
    long_code: str
    geobox: GeoBox

    @property
    def size(self) -> int:
        """Cell size, metres."""
        return parse_code(self.code)[0]

    @property
    def index(self) -> tuple[int, int]:
        """``(E, N)``: the cell's lower-left corner in units of its size."""
        _, e, n = parse_code(self.code)
        return e, n

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in EPSG:3035 metres."""
        size, e, n = parse_code(self.code)
        return (e * size, n * size, (e + 1) * size, (n + 1) * size)


def short_code(size_m: int, e: int, n: int) -> str:
    """``10kmE432N321`` for the 10 km cell (432, 321)."""
    return f"{_NAMES[size_m]}E{e}N{n}"


def long_code(size_m: int, e: int, n: int) -> str:
    """``CRS3035RES10000mN3210000E4320000`` for the 10 km cell (432, 321)."""
    return f"CRS3035RES{size_m}mN{n * size_m}E{e * size_m}"


def parse_code(code: str) -> tuple[int, int, int]:
    """``(size_m, E, N)`` of a short (``10kmE432N321``) or INSPIRE long code
    (``CRS3035RES10000mN3210000E4320000``).

    Raises
    ------
    TileCodeError
        ``code`` is neither, names a size other than 1, 10 or 100 km, or a long code's
        corner is not on the cell grid.
    """
    text = str(code).strip()
    m = _SHORT.match(text)
    if m:
        size_m = int(m["size"]) * 1000
        e, n = int(m["e"]), int(m["n"])
    elif (m := _LONG.match(text)) is not None:
        size_m = int(m["res"])
        if size_m not in _NAMES:
            raise TileCodeError(f"tile code {text!r} has a cell size of {size_m} m; cup4soil's "
                                "EEA grid has 1000, 10000 and 100000 m cells.")
        ye, xe = int(m["n"]), int(m["e"])
        if ye % size_m or xe % size_m:
            raise TileCodeError(f"tile code {text!r} names a corner ({xe} E, {ye} N) that is "
                                f"not a multiple of the {size_m} m cell size.")
        e, n = xe // size_m, ye // size_m
    else:
        raise TileCodeError(
            f"{text!r} is not an EEA grid cell code; write it as e.g. '10kmE432N321' (size, "
            "then the lower-left corner in units of the size) or "
            "'CRS3035RES10000mN3210000E4320000' (INSPIRE, metres).")
    if max(e, n) * size_m >= _MAX_M:
        raise TileCodeError(f"tile code {text!r} lies outside LAEA Europe (beyond "
                            f"{_MAX_M // 1000} km from the origin).")
    return size_m, e, n


def tile(code: str, *, resolution: float = 20) -> Tile:
    """The :class:`Tile` of a cell code (short or INSPIRE long).

    Parameters
    ----------
    code : str
        ``"10kmE432N321"`` or ``"CRS3035RES10000mN3210000E4320000"``.
    resolution : float
        Pixel size, metres; must divide the cell size.
    """
    size_m, e, n = parse_code(code)
    return _tile(grid_spec(size_m, resolution=resolution), size_m, e, n)


def _tile(gs: GridSpec, size_m: int, e: int, n: int) -> Tile:
    return Tile(short_code(size_m, e, n), long_code(size_m, e, n), gs.tile_geobox((e, n)))


@functools.cache
def _countries() -> dict[str, dict[str, Any]]:
    table = json.loads((Path(__file__).with_name("eu27.json")).read_text(encoding="utf-8"))
    return {k: v for k, v in table.items() if not k.startswith("_")}


def countries() -> dict[str, str]:
    """The bundled EU27 countries: ISO 3166 alpha-2 code -> English name."""
    return {k: v["name"] for k, v in _countries().items()}


def country_bbox(name: str) -> tuple[float, float, float, float] | None:
    """The lon/lat bounding box (west, south, east, north) of an EU27 country, by English
    name, ISO alpha-2 or alpha-3 code (any case); ``"EU27"`` gives all of them; None when
    unknown."""
    key = name.strip().lower()
    boxes = []
    for iso2, row in _countries().items():
        if key in ("eu27", "eu", iso2.lower(), row["iso3"].lower(), row["name"].lower()):
            boxes.append(row["bbox"])
    if not boxes:
        return None
    arr = np.asarray(boxes, dtype=float)
    return (float(arr[:, 0].min()), float(arr[:, 1].min()), float(arr[:, 2].max()),
            float(arr[:, 3].max()))


def _country_geometry(name: str) -> BaseGeometry | None:
    """A country's bounding box (EU27: the union of the member states' boxes)."""
    key = name.strip().lower()
    if key in ("eu27", "eu"):
        return shapely.union_all([shapely.box(*r["bbox"]) for r in _countries().values()])
    box = country_bbox(name)
    return None if box is None else shapely.box(*box)


def aoi_geometry(aoi: AOILike) -> BaseGeometry:
    """An AOI (anything :func:`cup4soil.search` takes, or an EU27 country) in lon/lat."""
    if isinstance(aoi, str):
        country = _country_geometry(aoi)
        if country is not None:
            return country
    try:
        return parse_aoi(aoi)
    except AOIError as exc:
        if isinstance(aoi, str) and not aoi.strip().startswith("{") and "," not in aoi:
            raise AOIError(f"{exc} EU27 countries are known by name or ISO code "
                           f"({', '.join(sorted(_countries()))}) and as 'EU27'.") from None
        raise


def _in_3035(geom: BaseGeometry) -> BaseGeometry:
    """A lon/lat geometry in EPSG:3035, edges densified (LAEA bends lon/lat lines)."""
    g = Geometry(geom, "EPSG:4326").to_crs(CRS, resolution=0.05)  # degrees
    return g.geom


def cover(geom_3035: BaseGeometry, size_m: int) -> Iterable[tuple[int, int]]:
    """The ``(E, N)`` indices of the cells of ``size_m`` a geometry in EPSG:3035 touches
    with a positive area, row by row from the south-west."""
    x0, y0, x1, y1 = geom_3035.bounds
    if not all(map(math.isfinite, (x0, y0, x1, y1))) or min(x0, y0) < 0 or max(x1, y1) > _MAX_M:
        raise AOIError("the AOI reaches beyond LAEA Europe (EPSG:3035 coordinates below 0 or "
                       f"above {_MAX_M // 1000} km); give an AOI in Europe.")
    e0, n0 = math.floor(x0 / size_m), math.floor(y0 / size_m)
    e1, n1 = math.ceil(x1 / size_m), math.ceil(y1 / size_m)
    if (e1 - e0) * (n1 - n0) > _MAX_CELLS:
        raise AOIError(f"the AOI's bounding box holds {(e1 - e0) * (n1 - n0):,} cells of "
                       f"{_NAMES[size_m]}, more than cup4soil plans at once ({_MAX_CELLS:,}); "
                       "use a larger tile size or split the AOI.")
    grid_e, grid_n = np.meshgrid(np.arange(e0, e1), np.arange(n0, n1))
    es, ns = grid_e.ravel(), grid_n.ravel()
    boxes = shapely.box(es * size_m, ns * size_m, (es + 1) * size_m, (ns + 1) * size_m)
    shapely.prepare(geom_3035)
    # touching only along an edge is not covering
    hit = shapely.intersects(geom_3035, boxes) & ~shapely.touches(geom_3035, boxes)
    return [(int(e), int(n)) for e, n in zip(es[hit], ns[hit], strict=True)]


def tiles(aoi: AOILike, *, size: str = "10km", resolution: float = 20) -> list[Tile]:
    """The EEA grid cells covering an area, each with its code and pixel grid.

    Parameters
    ----------
    aoi
        A lon/lat bbox ``(west, south, east, north)``, a GeoJSON geometry/Feature (mapping,
        text or file), a shapely geometry in lon/lat, a built-in AOI name, or an EU27
        country by English name or ISO code (``"Germany"``, ``"DE"``, ``"DEU"``;
        ``"EU27"`` for all). Countries are bounding boxes from a bundled table, not
        outlines: their tiles include neighbouring land and sea.
    size : {"1km", "10km", "100km"}
        Cell size.
    resolution : float
        Pixel size, metres (default 20, SoilSuite Europe's); must divide the cell size.

    Returns
    -------
    list of Tile
        Cells whose interior meets the AOI, from the south-west, row by row (northing, then
        easting).
    """
    gs = grid_spec(size, resolution=resolution)
    size_m = _size_m(size)
    geom = _in_3035(aoi_geometry(aoi))
    return [_tile(gs, size_m, e, n) for e, n in cover(geom, size_m)]


def tiles_of(codes: Iterable[str], *, resolution: float = 20) -> list[Tile]:
    """The tiles of cell codes (all of one size)."""
    out = [tile(c, resolution=resolution) for c in codes]
    if len({t.size for t in out}) > 1:
        raise ParameterError("tiles of one run must all have the same size.")
    return out


def as_mapping(t: Tile) -> Mapping[str, Any]:
    """A tile as JSON: codes and bounds (EPSG:3035 metres)."""
    return {"code": t.code, "long_code": t.long_code, "bounds": list(t.bounds)}
