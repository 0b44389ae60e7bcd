"""Search STAC catalogs for Sentinel-2 L2A (and Sentinel-1) items.

One entry point, :func:`search`, for named public catalogs (Planetary Computer with URL
signing, Earth Search, Copernicus Data Space), any STAC API URL, and static catalogs or
ItemCollections on disk or behind a URL (filtered client-side: this is what offline users,
the tests and the demo use).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pystac
import shapely.geometry
from shapely.geometry.base import BaseGeometry

from ..errors import AOIError, BandError, CatalogError, NoItemsError, ParameterError
from . import sentinel2 as _s2meta
from .aoi import AOILike, TimeLike, format_time_range, parse_aoi, parse_time, unwrapped_bounds

if TYPE_CHECKING:
    import pystac_client

__all__ = ["CATALOGS", "CatalogSpec", "search"]

#: Keys cup4soil adds to the ItemCollection it returns, so that later steps know the query.
AOI_KEY = "cup4soil:aoi"
CATALOG_KEY = "cup4soil:catalog"


@dataclass(frozen=True)
class CatalogSpec:
    """A named public STAC API.

    Attributes
    ----------
    url
        Root URL of the STAC API.
    collections
        Default collections, in order of preference when two hold the same scene.
    signer
        Name of the URL signer applied to every item (``"planetary-computer"``) or None.
    cloud_filter
        How the API takes a cloud-cover limit: ``"query"`` (STAC query extension) or
        ``"cql2"`` (filter extension).
    aliases
        Other names the catalog goes by.
    search_method
        HTTP method of the searches. The root documents of these APIs advertise their
        search link without a method (which reads as GET only), yet they answer POST
        searches, as the recorded searches show; other APIs are searched with the method
        their root advertises.
    """

    url: str
    collections: tuple[str, ...]
    signer: str | None = None
    cloud_filter: str = "query"
    aliases: tuple[str, ...] = field(default_factory=tuple)
    search_method: str = "POST"


CATALOGS: dict[str, CatalogSpec] = {
    "planetary-computer": CatalogSpec(
        url="https://planetarycomputer.microsoft.com/api/stac/v1",
        collections=("sentinel-2-l2a",),
        signer="planetary-computer",
        aliases=("pc", "planetary_computer"),
    ),
    "earth-search": CatalogSpec(
        url="https://earth-search.aws.element84.com/v1",
        # Collection 1 (consistent reprocessing) wins ties with the older collection.
        collections=("sentinel-2-c1-l2a", "sentinel-2-l2a"),
        aliases=("earthsearch", "element84"),
    ),
    "cdse": CatalogSpec(
        url="https://stac.dataspace.copernicus.eu/v1",
        collections=("sentinel-2-l2a",),
        cloud_filter="cql2",
        aliases=("copernicus", "copernicus-data-space"),
    ),
}


def _resolve_named(name: str) -> tuple[str, CatalogSpec] | None:
    key = name.strip().lower()
    for canonical, spec in CATALOGS.items():
        if key == canonical or key in spec.aliases:
            return canonical, spec
    return None


def _is_url(text: str) -> bool:
    return urlparse(text).scheme in ("http", "https", "file")


def _is_static(target: str) -> bool:
    if not _is_url(target):
        return True
    parsed = urlparse(target)
    return parsed.scheme == "file" or parsed.path.endswith(".json")


def search(
    aoi: AOILike,
    time: TimeLike,
    *,
    catalog: str | os.PathLike[str] = "planetary-computer",
    collections: Sequence[str] | str | None = None,
    max_cloud_cover: float | None = 80.0,
    limit: int | None = None,
) -> pystac.ItemCollection:
    """Find Sentinel-2 L2A (or other) items over an area and a time span.

    Parameters
    ----------
    aoi
        Area of interest: a lon/lat bbox ``(west, south, east, north)`` in degrees, a
        GeoJSON geometry, Feature or file, a shapely geometry (EPSG:4326), or a built-in name
        such as ``"oderbruch"``.
    time
        ``"2018/2022"``, ``"2018-03-01/2018-10-31"``, or a ``(start, end)`` pair of dates,
        datetimes or years; both ends inclusive, UTC.
    catalog
        ``"planetary-computer"`` (items come back signed), ``"earth-search"``, ``"cdse"``,
        the URL of any STAC API, or a static catalog / collection / ItemCollection JSON
        given as a local path or URL.
    collections
        Collections to search; default: the catalog's Sentinel-2 L2A collection(s).
    max_cloud_cover
        Scene-level cloud cover limit, percent (``eo:cloud_cover <= max_cloud_cover``);
        items without the property are kept. None disables the filter.
    limit
        Maximum number of items to fetch, before duplicates are removed.

    Returns
    -------
    pystac.ItemCollection
        Items sorted by time, one per tile and sensing time (the newest processing
        baseline wins). ``extra_fields["cup4soil:aoi"]`` holds the AOI as GeoJSON, which
        :func:`cup4soil.load_s2` uses as its default extent.
    """
    geom = parse_aoi(aoi)
    start, end = parse_time(time)
    max_cloud_cover = _check_cloud_cover(max_cloud_cover)
    limit = _check_limit(limit)
    if isinstance(collections, str):
        collections = [collections]
    if collections is not None and (not all(isinstance(c, str) and c for c in collections)
                                    or not collections):
        raise ParameterError(f"collections={collections!r} must be collection names "
                             "(strings), or None for the catalog's Sentinel-2 L2A.")

    target = os.fspath(catalog)
    named = _resolve_named(target)
    if named is not None:
        label, spec = named
        items = _search_api(
            spec.url, geom, start, end,
            collections=tuple(collections or spec.collections),
            max_cloud_cover=max_cloud_cover, limit=limit,
            signer=spec.signer, cloud_filter=spec.cloud_filter, method=spec.search_method,
        )
        priority: Sequence[str] = tuple(collections or spec.collections)
    elif _is_url(target) and not _is_static(target):
        label, priority = target, tuple(collections or ())
        items = _search_api(
            target, geom, start, end, collections=tuple(collections or ()),
            max_cloud_cover=max_cloud_cover, limit=limit, signer=None, cloud_filter="query",
            method=None,
        )
    elif _is_url(target) or Path(target).expanduser().exists():
        label, priority = target, tuple(collections or ())
        items = _search_static(
            target, geom, start, end, collections=collections,
            max_cloud_cover=max_cloud_cover, limit=limit,
        )
    else:
        raise CatalogError(
            f"unknown catalog {target!r}. Use one of {', '.join(CATALOGS)}, the URL of a STAC "
            "API, or the path/URL of a static catalog.json or ItemCollection."
        )

    # Re-check on the client: some APIs ignore the query extension or extra collections.
    items = _filter(
        items, geom, start, end, collections=priority or None, max_cloud_cover=max_cloud_cover
    )
    items = _s2meta.deduplicate(items, collection_priority=priority)
    if not items:
        raise NoItemsError(
            f"the search of {label} found no items over {_fmt_bounds(geom)} between "
            f"{start:%Y-%m-%d} and {end:%Y-%m-%d}"
            + (f" with cloud cover <= {max_cloud_cover} %" if max_cloud_cover is not None else "")
            + ". Widen the time range, raise max_cloud_cover, or check the collections."
        )
    items.sort(key=lambda it: (_item_time(it)[0], it.id))
    result = pystac.ItemCollection(items, clone_items=False)
    result.extra_fields[AOI_KEY] = shapely.geometry.mapping(geom)
    result.extra_fields[CATALOG_KEY] = label
    return result


def _check_cloud_cover(value: object) -> float | None:
    if value is None:
        return None
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(value, bool) or not 0 <= v <= 100:
        raise ParameterError(
            f"max_cloud_cover={value!r} is not a percentage. Give a value in [0, 100] "
            "or None to disable the filter."
        )
    return v


def _check_limit(value: object) -> int | None:
    if value is None:
        return None
    number = float(value) if isinstance(value, int | float) and not isinstance(
        value, bool) else math.nan
    if not math.isfinite(number) or number != int(number) or number < 1:
        raise ParameterError(f"limit={value!r} must be a positive whole number of items, or "
                             "None.")
    return int(number)


def _fmt_bounds(geom: BaseGeometry) -> str:
    w, s, e, n = unwrapped_bounds(geom)  # west > east across the antimeridian
    return f"lon {w:.4f}..{e:.4f}, lat {s:.4f}..{n:.4f}"


def _failure(exc: BaseException) -> str:
    """What went wrong reaching a catalog, in a few words, from a dependency's exception
    and those it was raised from (urllib3, requests, pystac, pystac-client)."""
    chain: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in chain:
        chain.append(node)
        node = node.__cause__ or node.__context__
    text = " | ".join(f"{type(e).__name__}: {e}" for e in chain)
    if any(isinstance(e, json.JSONDecodeError) for e in chain) or "JSONDecodeError" in text:
        return ("the answer is not JSON (a web page or another file?), so this is not a STAC "
                "catalog or API")
    for e in chain:
        code = getattr(e, "status_code", None) or getattr(e, "code", None) or getattr(
            getattr(e, "response", None), "status_code", None)
        if isinstance(code, int) and 400 <= code <= 599:
            what = {401: "it needs credentials", 403: "access is forbidden",
                    404: "nothing is there"}.get(code, "the server failed" if code >= 500
                                                 else "the request was refused")
            return f"HTTP {code}: {what}"
    if re.search(r"refused", text, re.IGNORECASE):
        return "the connection was refused (no server at that address)"
    if re.search(r"Name or service not known|nodename nor servname|getaddrinfo|"
                 r"Failed to resolve|Temporary failure in name resolution", text, re.IGNORECASE):
        return "the host name does not resolve"
    if re.search(r"timed out|timeout", text, re.IGNORECASE):
        return "the connection timed out"
    if re.search(r"Max retries exceeded|NewConnectionError|ConnectionError|URLError", text):
        return "the server cannot be reached"
    if any(isinstance(e, FileNotFoundError) for e in chain):
        return "no such file"
    first = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return first[:200]


# ---------------------------------------------------------------------------------- STAC APIs


def _signer(name: str | None) -> Callable[[Any], Any] | None:
    if name == "planetary-computer":
        import planetary_computer

        sign: Callable[[Any], Any] = planetary_computer.sign_inplace
        return sign
    return None


def _search_api(
    url: str,
    geom: BaseGeometry,
    start: dt.datetime,
    end: dt.datetime,
    *,
    collections: tuple[str, ...],
    max_cloud_cover: float | None,
    limit: int | None,
    signer: str | None,
    cloud_filter: str,
    method: str | None,
) -> list[pystac.Item]:
    """Search a STAC API; ``method`` None: the HTTP method its root advertises."""
    import pystac_client
    import requests
    from pystac_client.warnings import PystacClientWarning

    try:
        client = pystac_client.Client.open(url, modifier=_signer(signer))
        kwargs = _cloud_filter(client, collections, max_cloud_cover, cloud_filter)
        with warnings.catch_warnings():
            if method is not None:
                # A catalog known to take `method` although its root does not say so.
                warnings.filterwarnings("ignore", "The requested method", PystacClientWarning)
            found = client.search(
                collections=list(collections) or None,
                intersects=shapely.geometry.mapping(geom),
                datetime=format_time_range(start, end),
                max_items=limit,
                method=method or _advertised_method(client),
                **kwargs,
            )
        items = list(found.items())
    except (requests.RequestException, pystac_client.exceptions.APIError, OSError,
            ValueError, KeyError, TypeError, pystac.STACError) as exc:
        # ValueError: an answer that is not JSON (JSONDecodeError) or not STAC.
        raise CatalogError(
            f"the STAC API at {url} could not be searched: {_failure(exc)}. Check the URL "
            "(the root of a STAC API, e.g. https://earth-search.aws.element84.com/v1) and "
            "your network connection, or use a static catalog (catalog.json) offline."
        ) from None
    if not items:
        _check_api_coverage(client, collections, geom, url)
    return items


def _advertised_method(client: pystac_client.Client) -> str:
    """POST where the root's search links offer it (or name no method), else GET."""
    methods = {
        str(link.extra_fields.get("method") or "GET") for link in client.get_links("search")
        if link.media_type in (pystac.MediaType.GEOJSON, pystac.MediaType.JSON)
    }
    return "GET" if methods and "POST" not in methods else "POST"


def _cloud_filter(
    client: pystac_client.Client,
    collections: tuple[str, ...],
    max_cloud_cover: float | None,
    prefer: str,
) -> dict[str, Any]:
    """Server-side cloud filter in the dialect the API declares (the client re-checks)."""
    from pystac_client.conformance import ConformanceClasses

    optical = collections and all("sentinel-2" in c or "s2" in c.lower() for c in collections)
    if max_cloud_cover is None or not optical:  # radar items have no eo:cloud_cover
        return {}
    cql2 = {"filter": {"op": "<=", "args": [{"property": "eo:cloud_cover"},
                                            float(max_cloud_cover)]},
            "filter_lang": "cql2-json"}
    query = {"query": {"eo:cloud_cover": {"lte": float(max_cloud_cover)}}}
    has_filter = client.conforms_to(ConformanceClasses.FILTER)
    has_query = client.conforms_to(ConformanceClasses.QUERY)
    if has_filter and (prefer == "cql2" or not has_query):
        return cql2
    return query if has_query else {}


def _check_api_coverage(
    client: pystac_client.Client, collections: tuple[str, ...], geom: BaseGeometry, url: str
) -> None:
    """Raise AOIError if the AOI lies outside every searched collection's spatial extent."""
    boxes: list[BaseGeometry] = []
    for name in collections:
        try:
            coll = client.get_collection(name)
            if coll is None:
                return
            boxes += [shapely.geometry.box(*b) for b in coll.extent.spatial.bboxes]
        except Exception:  # coverage is a courtesy check; no answer means no verdict
            return
    if boxes and not shapely.union_all(boxes).intersects(geom):
        raise AOIError(
            f"the AOI ({_fmt_bounds(geom)}) lies outside the coverage of {url} "
            f"({', '.join(collections)}). Check the AOI's coordinates (lon/lat order?)."
        )


# ------------------------------------------------------------------------------ static catalogs


def _read_json(href: str) -> Any:
    try:
        return json.loads(pystac.StacIO.default().read_text(href))
    except Exception as exc:  # pystac raises bare Exception, urllib3 MaxRetryError, ...
        raise CatalogError(
            f"could not read a STAC document at {href}: {_failure(exc)}. Give the path or URL "
            "of a catalog.json, collection.json or ItemCollection (and check that its server "
            "is reachable)."
        ) from None


def _static_items(target: str) -> list[pystac.Item]:
    href = target
    if not _is_url(target):
        path = Path(target).expanduser().resolve()
        if path.is_dir():
            for name in ("catalog.json", "collection.json"):
                if (path / name).is_file():
                    path = path / name
                    break
            else:
                raise CatalogError(
                    f"the folder {path} holds no catalog.json or collection.json. Point "
                    "catalog= at a STAC catalog file."
                )
        href = str(path)
    doc = _read_json(href)
    if isinstance(doc, list):
        # A plain JSON list of items (how stac-geoparquet and some exports write them).
        doc = {"type": "FeatureCollection", "features": doc}
    if not isinstance(doc, dict):
        raise CatalogError(
            f"{href} holds JSON, but not a STAC document (a JSON {type(doc).__name__}). Give "
            "the path or URL of a catalog.json, collection.json or ItemCollection.")
    kind = doc.get("type")
    if kind == "FeatureCollection":
        try:
            collection = pystac.ItemCollection.from_dict(doc, preserve_dict=False)
            items = list(collection.items)
        except Exception as exc:  # malformed features: pystac's KeyError, STACTypeError ...
            raise CatalogError(
                f"the ItemCollection at {href} has features that are not STAC items "
                f"({type(exc).__name__}: {str(exc)[:200]}). Check the file.") from None
        for it in items:
            # Relative asset hrefs are relative to the ItemCollection file.
            for asset in it.assets.values():
                if not _is_url(asset.href) and not os.path.isabs(asset.href):
                    asset.href = pystac.utils.make_absolute_href(asset.href, href)
        return items
    if kind == "Feature":
        try:
            item = pystac.Item.from_dict(doc)
        except Exception as exc:
            raise CatalogError(f"the Feature at {href} is not a STAC item ({type(exc).__name__}"
                               f": {str(exc)[:200]}). Check the file.") from None
        item.set_self_href(href)
        item.make_asset_hrefs_absolute()
        return [item]
    if kind in ("Catalog", "Collection"):
        try:
            root = pystac.read_file(href)
            # A Collection is a Catalog; "type" said it is one of the two.
            items = list(root.get_items(recursive=True)) if isinstance(root, pystac.Catalog) \
                else []
        except Exception as exc:
            raise CatalogError(
                f"could not walk the static catalog at {href}: a linked document failed "
                f"({_failure(exc)}). Check that every child and item link of the catalog "
                "resolves (relative links need the catalog's own folder or URL)."
            ) from None
        for it in items:
            it.make_asset_hrefs_absolute()
        return items
    what = f"a {kind!r} document" if kind else "a JSON document without a STAC 'type'"
    raise CatalogError(
        f"{href} is {what}, not a STAC Catalog, Collection or ItemCollection. Give the path "
        "or URL of a catalog.json, collection.json or ItemCollection."
    )


def _item_time(item: pystac.Item) -> tuple[dt.datetime, dt.datetime]:
    cm = item.common_metadata
    start = item.datetime or cm.start_datetime
    end = item.datetime or cm.end_datetime or start
    if start is None or end is None:
        raise CatalogError(f"item {item.id!r} has no datetime; it is not a valid STAC item.")
    return start, end


def _filter(
    items: Sequence[pystac.Item],
    geom: BaseGeometry,
    start: dt.datetime,
    end: dt.datetime,
    *,
    collections: Sequence[str] | None,
    max_cloud_cover: float | None,
) -> list[pystac.Item]:
    out = []
    for it in items:
        t0, t1 = _item_time(it)
        if t1 < start or t0 > end:
            continue
        if collections and it.collection_id not in collections:
            continue
        cc = it.properties.get("eo:cloud_cover")
        if max_cloud_cover is not None and cc is not None and float(cc) > max_cloud_cover:
            continue
        footprint = shapely.geometry.shape(it.geometry) if it.geometry else (
            shapely.geometry.box(*it.bbox) if it.bbox else None
        )
        if footprint is not None and not footprint.intersects(geom):
            continue
        out.append(it)
    return out


def _sentinel2_if_mixed(items: list[pystac.Item]) -> list[pystac.Item]:
    """The Sentinel-2 L2A items of a static catalog that also holds other collections
    (Sentinel-1, a DEM, land cover: the sample archive), as ``collections=None`` means the
    catalog's Sentinel-2 L2A; a catalog of one kind is returned whole."""
    def is_s2(item: pystac.Item) -> bool:
        try:
            _s2meta.asset_key(item, "B04")
        except BandError:
            return False
        return True

    flags = [is_s2(it) for it in items]
    if all(flags) or not any(flags):
        return items
    return [it for it, s2 in zip(items, flags, strict=True) if s2]


def _search_static(
    target: str,
    geom: BaseGeometry,
    start: dt.datetime,
    end: dt.datetime,
    *,
    collections: Sequence[str] | None,
    max_cloud_cover: float | None,
    limit: int | None,
) -> list[pystac.Item]:
    items = _static_items(target)
    boxes = [shapely.geometry.box(*it.bbox) for it in items if it.bbox]
    if boxes and not shapely.union_all(boxes).intersects(geom):
        cover = shapely.union_all(boxes)
        raise AOIError(
            f"the AOI ({_fmt_bounds(geom)}) lies outside the coverage of the catalog at "
            f"{target} ({_fmt_bounds(cover)}). Choose an AOI inside it."
        )
    if collections is None:
        items = _sentinel2_if_mixed(items)
    found = _filter(
        items, geom, start, end, collections=collections, max_cloud_cover=max_cloud_cover
    )
    return found[:limit] if limit else found
