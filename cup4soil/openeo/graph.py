"""SCMaP as an openEO process graph, built offline with the openEO Python client.

:func:`scmap_graph` writes the composite of :func:`cup4soil.scmap.composite` as a process
graph for the Copernicus Data Space Ecosystem (CDSE): its collection ``SENTINEL2_L2A``
with CDSE's band names (``B02`` ... ``B12``, ``SCL``, ``sunZenithAngles``), DLR's threshold
through ``load_stac`` and ESA WorldCover as ``ESA_WORLDCOVER_10M_2021_V2``. It follows DLR's
published user-defined process (ESA-APEx ``algorithm_catalog/dlr/scmap``) node for node
where that graph is right, and differs where it is not (``DIFFERENCES``, also in
``docs/openeo.md``):

* MASK class 2 is "valid observations exist and none had PVIR2 < threshold"; DLR's graph
  computes ``round(not(any(PVIR2 < T))) + 2``, never zero, so every pixel that is neither
  1 nor 3 becomes 2.
* Only the products asked for are in the graph (DLR's ``compute_mref``/``compute_mask``
  flags are declared but never used: a Python ``if`` on a ``Parameter`` is always true).
* SCL and the sun zenith are resampled by nearest neighbour, never averaged.
* An observation with any band missing (null or 0) is invalid, as in cup4soil's engine;
  DLR's graph counts VPC from B02 alone and averages each band over what it has.
* A null threshold is never bare; the cloud buffer is given in metres.
* Extra products SRC_CI95; band labels ``SRC_STD_B02``/``MREF_STD_B02`` (DLR:
  ``SRC-STD_B02``/``MREF-STD_B02``) as :func:`cup4soil.scmap.to_soilsuite` names them.

The graph is concrete (extent, time and parameters are values), a JSON-ready dict in
openEO's "process graph with metadata" form, ``{"process_graph": {...}, ...}``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParameterError, ProcessGraphError
from ..scmap import PRODUCTS
from ..sources import AOILike, TimeLike, parse_aoi, parse_time
from ..sources.sentinel2 import REFLECTANCE_BANDS, SCL
from ._deps import require

__all__ = [
    "BAND_PRODUCTS", "CDSE_S2_COLLECTION", "CDSE_WORLDCOVER_COLLECTION", "DIFFERENCES",
    "DLR_THRESHOLD_BAND", "DLR_THRESHOLD_STAC", "SUN_ZENITH_BAND", "WORLDCOVER_BAND",
    "GraphInputs", "bbox_extent", "bind_parameters", "graph_inputs", "load_graph",
    "output_labels", "parameter_values", "scmap_graph", "time_extent",
]

#: CDSE's Sentinel-2 L2A collection (its ``load_collection`` applies the 04.00 offset).
CDSE_S2_COLLECTION = "SENTINEL2_L2A"
#: CDSE's per-pixel sun zenith band of that collection, degrees.
SUN_ZENITH_BAND = "sunZenithAngles"
#: CDSE's ESA WorldCover 2021 collection and its band.
CDSE_WORLDCOVER_COLLECTION = "ESA_WORLDCOVER_10M_2021_V2"
WORLDCOVER_BAND = "MAP"
#: DLR's threshold raster as openEO back-ends load it (a y-flipped copy without time).
DLR_THRESHOLD_STAC = (
    "https://raw.githubusercontent.com/Schiggebam/dlr_scmap_resources/refs/heads/main/"
    "th_S2_s2cr_buffered_stac_yflip_no_t.json"
)
DLR_THRESHOLD_BAND = "S2_s2cr_pvir2_threshold_img"
#: Products with one value per reflectance band (labels ``<product>_<band>``).
BAND_PRODUCTS: tuple[str, ...] = ("SRC", "SRC_STD", "SRC_CI95", "MREF", "MREF_STD")
_BARE_PRODUCTS = {"SRC", "SRC_STD", "SRC_CI95", "BSC", "BSF", "MASK"}
# SCMaP's class codes (docs/scmap.md), stated here as the graph states them: the SCMaP
# engine's own modules are private to cup4soil.scmap; the equivalence tests
# (tests/test_openeo_local.py) keep both in step.
#: Sen2Cor SCL classes that are never a valid observation.
INVALID_SCL: tuple[int, ...] = (0, 1, 2, 3, 7, 8, 9, 10, 11)
#: SCL classes dilated by the cloud buffer: shadow, medium and high cloud, cirrus.
CLOUD_SCL: tuple[int, ...] = (3, 8, 9, 10)
#: WorldCover classes never bare (built-up, permanent water), and those of MASK 3.
WC_NOT_BARE: tuple[int, ...] = (50, 80)
WC_OTHER: tuple[int, ...] = (0, 50, 70, 80, 90, 95)
#: Consistency factor of the normalised median absolute deviation, as in DLR's graph.
_NMAD_FACTOR = 1.4826
_NMAD_MIN_EXCESS = 80.0

#: How this graph differs from DLR's published one (``docs/openeo.md`` explains each).
DIFFERENCES: tuple[str, ...] = (
    "MASK 2 only where the pixel has valid observations and none has PVIR2 < threshold "
    "(DLR: round(not(any(PVIR2 < T))) + 2 is never 0, so every remaining pixel is 2)",
    "only the requested products are computed (DLR: compute_mref/compute_mask are "
    "ignored, MREF and MASK always run)",
    "SCL and sunZenithAngles are resampled by nearest neighbour (DLR: average, which "
    "mixes class codes at any resolution coarser than 20 m)",
    "an observation with any reflectance band null or 0 is invalid (DLR: VPC counts B02 "
    "alone; each band averages what it has)",
    "a null threshold pixel is never bare (DLR: gt(PVIR2, null) is null, so not masked)",
    "the cloud buffer is buffer_m metres at the chosen resolution (DLR: 11 x 11 px always)",
    "a scalar threshold needs no load_stac; WorldCover is optional; sun zenith limit and "
    "min_bare are parameters",
    "extra product SRC_CI95; labels SRC_STD_*/MREF_STD_* (DLR: SRC-STD_*/MREF-STD_*)",
)


def output_labels(products: Sequence[str]) -> list[str]:
    """Band labels of the graph's result, in order: ``SRC_B02`` ... ``MASK``."""
    out: list[str] = []
    for p in PRODUCTS:
        if p in products:
            out += [f"{p}_{b}" for b in REFLECTANCE_BANDS] if p in BAND_PRODUCTS else [p]
    return out


def time_extent(time: TimeLike) -> list[str]:
    """openEO's half-open ``[start, end)`` of a time range as :func:`cup4soil.search`
    takes it (inclusive)."""
    start, end = parse_time(time)
    end = end + dt.timedelta(microseconds=1)

    def fmt(t: dt.datetime) -> str:
        if (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0):
            return t.strftime("%Y-%m-%d")
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    return [fmt(start), fmt(end)]


def bbox_extent(aoi: AOILike) -> dict[str, Any]:
    """openEO's bounding box (lon/lat) of an area as :func:`cup4soil.search` takes it."""
    west, south, east, north = parse_aoi(aoi).bounds
    return {"west": west, "south": south, "east": east, "north": north, "crs": 4326}


def _number(name: str, value: Any, *, minimum: float = 0.0) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}={value!r} is not a number.") from None
    if not math.isfinite(v) or v < minimum:
        raise ParameterError(f"{name}={value} must be a finite number >= {minimum}.")
    return v


def _any_of(x: Any, values: Sequence[int], P: Any) -> Any:
    out = P.eq(x, values[0])
    for v in values[1:]:
        out = P.or_(out, P.eq(x, v))
    return out


def scmap_graph(
    *,
    temporal_extent: TimeLike,
    bbox: AOILike,
    max_cloud_cover: float = 80.0,
    nmad_sigma: float = 3.0,
    mref_nmad_sigma: float = 4.0,
    min_bare: int = 3,
    products: Sequence[str] | None = None,
    threshold: float | str = "dlr-europe",
    worldcover: bool = True,
    resolution: float = 20.0,
    max_sun_zenith: float = 70.0,
    buffer_m: float = 100.0,
) -> dict[str, Any]:
    """The SCMaP composite as an openEO process graph for CDSE, DLR's defects fixed.

    Parameters
    ----------
    temporal_extent
        Time range as for :func:`cup4soil.search` (``"2018/2022"``, a pair of dates ...);
        written as openEO's half-open ``[start, end)``.
    bbox
        Area as for :func:`cup4soil.search` (a name, ``(west, south, east, north)``,
        GeoJSON); its lon/lat bounds become the spatial extent.
    max_cloud_cover
        Scene cloud cover limit, percent (``eo:cloud_cover``).
    nmad_sigma, mref_nmad_sigma
        NMAD outlier factors on B02 for the bare (SRC, BSC) and valid (MREF) sets.
    min_bare
        Fewest bare observations for a pixel to get SRC and BSC.
    products
        Subset of :data:`cup4soil.scmap.PRODUCTS` (default: all); the graph holds only
        what they need (MREF's pass only for MREF/MREF_STD).
    threshold
        ``"dlr-europe"`` (DLR's raster through ``load_stac``), a number (a constant
        PVIR2 threshold, no ``load_stac``), or the URL of a single-band STAC item.
    worldcover
        Load ESA WorldCover 2021: built-up and water are never bare, and its classes 0, 50,
        70, 80, 90, 95 are MASK 3.
    resolution
        Output pixel size, metres (DLR: 20); 10 m bands are averaged onto it.
    max_sun_zenith
        Observations with a larger per-pixel sun zenith angle, degrees, are invalid.
    buffer_m
        Cloud, shadow and cirrus buffer, metres.

    Returns
    -------
    dict
        ``{"process_graph": {...}, "summary": ..., "description": ...}``; its result is
        a cube ``(bands, y, x)`` labelled as :func:`output_labels` says.
    """
    datacube = require("openeo.rest.datacube", "openeo.scmap_graph")
    DataCube, THIS = datacube.DataCube, datacube.THIS
    P = require("openeo.processes", "openeo.scmap_graph")
    udp = require("openeo.rest.udp", "openeo.scmap_graph")

    chosen = tuple(products) if products is not None else PRODUCTS
    unknown = [p for p in chosen if p not in PRODUCTS]
    if unknown or not chosen:
        raise ParameterError(f"products={list(chosen)}: choose from {', '.join(PRODUCTS)}.")
    max_cloud_cover = _number("max_cloud_cover", max_cloud_cover)
    nmad_sigma = _number("nmad_sigma", nmad_sigma)
    mref_nmad_sigma = _number("mref_nmad_sigma", mref_nmad_sigma)
    max_sun_zenith = _number("max_sun_zenith", max_sun_zenith)
    buffer_m = _number("buffer_m", buffer_m)
    resolution = _number("resolution", resolution)
    if resolution == 0:
        raise ParameterError("resolution=0: give the pixel size in metres, e.g. 20.")
    if int(min_bare) != min_bare or min_bare < 1:
        raise ParameterError(f"min_bare={min_bare} must be a whole number >= 1.")
    min_bare = int(min_bare)
    thr_value: float | None = None
    thr_url: str | None = None
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        thr_value = _number("threshold", threshold, minimum=-math.inf)
    elif threshold == "dlr-europe":
        thr_url = DLR_THRESHOLD_STAC
    elif isinstance(threshold, str) and threshold.startswith(("http://", "https://")):
        thr_url = threshold
    else:
        raise ParameterError(
            f"threshold={threshold!r}: give a number, 'dlr-europe' or the http(s) URL of a "
            "single-band STAC item a back-end can load_stac."
        )
    extent = bbox_extent(bbox)
    time = time_extent(temporal_extent)
    bands = list(REFLECTANCE_BANDS)
    i = {b: k for k, b in enumerate(bands)}
    need_bare = bool(_BARE_PRODUCTS & set(chosen))
    need_mref = bool({"MREF", "MREF_STD"} & set(chosen))
    radius = math.floor(buffer_m / resolution + 1e-9)  # 100 m: 5 px at 20 m, 11 x 11

    s2 = DataCube.load_collection(
        CDSE_S2_COLLECTION, connection=None, fetch_metadata=False, spatial_extent=extent,
        temporal_extent=time, bands=[*bands, SCL, SUN_ZENITH_BAND],
        max_cloud_cover=max_cloud_cover,
    )

    def resample(cube: Any, method: str) -> Any:
        # As a plain process: the client's resample_spatial() would replace the unknown
        # (not fetched) metadata by one without time and bands.
        return cube.process("resample_spatial", {
            "data": THIS, "resolution": resolution, "projection": None, "method": method,
            "align": "upper-left"})

    refl = resample(s2.filter_bands(bands), "average")
    aux = resample(s2.filter_bands([SCL, SUN_ZENITH_BAND]), "near")  # classes: never averaged

    def invalid(data: Any) -> Any:
        scl, sza = P.array_element(data, index=0), P.array_element(data, index=1)
        out = P.or_(P.not_(P.is_valid(scl)), _any_of(scl, INVALID_SCL, P))
        # A null sun zenith is unknown, never a reason to drop the observation.
        return P.or_(out, P.and_(P.is_valid(sza), P.gt(sza, max_sun_zenith)))

    def missing(data: Any) -> Any:
        out = None
        for k in range(len(bands)):
            b = P.array_element(data, index=k)
            bad = P.not_(P.and_(P.is_valid(b), P.gt(b, 0)))
            out = bad if out is None else P.or_(out, bad)
        return out

    valid = refl.mask(aux.reduce_dimension(dimension="bands", reducer=invalid))
    valid = valid.mask(refl.reduce_dimension(dimension="bands", reducer=missing))
    if radius > 0:
        clouds = aux.reduce_dimension(
            dimension="bands",
            reducer=lambda data: _any_of(P.array_element(data, index=0), CLOUD_SCL, P),
        )
        ones = [[1] * (2 * radius + 1) for _ in range(2 * radius + 1)]
        near_cloud = clouds.apply_kernel(ones, factor=1.0, border=0, replace_invalid=0).apply(
            lambda x: P.gt(x, 0.5))
        valid = valid.mask(near_cloud)

    def first_band(data: Any) -> Any:
        return P.array_element(data, index=0)

    def nmad_outlier(sigma: float) -> Callable[[Any], Any]:
        def process(data: Any) -> Any:
            med = P.median(data)
            nmad = P.multiply(P.median(P.absolute(P.subtract(data, med))), _NMAD_FACTOR)
            # The same operations, in the same order, as DLR's graph (and cup4soil's kernel).
            return P.and_(P.gt(data, P.add(med, P.multiply(sigma, nmad))),
                          P.gt(data, P.add(med, _NMAD_MIN_EXCESS)))
        return process

    def count_t(cube: Any) -> Any:
        return cube.reduce_dimension(dimension="bands", reducer=first_band).reduce_dimension(
            dimension="t", reducer=lambda data: P.count(data))

    def labelled(cube: Any, prefix: str) -> Any:
        return cube.rename_labels(dimension="bands", target=[f"{prefix}_{b}" for b in bands],
                                  source=bands)

    parts: dict[str, Any] = {}
    vpc = count_t(valid).add_dimension(name="bands", label="VPC", type="bands")
    parts["VPC"] = vpc
    if need_bare:
        def pvir2(data: Any) -> Any:
            b04, b08, b12 = (P.array_element(data, index=i[b]) for b in ("B04", "B08", "B12"))
            return P.add(P.divide(P.subtract(b08, b04), P.add(b08, b04)),
                         P.divide(P.subtract(b08, b12), P.add(b08, b12)))

        pv = valid.reduce_dimension(dimension="bands", reducer=pvir2).add_dimension(
            name="bands", label="PVIR2", type="bands")
        if thr_url is not None:
            # Built as a plain process node: the client's DataCube.load_stac() fetches the
            # STAC document for metadata, and building a graph must not touch the network.
            stac_args: dict[str, Any] = {"url": thr_url, "spatial_extent": extent}
            if thr_url == DLR_THRESHOLD_STAC:
                stac_args["bands"] = [DLR_THRESHOLD_BAND]
            thr = DataCube(graph=P.load_stac(**stac_args).pgnode, connection=None)
            thr = thr.resample_cube_spatial(target=valid, method="bilinear").reduce_dimension(
                dimension="bands", reducer=lambda data: P.first(data),
            ).add_dimension(name="bands", label="THR", type="bands").reduce_dimension(
                dimension="t", reducer=lambda data: P.mean(data))
            pt = pv.merge_cubes(thr)  # bands PVIR2, THR; THR has no time: broadcast

            def bare_if(data: Any) -> Any:
                t = P.array_element(data, index=1)
                return P.and_(P.is_valid(t), P.lte(P.array_element(data, index=0), t))

            def below_if(data: Any) -> Any:
                return P.lt(P.array_element(data, index=0), P.array_element(data, index=1))
        else:
            pt = pv
            const = thr_value

            def bare_if(data: Any) -> Any:
                return P.lte(P.array_element(data, index=0), const)

            def below_if(data: Any) -> Any:
                return P.lt(P.array_element(data, index=0), const)

        bare = valid.mask(pt.reduce_dimension(dimension="bands",
                                              reducer=lambda d: P.not_(bare_if(d))))
        wc = None
        if worldcover:
            wc = DataCube.load_collection(
                CDSE_WORLDCOVER_COLLECTION, connection=None, fetch_metadata=False,
                spatial_extent=extent, temporal_extent=None, bands=[WORLDCOVER_BAND],
            ).reduce_dimension(dimension="t", reducer=lambda data: P.first(data)
                               ).resample_cube_spatial(target=valid, method="near")
            bare = bare.mask(wc.reduce_dimension(
                dimension="bands",
                reducer=lambda data: _any_of(P.array_element(data, index=0), WC_NOT_BARE, P)))
        outlier = bare.reduce_dimension(dimension="bands", reducer=first_band).apply_dimension(
            dimension="t", process=nmad_outlier(nmad_sigma))
        bare = bare.mask(outlier)
        bsc_all = count_t(bare)
        too_few = bsc_all.apply(lambda x: P.lt(x, min_bare))
        kept = bare.mask(too_few)
        if "SRC" in chosen:
            parts["SRC"] = labelled(kept.reduce_dimension(
                dimension="t", reducer=lambda data: P.mean(data)), "SRC")
        if "SRC_STD" in chosen:
            parts["SRC_STD"] = labelled(kept.reduce_dimension(
                dimension="t", reducer=lambda data: P.sd(data)), "SRC_STD")
        if "SRC_CI95" in chosen:
            parts["SRC_CI95"] = labelled(kept.reduce_dimension(
                dimension="t",
                reducer=lambda data: P.divide(P.multiply(1.96, P.sd(data)),
                                              P.sqrt(P.count(data)))), "SRC_CI95")
        bsc = bsc_all.mask(too_few).add_dimension(name="bands", label="BSC", type="bands")
        parts["BSC"] = bsc
        if "BSF" in chosen:
            parts["BSF"] = bsc.merge_cubes(vpc).reduce_dimension(
                dimension="bands",
                reducer=lambda data: P.divide(P.array_element(data, index=0),
                                              P.array_element(data, index=1)),
            ).add_dimension(name="bands", label="BSF", type="bands")
        if "MASK" in chosen:
            below = pt.reduce_dimension(dimension="bands", reducer=below_if).reduce_dimension(
                dimension="t", reducer=lambda data: P.any(data)
            ).add_dimension(name="bands", label="BELOW", type="bands")
            stats = vpc.merge_cubes(bsc_all.add_dimension(name="bands", label="N",
                                                          type="bands")).merge_cubes(below)
            if wc is not None:
                stats = stats.merge_cubes(wc)  # bands VPC, N, BELOW, MAP

            def mask_class(data: Any) -> Any:
                vpc_, n, below_ = (P.array_element(data, index=k) for k in range(3))
                value = P.if_(P.gte(n, min_bare), 1,
                              P.if_(P.and_(P.gt(vpc_, 0), P.not_(below_)), 2))
                if wc is not None:
                    value = P.if_(_any_of(P.array_element(data, index=3), WC_OTHER, P), 3,
                                  value)
                return value

            parts["MASK"] = stats.reduce_dimension(dimension="bands", reducer=mask_class
                                                   ).add_dimension(name="bands", label="MASK",
                                                                   type="bands")
    if need_mref:
        outlier = valid.reduce_dimension(dimension="bands", reducer=first_band).apply_dimension(
            dimension="t", process=nmad_outlier(mref_nmad_sigma))
        clean = valid.mask(outlier)
        if "MREF" in chosen:
            parts["MREF"] = labelled(clean.reduce_dimension(
                dimension="t", reducer=lambda data: P.mean(data)), "MREF")
        if "MREF_STD" in chosen:
            parts["MREF_STD"] = labelled(clean.reduce_dimension(
                dimension="t", reducer=lambda data: P.sd(data)), "MREF_STD")
    result = None
    for p in PRODUCTS:
        if p in chosen:
            result = parts[p] if result is None else result.merge_cubes(parts[p])
    assert result is not None
    settings = {
        "temporal_extent": time, "bbox": extent, "max_cloud_cover": max_cloud_cover,
        "nmad_sigma": nmad_sigma, "mref_nmad_sigma": mref_nmad_sigma, "min_bare": min_bare,
        "products": list(chosen), "threshold": threshold, "worldcover": worldcover,
        "resolution": resolution, "max_sun_zenith": max_sun_zenith, "buffer_m": buffer_m,
    }
    doc: dict[str, Any] = udp.build_process_dict(
        result,
        summary="SCMaP bare-soil composite (cup4soil)",
        description=(
            "DLR's Soil Composite Mapping Processor for CDSE, exported by "
            "cup4soil.openeo.scmap_graph. Bands: " + ", ".join(output_labels(chosen)) + ". "
            "Differences from DLR's published graph: " + "; ".join(DIFFERENCES) + ". "
            "Settings: " + json.dumps(settings)
        ),
    )
    return doc


def load_graph(graph: Any) -> dict[str, Any]:
    """A process graph as ``{"process_graph": {...}, ...}`` from what users hold: that dict,
    a bare flat graph, a JSON string or file path, or an openEO client ``DataCube``."""
    if hasattr(graph, "flat_graph"):
        return {"process_graph": graph.flat_graph()}
    if isinstance(graph, (str, Path)):
        text = str(graph)
        try:
            if text.lstrip().startswith("{"):
                graph = json.loads(text)
            else:
                graph = json.loads(Path(text).read_text())
        except FileNotFoundError:
            raise ProcessGraphError(f"there is no process graph file {text}.") from None
        except (OSError, ValueError) as exc:
            raise ProcessGraphError(f"{text[:80]} is not process graph JSON ({exc}).") from None
    if not isinstance(graph, Mapping):
        raise ProcessGraphError(
            f"a process graph is a dict, a JSON file or a client DataCube, not "
            f"{type(graph).__name__}.")
    doc = dict(graph)
    if "process_graph" not in doc:
        doc = {"process_graph": doc}
    flat = doc["process_graph"]
    if not isinstance(flat, Mapping) or not flat or not all(
            isinstance(n, Mapping) and "process_id" in n for n in flat.values()):
        raise ProcessGraphError(
            "the process graph has no nodes with a process_id; give openEO's flat graph "
            "JSON ({'process_graph': {node: {'process_id': ..., 'arguments': ...}}}).")
    results = [k for k, n in flat.items() if n.get("result")]
    if len(results) != 1:
        raise ProcessGraphError(
            f"the process graph has {len(results)} result nodes; exactly one must have "
            "'result': true.")
    return doc


def bind_parameters(doc: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The flat graph of ``doc`` with its process parameters replaced by ``values`` --
    inside callbacks too (a local engine does not see them there)."""

    def sub(value: Any) -> Any:
        if isinstance(value, Mapping):
            if set(value) == {"from_parameter"} and value["from_parameter"] in values:
                return values[value["from_parameter"]]
            return {k: sub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [sub(v) for v in value]
        return value

    out: dict[str, Any] = sub(doc["process_graph"])
    return out


def parameter_values(doc: Mapping[str, Any], given: Mapping[str, Any] | None = None, *,
                     temporal_extent: Any = None, bbox: Any = None) -> dict[str, Any]:
    """Values of a user-defined process's parameters: given, else ``temporal_extent`` /
    ``bbox`` for parameters of those subtypes, else their defaults.

    Raises
    ------
    ProcessGraphError
        For a value given for no declared parameter, or a required one left without.
    """
    declared = {p["name"]: p for p in doc.get("parameters") or [] if "name" in p}
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ProcessGraphError(
            f"parameters {unknown} are not parameters of the process "
            f"({', '.join(declared) or 'it has none'}).")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        subtype = (spec.get("schema") or {}).get("subtype")
        if name in given:
            values[name] = given[name]
        elif subtype == "temporal-interval" and temporal_extent is not None:
            values[name] = temporal_extent
        elif subtype == "bounding-box" and bbox is not None:
            values[name] = bbox
        elif "default" in spec:
            values[name] = spec["default"]
        else:
            raise ProcessGraphError(
                f"the process needs a value for its parameter {name!r}"
                + (" (give the area: --aoi, or bbox)" if subtype == "bounding-box" else "")
                + (" (give the time: --time)" if subtype == "temporal-interval" else "")
                + ".")
    return values


@dataclass(frozen=True)
class GraphInputs:
    """What a concrete SCMaP graph loads, for building the matching local cube.

    Attributes
    ----------
    bbox
        ``(west, south, east, north)`` in lon/lat of the Sentinel-2 ``load_collection``.
    time
        Inclusive ``(start, end)`` UTC datetimes (openEO's end is exclusive).
    max_cloud_cover
        Its ``eo:cloud_cover`` limit, percent, if any.
    resolution
        The pixel size of its first ``resample_spatial``, if any.
    threshold_url
        The URL its ``load_stac`` reads (the threshold), if any.
    worldcover
        Whether it loads ESA WorldCover.
    """

    bbox: tuple[float, float, float, float]
    time: tuple[dt.datetime, dt.datetime]
    max_cloud_cover: float | None
    resolution: float | None
    threshold_url: str | None
    worldcover: bool


def graph_inputs(flat: Mapping[str, Any]) -> GraphInputs:
    """Read what a concrete (parameters bound) graph loads; see :class:`GraphInputs`."""
    loads = [n for n in flat.values() if n.get("process_id") == "load_collection"
             and n.get("arguments", {}).get("id") == CDSE_S2_COLLECTION]
    if len(loads) != 1:
        raise ProcessGraphError(
            f"the graph has {len(loads)} load_collection({CDSE_S2_COLLECTION}) nodes; a "
            "SCMaP graph has one.")
    args = loads[0]["arguments"]
    ext = args.get("spatial_extent")
    if not isinstance(ext, Mapping) or not {"west", "south", "east", "north"} <= set(ext):
        raise ProcessGraphError(
            f"the graph's spatial_extent {str(ext)[:80]} is not a bounding box; give the "
            "area (--aoi) or bind the process parameters.")
    crs = ext.get("crs", 4326)
    if str(crs).upper() not in ("4326", "EPSG:4326"):
        raise ProcessGraphError(f"the graph's bounding box is in {crs}; cup4soil reads "
                                "lon/lat (EPSG:4326) extents.")
    bbox = (float(ext["west"]), float(ext["south"]), float(ext["east"]), float(ext["north"]))
    te = args.get("temporal_extent")
    if not isinstance(te, Sequence) or isinstance(te, str) or len(te) != 2 or None in te:
        raise ProcessGraphError(
            f"the graph's temporal_extent {te!r} is not a closed [start, end) interval; give "
            "the time (--time) or bind the process parameters.")
    start = parse_time((str(te[0]), str(te[0])))[0]
    end_excl = parse_time((str(te[1]), str(te[1])))[0]
    time = (start, end_excl - dt.timedelta(microseconds=1))
    cloud = None
    prop = (args.get("properties") or {}).get("eo:cloud_cover")
    if isinstance(prop, Mapping):
        for node in (prop.get("process_graph") or {}).values():
            if node.get("process_id") in ("lte", "lt"):
                for v in node.get("arguments", {}).values():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        cloud = float(v)
    res = None
    for node in flat.values():
        if node.get("process_id") == "resample_spatial":
            r = node.get("arguments", {}).get("resolution")
            if isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0:
                res = float(r)
                break
    urls = [n["arguments"].get("url") for n in flat.values()
            if n.get("process_id") == "load_stac"]
    wc = any(n.get("process_id") == "load_collection"
             and n.get("arguments", {}).get("id") == CDSE_WORLDCOVER_COLLECTION
             for n in flat.values())
    return GraphInputs(bbox, time, cloud, res, str(urls[0]) if urls else None, wc)
