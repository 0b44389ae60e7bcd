"""The synthetic world behind the sample archive: the hidden truth the sensors look at.

A few km² of the Oderbruch (EPSG:32633) on a 10 m grid: rectangular fields with winter
cereal, maize and sugar beet rotations (phenology, residue, bare windows after tillage and
harvest), grassland and forest that are never bare, a lake and a village. A hidden soil
organic carbon (SOC) field sets the bare-soil spectrum through
``DN_b = a_b + c_b * ln(SOC %)``; the coefficients were fitted to the real bare-soil
Sentinel-2 reflectances and measured SOC of LimeSoDa BB.250 (Brandenburg, R² 0.5-0.74).

No sensor and no file format here: :mod:`.sentinel2` renders the world as Sentinel-2 scenes
and :mod:`.archive` writes them. A new truth layer (a soil property, terrain, ...) is one
more entry in :meth:`World.truth_layers`; a new random concern is one more name for
:class:`Draws`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = [
    "CROPS", "CRS_EPSG", "Draws", "Grid", "GroundState", "TruthLayer", "World", "crop_state",
    "smooth_noise",
]

CRS_EPSG = 32633
#: Centre of the sample area (lon, lat), degrees: fields west of the Oder near Letschin.
CENTER = (14.35, 52.62)

# ESA WorldCover classes used for the truth land-cover map.
WC_TREE, WC_GRASS, WC_CROP, WC_BUILT, WC_WATER = 10, 30, 40, 50, 80
CROPS = ("winter_cereal", "maize", "sugar_beet")

# ln(SOC %) -> bare soil DN (pre-04.00 scale), bands in REFLECTANCE_BANDS order, fitted on
# LimeSoDa BB.250.
SOIL_A = np.array([1846.4, 2090.4, 2471.9, 2670.9, 2812.8, 2971.7, 3162.6, 3191.9, 4345.0, 4392.6])
SOIL_C = np.array([-258.3, -390.3, -548.9, -601.2, -606.3, -621.2, -638.3, -607.1, -576.7, -667.0])

FloatArray = npt.NDArray[np.float64]


class Draws:
    """The random streams of the sample archive, one per concern.

    ``draws("soc")`` or ``draws("atmosphere", "20200612T100631")`` is the generator of that
    concern, seeded from ``seed`` and the concern's name and keys (hashed): the streams do
    not depend on the order they are asked for, so a draw added to one concern (or a scene
    added to the archive) leaves every other concern's draws as they were. Each call starts
    the stream afresh: ask once per concern.

    Parameters
    ----------
    seed
        Seed of every draw, a non-negative integer.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, concern: str, *keys: int | str) -> np.random.Generator:
        """The generator of ``concern`` (for ``keys``, e.g. a scene's date)."""
        words = [_word(str(k)) for k in (concern, *keys)]
        return np.random.default_rng(np.random.SeedSequence([self.seed, *words]))


def _word(text: str) -> int:
    """A stable 64-bit number for a name (Python's ``hash`` changes between processes)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class Grid:
    """The 10 m grid of the sample area.

    Attributes
    ----------
    size
        Side of the square area, 10 m pixels.
    x0, y0
        Upper-left corner, metres in EPSG:32633.
    """

    size: int
    x0: float
    y0: float
    epsg: int = CRS_EPSG

    @classmethod
    def around(cls, center: tuple[float, float], size: int) -> Grid:
        """The ``size`` x ``size`` grid centred on lon/lat ``center`` (degrees)."""
        from pyproj import Transformer

        fwd = Transformer.from_crs(4326, CRS_EPSG, always_xy=True)
        cx, cy = fwd.transform(*center)
        # Snap to 60 m so the 10, 20 and 60 m grids nest like real Sentinel-2 tiles.
        x0 = float(np.floor((cx - size * 5) / 60) * 60)
        y0 = float(np.ceil((cy + size * 5) / 60) * 60)
        return cls(size=size, x0=x0, y0=y0)

    @property
    def crs(self) -> str:
        """The CRS as ``"EPSG:<code>"``."""
        return f"EPSG:{self.epsg}"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)``, metres."""
        return self.x0, self.y0 - self.size * 10, self.x0 + self.size * 10, self.y0

    def lonlat_ring(self) -> list[tuple[float, float]]:
        """The area's outline as a closed lon/lat ring (degrees), for STAC footprints."""
        from pyproj import Transformer

        left, bottom, right, top = self.bounds
        inv = Transformer.from_crs(self.epsg, 4326, always_xy=True)
        return [inv.transform(x, y) for x, y in
                [(left, bottom), (right, bottom), (right, top), (left, top), (left, bottom)]]


@dataclass(frozen=True)
class TruthLayer:
    """One raster of the hidden truth, on the world's 10 m grid.

    Attributes
    ----------
    data
        The 2-D array, stored with its own dtype.
    description
        What the values mean, with units.
    resampling
        How to bring the layer onto another grid: ``"average"`` (continuous) or
        ``"nearest"`` (categorical, 0 outside the area).
    nodata
        Nodata value of the file, or None (no nodata).
    tags
        Band tags of the file (``units``, ``long_name``).
    """

    data: npt.NDArray[Any]
    description: str
    resampling: str = "nearest"
    nodata: float | None = 0
    tags: tuple[tuple[str, str], ...] = ()


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> FloatArray:
    """Zero-mean, unit-variance Gaussian random field (``sigma`` in pixels)."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return np.asarray((field - field.mean()) / (field.std() + 1e-12), np.float64)


def _split_fields(
    rng: np.random.Generator, n: int, min_side: int, max_side: int
) -> npt.NDArray[np.int32]:
    """Partition an n x n grid into rectangular fields by recursive random cuts."""
    labels = np.zeros((n, n), np.int32)
    stack = [(0, n, 0, n)]
    next_id = 1
    while stack:
        r0, r1, c0, c1 = stack.pop()
        h, w = r1 - r0, c1 - c0
        if max(h, w) <= max_side and (min(h, w) < 2 * min_side or rng.random() < 0.35):
            labels[r0:r1, c0:c1] = next_id
            next_id += 1
            continue
        if h >= w and h >= 2 * min_side:
            cut = int(rng.integers(r0 + min_side, r1 - min_side + 1))
            stack += [(r0, cut, c0, c1), (cut, r1, c0, c1)]
        elif w >= 2 * min_side:
            cut = int(rng.integers(c0 + min_side, c1 - min_side + 1))
            stack += [(r0, r1, c0, cut), (r0, r1, cut, c1)]
        else:
            labels[r0:r1, c0:c1] = next_id
            next_id += 1
    return labels


def _ramp(doy: float, a: float, b: float) -> float:
    """0 before day a, 1 after day b, linear in between."""
    return float(np.clip((doy - a) / max(b - a, 1e-9), 0.0, 1.0))


def crop_state(crop: str, doy: float, jitter: float) -> tuple[float, float]:
    """Green cover and residue cover (fractions) of a crop on a day of year.

    ``jitter`` shifts the field's calendar, days.
    """
    d = doy - jitter
    if crop == "winter_cereal":
        if d < 165:  # tillering in winter, green-up in spring
            return 0.25 + 0.65 * _ramp(d, 60, 140), 0.0
        if d < 205:  # ripening: green turns to straw
            g = 0.9 * (1 - _ramp(d, 165, 200))
            return g, 0.9 - g
        if d < 228:  # stubble after harvest
            return 0.0, 0.6
        if d < 275:  # ploughed, harrowed, sown: bare
            return 0.0, 0.0
        return 0.2 * _ramp(d, 275, 320), 0.0
    if crop == "maize":
        if d < 95:  # residue of last year's harvest, then ploughed
            return 0.0, 0.3 if d < 60 else 0.0
        if d < 140:  # seedbed: bare
            return 0.0, 0.0
        if d < 255:
            return 0.95 * _ramp(d, 140, 200), 0.0
        if d < 288:
            g = 0.95 * (1 - _ramp(d, 255, 285))
            return g, 0.8 - 0.8 * g / 0.95
        if d < 300:
            return 0.0, 0.5
        return 0.0, 0.0  # ploughed in autumn, bare over winter
    # sugar beet
    if d < 75:
        return 0.0, 0.2
    if d < 125:
        return 0.0, 0.0
    if d < 292:
        return 0.9 * _ramp(d, 125, 185), 0.0
    return 0.0, 0.0


@dataclass(frozen=True)
class GroundState:
    """What covers the ground on one day (each 2-D, on the world's grid).

    Attributes
    ----------
    green, residue
        Green-vegetation and residue cover, fractions.
    moisture
        Brightness factor of the bare soil (wet soil after rain is darker), 1 = dry.
    """

    green: FloatArray
    residue: FloatArray
    moisture: FloatArray


class World:
    """The hidden truth: grid, fields, land cover, SOC, bare-soil spectra, crop rotations.

    Parameters
    ----------
    size
        Side of the area, 10 m pixels.
    years
        First and last calendar year of the crop rotations, inclusive.
    draws
        The random streams.
    """

    def __init__(self, size: int, years: tuple[int, int], draws: Draws) -> None:
        self.grid = Grid.around(CENTER, size)
        self.years = years
        self.draws = draws
        n = size
        rng = draws("fields")
        fields = _split_fields(rng, n, min_side=max(6, n // 16), max_side=max(12, n // 5))
        n_fields = int(fields.max())
        cls = np.full(n_fields + 1, WC_CROP, np.uint8)
        ids = draws("land cover").permutation(np.arange(1, n_fields + 1))
        n_forest, n_grass = max(1, n_fields // 8), max(1, n_fields // 7)
        cls[ids[:n_forest]] = WC_TREE
        cls[ids[n_forest : n_forest + n_grass]] = WC_GRASS
        cover = cls[fields]
        yy, xx = np.mgrid[0:n, 0:n]
        # A lake in the south-east and a village in the north-west.
        lake = ((yy - 0.78 * n) / (0.12 * n)) ** 2 + ((xx - 0.8 * n) / (0.16 * n)) ** 2 <= 1
        village = (abs(yy - 0.2 * n) < 0.08 * n) & (abs(xx - 0.18 * n) < 0.1 * n)
        cover[lake] = WC_WATER
        cover[village] = WC_BUILT
        #: Field id per pixel (0 = not a field).
        self.fields: npt.NDArray[np.uint16] = np.where(lake | village, 0, fields).astype(
            np.uint16)
        #: ESA WorldCover class per pixel.
        self.cover: npt.NDArray[np.uint8] = cover
        #: WorldCover class of each field id (index 0 unused).
        self.field_class: npt.NDArray[np.uint8] = cls
        rng = draws("soc")
        # SOC %, lognormal around 1.3 % with a smooth spatial pattern (darker soils wetter,
        # richer).
        z1 = smooth_noise(rng, (n, n), n / 10)
        z = 0.8 * z1 + 0.2 * smooth_noise(rng, (n, n), n / 40)
        #: The large-scale part of SOC's hidden field (unit variance): depressions follow it.
        self.soc_latent: FloatArray = z1
        #: Topsoil SOC, percent by mass.
        self.soc = np.clip(np.exp(np.log(1.3) + 0.45 * z), 0.4, 5.0).astype(np.float32)
        soil = SOIL_A[:, None, None] + SOIL_C[:, None, None] * np.log(self.soc)[None]
        #: Dry bare-soil DN per band (10, n, n), pre-04.00 scale: texture varies within fields.
        self.soil: FloatArray = soil + 25.0 * draws("soil texture").standard_normal(soil.shape)
        # Crop rotation per field and year, with a per-field sowing jitter (days).
        y0, y1 = years
        self.crop: dict[int, dict[int, str]] = {}
        self.jitter: dict[int, float] = {}
        rng = draws("rotations")
        for f in range(1, n_fields + 1):
            start = int(rng.integers(len(CROPS)))
            self.crop[f] = {y: CROPS[(start + y - y0) % len(CROPS)] for y in range(y0, y1 + 1)}
            self.jitter[f] = float(rng.uniform(-10, 10))
        # Relief and the rest of the topsoil (issue 13), each from its own streams: the
        # draws above, and every Sentinel-2 scene, are as before.
        from .soil import make_soil
        from .terrain import make_relief

        #: Elevation and its parts on the area plus a margin (the DEM is written from it).
        self.relief = make_relief(self.grid, z1, draws)
        #: Management, N, pH, bulk density and texture.
        self.topsoil = make_soil(
            soc=self.soc, soc_latent=z1, channel=self.relief.area(self.relief.channel),
            plateau=self.relief.area(self.relief.plateau), cover=self.cover,
            fields=self.fields, field_class=self.field_class, draws=draws)

    @property
    def cropland(self) -> npt.NDArray[np.bool_]:
        """Pixels of cropland fields."""
        return np.asarray((self.cover == WC_CROP) & (self.fields > 0))

    @property
    def size(self) -> int:
        """Side of the area, 10 m pixels."""
        return self.grid.size

    def truth_layers(self) -> dict[str, TruthLayer]:
        """The truth rasters, by name (the file is ``truth/<name>.tif``)."""
        soil = self.topsoil

        def prop(data: FloatArray, what: str, units: str, long_name: str) -> TruthLayer:
            return TruthLayer(data.astype(np.float32), what, resampling="average", nodata=None,
                              tags=(("units", units), ("long_name", long_name)))

        return {
            "worldcover": TruthLayer(self.cover, "ESA WorldCover classes"),
            "fields": TruthLayer(self.fields, "field id, 0 = not a field"),
            "soc": TruthLayer(
                self.soc, "SOC, percent by mass; dg/kg = 100 x percent", resampling="average",
                nodata=None,
                tags=(("units", "percent"), ("long_name", "soil organic carbon, 0-30 cm"))),
            "nitrogen": prop(soil.nitrogen, "total N, g/kg; cg/kg = 100 x g/kg", "g/kg",
                             "total nitrogen, 0-30 cm"),
            "phh2o": prop(soil.phh2o, "pH in water; SoilGrids pH*10 = 10 x pH", "pH",
                          "pH in water, 0-30 cm"),
            "bdod": prop(soil.bdod, "bulk density, kg/dm3; cg/cm3 = 100 x kg/dm3", "kg/dm3",
                         "bulk density of the fine earth, 0-30 cm"),
            "clay": prop(soil.clay, "clay, percent by mass; g/kg = 10 x percent", "percent",
                         "clay content, 0-30 cm"),
            "silt": prop(soil.silt, "silt, percent by mass; g/kg = 10 x percent", "percent",
                         "silt content, 0-30 cm"),
            "sand": prop(soil.sand, "sand, percent by mass; g/kg = 10 x percent", "percent",
                         "sand content, 0-30 cm"),
            "elevation": prop(self.relief.area(self.relief.elevation),
                              "terrain height, metres above the geoid", "m", "elevation"),
            "management": TruthLayer(
                self.cropland.astype(np.uint8)
                + (self.cropland & soil.management[self.fields]).astype(np.uint8),
                "tillage: 1 conventional, 2 conservation, 0 not cropland"),
        }

    def truth_doc(self) -> dict[str, Any]:
        """The non-raster truth: crop per field and year, class and tillage per field."""
        return {
            "crops": {str(f): {str(y): c for y, c in v.items()} for f, v in self.crop.items()},
            "field_class": {str(f): int(self.field_class[f]) for f in self.crop},
            "management": {str(f): ("conservation" if self.topsoil.management[f]
                                    else "conventional")
                           for f in self.crop if self.field_class[f] == WC_CROP},
        }

    def ground(self, when: dt.datetime) -> GroundState:
        """Green cover, residue and soil moisture on ``when``'s day."""
        n = self.size
        doy = when.timetuple().tm_yday
        green = np.zeros((n, n))
        residue = np.zeros((n, n))
        moisture = np.ones((n, n))
        rng = self.draws("moisture", when.strftime("%Y%m%dT%H%M%S"))
        for f, crops in self.crop.items():
            sel = self.fields == f
            kind = self.field_class[f]
            if kind == WC_CROP:
                g, r = crop_state(crops[when.year], doy, self.jitter[f])
                # Wet soil after rain is darker; one factor per field and date.
                moisture[sel] = rng.uniform(0.82, 1.02)
            elif kind == WC_GRASS:
                g, r = 0.55 + 0.35 * np.sin(np.pi * np.clip((doy - 60) / 250, 0, 1)), 0.15
            else:
                g, r = 0.0, 0.0
            green[sel], residue[sel] = g, r
        return GroundState(green=green, residue=residue, moisture=moisture)

    def bare(self, state: GroundState) -> npt.NDArray[np.bool_]:
        """Cropland pixels with neither green cover nor residue: the truly bare soil."""
        return np.asarray((self.cover == WC_CROP) & (state.green < 0.05)
                          & (state.residue < 0.05) & (self.fields > 0))

    def fields_where(self, mask: npt.NDArray[np.bool_]) -> list[int]:
        """Sorted ids of the fields with at least one pixel in ``mask``."""
        return sorted(int(f) for f in np.unique(self.fields[mask]) if f > 0)
