"""A realistic synthetic Sentinel-2 L2A archive: tiled COGs plus a static STAC catalog.

The demo, the tests and the benchmarks need Sentinel-2 data without a network. The
generator draws a few km² of the Oderbruch (EPSG:32633) over several years: fields with
winter cereal, maize and sugar beet rotations (phenology, residue, bare windows after
tillage and harvest), grassland and forest that are never bare, a lake and a village,
clouds with halos and shadows and the matching Sen2Cor SCL codes, winter snow, swath
edges with nodata, scene-level sun zenith, and both processing baselines (DNs carry the
+1000 ``BOA_ADD_OFFSET`` shift from 2022-01-25 on, and one scene is delivered twice).

Bare-soil reflectance depends on a hidden soil organic carbon (SOC) field through
``DN_b = a_b + c_b * ln(SOC %)``; the coefficients were fitted to the real bare-soil
Sentinel-2 reflectances and measured SOC of LimeSoDa BB.250 (Brandenburg, R² 0.5-0.74).
The hidden truth (SOC, land cover as ESA WorldCover classes, field ids, per-scene bare
fields) is written beside the catalog under ``truth/``.

Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio
from rasterio.transform import Affine
from scipy import ndimage

from ..errors import ParameterError
from ..sources.sentinel2 import REFLECTANCE_BANDS

__all__ = ["SampleCatalog", "make_catalog"]

CRS_EPSG = 32633
#: Centre of the sample area (lon, lat): fields west of the Oder near Letschin.
CENTER = (14.35, 52.62)
MGRS_TILE = "33UVU"
BANDS_10M = ("B02", "B03", "B04", "B08")

# ln(SOC %) -> bare soil DN (pre-04.00 scale), fitted on LimeSoDa BB.250.
SOIL_A = np.array([1846.4, 2090.4, 2471.9, 2670.9, 2812.8, 2971.7, 3162.6, 3191.9, 4345.0, 4392.6])
SOIL_C = np.array([-258.3, -390.3, -548.9, -601.2, -606.3, -621.2, -638.3, -607.1, -576.7, -667.0])
# Endmember spectra, DN, bands in REFLECTANCE_BANDS order.
GREEN_VEG = np.array([300, 600, 300, 900, 2500, 3100, 3400, 3500, 1700, 800], float)
RESIDUE = np.array([900, 1100, 1300, 1500, 1800, 2000, 2200, 2300, 3000, 2400], float)
FOREST = np.array([200, 400, 200, 600, 1800, 2200, 2500, 2600, 1100, 450], float)
WATER = np.array([500, 550, 350, 300, 200, 180, 150, 140, 60, 40], float)
BUILT = np.array([900, 1000, 1100, 1300, 1500, 1600, 1700, 1800, 2100, 1900], float)
CLOUD = np.array([5200, 5100, 5000, 5100, 5200, 5200, 5300, 5300, 3600, 2600], float)
SNOW = np.array([8500, 8300, 8000, 7800, 7600, 7400, 7200, 7000, 600, 500], float)

# ESA WorldCover classes used for the truth land-cover map.
WC_TREE, WC_GRASS, WC_CROP, WC_BUILT, WC_WATER = 10, 30, 40, 50, 80
CROPS = ("winter_cereal", "maize", "sugar_beet")


@dataclass(frozen=True)
class SampleCatalog:
    """Where a generated sample archive lives and what it covers.

    Attributes
    ----------
    root
        Folder holding ``catalog.json``, the COGs and ``truth/``.
    bbox
        Lon/lat bounds ``(west, south, east, north)`` of the area, degrees.
    crs
        CRS of the rasters (``"EPSG:32633"``).
    n_items
        Number of STAC items (scenes, including the duplicate delivery).
    """

    root: Path
    bbox: tuple[float, float, float, float]
    crs: str
    n_items: int
    time_range: str

    @property
    def catalog(self) -> Path:
        """Path of the static ``catalog.json``."""
        return self.root / "catalog.json"

    @property
    def truth_dir(self) -> Path:
        """Folder of the hidden truth rasters and ``truth.json``."""
        return self.root / "truth"

    def truth(self) -> dict[str, Any]:
        """The hidden truth's JSON part (fields, crops, bare windows, per-scene bare fields)."""
        return json.loads((self.truth_dir / "truth.json").read_text())

    def truth_on(self, name: str, geobox: Any) -> Any:
        """A truth raster (``"soc"``, ``"worldcover"`` or ``"fields"``) on another grid.

        SOC (percent) is averaged; the categorical rasters are resampled by nearest
        neighbour (0 outside the sample area). Returns an xarray DataArray.
        """
        import xarray as xr
        from odc.geo.geobox import GeoBox
        from odc.geo.xr import assign_crs, xr_coords

        if name not in ("soc", "worldcover", "fields"):
            raise ParameterError(f"no truth raster {name!r}; use soc, worldcover or fields.")
        with rasterio.open(self.truth_dir / f"{name}.tif") as src:
            data = src.read(1)
            grid = GeoBox(src.shape, src.transform, src.crs)
        da = assign_crs(xr.DataArray(data, dims=("y", "x"), coords=xr_coords(grid)), grid.crs)
        if name == "soc":
            return da.odc.reproject(geobox, resampling="average").load()
        out = da.odc.reproject(geobox, resampling="nearest", dst_nodata=0).load()
        return out.astype(data.dtype).rename(name)

    def soil_samples(self, n: int = 150, *, seed: int = 0, margin_m: float = 20.0) -> Any:
        """Topsoil samples drawn from the hidden SOC, as a field campaign would take them.

        Points sit on cropland (WorldCover 40), at least ``margin_m`` inside a field, and
        are jittered within their truth pixel.

        Parameters
        ----------
        n : int
            Number of samples (fewer if the cropland has fewer eligible pixels).
        seed : int
            Random seed.
        margin_m : float
            Minimum distance from a field edge, metres.

        Returns
        -------
        pandas.DataFrame
            ``x``, ``y`` (metres, in :attr:`crs`), ``soc`` (dg/kg, SoilGrids units) and
            ``field``.
        """
        import pandas as pd
        from scipy.ndimage import binary_erosion

        with rasterio.open(self.truth_dir / "soc.tif") as src:
            soc = src.read(1).astype(np.float64)  # percent
            transform = src.transform
        with rasterio.open(self.truth_dir / "worldcover.tif") as src:
            cover = src.read(1)
        with rasterio.open(self.truth_dir / "fields.tif") as src:
            fields = src.read(1)
        r = max(round(margin_m / abs(transform.a)), 0)
        ok = np.zeros(cover.shape, bool)
        for fid in np.unique(fields[(cover == WC_CROP) & (fields > 0)]):
            inner = fields == fid
            ok |= binary_erosion(inner, iterations=r) if r else inner
        rows, cols = np.nonzero(ok)
        rng = np.random.default_rng(seed)
        pick = rng.choice(rows.size, size=min(n, rows.size), replace=False)
        jitter = rng.uniform(0.05, 0.95, size=(pick.size, 2))
        xs, ys = transform * (cols[pick] + jitter[:, 0], rows[pick] + jitter[:, 1])
        return pd.DataFrame({"x": np.asarray(xs), "y": np.asarray(ys),
                             "soc": np.round(soc[rows[pick], cols[pick]] * 100.0, 1),
                             "field": fields[rows[pick], cols[pick]]})


@dataclass(frozen=True)
class _Spec:
    size: int
    years: tuple[int, int]
    scenes_per_year: int
    seed: int
    version: int = 2


def make_catalog(
    path: str | Path,
    *,
    size: int = 200,
    years: tuple[int, int] = (2018, 2022),
    scenes_per_year: int = 12,
    seed: int = 0,
    overwrite: bool = False,
) -> SampleCatalog:
    """Write a synthetic Sentinel-2 L2A archive with a static STAC catalog.

    Parameters
    ----------
    path
        Output folder. An existing archive made with the same parameters is reused.
    size
        Side of the area in 10 m pixels (even; default 200 px = 2 km).
    years
        First and last calendar year, inclusive.
    scenes_per_year
        Acquisitions per year (a realistic fraction of the 5-day revisit).
    seed
        Seed of every random draw.
    overwrite
        Regenerate even if a matching archive exists.

    Returns
    -------
    SampleCatalog
    """
    if size < 20 or size % 2:
        raise ParameterError(f"size={size} must be an even number of 10 m pixels, at least 20.")
    if scenes_per_year < 1:
        raise ParameterError(f"scenes_per_year={scenes_per_year} must be at least 1.")
    y0, y1 = (int(v) for v in years)
    if y1 < y0:
        raise ParameterError(f"years={years} is reversed; give (first, last).")
    spec = _Spec(size=size, years=(y0, y1), scenes_per_year=scenes_per_year, seed=seed)
    root = Path(path).expanduser().resolve()
    marker = root / "sample-spec.json"
    if not overwrite and marker.is_file():
        stored = json.loads(marker.read_text())
        if stored.get("spec") == json.loads(json.dumps(asdict(spec))):
            return SampleCatalog(**_catalog_fields(stored))
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    fields = _Generator(spec).write(root)
    (marker).write_text(json.dumps({"spec": asdict(spec), **fields}, default=str))
    return SampleCatalog(**_catalog_fields(json.loads(marker.read_text())))


def _catalog_fields(stored: dict[str, Any]) -> dict[str, Any]:
    return {
        "root": Path(stored["root"]),
        "bbox": tuple(stored["bbox"]),
        "crs": stored["crs"],
        "n_items": int(stored["n_items"]),
        "time_range": stored["time_range"],
    }


# ------------------------------------------------------------------------------------ generator


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (field - field.mean()) / (field.std() + 1e-12)


def _split_fields(rng: np.random.Generator, n: int, min_side: int, max_side: int) -> np.ndarray:
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


def _crop_state(crop: str, doy: float, jitter: float) -> tuple[float, float]:
    """Green cover and residue cover (fractions) of a crop on a day of year."""
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


def _solar_zenith(when: dt.datetime, lon: float, lat: float) -> float:
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


def _baseline(when: dt.datetime) -> str:
    if when >= dt.datetime(2023, 1, 1, tzinfo=dt.UTC):
        return "05.09"
    if when >= dt.datetime(2022, 1, 25, tzinfo=dt.UTC):
        return "04.00"
    return {2018: "02.07", 2019: "02.12", 2020: "02.14"}.get(when.year, "03.00")


class _Generator:
    def __init__(self, spec: _Spec) -> None:
        from pyproj import Transformer

        self.spec = spec
        self.rng = np.random.default_rng(spec.seed)
        n = spec.size
        fwd = Transformer.from_crs(4326, CRS_EPSG, always_xy=True)
        cx, cy = fwd.transform(*CENTER)
        # Snap to 60 m so the 10, 20 and 60 m grids nest like real Sentinel-2 tiles.
        self.x0 = float(np.floor((cx - n * 5) / 60) * 60)
        self.y0 = float(np.ceil((cy + n * 5) / 60) * 60)
        self.n = n
        self._landscape()

    # -- static landscape -----------------------------------------------------------------
    def _landscape(self) -> None:
        rng, n = self.rng, self.n
        fields = _split_fields(rng, n, min_side=max(6, n // 16), max_side=max(12, n // 5))
        n_fields = int(fields.max())
        cls = np.full(n_fields + 1, WC_CROP, np.uint8)
        ids = rng.permutation(np.arange(1, n_fields + 1))
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
        fields = np.where(lake | village, 0, fields)
        self.fields, self.cover = fields.astype(np.uint16), cover
        # SOC %, lognormal around 1.3 % with a smooth spatial pattern (darker soils wetter, richer).
        z = 0.8 * _smooth_noise(rng, (n, n), n / 10) + 0.2 * _smooth_noise(rng, (n, n), n / 40)
        self.soc = np.clip(np.exp(np.log(1.3) + 0.45 * z), 0.4, 5.0).astype(np.float32)
        soil = SOIL_A[:, None, None] + SOIL_C[:, None, None] * np.log(self.soc)[None]
        self.soil = soil + 25.0 * rng.standard_normal(soil.shape)  # texture within fields
        # Crop rotation per field and year, with a per-field sowing jitter (days).
        y0, y1 = self.spec.years
        self.crop: dict[int, dict[int, str]] = {}
        self.jitter: dict[int, float] = {}
        for f in range(1, n_fields + 1):
            start = int(rng.integers(len(CROPS)))
            self.crop[f] = {y: CROPS[(start + y - y0) % len(CROPS)] for y in range(y0, y1 + 1)}
            self.jitter[f] = float(rng.uniform(-10, 10))
        self.field_class = cls

    # -- acquisitions ---------------------------------------------------------------------
    def _dates(self) -> list[dt.datetime]:
        out = []
        y0, y1 = self.spec.years
        for year in range(y0, y1 + 1):
            days = np.arange(2, 365, 5)  # the 5-day revisit
            # Acquisitions are denser in the growing season, as usable scenes are.
            weight = 0.4 + np.exp(-(((days - 180) / 90.0) ** 2))
            pick = self.rng.choice(
                days, size=min(self.spec.scenes_per_year, len(days)), replace=False,
                p=weight / weight.sum(),
            )
            for d in sorted(pick):
                base = dt.datetime(year, 1, 1, 10, 6, 31, tzinfo=dt.UTC)
                out.append(base + dt.timedelta(days=int(d) - 1, seconds=int(d) % 40))
        return out

    def _surface(
        self, when: dt.datetime
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """True surface DN (10, n, n), SCL at 10 m, the bare-soil flag, the green cover."""
        rng, n = self.rng, self.n
        doy = when.timetuple().tm_yday
        green = np.zeros((n, n))
        residue = np.zeros((n, n))
        moisture = np.ones((n, n))
        for f, crops in self.crop.items():
            sel = self.fields == f
            kind = self.field_class[f]
            if kind == WC_CROP:
                g, r = _crop_state(crops[when.year], doy, self.jitter[f])
                # Wet soil after rain is darker; one factor per field and date.
                moisture[sel] = rng.uniform(0.82, 1.02)
            elif kind == WC_GRASS:
                g, r = 0.55 + 0.35 * np.sin(np.pi * np.clip((doy - 60) / 250, 0, 1)), 0.15
            else:
                g, r = 0.0, 0.0
            green[sel], residue[sel] = g, r
        veg_noise = 1 + 0.04 * rng.standard_normal((n, n))
        g3, r3 = green[None] * veg_noise[None], residue[None]
        soil = self.soil * moisture[None]
        dn = g3 * GREEN_VEG[:, None, None] + r3 * RESIDUE[:, None, None] + (1 - g3 - r3) * soil
        forest = self.cover == WC_TREE
        dn[:, forest] = FOREST[:, None] * (1 + 0.05 * rng.standard_normal(forest.sum()))
        water = self.cover == WC_WATER
        dn[:, water] = WATER[:, None] * (1 + 0.05 * rng.standard_normal(water.sum()))
        built = self.cover == WC_BUILT
        mix = rng.uniform(0.0, 0.5, built.sum())  # gardens between houses
        dn[:, built] = BUILT[:, None] * (1 - mix) + GREEN_VEG[:, None] * mix
        bare = (self.cover == WC_CROP) & (green < 0.05) & (residue < 0.05) & (self.fields > 0)
        scl = np.where(green > 0.35, 4, 5).astype(np.uint8)
        scl[forest] = 4
        scl[water] = 6
        return dn, scl, bare, green

    def _atmosphere(
        self, dn: np.ndarray, scl: np.ndarray, when: dt.datetime
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Add clouds, halos, shadows, cirrus, snow and swath edges; return cloud cover %."""
        rng, n = self.rng, self.n
        doy = when.timetuple().tm_yday
        cover_frac = 0.0 if rng.random() < 0.35 else float(rng.beta(1.2, 1.8))
        if cover_frac > 0:
            field = _smooth_noise(rng, (n, n), n / 12)
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
            cirrus = _smooth_noise(rng, (n, n), n / 6) > 1.0
            dn[:, cirrus] = dn[:, cirrus] * 0.8 + 0.2 * CLOUD[:, None]
            scl[cirrus & (scl >= 4) & (scl <= 6)] = 10
        if (doy < 60 or doy > 335) and rng.random() < 0.4:  # winter snow
            snow = _smooth_noise(rng, (n, n), n / 8) > rng.uniform(-1, 1)
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

    # -- output ---------------------------------------------------------------------------
    def _profile(self, res: float, dtype: str, n: int) -> dict[str, Any]:
        return {
            "driver": "COG", "dtype": dtype, "count": 1, "width": n, "height": n,
            "crs": f"EPSG:{CRS_EPSG}", "nodata": 0, "compress": "deflate",
            "blocksize": 256 if n > 256 else 128,  # GDAL's COG driver needs >= 128
            "transform": Affine(res, 0, self.x0, 0, -res, self.y0),
        }

    def _write_cog(self, path: Path, data: np.ndarray, res: float, dtype: str) -> None:
        with rasterio.open(path, "w", **self._profile(res, dtype, data.shape[-1])) as dst:
            dst.write(data.astype(dtype), 1)

    def _item(self, when: dt.datetime, baseline: str, folder: Path, platform: str,
              cloud_cover: float, generated: dt.datetime) -> pystac.Item:
        from pyproj import Transformer

        n = self.n
        x1, y1 = self.x0 + n * 10, self.y0 - n * 10
        inv = Transformer.from_crs(CRS_EPSG, 4326, always_xy=True)
        ring = [inv.transform(x, y) for x, y in
                [(self.x0, y1), (x1, y1), (x1, self.y0), (self.x0, self.y0), (self.x0, y1)]]
        lons, lats = zip(*ring, strict=True)
        stamp = when.strftime("%Y%m%dT%H%M%S")
        gen = generated.strftime("%Y%m%dT%H%M%S")
        item_id = f"{platform}_MSIL2A_{stamp}_R022_T{MGRS_TILE}_{gen}"
        props: dict[str, Any] = {
            "platform": f"Sentinel-{platform[1:]}", "constellation": "Sentinel 2",
            "instruments": ["msi"], "eo:cloud_cover": round(cloud_cover, 4),
            "proj:code": f"EPSG:{CRS_EPSG}",
            "s2:mgrs_tile": MGRS_TILE, "s2:processing_baseline": baseline,
            "s2:product_type": "S2MSI2A",
            "s2:product_uri": f"{platform}_MSIL2A_{stamp}_N{baseline.replace('.', '')}_R022_"
                              f"T{MGRS_TILE}_{gen}.SAFE",
            "s2:generation_time": generated.isoformat().replace("+00:00", "Z"),
            "s2:mean_solar_zenith": round(_solar_zenith(when, *CENTER), 4),
            "s2:mean_solar_azimuth": 160.0,
            "sat:relative_orbit": 22,
        }
        item = pystac.Item(
            id=item_id, geometry={"type": "Polygon", "coordinates": [ring]},
            bbox=[min(lons), min(lats), max(lons), max(lats)], datetime=when,
            properties=props, collection="sentinel-2-l2a",
        )
        item.stac_extensions = [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
        ]
        for band in (*REFLECTANCE_BANDS, "SCL"):
            res = 10.0 if band in BANDS_10M else 20.0
            m = round(n * 10 / res)
            extra: dict[str, Any] = {
                "gsd": res, "proj:shape": [m, m],
                "proj:transform": [res, 0.0, self.x0, 0.0, -res, self.y0],
                "proj:bbox": [self.x0, y1, x1, self.y0],
            }
            if band != "SCL":
                extra["eo:bands"] = [{"name": band}]
            item.add_asset(band, pystac.Asset(
                href=str(folder / f"{band}.tif"),
                media_type=pystac.MediaType.COG,
                roles=["data"],
                title=f"Band {band} - {int(res)}m" if band != "SCL" else "Scene classification",
                extra_fields=extra,
            ))
        return item

    def _write_scene(self, root: Path, when: dt.datetime, baseline: str, platform: str,
                     dn: np.ndarray, scl: np.ndarray, cloud_cover: float,
                     generated: dt.datetime) -> pystac.Item:
        offset = 1000.0 if float(baseline) >= 4.0 else 0.0
        stamp = when.strftime("%Y%m%dT%H%M%S")
        folder = root / "sentinel-2-l2a" / f"tmp-{stamp}-{baseline}"
        folder.mkdir(parents=True)
        valid = dn[0] > 0
        for i, band in enumerate(REFLECTANCE_BANDS):
            out = np.where(valid, np.clip(dn[i] + offset, 1, 65535), 0)
            if band not in BANDS_10M:
                out = out.reshape(self.n // 2, 2, self.n // 2, 2).mean(axis=(1, 3))
                out = np.where(valid[::2, ::2], np.clip(np.round(out), 1, 65535), 0)
            self._write_cog(folder / f"{band}.tif", out, 10.0 if band in BANDS_10M else 20.0,
                            "uint16")
        self._write_cog(folder / "SCL.tif", scl[::2, ::2], 20.0, "uint8")
        item = self._item(when, baseline, folder, platform, cloud_cover, generated)
        final = folder.with_name(item.id)
        folder.rename(final)
        for asset in item.assets.values():
            asset.href = str(final / Path(asset.href).name)
        return item

    def write(self, root: Path) -> dict[str, Any]:
        dates = self._dates()
        items: list[pystac.Item] = []
        scenes: list[dict[str, Any]] = []
        # One 2021 scene is delivered twice: as processed then, and reprocessed with 05.00.
        dup_index = next((i for i, d in enumerate(dates) if d.year == 2021 and d.month >= 5),
                         None)
        for i, when in enumerate(dates):
            dn, scl, bare, green = self._surface(when)
            dn, scl, cloud_cover = self._atmosphere(dn, scl, when)
            platform = "S2A" if i % 2 == 0 else "S2B"
            baseline = _baseline(when)
            generated = when + dt.timedelta(hours=3)
            items.append(self._write_scene(root, when, baseline, platform, dn, scl, cloud_cover,
                                           generated))
            if i == dup_index:
                items.append(self._write_scene(
                    root, when, "05.00", platform, dn, scl, cloud_cover,
                    dt.datetime(2023, 6, 1, 12, tzinfo=dt.UTC)))
            scenes.append({
                "id": items[-1].id, "datetime": when.isoformat(), "cloud_cover": cloud_cover,
                "sun_zenith": items[-1].properties["s2:mean_solar_zenith"],
                "bare_fields": sorted(int(f) for f in np.unique(self.fields[bare]) if f > 0),
                # Fields (crops and grassland) with at least 30 % green cover: never bare.
                "green_fields": sorted(
                    int(f) for f in np.unique(self.fields[(green >= 0.3) & (self.fields > 0)])
                ),
                "bare_fraction": float(bare.mean()),
            })
        self._write_catalog(root, items)
        self._write_truth(root, scenes)
        y0, y1 = self.spec.years
        return {
            "root": str(root), "bbox": items[0].bbox, "crs": f"EPSG:{CRS_EPSG}",
            "n_items": len(items), "time_range": f"{y0}/{y1}",
        }

    def _write_catalog(self, root: Path, items: list[pystac.Item]) -> None:
        y0, y1 = self.spec.years
        catalog = pystac.Catalog(
            id="cup4soil-sample",
            description="Synthetic Sentinel-2 L2A archive over the Oderbruch made by "
                        "cup4soil.sample (not real data).",
        )
        bbox = [min(it.bbox[0] for it in items), min(it.bbox[1] for it in items),
                max(it.bbox[2] for it in items), max(it.bbox[3] for it in items)]
        collection = pystac.Collection(
            id="sentinel-2-l2a",
            description="Synthetic Sentinel-2 Level-2A, Planetary-Computer-like items.",
            extent=pystac.Extent(
                pystac.SpatialExtent([bbox]),
                pystac.TemporalExtent([[dt.datetime(y0, 1, 1, tzinfo=dt.UTC),
                                        dt.datetime(y1, 12, 31, tzinfo=dt.UTC)]]),
            ),
            license="CC-BY-4.0",
        )
        collection.add_items(items)
        catalog.add_child(collection)
        catalog.normalize_hrefs(str(root))
        catalog.make_all_asset_hrefs_relative()
        catalog.save(pystac.CatalogType.SELF_CONTAINED)

    def _write_truth(self, root: Path, scenes: list[dict[str, Any]]) -> None:
        truth = root / "truth"
        truth.mkdir()
        self._write_cog(truth / "worldcover.tif", self.cover, 10.0, "uint8")
        self._write_cog(truth / "fields.tif", self.fields, 10.0, "uint16")
        profile = self._profile(10.0, "float32", self.n) | {"nodata": None}
        with rasterio.open(truth / "soc.tif", "w", **profile) as dst:
            dst.write(self.soc, 1)
            dst.update_tags(1, units="percent", long_name="soil organic carbon, 0-30 cm")
        doc = {
            "description": "Hidden truth of the cup4soil sample archive.",
            "soc": "soc.tif (SOC, percent by mass; dg/kg = 100 x percent)",
            "worldcover": "worldcover.tif (ESA WorldCover classes)",
            "fields": "fields.tif (field id, 0 = not a field)",
            "crops": {str(f): {str(y): c for y, c in v.items()} for f, v in self.crop.items()},
            "field_class": {str(f): int(self.field_class[f]) for f in self.crop},
            "scenes": scenes,
        }
        (truth / "truth.json").write_text(json.dumps(doc, indent=1))
