"""The EEA reference grid: cell codes both ways, GeoBoxes, covers of AOIs and countries."""

from __future__ import annotations

import json

import pytest
import shapely
from odc.geo.geobox import GeoBox

import cup4soil
from cup4soil.errors import AOIError, ParameterError, TileCodeError
from cup4soil.tiling import grid


def test_short_and_long_codes_name_the_lower_left_corner() -> None:
    t = grid.tile("10kmE432N321")
    assert t.long_code == "CRS3035RES10000mN3210000E4320000"
    assert t.bounds == (4_320_000, 3_210_000, 4_330_000, 3_220_000)
    # 20 m pixels, north up: the top-left corner is (4 320 000, 3 220 000)
    assert t.geobox.shape.yx == (500, 500)
    assert tuple(t.geobox.affine)[:6] == (20.0, 0.0, 4_320_000.0, 0.0, -20.0, 3_220_000.0)
    assert t.geobox.crs.epsg == 3035
    assert grid.tile("CRS3035RES10000mN3210000E4320000") == t
    assert grid.parse_code("100kmE43N32") == (100_000, 43, 32)
    assert grid.parse_code("1kmE4321N3210") == (1_000, 4321, 3210)
    assert grid.tile("1kmE4321N3210").long_code == "CRS3035RES1000mN3210000E4321000"
    assert grid.tile("100kmE43N32", resolution=100).geobox.shape.yx == (1000, 1000)


def test_tile_indices_are_gridspec_indices() -> None:
    """odc-geo's GridSpec with origin (0, 0), flipy=False: index (ix, iy) = (E, N)."""
    gs = grid.grid_spec("10km", resolution=20)
    assert gs.tile_geobox((432, 321)) == grid.tile("10kmE432N321").geobox
    assert gs.pt2idx(4_325_000.0, 3_215_000.0).xy == (432, 321)


@pytest.mark.parametrize("code", [
    "10kmE432", "5kmE1N1", "E432N321", "10kmE-1N3", "CRS3035RES10000mN3210001E4320000",
    "CRS3035RES5000mN3210000E4320000", "10kmE432N1000",
])
def test_bad_codes_are_refused(code: str) -> None:
    with pytest.raises(TileCodeError, match=r"cell|multiple|size|outside"):
        grid.parse_code(code)


def test_resolution_must_divide_the_tile() -> None:
    with pytest.raises(ParameterError, match="does not divide"):
        grid.tiles((14.34, 52.61, 14.36, 52.63), size="1km", resolution=30)
    with pytest.raises(ParameterError, match="positive"):
        grid.tile("10kmE432N321", resolution=-20)
    with pytest.raises(ParameterError, match="cell size"):
        grid.tiles((14.34, 52.61, 14.36, 52.63), size="5km")


def test_hand_computed_cells_near_the_sample_area() -> None:
    # pyproj: Transformer.from_crs(4326, 3035, always_xy=True).transform(14.35, 52.62)
    #   = (4615409.09, 3287795.95) -> 1kmE4615N3287, 10kmE461N328, 100kmE46N32
    point = {"type": "Point", "coordinates": [14.35, 52.62]}
    area = shapely.geometry.shape(point).buffer(1e-4)
    assert [t.code for t in cup4soil.tiles(area, size="1km")] == ["1kmE4615N3287"]
    assert [t.code for t in cup4soil.tiles(area, size="10km")] == ["10kmE461N328"]
    assert [t.code for t in cup4soil.tiles(area, size="100km")] == ["100kmE46N32"]


def test_a_tile_straddling_the_utm_32_33_boundary() -> None:
    # The UTM 32/33 boundary is the meridian 12 E. pyproj, EPSG:4326 -> EPSG:3035:
    #   (11.99, 51.0) -> (4460676.2, 3100642.7)   zone 32
    #   (12.00, 51.0) -> (4461377.9, 3100661.9)
    #   (12.01, 51.0) -> (4462079.5, 3100681.1)   zone 33
    # all inside 10kmE446N310 (x 4 460 000 .. 4 470 000, y 3 100 000 .. 3 110 000)
    ts = cup4soil.tiles((11.995, 50.999, 12.005, 51.001), size="10km")
    assert [t.code for t in ts] == ["10kmE446N310"]
    assert ts[0].long_code == "CRS3035RES10000mN3100000E4460000"


def test_cover_is_row_by_row_and_excludes_edge_touching_cells() -> None:
    ts = grid.tiles((14.34, 52.61, 14.36, 52.63), size="1km")
    codes = [t.code for t in ts]
    assert len(codes) == 9 and codes[0] == "1kmE4614N3286" and codes[-1] == "1kmE4616N3288"
    ns = [t.index[1] for t in ts]
    assert ns == sorted(ns)
    # an AOI exactly one cell in EPSG:3035: only that cell, not its neighbours
    geom = grid._in_3035(shapely.box(14.3, 52.6, 14.4, 52.7))
    cell = shapely.box(4_615_000, 3_287_000, 4_616_000, 3_288_000)
    assert list(grid.cover(cell, 1000)) == [(4615, 3287)]
    assert geom.area > 0


def test_countries_geojson_and_files(tmp_path) -> None:
    lu = grid.tiles("LU", size="10km")
    assert lu == grid.tiles("Luxembourg", size="10km") == grid.tiles("lux", size="10km")
    assert lu == grid.tiles(grid.country_bbox("LU"), size="10km")
    assert 15 < len(lu) < 80  # 0.8 x 0.75 degrees: about 57 x 83 km
    assert len(grid.countries()) == 27
    eu = grid.tiles("EU27", size="100km")
    assert {t.code for t in grid.tiles("DE", size="100km")} <= {t.code for t in eu}
    feature = {"type": "Feature", "properties": {},
               "geometry": shapely.geometry.mapping(shapely.box(14.34, 52.61, 14.36, 52.63))}
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps(feature))
    by_file = grid.tiles(str(path), size="1km")
    assert by_file == grid.tiles(feature, size="1km") == grid.tiles(
        (14.34, 52.61, 14.36, 52.63), size="1km")
    assert all(isinstance(t.geobox, GeoBox) for t in by_file)
    with pytest.raises(AOIError, match="EU27 countries"):
        grid.tiles("Atlantis")
    with pytest.raises(AOIError, match="larger tile size"):
        grid.tiles("EU27", size="1km")
    with pytest.raises(AOIError, match="LAEA Europe"):
        grid.tiles((-179, -60, -170, -50))
