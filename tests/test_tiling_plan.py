"""Planning a continental run from metadata: items per tile, costs, totals, plan.json."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pystac
import pytest
import rasterio
import shapely

from cup4soil import search
from cup4soil.cli.main import main
from cup4soil.errors import NoItemsError, ParameterError, TilingError
from cup4soil.sources import sentinel2 as s2
from cup4soil.tiling import Plan, plan
from cup4soil.tiling.plan import SCHEMA_VERSION, output_bytes_per_pixel

from helpers import CallCounter


def _item(id: str, bbox: tuple[float, float, float, float], when: dt.datetime,
          epsg: int) -> pystac.Item:
    """A Sentinel-2-like item whose assets do not exist (planning must not read them)."""
    item = pystac.Item(id=id, geometry=shapely.geometry.mapping(shapely.box(*bbox)),
                       bbox=list(bbox), datetime=when, properties={"proj:epsg": epsg})
    for band in s2.ALL_BANDS:
        gsd = s2.NATIVE_GSD[band]
        item.add_asset(band, pystac.Asset(
            href=f"/nonexistent/{id}/{band}.tif", media_type=pystac.MediaType.COG,
            extra_fields={"proj:transform": [gsd, 0, 0, 0, -gsd, 0],
                          "raster:bands": [{"data_type": "uint8" if band == "SCL"
                                            else "uint16"}]}))
    return item


def _two_zones(days: int = 3) -> list[pystac.Item]:
    """Items of two MGRS tiles meeting at 12 E (UTM zones 32 and 33), ``days`` dates each."""
    out = []
    for d in range(days):
        when = dt.datetime(2020, 5, 1 + 5 * d, 10, 30, tzinfo=dt.UTC)
        out.append(_item(f"z32-{d}", (11.0, 50.5, 12.0, 51.5), when, 32632))
        out.append(_item(f"z33-{d}", (12.0, 50.5, 13.0, 51.5), when, 32633))
    return out


def test_items_of_two_utm_zones_meet_the_straddling_tile(monkeypatch) -> None:
    opened = CallCounter(rasterio.open)
    monkeypatch.setattr(rasterio, "open", opened)
    items = _two_zones()
    # 10kmE446N310 straddles 12 E (see test_tiling_grid); 10kmE440N310 lies in zone 32 only
    # (x 4 400 000 .. 4 410 000 at 51 N is about 11.1 - 11.3 E)
    p = plan((11.1, 50.98, 12.005, 51.02), "2020", size="10km", items=items)
    by_code = {t.code: t for t in p.tiles}
    both = by_code["10kmE446N310"]
    assert sorted(p.tile_items("10kmE446N310")) == sorted(i.id for i in items)
    assert both.items == 6 and both.times == 3  # two zones, same solar days
    west = next(t for t in p.tiles if t.code.startswith("10kmE440N"))
    assert set(p.tile_items(west.code)) == {f"z32-{d}" for d in range(3)}
    assert opened.total == 0  # no pixel (no file) was read


def test_bytes_pixels_tasks_and_costs_hand_computed() -> None:
    items = _two_zones(days=2)
    p = plan((11.3, 50.9, 11.4, 51.0), "2020", size="10km", resolution=20, items=items,
             chunk=250)
    inside = [t for t in p.tiles if set(p.tile_items(t.code)) == {"z32-0", "z32-1"}]
    t = inside[0]
    # one item, tile covered fully: at 20 m the 10 m bands are read from their first
    # overview (20 m px), the 20 m bands at full resolution: 500 x 500 px each;
    # 10 bands x 2 bytes + SCL 1 byte
    per_item = 500 * 500 * (10 * 2 + 1)
    assert t.bytes_read == pytest.approx(2 * per_item, rel=1e-6)
    assert t.times == 2 and t.items == 2
    assert t.pixel_observations == 500 * 500 * 2
    # 4 blocks of 250 px: 11 bands x 2 reads + the engine's tasks + a write, per block
    from cup4soil.tiling.plan import SCMAP_TASKS_PER_BLOCK
    assert t.tasks == 4 * (11 * 2 + SCMAP_TASKS_PER_BLOCK + 1)
    assert t.output_bytes == 500 * 500 * output_bytes_per_pixel(10)


def test_output_bytes_match_the_composite() -> None:
    from cup4soil.tiling.run import _structure

    ds = _structure(s2.ALL_BANDS, 0.1)
    per_pixel = sum(v.dtype.itemsize * (v.sizes.get("band", 1)) for v in ds.data_vars.values())
    assert per_pixel == output_bytes_per_pixel(10)


def test_totals_are_sums_and_projection(tmp_path) -> None:
    p = plan((11.5, 50.8, 12.5, 51.2), "2020", size="10km", items=_two_zones())
    totals = p.totals
    assert totals["tiles"] == len(p.tiles) > 4
    for key in ("items", "bytes_read", "pixel_observations", "tasks", "output_bytes"):
        assert totals[key] == sum(getattr(t, key) for t in p.tiles)
    assert totals["cpu_seconds"] == pytest.approx(sum(t.cpu_seconds for t in p.tiles))
    one = p.projection(workers=1, threads=1)
    four = p.projection(workers=2, threads=2)
    assert one.wall_seconds == pytest.approx(totals["cpu_seconds"])
    assert one.wall_seconds / 4 - 1e-6 <= four.wall_seconds < one.wall_seconds
    assert four.worker_memory_bytes == 2 * totals["memory_bytes"]
    with pytest.raises(ParameterError):
        p.projection(workers=0)


def test_plan_json_round_trip_and_versions(tmp_path) -> None:
    p = plan((11.9, 50.9, 12.1, 51.1), "2020", size="10km", items=_two_zones())
    path = p.save(tmp_path / "plan.json")
    assert Plan.load(path) == p
    doc = json.loads(path.read_text())
    assert doc["version"] == SCHEMA_VERSION
    doc["version"] = SCHEMA_VERSION + 1
    (tmp_path / "future.json").write_text(json.dumps(doc))
    with pytest.raises(TilingError, match="schema version"):
        Plan.load(tmp_path / "future.json")
    with pytest.raises(TilingError, match="no plan"):
        Plan.load(tmp_path / "missing.json")


def test_refusals() -> None:
    with pytest.raises(NoItemsError):
        plan((20.0, 50.0, 20.1, 50.1), "2020", size="10km", items=_two_zones())
    with pytest.raises(ParameterError, match="chunk"):
        plan((11.9, 50.9, 12.1, 51.1), "2020", size="10km", items=_two_zones(), chunk=300)
    with pytest.raises(ParameterError, match="does not divide"):
        plan((11.9, 50.9, 12.1, 51.1), "2020", size="10km", resolution=30,
             items=_two_zones())


def test_plan_on_the_sample_catalog_and_cli(sample, tmp_path, capsys) -> None:
    out = tmp_path / "plan.json"
    bbox = ",".join(map(str, sample.bbox))
    assert main(["plan", "--aoi", bbox, "--time", sample.time_range, "--tile", "1km",
                 "--resolution", "20", "--catalog", str(sample.catalog),
                 "--max-cloud-cover", "100", "--workers", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tiles of 1km at 20 m" in text and "CPU-hours" in text
    p = Plan.load(out)
    assert len(p.tiles) >= 4
    assert all(t.code.startswith("1kmE") for t in p.tiles)
    # every item found (one search) meets every tile of the sample's small area
    found = search(sample.bbox, sample.time_range, catalog=str(sample.catalog),
                   max_cloud_cover=100)
    assert p.item_ids == [i.id for i in found]
    assert {len(p.tile_items(t.code)) for t in p.tiles} == {len(found)}
    assert np.all([t.bytes_read > 0 for t in p.tiles])
