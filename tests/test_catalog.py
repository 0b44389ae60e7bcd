"""search() against recorded real STAC API responses, static catalogs and a loopback server."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import vcr
import yaml

import cup4soil
from cup4soil.errors import AOIError, CatalogError, NoItemsError, ParameterError, TimeRangeError
from cup4soil.sources import sentinel2 as _s2meta

PC_SEARCH = "https://planetarycomputer.microsoft.com/api/stac/v1"
FAKE_SAS = "st=2026-11-26T00%3A00%3A00Z&se=2099-01-01T00%3A00%3A00Z&sp=rl&sig=SECRETSIGNATURE"


def _interaction(method: str, uri: str, body: dict, status: int = 200) -> dict:
    return {
        "request": {"body": None, "headers": {}, "method": method, "uri": uri},
        "response": {
            "body": {"string": json.dumps(body)},
            "headers": {"Content-Type": ["application/json"]},
            "status": {"code": status, "message": "OK"},
        },
    }


def _next_token(request) -> str | None:
    if not request.body:
        return None
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    try:
        return json.loads(body).get("next")
    except ValueError:
        return None


def _replayer(cassette_dir: Path, sent: list | None = None) -> vcr.VCR:
    """Replays recorded interactions; requests actually made are appended to ``sent``."""

    def capture(request):
        if sent is not None:
            sent.append(request)
        return request

    rec = vcr.VCR(
        cassette_library_dir=str(cassette_dir), record_mode="none",
        match_on=["method", "uri", "next_token"], before_record_request=capture,
    )
    rec.register_matcher("next_token", lambda r1, r2: _next_token(r1) == _next_token(r2))
    return rec


@pytest.fixture
def pc_cassette(shared_data, tmp_path):
    """The recorded Planetary Computer search, plus its recorded root document and a
    token-endpoint answer (the one part not recorded: its token is fake)."""
    cas = shared_data / "stac/pystac-client-cassettes"
    doc = yaml.safe_load((cas / "TestItemSearch.test_datetime_results.yaml").read_text())
    root = json.loads((cas / "planetary-computer-root.json").read_text())
    doc["interactions"][:0] = [
        _interaction("GET", PC_SEARCH, root),
        _interaction("GET", "https://planetarycomputer.microsoft.com/api/sas/v1/token/"
                     "sentinel2l2a01/sentinel2-l2",
                     {"msft:expiry": "2099-01-01T00:00:00Z", "token": FAKE_SAS}),
    ]
    (tmp_path / "pc.yaml").write_text(yaml.safe_dump(doc))
    return tmp_path


def test_planetary_computer_search_replayed_and_signed(pc_cassette, shared_data):
    import planetary_computer.sas

    planetary_computer.sas.TOKEN_CACHE.clear()
    raw = json.loads((shared_data / "stac/extracted/pc_sentinel-2-l2a_2019-01-01_items.json")
                     .read_text())["features"]
    expected = sorted(f["id"] for f in raw if f["properties"]["eo:cloud_cover"] <= 80)
    with _replayer(pc_cassette).use_cassette("pc.yaml", allow_playback_repeats=True) as cassette:
        items = cup4soil.search((150, 50, 180, 70), "2019-01-01/2019-01-01",
                                catalog="planetary-computer")
        assert cassette.play_count >= 3  # root, search, token: nothing went elsewhere
    assert sorted(it.id for it in items) == expected
    assert 0 < len(items) < len(raw)  # the 93 % cloudy scenes are gone
    for it in items:
        href = it.assets["B02"].href
        assert href.endswith("?" + FAKE_SAS)  # signed through planetary_computer
        assert _s2meta.dn_offset(it, "B02") == 0  # baseline 02.12
    times = [it.datetime for it in items]
    assert times == sorted(times)
    assert items.extra_fields["cup4soil:catalog"] == "planetary-computer"


def test_earth_search_replayed_with_paging_and_deduplication(shared_data):
    cas = shared_data / "stac/pystac-client-cassettes"
    raw = json.loads((shared_data / "stac/extracted/earthsearch_v1_mixed_filter_items.json")
                     .read_text())["features"]
    l2a = [f for f in raw if f["collection"] in ("sentinel-2-l2a", "sentinel-2-c1-l2a")]
    scenes = {(f["properties"]["grid:code"], f["properties"]["datetime"][:19]) for f in l2a}
    requests: list = []
    with _replayer(cas, requests).use_cassette("TestCLISearch.test_filter[inprocess].yaml",
                                               allow_playback_repeats=True):
        items = cup4soil.search((-180, -90, 180, 90), "2025-07-31", catalog="earth-search",
                                limit=20)
    # vcr also passes the cassette's own recorded requests through the hook; ours intersect.
    bodies = [json.loads(r.body) for r in requests if r.method == "POST" and r.body]
    sent = next(b for b in bodies if "intersects" in b)
    # This Earth Search root declares the query extension (not filter): the limit goes so.
    assert sent["query"] == {"eo:cloud_cover": {"lte": 80.0}} and "filter" not in sent
    assert sent["collections"] == ["sentinel-2-c1-l2a", "sentinel-2-l2a"]
    assert len(items) == len(scenes) < len(l2a)
    assert {it.collection_id for it in items} == {"sentinel-2-c1-l2a"}  # wins the tie
    for it in items:
        assert _s2meta.asset_key(it, "B8A") == "nir08"
        assert _s2meta.dn_offset(it, "B04") == -1000  # baseline 05.11, raster offset -0.1


def test_static_catalog_search(sample):
    items = cup4soil.search(sample.bbox, sample.time_range, catalog=sample.catalog)
    truth = sample.truth()["scenes"]
    assert len(items) < sample.n_items  # duplicate delivery and cloudy scenes removed
    assert all(it.properties["eo:cloud_cover"] <= 80 for it in items)
    ids = {it.id for it in items}
    dup = [s for s in truth if "_T33UVU_2023" in s["id"]]  # the reprocessed 05.00 delivery
    assert dup and dup[0]["id"] in ids
    assert Path(items[0].assets["B02"].href).is_file()  # hrefs made absolute
    few = cup4soil.search(sample.bbox, "2019", catalog=sample.root, max_cloud_cover=10)
    assert all(it.datetime.year == 2019 and it.properties["eo:cloud_cover"] <= 10 for it in few)
    assert len(cup4soil.search(sample.bbox, "2018/2022", catalog=sample.catalog, limit=3)) == 3


def test_static_catalog_over_http(sample, serve_dir):
    base = serve_dir(sample.root)
    items = cup4soil.search(sample.bbox, "2020", catalog=f"{base}/catalog.json")
    local = cup4soil.search(sample.bbox, "2020", catalog=sample.catalog)
    assert [it.id for it in items] == [it.id for it in local]
    assert items[0].assets["SCL"].href.startswith(base)
    # Pixels come over HTTP too, through GDAL.
    cube = cup4soil.load_s2(items[:2], bands=["B04"], resolution=20.0)
    ref = cup4soil.load_s2(local[:2], bands=["B04"], resolution=20.0)
    assert (cube.B04.values == ref.B04.values).all() and cube.B04.values.any()


def test_item_collection_file(sample, tmp_path):
    items = cup4soil.search(sample.bbox, "2021", catalog=sample.catalog)
    path = tmp_path / "items.json"
    items.save_object(dest_href=str(path))
    again = cup4soil.search(sample.bbox, "2021", catalog=str(path))
    assert [it.id for it in again] == [it.id for it in items]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"catalog": "google-earth-engine"}, CatalogError, "unknown catalog"),
        ({"aoi": (10.0, 40.0, 10.1, 40.1)}, AOIError, "outside the coverage"),
        ({"time": "2010/2011"}, NoItemsError, "found no items"),
        ({"time": "2022/2018"}, TimeRangeError, "reversed"),
        ({"aoi": "not-a-place"}, AOIError, "neither a built-in name"),
        ({"max_cloud_cover": 120}, ParameterError, "not a percentage"),
    ],
)
def test_bad_search_input(sample, kwargs, error, message):
    args = {"aoi": sample.bbox, "time": "2018/2022", "catalog": sample.catalog} | kwargs
    with pytest.raises(error, match=message):
        cup4soil.search(args.pop("aoi"), args.pop("time"), **args)


def test_unreachable_api_is_a_catalog_error():
    with pytest.raises(CatalogError, match="could not be searched"):
        cup4soil.search("oderbruch", "2020", catalog="http://127.0.0.1:9/stac/v1")


def test_missing_static_folder(tmp_path):
    with pytest.raises(CatalogError, match=r"no catalog\.json"):
        cup4soil.search("oderbruch", "2020", catalog=tmp_path)


def test_sample_datetimes_are_utc(sample):
    items = cup4soil.search(sample.bbox, "2018", catalog=sample.catalog)
    assert all(it.datetime.tzinfo is not None and it.datetime.utcoffset() == dt.timedelta(0)
               for it in items)


def test_sentinel1_items_from_a_static_item_collection(shared_data, tmp_path):
    feats = json.loads((shared_data / "stac/stac-geoparquet-tests/sentinel-1-rtc-pc.json")
                       .read_text())
    path = tmp_path / "s1.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    w = min(f["bbox"][0] for f in feats)
    s = min(f["bbox"][1] for f in feats)
    items = cup4soil.search((w, s, w + 0.5, s + 0.5), "2024-04-19", catalog=str(path),
                            collections=["sentinel-1-rtc"])
    # No eo:cloud_cover on radar items: the cloud filter keeps them; no tile to deduplicate.
    assert 1 <= len(items) <= len(feats)
    assert {it.collection_id for it in items} == {"sentinel-1-rtc"}
    assert {"vv", "vh"} <= set(items[0].assets)


def test_api_advertising_get_only_is_searched_with_get(sample, serve_dir, tmp_path):
    """A loopback STAC API whose root offers GET searches only: the loopback server answers
    POST with 501, so the search succeeds only with GET, and pystac-client has no warning."""
    import warnings

    local = cup4soil.search(sample.bbox, "2020", catalog=sample.catalog)
    base = serve_dir(tmp_path)
    (tmp_path / "api" / "search").mkdir(parents=True)
    root = {
        "type": "Catalog", "id": "loopback", "stac_version": "1.0.0", "description": "GET only",
        "conformsTo": ["https://api.stacspec.org/v1.0.0/core",
                       "https://api.stacspec.org/v1.0.0/item-search"],
        "links": [{"rel": "self", "href": f"{base}/api/"},
                  {"rel": "root", "href": f"{base}/api/"},
                  {"rel": "search", "href": f"{base}/api/search/", "method": "GET",
                   "type": "application/geo+json"}],
    }
    # The server ignores the query string: every search answers with the same page.
    (tmp_path / "api" / "index.html").write_text(json.dumps(root))
    (tmp_path / "api" / "search" / "index.html").write_text(
        json.dumps(local.to_dict(transform_hrefs=False)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        items = cup4soil.search(sample.bbox, "2020", catalog=f"{base}/api/")
    assert [it.id for it in items] == [it.id for it in local]


def test_sample_scenes_draw_from_their_own_streams(tmp_path):
    """One random stream per concern: an archive that starts a year later has the same
    fields, and the same 2020 dates and clouds, as one that starts in 2018."""
    from cup4soil.sample import make_catalog

    def scenes(first: int) -> tuple[dict, list]:
        cat = make_catalog(tmp_path / str(first), size=20, years=(first, 2020),
                           scenes_per_year=3, seed=5)
        truth = cat.truth()
        return truth["field_class"], [(s["datetime"], s["cloud_cover"]) for s in truth["scenes"]
                                      if s["datetime"].startswith("2020")]

    fields_a, late_a = scenes(2018)
    fields_b, late_b = scenes(2019)
    assert fields_a == fields_b
    assert len(late_a) >= 3 and late_a == late_b
