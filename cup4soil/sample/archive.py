"""The sample archive writer: the synthetic world's Sentinel-2 scenes as COGs and STAC.

The demo, the tests and the benchmarks need Sentinel-2 data without a network.
:func:`make_catalog` builds the hidden truth (:mod:`.world`), renders its Sentinel-2 L2A
scenes (:mod:`.sentinel2`) and writes them like a real archive: one folder of tiled,
deflated COGs with overviews per scene (10 m and 20 m bands, SCL), Planetary-Computer-like
STAC items in a static catalog, both processing baselines (DNs carry the +1000
``BOA_ADD_OFFSET`` shift from 04.00 on, and one scene is delivered twice). The truth
rasters and ``truth.json`` are written beside the catalog under ``truth/``.

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
import numpy.typing as npt
import pystac
import rasterio
from rasterio.transform import Affine

from ..errors import ParameterError
from ..sources import sentinel2 as s2meta
from .catalog import SampleCatalog
from .sentinel2 import Scene, acquisition_dates, processing_baseline, render, solar_zenith
from .world import Draws, Grid, World

__all__ = ["SampleCatalog", "make_catalog"]

MGRS_TILE = "33UVU"


@dataclass(frozen=True)
class _Spec:
    size: int
    years: tuple[int, int]
    scenes_per_year: int
    seed: int
    # Bumped whenever the same parameters would make a different archive (a reused
    # archive must be the one this code writes).
    version: int = 4


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
        Seed of every random draw (non-negative); each concern (fields, SOC, dates, each
        scene's surface and atmosphere, ...) draws from its own stream derived from it.
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
    if seed < 0:
        raise ParameterError(f"seed={seed} must be a non-negative integer.")
    spec = _Spec(size=size, years=(y0, y1), scenes_per_year=scenes_per_year, seed=seed)
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
    writer.catalog(items, spec.years)
    writer.truth(world, scenes)
    y0, y1 = spec.years
    return {
        "root": str(root), "bbox": items[0].bbox, "crs": world.grid.crs,
        "n_items": len(items), "time_range": f"{y0}/{y1}",
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

    def catalog(self, items: list[pystac.Item], years: tuple[int, int]) -> None:
        """The static, self-contained STAC catalog of ``items``."""
        y0, y1 = years
        catalog = pystac.Catalog(
            id="cup4soil-sample",
            description="Synthetic Sentinel-2 L2A archive over the Oderbruch made by "
                        "cup4soil.sample (not real data).",
        )
        boxes = [it.bbox for it in items if it.bbox]
        bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes)]
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
