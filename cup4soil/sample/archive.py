"""The sample archive writer: the synthetic world's scenes and maps as COGs and STAC.

The demo, the tests and the benchmarks need Sentinel-2 data (and the covariates' sources)
without a network. :func:`make_catalog` builds the hidden truth (:mod:`.world`), renders its
Sentinel-2 L2A scenes (:mod:`.sentinel2`) and writes them like a real archive: one folder of
tiled, deflated COGs with overviews per scene (10 m and 20 m bands, SCL),
Planetary-Computer-like STAC items in a static catalog, both processing baselines (DNs carry
the +1000 ``BOA_ADD_OFFSET`` shift from 04.00 on, and one scene is delivered twice). The
same catalog holds the covariates' collections with the item layouts of Planetary
Computer: ``sentinel-1-rtc`` (VV/VH gamma0 COGs, :mod:`.sentinel1`), ``cop-dem-glo-30`` (a
GLO-30 crop) and ``esa-worldcover`` (a 2021 map crop, :mod:`.maps`). The truth rasters and
``truth.json`` are written beside the catalog under ``truth/``.

Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import operator
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pystac
import rasterio
import shapely.geometry
from rasterio.transform import Affine

from ..errors import ParameterError
from ..sources import landcover as lcmeta
from ..sources import sentinel1 as s1meta
from ..sources import sentinel2 as s2meta
from . import maps
from . import sentinel1 as s1
from .catalog import SampleCatalog
from .sentinel2 import Scene, acquisition_dates, processing_baseline, render, solar_zenith
from .world import Draws, Grid, World

__all__ = ["SampleCatalog", "make_catalog"]

MGRS_TILE = "33UVU"
#: Collection descriptions of the sample catalog.
_DESCRIPTIONS = {
    "sentinel-2-l2a": "Synthetic Sentinel-2 Level-2A, Planetary-Computer-like items.",
    "sentinel-1-rtc": "Synthetic Sentinel-1 radiometrically terrain-corrected gamma0 (linear "
                      "power, VV and VH), items laid out like Planetary Computer's.",
    "cop-dem-glo-30": "Synthetic Copernicus DEM GLO-30 crop (EPSG:4326, point-registered), "
                      "items laid out like Planetary Computer's.",
    "esa-worldcover": "Synthetic ESA WorldCover 2021 crop of the sample's land cover, items "
                      "laid out like Planetary Computer's.",
}
#: The day the GLO-30 items of Planetary Computer carry as their datetime.
_DEM_DATETIME = dt.datetime(2021, 4, 22, tzinfo=dt.UTC)


@dataclass(frozen=True)
class _Spec:
    size: int
    years: tuple[int, int]
    scenes_per_year: int
    seed: int
    s1_scenes_per_year: int = 12
    # Bumped whenever the same parameters would make a different archive (a reused
    # archive must be the one this code writes).
    version: int = 5


def _year_span(years: Any) -> tuple[int, int]:
    """``(first, last)`` from ``years``: a pair, one year, or a 1-tuple."""
    span = (years,) if isinstance(years, int | np.integer) else years
    try:
        values = [operator.index(v) for v in span]
    except TypeError:
        raise ParameterError(f"years={years!r}: give whole years, e.g. (2018, 2022) or "
                             "2021.") from None
    if len(values) not in (1, 2):
        raise ParameterError(f"years={years!r}: give (first, last) or one year.")
    return values[0], values[-1]


def make_catalog(
    path: str | Path,
    *,
    size: int = 200,
    years: tuple[int, int] = (2018, 2022),
    scenes_per_year: int = 12,
    seed: int = 0,
    s1_scenes_per_year: int = 12,
    overwrite: bool = False,
) -> SampleCatalog:
    """Write a synthetic Sentinel-2 L2A archive, with Sentinel-1 RTC scenes, a DEM and a
    WorldCover map, as COGs with a static STAC catalog.

    Parameters
    ----------
    path
        Output folder. An existing archive made with the same parameters is reused.
    size
        Side of the area in 10 m pixels (even; default 200 px = 2 km).
    years
        First and last calendar year, inclusive; one year as ``2021`` or ``(2021,)``.
    scenes_per_year
        Acquisitions per year (a realistic fraction of the 5-day revisit).
    seed
        Seed of every random draw (non-negative); each concern (fields, SOC, dates, each
        scene's surface and atmosphere, ...) draws from its own stream derived from it.
    s1_scenes_per_year
        Sentinel-1 passes per year (ascending and descending alternate; 0: none).
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
    y0, y1 = _year_span(years)
    if y1 < y0:
        raise ParameterError(f"years={years} is reversed; give (first, last).")
    if seed < 0:
        raise ParameterError(f"seed={seed} must be a non-negative integer.")
    if s1_scenes_per_year < 0:
        raise ParameterError(f"s1_scenes_per_year={s1_scenes_per_year} must be >= 0.")
    spec = _Spec(size=size, years=(y0, y1), scenes_per_year=scenes_per_year, seed=seed,
                 s1_scenes_per_year=s1_scenes_per_year)
    root = Path(path).expanduser().resolve()
    marker = root / "sample-spec.json"
    if not overwrite and marker.is_file():
        stored = json.loads(marker.read_text())
        if stored.get("spec") == json.loads(json.dumps(asdict(spec))):
            return _catalog(stored)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    fields = _write(spec, root)
    marker.write_text(json.dumps({"spec": asdict(spec), **fields}, default=str))
    return _catalog(json.loads(marker.read_text()))


def _catalog(stored: dict[str, Any]) -> SampleCatalog:
    w, s, e, n = (float(v) for v in stored["bbox"])
    return SampleCatalog(
        root=Path(stored["root"]), bbox=(w, s, e, n), crs=str(stored["crs"]),
        n_items=int(stored["n_items"]), time_range=str(stored["time_range"]),
        collections={str(k): int(v) for k, v in stored.get("collections", {}).items()},
    )


def _write(spec: _Spec, root: Path) -> dict[str, Any]:
    """Make the world, render and write its scenes, the catalog and the truth."""
    draws = Draws(spec.seed)
    world = World(spec.size, spec.years, draws)
    writer = _Writer(world.grid, root)
    dates = acquisition_dates(spec.years, spec.scenes_per_year, draws)
    items: list[pystac.Item] = []
    scenes: list[dict[str, Any]] = []
    # One 2021 scene is delivered twice: as processed then, and reprocessed with 05.00.
    dup_index = next((i for i, d in enumerate(dates) if d.year == 2021 and d.month >= 5), None)
    for i, when in enumerate(dates):
        scene = render(world, when)
        platform = "S2A" if i % 2 == 0 else "S2B"
        generated = when + dt.timedelta(hours=3)
        items.append(writer.scene(scene, processing_baseline(when), platform, generated))
        if i == dup_index:
            items.append(writer.scene(scene, "05.00", platform,
                                      dt.datetime(2023, 6, 1, 12, tzinfo=dt.UTC)))
        scenes.append({
            "id": items[-1].id, "datetime": when.isoformat(), "cloud_cover": scene.cloud_cover,
            "sun_zenith": items[-1].properties["s2:mean_solar_zenith"],
            "bare_fields": world.fields_where(scene.bare),
            # Fields (crops and grassland) with at least 30 % green cover: never bare.
            "green_fields": world.fields_where(scene.green >= 0.3),
            "bare_fraction": float(scene.bare.mean()),
        })
    radar = [writer.radar(s1.render(world, acq))
             for acq in s1.acquisitions(spec.years, spec.s1_scenes_per_year, draws)]
    groups = {"sentinel-2-l2a": items, "sentinel-1-rtc": radar,
              "cop-dem-glo-30": [writer.dem(maps.dem(world))],
              "esa-worldcover": [writer.worldcover(maps.worldcover(world))]}
    writer.catalog(groups, spec.years)
    writer.truth(world, scenes)
    y0, y1 = spec.years
    return {
        "root": str(root), "bbox": items[0].bbox, "crs": world.grid.crs,
        "n_items": len(items), "time_range": f"{y0}/{y1}",
        "collections": {k: len(v) for k, v in groups.items() if v},
    }


class _Writer:
    """COGs, STAC items and the catalog of one archive folder."""

    def __init__(self, grid: Grid, root: Path) -> None:
        self.grid = grid
        self.root = root

    def _profile(self, res: float, dtype: str, n: int) -> dict[str, Any]:
        return {
            "driver": "COG", "dtype": dtype, "count": 1, "width": n, "height": n,
            "crs": self.grid.crs, "nodata": 0, "compress": "deflate",
            "blocksize": 256 if n > 256 else 128,  # GDAL's COG driver needs >= 128
            "transform": Affine(res, 0, self.grid.x0, 0, -res, self.grid.y0),
        }

    def _write_cog(self, path: Path, data: npt.NDArray[Any], res: float, dtype: str,
                   **profile: Any) -> rasterio.io.DatasetWriter:
        dst = rasterio.open(path, "w", **(self._profile(res, dtype, data.shape[-1]) | profile))
        dst.write(data.astype(dtype), 1)
        return dst

    def _item(self, scene: Scene, baseline: str, folder: Path, platform: str,
              generated: dt.datetime) -> pystac.Item:
        grid = self.grid
        ring = grid.lonlat_ring()
        lons, lats = zip(*ring, strict=True)
        stamp = scene.stamp
        gen = generated.strftime("%Y%m%dT%H%M%S")
        item_id = f"{platform}_MSIL2A_{stamp}_R022_T{MGRS_TILE}_{gen}"
        props: dict[str, Any] = {
            "platform": f"Sentinel-{platform[1:]}", "constellation": "Sentinel 2",
            "instruments": ["msi"], "eo:cloud_cover": round(scene.cloud_cover, 4),
            "proj:code": grid.crs,
            "s2:mgrs_tile": MGRS_TILE, "s2:processing_baseline": baseline,
            "s2:product_type": "S2MSI2A",
            "s2:product_uri": f"{platform}_MSIL2A_{stamp}_N{baseline.replace('.', '')}_R022_"
                              f"T{MGRS_TILE}_{gen}.SAFE",
            "s2:generation_time": generated.isoformat().replace("+00:00", "Z"),
            "s2:mean_solar_zenith": round(solar_zenith(scene.when), 4),
            "s2:mean_solar_azimuth": 160.0,
            "sat:relative_orbit": 22,
        }
        item = pystac.Item(
            id=item_id, geometry={"type": "Polygon", "coordinates": [ring]},
            bbox=[min(lons), min(lats), max(lons), max(lats)], datetime=scene.when,
            properties=props, collection="sentinel-2-l2a",
        )
        item.stac_extensions = [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
        ]
        left, bottom, right, top = grid.bounds
        for band in s2meta.ALL_BANDS:
            res = s2meta.NATIVE_GSD[band]
            m = round(grid.size * 10 / res)
            extra: dict[str, Any] = {
                "gsd": res, "proj:shape": [m, m],
                "proj:transform": [res, 0.0, grid.x0, 0.0, -res, grid.y0],
                "proj:bbox": [left, bottom, right, top],
            }
            if band != s2meta.SCL:
                extra["eo:bands"] = [{"name": band}]
            item.add_asset(band, pystac.Asset(
                href=str(folder / f"{band}.tif"),
                media_type=pystac.MediaType.COG,
                roles=["data"],
                title=f"Band {band} - {int(res)}m" if band != s2meta.SCL
                else "Scene classification",
                extra_fields=extra,
            ))
        return item

    def scene(self, scene: Scene, baseline: str, platform: str,
              generated: dt.datetime) -> pystac.Item:
        """Write one delivery of ``scene`` (its COGs) and return its STAC item."""
        # L2A DNs carry the baseline's BOA_ADD_OFFSET: DN = true DN - offset.
        offset = float(-s2meta.boa_add_offset(float(baseline)))
        n = self.grid.size
        folder = self.root / "sentinel-2-l2a" / f"tmp-{scene.stamp}-{baseline}"
        folder.mkdir(parents=True)
        dn = scene.dn
        valid = dn[0] > 0
        for i, band in enumerate(s2meta.REFLECTANCE_BANDS):
            res = s2meta.NATIVE_GSD[band]
            out = np.where(valid, np.clip(dn[i] + offset, 1, 65535), 0)
            if res == 20.0:  # the 20 m bands: mean of 2 x 2 pixels of 10 m
                out = out.reshape(n // 2, 2, n // 2, 2).mean(axis=(1, 3))
                out = np.where(valid[::2, ::2], np.clip(np.round(out), 1, 65535), 0)
            self._write_cog(folder / f"{band}.tif", out, res, "uint16").close()
        self._write_cog(folder / "SCL.tif", scene.scl[::2, ::2], 20.0, "uint8").close()
        item = self._item(scene, baseline, folder, platform, generated)
        final = folder.with_name(item.id)
        folder.rename(final)
        for asset in item.assets.values():
            asset.href = str(final / Path(asset.href).name)
        return item

    def _geotiff(self, path: Path, data: npt.NDArray[Any], transform: Affine, crs: str,
                 nodata: float | None, **extra: Any) -> rasterio.io.DatasetWriter:
        """A COG of any grid (the maps and radar scenes), left open for tags."""
        h, w = data.shape
        dst = rasterio.open(
            path, "w", driver="COG", dtype=str(data.dtype), count=1, width=w, height=h,
            crs=crs, nodata=nodata, compress="deflate",
            blocksize=256 if max(h, w) > 256 else 128, transform=transform, **extra)
        dst.write(data, 1)
        return dst

    def radar(self, scene: s1.RadarScene) -> pystac.Item:
        """Write one Sentinel-1 RTC scene (``vv``/``vh`` COGs) and return its STAC item,
        laid out like Planetary Computer's ``sentinel-1-rtc`` items."""
        acq, grid = scene.acquisition, self.grid
        start, end = acq.when, acq.when + dt.timedelta(seconds=25)
        # Absolute orbit: 175 orbits per 12-day cycle since each platform's first orbit.
        launch = dt.datetime(2014, 4, 3, tzinfo=dt.UTC) if acq.platform == "S1A" else \
            dt.datetime(2016, 4, 25, tzinfo=dt.UTC)
        absolute = 1 + int((start - launch).total_seconds() / 86400 * 175 / 12)
        datatake = absolute * 37 % 0xFFFFFF
        item_id = (f"{acq.platform}_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}_"
                   f"{absolute:06d}_{datatake:06X}_rtc")
        folder = self.root / "sentinel-1-rtc" / item_id / "measurement"
        folder.mkdir(parents=True)
        transform = Affine(10.0, 0, grid.x0, 0, -10.0, grid.y0)
        for pol, data in (("vv", scene.vv), ("vh", scene.vh)):
            values = np.where(np.isfinite(data), data, s1meta.DEFAULT_NODATA["sentinel-1-rtc"])
            self._geotiff(folder / f"iw-{pol}.rtc.tiff", values.astype(np.float32), transform,
                          grid.crs, s1meta.DEFAULT_NODATA["sentinel-1-rtc"]).close()
        ring = grid.lonlat_ring()
        lons, lats = zip(*ring, strict=True)
        left, bottom, right, top = grid.bounds
        props: dict[str, Any] = {
            "platform": f"SENTINEL-1{acq.platform[-1]}", "constellation": "Sentinel-1",
            "start_datetime": start.isoformat(), "end_datetime": end.isoformat(),
            "proj:epsg": grid.epsg, "proj:bbox": [left, bottom, right, top],
            "proj:shape": [grid.size, grid.size],
            "proj:transform": [10.0, 0.0, grid.x0, 0.0, -10.0, grid.y0, 0.0, 0.0, 1.0],
            "s1:resolution": "high", "s1:orbit_source": "RESORB", "s1:processing_level": "1",
            "s1:product_timeliness": "Fast-24h", "s1:datatake_id": str(datatake),
            "sar:instrument_mode": "IW", "sar:frequency_band": "C",
            "sar:center_frequency": 5.405, "sar:polarizations": ["VV", "VH"],
            "sar:product_type": "GRD", "sar:resolution_range": 20,
            "sar:resolution_azimuth": 22, "sar:pixel_spacing_range": 10,
            "sar:pixel_spacing_azimuth": 10, "sar:looks_range": 5, "sar:looks_azimuth": 1,
            "sar:looks_equivalent_number": s1.ENL, "sar:observation_direction": "right",
            "sat:orbit_state": acq.orbit, "sat:relative_orbit": acq.relative_orbit,
            "sat:absolute_orbit": absolute,
        }
        item = pystac.Item(
            id=item_id, geometry={"type": "Polygon", "coordinates": [ring]},
            bbox=[min(lons), min(lats), max(lons), max(lats)], datetime=start + (end - start) / 2,
            properties=props, collection="sentinel-1-rtc",
        )
        item.stac_extensions = [
            "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
            "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ]
        for pol in ("vh", "vv"):
            item.add_asset(pol, pystac.Asset(
                href=str(folder / f"iw-{pol}.rtc.tiff"), media_type=pystac.MediaType.COG,
                roles=["data"], title=f"{pol.upper()}: vertical transmit, "
                f"{'vertical' if pol == 'vv' else 'horizontal'} receive",
                extra_fields={"raster:bands": [{
                    "nodata": s1meta.DEFAULT_NODATA["sentinel-1-rtc"], "data_type": "float32",
                    "spatial_resolution": 10.0}]},
            ))
        return item

    def dem(self, raster: maps.GeoRaster) -> pystac.Item:
        """Write the DEM crop (point-registered, like GLO-30) and its item, laid out like
        Planetary Computer's ``cop-dem-glo-30`` items (no raster:bands, no nodata)."""
        west, south, _, _ = raster.bounds
        lat0, lon0 = math.floor(south + 0.5 / 3600), math.floor(west + 0.75 / 3600)
        tile = (f"{'N' if lat0 >= 0 else 'S'}{abs(lat0):02d}_00_"
                f"{'E' if lon0 >= 0 else 'W'}{abs(lon0):03d}_00")
        item_id = f"Copernicus_DSM_COG_10_{tile}_DEM"
        folder = self.root / "cop-dem-glo-30" / item_id
        folder.mkdir(parents=True)
        path = folder / f"{item_id}.tif"
        with self._geotiff(path, raster.data, raster.transform, "EPSG:4326", None) as dst:
            dst.update_tags(AREA_OR_POINT="Point")
        t = raster.transform
        item = pystac.Item(
            id=item_id, geometry=shapely.geometry.mapping(shapely.geometry.box(*raster.bounds)),
            bbox=list(raster.bounds), datetime=_DEM_DATETIME, collection="cop-dem-glo-30",
            properties={"gsd": 30, "platform": "TanDEM-X", "proj:epsg": 4326,
                        "proj:shape": list(raster.data.shape),
                        "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f]},
        )
        item.stac_extensions = ["https://stac-extensions.github.io/projection/v1.0.0/schema.json"]
        item.add_asset("data", pystac.Asset(
            href=str(path), media_type=pystac.MediaType.COG, roles=["data"],
            title=tile))
        return item

    def worldcover(self, raster: maps.GeoRaster) -> pystac.Item:
        """Write the WorldCover crop (classes, colour table, legend) and its item, laid out
        like Planetary Computer's ``esa-worldcover`` items."""
        west, south, _, _ = raster.bounds
        lat0, lon0 = 3 * math.floor(south / 3), 3 * math.floor(west / 3)
        tile = (f"{'N' if lat0 >= 0 else 'S'}{abs(lat0):02d}"
                f"{'E' if lon0 >= 0 else 'W'}{abs(lon0):03d}")
        item_id = f"ESA_WorldCover_10m_2021_v200_{tile}"
        folder = self.root / "esa-worldcover" / item_id
        folder.mkdir(parents=True)
        path = folder / f"{item_id}_Map.tif"
        legend = "".join(f"{k:<3} {v}\n" for k, v in lcmeta.CLASSES.items())
        with self._geotiff(path, raster.data, raster.transform, "EPSG:4326",
                           lcmeta.NODATA) as dst:
            dst.write_colormap(1, {k: (*bytes.fromhex(c), 255) for k, c in maps.COLOURS.items()})
            dst.update_tags(legend=legend, product_tile=tile, time_start="2021-01-01T00:00:00Z",
                            time_end="2021-12-31T23:59:59Z", AREA_OR_POINT="Area")
        t = raster.transform
        item = pystac.Item(
            id=item_id, geometry=shapely.geometry.mapping(shapely.geometry.box(*raster.bounds)),
            bbox=list(raster.bounds), datetime=None, collection="esa-worldcover",
            start_datetime=dt.datetime(2021, 1, 1, tzinfo=dt.UTC),
            end_datetime=dt.datetime(2021, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
            properties={"esa_worldcover:product_version": "2.0.0",
                        "esa_worldcover:product_tile": tile, "proj:epsg": 4326,
                        "grid:code": f"ESAWORLDCOVER-{tile}",
                        "description": "ESA WorldCover product at 10m resolution",
                        "mission": "sentinel-1, sentinel-2",
                        "instruments": ["c-sar", "msi"]},
        )
        item.stac_extensions = [
            "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/classification/v1.0.0/schema.json",
        ]
        item.add_asset("map", pystac.Asset(
            href=str(path), media_type=pystac.MediaType.COG, roles=["data"],
            title="Land Cover Classes",
            extra_fields={
                "raster:bands": [{"name": "Band1", "nodata": lcmeta.NODATA, "sampling": "area",
                                  "data_type": "uint8", "spatial_resolution": 10}],
                "classification:classes": [
                    {"value": k, "description": v.replace("_", " "), "color-hint": maps.COLOURS[k]}
                    for k, v in lcmeta.CLASSES.items()],
                "proj:shape": list(raster.data.shape),
                "proj:transform": [t.a, t.b, t.c, t.d, t.e, t.f],
            }))
        return item

    def catalog(self, groups: dict[str, list[pystac.Item]], years: tuple[int, int]) -> None:
        """The static, self-contained STAC catalog: one collection per group of items."""
        y0, y1 = years
        catalog = pystac.Catalog(
            id="cup4soil-sample",
            description="Synthetic Sentinel-2 L2A archive over the Oderbruch, with Sentinel-1 "
                        "RTC, a Copernicus DEM crop and an ESA WorldCover crop, made by "
                        "cup4soil.sample (not real data).",
        )
        for name, items in groups.items():
            if not items:
                continue
            boxes = [it.bbox for it in items if it.bbox]
            bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes),
                    max(b[2] for b in boxes), max(b[3] for b in boxes)]
            span = [dt.datetime(y0, 1, 1, tzinfo=dt.UTC), dt.datetime(y1, 12, 31, tzinfo=dt.UTC)]
            collection = pystac.Collection(
                id=name, description=_DESCRIPTIONS[name],
                extent=pystac.Extent(pystac.SpatialExtent([bbox]),
                                     pystac.TemporalExtent([span])),
                license="CC-BY-4.0",
            )
            collection.add_items(items)
            catalog.add_child(collection)
        catalog.normalize_hrefs(str(self.root))
        catalog.make_all_asset_hrefs_relative()
        catalog.save(pystac.CatalogType.SELF_CONTAINED)

    def truth(self, world: World, scenes: list[dict[str, Any]]) -> None:
        """The truth rasters (one COG per layer) and ``truth.json``."""
        folder = self.root / "truth"
        folder.mkdir()
        layers = world.truth_layers()
        for name, layer in layers.items():
            with self._write_cog(folder / f"{name}.tif", layer.data, 10.0,
                                 str(layer.data.dtype), nodata=layer.nodata) as dst:
                if layer.tags:
                    dst.update_tags(1, **dict(layer.tags))
        doc = {
            "description": "Hidden truth of the cup4soil sample archive.",
            **{name: f"{name}.tif ({layer.description})" for name, layer in layers.items()},
            "layers": {name: {"file": f"{name}.tif", "description": layer.description,
                              "resampling": layer.resampling}
                       for name, layer in layers.items()},
            **world.truth_doc(),
            "scenes": scenes,
        }
        (folder / "truth.json").write_text(json.dumps(doc, indent=1))
