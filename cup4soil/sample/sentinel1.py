"""Sentinel-1 RTC scenes of the synthetic world: gamma0 backscatter, linear power, VV and VH.

Each acquisition renders the world's ground state (:meth:`.World.ground`: green cover and
residue of every field on that day) as radiometrically terrain-corrected backscatter on the
world's 10 m grid, like Planetary Computer's ``sentinel-1-rtc``:

- **bare soil** brightens with soil moisture (about 2.8 dB per 0.1 m³/m³, the slope of
  the Dubois and Oh models at C band) and with roughness: a conventionally tilled field is
  ploughed after harvest and radar-bright until the spring seedbed, a field under
  conservation tillage stays smooth under its mulch;
- **soil moisture** follows each date's weather, is higher in the hollows (where SOC is
  high) and in clay and organic soils;
- **crops** add volume scattering and attenuate the soil (a water-cloud model in the green
  cover); grassland, forest, water (wind-roughened on some dates) and built-up areas have
  their own levels;
- ascending and descending passes differ by their incidence angle (about 0.8 dB);
- **speckle**: multiplicative gamma noise with the 4.4 equivalent looks of the product;
- **border noise**: some scenes end at the swath edge, with nodata beyond it and a strip of
  noise-floor values (about -43 dB) and a few zeros inside it, which users must mask.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from .world import WC_BUILT, WC_GRASS, WC_TREE, WC_WATER, Draws, FloatArray, World

__all__ = ["ENL", "Acquisition", "RadarScene", "acquisitions", "render"]

#: Equivalent number of looks of the product (``sar:looks_equivalent_number`` on PC).
ENL = 4.4
#: Relative orbits over the sample area: (orbit state, relative orbit, UTC time of day).
PASSES = (("descending", 95, dt.time(5, 10, 24)), ("ascending", 146, dt.time(16, 52, 41)))
#: Incidence-angle offset of each orbit state, dB.
ORBIT_OFFSET_DB = {"ascending": 0.4, "descending": -0.4}


@dataclass(frozen=True)
class Acquisition:
    """One Sentinel-1 pass over the area."""

    when: dt.datetime
    orbit: str
    relative_orbit: int
    platform: str  # "S1A" or "S1B"

    @property
    def stamp(self) -> str:
        """Start time as ``YYYYMMDDTHHMMSS``."""
        return self.when.strftime("%Y%m%dT%H%M%S")


@dataclass(frozen=True)
class RadarScene:
    """One rendered acquisition: gamma0 in linear power, NaN where the swath has no data."""

    acquisition: Acquisition
    vv: FloatArray
    vh: FloatArray


def acquisitions(years: tuple[int, int], per_year: int, draws: Draws) -> list[Acquisition]:
    """``per_year`` passes each year from the 6-day repeat of the two relative orbits.

    S1B flew until December 2021; from 2022 on only S1A (its 12-day repeat).
    """
    out = []
    for year in range(years[0], years[1] + 1):
        slots = np.arange(2, 365, 3)  # one pass every 3 days, orbits alternating
        pick = draws("s1 dates", year).choice(slots, size=min(per_year, len(slots)),
                                              replace=False)
        for day in sorted(int(d) for d in pick):
            k = day // 3
            orbit, rel, clock = PASSES[k % 2]
            platform = "S1B" if year < 2022 and (k // 2) % 2 else "S1A"
            when = dt.datetime.combine(dt.date(year, 1, 1) + dt.timedelta(days=day - 1), clock,
                                       tzinfo=dt.UTC)
            out.append(Acquisition(when, orbit, rel, platform))
    return out


def _db(x: FloatArray) -> FloatArray:
    return np.asarray(10.0 ** (x / 10.0))


def soil_moisture(world: World, when: dt.datetime) -> FloatArray:
    """Volumetric topsoil moisture on ``when``'s day, m³/m³."""
    wet = float(world.draws("s1 weather", when.strftime("%Y%m%d")).beta(2.0, 3.0))
    soil = world.topsoil
    mv = (0.10 + 0.25 * wet + 0.04 * world.soc_latent + 0.002 * (soil.clay - 15.0)
          + 0.015 * (world.soc - 1.3))
    return np.asarray(np.clip(mv, 0.04, 0.45))


def render(world: World, acq: Acquisition) -> RadarScene:
    """The Sentinel-1 RTC scene of ``world`` for acquisition ``acq``."""
    n, cover = world.size, world.cover
    state = world.ground(acq.when)
    rng = world.draws("s1 surface", acq.stamp)
    doy = acq.when.timetuple().tm_yday
    mv = soil_moisture(world, acq.when)
    conservation = world.topsoil.management[world.fields] & world.cropland
    # Roughness of bare cropland, dB: ploughed (autumn to spring) or seedbed; mulch.
    ploughed = 3.0 if (doy > 230 or doy < 90) else 0.5
    rough = np.where(conservation, -1.0, ploughed)
    vv_soil = -16.0 + 28.0 * (mv - 0.2) + rough
    vh_soil = vv_soil - 7.5 + 0.3 * rough
    # Crops: volume scattering over an attenuated soil (water-cloud model).
    g = np.clip(state.green + 0.3 * state.residue, 0.0, 1.0)
    att = np.exp(-2.0 * g)
    vv = (1 - att) * _db(np.full((n, n), -12.0)) + att * _db(vv_soil)
    vh = (1 - att) * _db(np.full((n, n), -17.5)) + att * _db(vh_soil)
    grass = cover == WC_GRASS
    vv[grass] = _db(-11.0 + 10.0 * (mv[grass] - 0.2) + 1.0 * state.green[grass])
    vh[grass] = _db(-17.5 + 5.0 * (mv[grass] - 0.2) + 1.5 * state.green[grass])
    forest = cover == WC_TREE
    vv[forest], vh[forest] = _db(np.array(-7.5)), _db(np.array(-12.8))
    water = cover == WC_WATER
    wind = float(rng.uniform(0.0, 8.0)) if rng.random() < 0.4 else 0.0
    vv[water], vh[water] = _db(np.array(-22.0 + wind)), _db(np.array(-28.0 + 0.5 * wind))
    built = cover == WC_BUILT
    vv[built], vh[built] = _db(np.array(1.0)), _db(np.array(-7.5))
    offset = _db(np.array(ORBIT_OFFSET_DB[acq.orbit]))
    speckle = world.draws("s1 speckle", acq.stamp)
    vv = vv * offset * speckle.gamma(ENL, 1.0 / ENL, (n, n))
    vh = vh * offset * speckle.gamma(ENL, 1.0 / ENL, (n, n))
    if rng.random() < 0.15:  # the swath edge crosses the area
        yy, xx = np.mgrid[0:n, 0:n]
        edge = xx - 0.3 * yy - rng.uniform(0.3, 0.9) * n
        outside = edge > 0
        noise = (edge > -3) & ~outside  # border noise just inside the edge
        floor = _db(-43.0 + 2.0 * rng.standard_normal((n, n)))
        for band in (vv, vh):
            band[noise] = floor[noise]
            band[outside] = np.nan
    zeros = rng.random((n, n)) < 0.0005
    vv[zeros] = 0.0
    vh[zeros] = 0.0
    return RadarScene(acq, vv.astype(np.float32), vh.astype(np.float32))
