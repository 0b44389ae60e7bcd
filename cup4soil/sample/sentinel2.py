"""Sentinel-2 L2A scenes of the synthetic world: acquisitions, surface spectra, atmosphere.

Each acquisition date renders the world's ground state (:meth:`.World.ground`) as ten
reflectance bands and a Sen2Cor scene classification (SCL) on the 10 m grid: endmember
mixing of green vegetation, residue and the SOC-driven bare soil, forest, water and
buildings; then clouds with halos and shadows, cirrus, winter snow, unclassified pixels,
sensor noise and swath edges with nodata. Which processing baseline a scene carries follows
the history of the Sentinel-2 ground segment; what a baseline means for the DNs is the
rule of :mod:`cup4soil.sources.sentinel2`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from ..sources import sentinel2 as s2meta
from .world import (
    CENTER,
    WC_BUILT,
    WC_TREE,
    WC_WATER,
    Draws,
    FloatArray,
    GroundState,
    World,
    smooth_noise,
)

__all__ = ["Scene", "acquisition_dates", "processing_baseline", "render", "solar_zenith"]

# Endmember spectra, DN, bands in REFLECTANCE_BANDS order.
GREEN_VEG = np.array([300, 600, 300, 900, 2500, 3100, 3400, 3500, 1700, 800], float)
RESIDUE = np.array([900, 1100, 1300, 1500, 1800, 2000, 2200, 2300, 3000, 2400], float)
FOREST = np.array([200, 400, 200, 600, 1800, 2200, 2500, 2600, 1100, 450], float)
WATER = np.array([500, 550, 350, 300, 200, 180, 150, 140, 60, 40], float)
BUILT = np.array([900, 1000, 1100, 1300, 1500, 1600, 1700, 1800, 2100, 1900], float)
CLOUD = np.array([5200, 5100, 5000, 5100, 5200, 5200, 5300, 5300, 3600, 2600], float)
SNOW = np.array([8500, 8300, 8000, 7800, 7600, 7400, 7200, 7000, 600, 500], float)


@dataclass(frozen=True)
class Scene:
    """One rendered acquisition on the world's 10 m grid.

    Attributes
    ----------
    when
        Sensing time, UTC.
    dn
        Reflectance DNs (10, n, n) on the pre-04.00 scale (no offset), 0 = nodata.
    scl
        Sen2Cor scene classification (n, n).
    cloud_cover
        Cloud, cirrus and haze pixels (SCL 8, 9, 10), percent.
    bare
        The truly bare cropland pixels (ground truth, before clouds).
    green
        Green-vegetation cover (ground truth), fraction.
    """

    when: dt.datetime
    dn: FloatArray
    scl: npt.NDArray[np.uint8]
    cloud_cover: float
    bare: npt.NDArray[np.bool_]
    green: FloatArray

    @property
    def stamp(self) -> str:
        """Sensing time as ``YYYYMMDDTHHMMSS``."""
        return self.when.strftime("%Y%m%dT%H%M%S")


def acquisition_dates(
    years: tuple[int, int], scenes_per_year: int, draws: Draws
) -> list[dt.datetime]:
    """Sensing times: ``scenes_per_year`` of the 5-day revisit each year, denser in summer."""
    out = []
    y0, y1 = years
    for year in range(y0, y1 + 1):
        days = np.arange(2, 365, 5)  # the 5-day revisit
        # Acquisitions are denser in the growing season, as usable scenes are.
        weight = 0.4 + np.exp(-(((days - 180) / 90.0) ** 2))
        pick = draws("dates", year).choice(
            days, size=min(scenes_per_year, len(days)), replace=False, p=weight / weight.sum(),
        )
        for d in sorted(pick):
            base = dt.datetime(year, 1, 1, 10, 6, 31, tzinfo=dt.UTC)
            out.append(base + dt.timedelta(days=int(d) - 1, seconds=int(d) % 40))
    return out


def processing_baseline(when: dt.datetime) -> str:
    """The processing baseline a scene sensed at ``when`` was first delivered with."""
    if when >= dt.datetime(2023, 1, 1, tzinfo=dt.UTC):
        return "05.09"
    if when >= s2meta.BASELINE_04_START:
        return "04.00"
    return {2018: "02.07", 2019: "02.12", 2020: "02.14"}.get(when.year, "03.00")


def solar_zenith(when: dt.datetime, lon: float = CENTER[0], lat: float = CENTER[1]) -> float:
    """Solar zenith angle, degrees (NOAA low-precision formula, good to ~0.5 deg)."""
    doy = when.timetuple().tm_yday
    gamma = 2 * np.pi / 365 * (doy - 1 + (when.hour - 12) / 24)
    decl = (
        0.006918 - 0.399912 * np.cos(gamma) + 0.070257 * np.sin(gamma)
        - 0.006758 * np.cos(2 * gamma) + 0.000907 * np.sin(2 * gamma)
    )
    eqtime = 229.18 * (
        0.000075 + 0.001868 * np.cos(gamma) - 0.032077 * np.sin(gamma)
        - 0.014615 * np.cos(2 * gamma) - 0.040849 * np.sin(2 * gamma)
    )
    minutes = when.hour * 60 + when.minute + eqtime + 4 * lon
    hour_angle = np.deg2rad(minutes / 4 - 180)
    phi = np.deg2rad(lat)
    cosz = np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(hour_angle)
    return float(np.rad2deg(np.arccos(np.clip(cosz, -1, 1))))


def render(world: World, when: dt.datetime) -> Scene:
    """The Sentinel-2 L2A scene of ``world`` sensed at ``when``."""
    state = world.ground(when)
    dn, scl = _surface(world, state, when)
    dn, scl, cloud_cover = _atmosphere(world, dn, scl, when)
    return Scene(when=when, dn=dn, scl=scl, cloud_cover=cloud_cover,
                 bare=world.bare(state), green=state.green)


def _surface(
    world: World, state: GroundState, when: dt.datetime
) -> tuple[FloatArray, npt.NDArray[np.uint8]]:
    """True surface DN (10, n, n) and SCL at 10 m, before the atmosphere."""
    rng = world.draws("surface", when.strftime("%Y%m%dT%H%M%S"))
    n, cover = world.size, world.cover
    veg_noise = 1 + 0.04 * rng.standard_normal((n, n))
    g3, r3 = state.green[None] * veg_noise[None], state.residue[None]
    soil = world.soil * state.moisture[None]
    dn = g3 * GREEN_VEG[:, None, None] + r3 * RESIDUE[:, None, None] + (1 - g3 - r3) * soil
    forest = cover == WC_TREE
    dn[:, forest] = FOREST[:, None] * (1 + 0.05 * rng.standard_normal(forest.sum()))
    water = cover == WC_WATER
    dn[:, water] = WATER[:, None] * (1 + 0.05 * rng.standard_normal(water.sum()))
    built = cover == WC_BUILT
    mix = rng.uniform(0.0, 0.5, built.sum())  # gardens between houses
    dn[:, built] = BUILT[:, None] * (1 - mix) + GREEN_VEG[:, None] * mix
    scl = np.where(state.green > 0.35, 4, 5).astype(np.uint8)
    scl[forest] = 4
    scl[water] = 6
    return dn, scl


def _atmosphere(
    world: World, dn: FloatArray, scl: npt.NDArray[np.uint8], when: dt.datetime
) -> tuple[FloatArray, npt.NDArray[np.uint8], float]:
    """Add clouds, halos, shadows, cirrus, snow and swath edges; return cloud cover %."""
    rng = world.draws("atmosphere", when.strftime("%Y%m%dT%H%M%S"))
    n = world.size
    doy = when.timetuple().tm_yday
    cover_frac = 0.0 if rng.random() < 0.35 else float(rng.beta(1.2, 1.8))
    if cover_frac > 0:
        field = smooth_noise(rng, (n, n), n / 12)
        thr = np.quantile(field, 1 - cover_frac)
        core = field >= thr
        opacity = np.clip((field - thr) / 0.6, 0, 1) * core
        # The haze halo just outside each cloud is missed by Sen2Cor: this is why
        # SCMaP dilates the cloud mask by 100 m.
        halo = ndimage.binary_dilation(core, iterations=2) & ~core
        alpha = np.where(core, 0.45 + 0.55 * opacity, 0.0) + 0.15 * halo
        # Shadows are cast away from the sun (south-east in the morning): shift north-west.
        shift = max(2, n // 25)
        shadow = np.zeros_like(core)
        shadow[:-shift, :-shift] = core[shift:, shift:]
        shadow &= ~core
        dn *= np.where(shadow, 0.35, 1.0)[None]
        scl[shadow] = 3
        dn[:] = dn * (1 - alpha[None]) + CLOUD[:, None, None] * alpha[None]
        scl[core & (opacity >= 0.4)] = 9
        scl[core & (opacity < 0.4)] = 8
    if rng.random() < 0.2:  # thin cirrus over part of the scene
        cirrus = smooth_noise(rng, (n, n), n / 6) > 1.0
        dn[:, cirrus] = dn[:, cirrus] * 0.8 + 0.2 * CLOUD[:, None]
        scl[cirrus & (scl >= 4) & (scl <= 6)] = 10
    if (doy < 60 or doy > 335) and rng.random() < 0.4:  # winter snow
        snow = smooth_noise(rng, (n, n), n / 8) > rng.uniform(-1, 1)
        snow &= scl != 9
        dn[:, snow] = SNOW[:, None]
        scl[snow] = 11
    unclassified = rng.random((n, n)) < 0.002
    scl[unclassified] = 7
    dn = np.clip(np.round(dn + 15 * rng.standard_normal(dn.shape)), 1, 20000)
    if rng.random() < 0.12:  # edge of the orbit swath: no data beyond a diagonal
        yy, xx = np.mgrid[0:n, 0:n]
        outside = xx + 0.4 * yy > rng.uniform(0.5, 1.2) * n
        dn[:, outside] = 0
        scl[outside] = 0
    cloud_cover = 100.0 * float(np.isin(scl, (8, 9, 10)).mean())
    return dn, scl, cloud_cover
