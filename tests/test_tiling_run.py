"""Running a plan on the sample archive: one mosaic, failures isolated and retried, status,
kill and resume bit-identical, the tiles' STAC collection read by odc-stac and stackstac."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import cup4soil.cube.load as cube_load
from cup4soil.cli.main import main
from cup4soil.errors import NotAProductError
from cup4soil.sample import SampleCatalog, make_catalog
from cup4soil.tiling import Plan, grid, plan, run, status
from cup4soil.tiling.run import collection_path

from helpers import CallCounter

THRESHOLD = 0.1


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SampleCatalog:
    """A small sample archive (two years, four scenes a year): few reads per tile."""
    return make_catalog(tmp_path_factory.mktemp("tiling-sample"), size=80, years=(2021, 2022),
                        scenes_per_year=4, seed=5)


@pytest.fixture(scope="module")
def tile_plan(small: SampleCatalog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = plan(small.bbox, small.time_range, size="1km", resolution=20,
             catalog=str(small.catalog), max_cloud_cover=None)
    assert len(p.tiles) >= 4
    return p.save(tmp_path_factory.mktemp("plan") / "plan.json")


@pytest.fixture(scope="module")
def reference(tile_plan: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run, with COGs."""
    root = tmp_path_factory.mktemp("reference")
    out = root / "mosaic.zarr"
    result = run(str(tile_plan), out=str(out), threshold=THRESHOLD, cogs=str(root / "cogs"))
    assert result.complete and set(result.computed) == set(result.state.done)
    return out


def _chunks(store: Path) -> dict[str, bytes]:
    """Every object of a Zarr store (chunks, arrays' metadata) but the root group's metadata
    (it holds the write time)."""
    root_meta = ("zarr.json", ".zattrs", ".zgroup", ".zmetadata")
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*"))
            if p.is_file() and not (p.parent == store and p.name in root_meta)}


def _fail_tile(monkeypatch: pytest.MonkeyPatch, bounds: tuple[float, ...]) -> CallCounter:
    """Reads into ``bounds`` (EPSG:3035) fail as an unreadable asset would; the returned
    counter counts reads per "bad"/"ok" window."""
    real = cube_load._SafeReader.read

    def inside(b: object) -> bool:
        return bool(b.left < bounds[2] and b.right > bounds[0]  # type: ignore[attr-defined]
                    and b.bottom < bounds[3] and b.top > bounds[1])  # type: ignore[attr-defined]

    seen = CallCounter(inside, key=lambda b: "bad" if inside(b) else "ok")

    def read(self, cfg, dst_geobox, **kw):  # type: ignore[no-untyped-def]
        if seen(dst_geobox.boundingbox):
            raise OSError("injected: corrupt block in /data/T33UVU_B04.tif?sig=SECRET")
        return real(self, cfg, dst_geobox, **kw)

    monkeypatch.setattr(cube_load._SafeReader, "read", read)
    return seen


def test_one_tile_fails_after_retries_the_others_finish(tile_plan, reference, tmp_path,
                                                        monkeypatch, capsys) -> None:
    p = Plan.load(tile_plan)
    bad = p.tiles[1].code
    counter = _fail_tile(monkeypatch, grid.tile(bad).bounds)
    out = tmp_path / "mosaic.zarr"
    result = run(p, out=str(out), threshold=THRESHOLD, retries=1, zarr_format=2)
    assert not result.complete
    assert result.state.failed == (bad,)
    assert set(result.state.done) == {t.code for t in p.tiles} - {bad}
    assert "injected" in result.state.reasons[bad] and "SECRET" not in result.state.reasons[bad]
    assert counter.calls["bad"] >= 2  # the first attempt and one retry read (and failed)
    # the state file and status agree; no completion marker
    st = status(p, out=str(out))
    assert st.failed == (bad,) and not st.complete and st.left == ()
    doc = json.loads((tmp_path / "mosaic.zarr.cup4soil" / "tiles.json").read_text())
    assert doc["tiles"][bad]["state"] == "failed" and doc["tiles"][bad]["attempts"] == 2
    assert main(["status", str(tile_plan), "--out", str(out)]) == 0
    assert f"{bad}: " in capsys.readouterr().out
    # the mosaic opens (Zarr v2): the failed tile is nodata, the others hold data
    ds = xr.open_zarr(out, zarr_format=2, consolidated=False)
    y0, y1, x0, x1 = _window(ds, bad)
    assert np.isnan(ds.SRC.isel(y=slice(y0, y1), x=slice(x0, x1)).values).all()
    assert int(ds.VPC.max()) > 0
    # fixed (the reader works again): re-running computes only that tile, then completes
    monkeypatch.undo()
    again = run(p, out=str(out), threshold=THRESHOLD, zarr_format=2)
    assert again.complete and again.computed == (bad,)
    assert status(p, out=str(out)).complete
    fixed = xr.open_zarr(out, zarr_format=2, consolidated=False)
    ref = xr.open_zarr(reference, consolidated=False)
    for name in ref.data_vars:
        np.testing.assert_array_equal(fixed[name].values, ref[name].values)


def _window(ds: xr.Dataset, code: str) -> tuple[int, int, int, int]:
    left, bottom, right, top = grid.tile(code).bounds
    xs, ys = ds.x.values, ds.y.values
    cols = np.flatnonzero((xs > left) & (xs < right))
    rows = np.flatnonzero((ys > bottom) & (ys < top))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


class _Stop(Exception):
    pass


def test_kill_and_resume_is_bit_identical(tile_plan, reference, tmp_path) -> None:
    p = Plan.load(tile_plan)
    out = tmp_path / "mosaic.zarr"
    seen: list[str] = []

    def stop_after_two(code: str, state: str, st: object) -> None:
        seen.append(code)
        if len(seen) == 2:
            raise _Stop  # the driver dies here: tiles left unstarted

    with pytest.raises(_Stop):
        run(p, out=str(out), threshold=THRESHOLD, on_tile=stop_after_two)
    st = status(p, out=str(out))
    assert len(st.done) == 2 and not st.complete and len(st.left) == len(p.tiles) - 2
    # a tile half-written by a killed driver: its data there, its manifest not yet
    manifests = sorted((tmp_path / "mosaic.zarr.cup4soil" / "regions").glob("*.json"))
    manifests[0].unlink()
    # the same command again, from the command line: continues and completes
    assert main(["run", str(tile_plan), "--out", str(out), "--threshold", str(THRESHOLD)]) == 0
    st = status(p, out=str(out))
    assert st.complete and len(st.done) == len(p.tiles)
    assert _chunks(out) == _chunks(reference)


def test_mosaic_and_tile_collection_are_read_by_xarray_odc_stac_and_stackstac(
        tile_plan, reference) -> None:
    import odc.stac
    import pystac
    import stackstac

    p = Plan.load(tile_plan)
    ds = xr.open_zarr(reference, consolidated=False, decode_coords="all")
    assert ds.SRC.dims == ("band", "y", "x") and ds.rio.crs.to_epsg() == 3035
    assert float(ds.x[0]) % 20 == 10 and ds.sizes["x"] % 50 == 0  # pixel centres, whole tiles
    coll = pystac.Collection.from_file(collection_path(str(reference)))
    items = list(coll.get_items())
    assert sorted(i.id for i in items) == sorted(t.code for t in p.tiles)
    # as written (pystac's reader migrates proj:epsg away; stackstac 0.5 reads only it)
    raw = [json.loads((Path(collection_path(str(reference))).parent / i.id / f"{i.id}.json")
                      .read_text()) for i in items]
    assert all(d["properties"]["proj:epsg"] == 3035 for d in raw)
    loaded = odc.stac.load(items, bands=["BSC"], crs="EPSG:3035", resolution=20)
    stacked = stackstac.stack(raw, assets=["BSC"], epsg=3035, resolution=20,
                              dtype="float64", fill_value=np.nan, rescale=False)
    whole = ds.BSC.values
    bsc = loaded.BSC.isel(time=0).values
    assert bsc.shape == whole.shape and np.array_equal(bsc, whole)
    # stackstac: one layer per tile item; their max over time is the mosaic
    st = stacked.max("time").squeeze("band").values
    assert st.shape == whole.shape and np.array_equal(np.nan_to_num(st), whole)


def test_run_refuses_a_foreign_folder_and_a_resume_with_another_plan(tile_plan, reference,
                                                                      tmp_path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(NotAProductError):
        run(str(tile_plan), out=str(tmp_path / "other"), threshold=THRESHOLD)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    p = Plan.load(tile_plan)
    from cup4soil.tiling.plan import with_tiles

    fewer = with_tiles(p, [t.code for t in p.tiles[:2]])
    from cup4soil.errors import ParameterError, TilingError

    with pytest.raises(ParameterError, match="different dataset"):
        run(fewer, out=str(reference), threshold=THRESHOLD)
    with pytest.raises(TilingError, match="another plan"):
        status(fewer, out=str(reference))


@pytest.mark.slow
def test_run_on_a_local_cluster_with_two_workers(tile_plan, reference, tmp_path) -> None:
    from cup4soil import cluster

    client = cluster.connect("local", workers=2, threads_per_worker=1)
    try:
        out = tmp_path / "mosaic.zarr"
        result = run(str(tile_plan), out=str(out), client=client, threshold=THRESHOLD,
                     max_tiles_in_flight=2)
    finally:
        cluster.close(client)
    assert result.complete and len(result.computed) == len(Plan.load(tile_plan).tiles)
    assert _chunks(out) == _chunks(reference)


def test_worldcover_reaches_every_tile_and_is_part_of_the_mosaic(small, tile_plan, reference,
                                                                  tmp_path) -> None:
    import cup4soil
    from cup4soil import scmap
    from cup4soil.errors import ParameterError
    from cup4soil.tiling.plan import with_tiles

    p = Plan.load(tile_plan)
    two = with_tiles(p, [t.code for t in p.tiles[:2]])
    out = tmp_path / "wc.zarr"
    assert main(["run", str(tile_plan), "--out", str(out), "--threshold", str(THRESHOLD),
                 "--worldcover", "auto"]) == 0
    ds = xr.open_zarr(out, consolidated=False, decode_coords="all")
    assert ds.attrs["worldcover"] == "auto"
    items = list(cup4soil.search(small.bbox, small.time_range, catalog=small.catalog))
    for t in two.tiles:  # each tile as the composite of its own cube computes it
        ids = set(p.tile_items(t.code))
        cube = cup4soil.load_s2([i for i in items if i.id in ids], geobox=p.tile(t.code).geobox,
                                chunks={"y": p.chunk, "x": p.chunk})
        want = scmap.composite(cube, THRESHOLD, worldcover="auto",
                               worldcover_catalog=small.catalog).compute()
        got = ds.sel(x=want.x, y=want.y).compute()
        assert want.attrs["worldcover"]
        for v in ("BSC", "MASK", "SRC"):
            assert np.array_equal(got[v].values, want[v].values, equal_nan=True), v
    # a resume with another land-cover rule is another product
    with pytest.raises(ParameterError, match="different dataset"):
        run(p, out=str(reference), threshold=THRESHOLD, worldcover="auto")
    with pytest.raises(ParameterError, match="worldcover="):
        run(p, out=str(tmp_path / "x.zarr"), threshold=THRESHOLD, worldcover=3)
