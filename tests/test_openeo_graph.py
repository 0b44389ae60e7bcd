"""The exported graph: built offline for CDSE's collection and band names, only the products
asked for, DLR's defects fixed, and what a graph loads read back from it."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from cup4soil.errors import ParameterError, ProcessGraphError

pytest.importorskip("openeo")

from cup4soil import openeo as c4o
from cup4soil.openeo.graph import graph_inputs

BBOX = (14.3, 52.6, 14.4, 52.7)


def nodes(graph: dict, process_id: str) -> list[dict]:
    return [n for n in graph["process_graph"].values() if n["process_id"] == process_id]


def callbacks(node: dict) -> list[dict]:
    """Every node of a node's callbacks, nested ones included."""
    out = []
    for arg in node["arguments"].values():
        if isinstance(arg, dict) and "process_graph" in arg:
            for inner in arg["process_graph"].values():
                out += [inner, *callbacks(inner)]
    return out


def test_graph_for_cdse():
    graph = c4o.scmap_graph(temporal_extent="2018/2022", bbox=BBOX, max_cloud_cover=60)
    json.dumps(graph)  # JSON-ready
    s2 = [n for n in nodes(graph, "load_collection") if n["arguments"]["id"] == "SENTINEL2_L2A"]
    args = s2[0]["arguments"]
    assert args["bands"] == ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11",
                             "B12", "SCL", "sunZenithAngles"]
    assert args["temporal_extent"] == ["2018-01-01", "2023-01-01"]  # [start, end)
    assert args["spatial_extent"] == {"west": 14.3, "south": 52.6, "east": 14.4,
                                      "north": 52.7, "crs": 4326}
    cloud = args["properties"]["eo:cloud_cover"]["process_graph"]
    assert [(n["process_id"], n["arguments"]["y"]) for n in cloud.values()] == [("lte", 60.0)]
    assert [n["arguments"]["url"] for n in nodes(graph, "load_stac")] == [c4o.DLR_THRESHOLD_STAC]
    # SCL and the sun zenith by nearest neighbour, reflectance averaged.
    methods = sorted(n["arguments"]["method"] for n in nodes(graph, "resample_spatial"))
    assert methods == ["average", "near"]
    # Nothing is left to a parameter: the graph is concrete.
    assert "from_parameter': 'max_cloud_cover" not in str(graph)
    for difference in c4o.DIFFERENCES:
        assert difference in graph["description"]
    inputs = graph_inputs(graph["process_graph"])
    assert inputs.bbox == BBOX and inputs.max_cloud_cover == 60.0
    assert inputs.time == (dt.datetime(2018, 1, 1, tzinfo=dt.UTC),
                           dt.datetime(2022, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC))
    assert inputs.resolution == 20.0 and inputs.worldcover
    assert inputs.threshold_url == c4o.DLR_THRESHOLD_STAC


def test_mask_class_2_needs_valid_observations():
    """DLR's defect fixed: class 2 is an if_ on VPC > 0 and no PVIR2 < T, not round(...) + 2."""
    graph = c4o.scmap_graph(temporal_extent="2020", bbox=BBOX, products=["MASK"])
    inner = [n for r in nodes(graph, "reduce_dimension") for n in callbacks(r)]
    ids = [n["process_id"] for n in inner]
    assert "round" not in ids and ids.count("if") >= 3  # 1, 2 and 3 are chosen, not summed
    assert any(n["process_id"] == "gt" and n["arguments"].get("y") == 0 for n in inner)


@pytest.mark.parametrize(("products", "nmad_passes", "loads_stac", "loads_worldcover"), [
    (None, 2, True, True),
    (["SRC", "BSC"], 1, True, True),
    (["MREF", "MREF_STD"], 1, False, False),
    (["VPC"], 0, False, False),
])
def test_only_what_the_products_need_is_computed(products, nmad_passes, loads_stac,
                                                 loads_worldcover):
    """DLR's compute_mref/compute_mask are ignored (a Python if on a Parameter); here the
    products decide which passes are in the graph."""
    graph = c4o.scmap_graph(temporal_extent="2020", bbox=BBOX, products=products)
    assert len(nodes(graph, "apply_dimension")) == nmad_passes
    assert bool(nodes(graph, "load_stac")) == loads_stac
    wc = [n for n in nodes(graph, "load_collection")
          if n["arguments"]["id"] == c4o.CDSE_WORLDCOVER_COLLECTION]
    assert bool(wc) == loads_worldcover
    labels = c4o.output_labels(products or c4o.graph.PRODUCTS)
    assert ", ".join(labels) in graph["description"]


def test_output_labels():
    assert c4o.output_labels(["BSC", "SRC_STD"]) == [
        *[f"SRC_STD_{b}" for b in ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                                    "B11", "B12")], "BSC"]


def test_threshold_choices():
    const = c4o.scmap_graph(temporal_extent="2020", bbox=BBOX, threshold=0.25,
                            products=["BSC"])
    assert not nodes(const, "load_stac")
    assert "0.25" in str(const["process_graph"])
    own = c4o.scmap_graph(temporal_extent="2020", bbox=BBOX, threshold="https://x.test/t.json",
                          products=["BSC"])
    assert nodes(own, "load_stac")[0]["arguments"]["url"] == "https://x.test/t.json"
    assert "bands" not in nodes(own, "load_stac")[0]["arguments"]


def test_buffer_follows_the_resolution():
    def kernel_size(graph):
        (k,) = nodes(graph, "apply_kernel")
        return len(k["arguments"]["kernel"])

    assert kernel_size(c4o.scmap_graph(temporal_extent="2020", bbox=BBOX)) == 11
    assert kernel_size(c4o.scmap_graph(temporal_extent="2020", bbox=BBOX,
                                       resolution=10)) == 21
    assert not nodes(c4o.scmap_graph(temporal_extent="2020", bbox=BBOX, buffer_m=0),
                     "apply_kernel")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"products": ["SRC", "NDVI"]}, "choose from"),
    ({"products": []}, "choose from"),
    ({"threshold": "s3://bucket/t.tif"}, "threshold="),
    ({"threshold": True}, "threshold="),
    ({"max_cloud_cover": -1}, "max_cloud_cover"),
    ({"nmad_sigma": float("nan")}, "nmad_sigma"),
    ({"resolution": 0}, "resolution=0"),
    ({"min_bare": 2.5}, "min_bare"),
])
def test_impossible_options_are_refused(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        c4o.scmap_graph(temporal_extent="2020", bbox=BBOX, **kwargs)


def test_load_graph(tmp_path, shared_data):
    graph = c4o.scmap_graph(temporal_extent="2020", bbox=BBOX, products=["VPC"])
    path = tmp_path / "g.json"
    path.write_text(json.dumps(graph))
    assert c4o.load_graph(path) == graph == c4o.load_graph(str(path))
    assert c4o.load_graph(json.dumps(graph)) == graph
    assert c4o.load_graph(graph["process_graph"]) == {"process_graph": graph["process_graph"]}
    udp = c4o.load_graph(shared_data / "scmap/scmap_composite.udp.json")
    assert udp["id"] == "scmap_composite" or "parameters" in udp
    with pytest.raises(ProcessGraphError, match="no process graph file"):
        c4o.load_graph(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ProcessGraphError, match="not process graph JSON"):
        c4o.load_graph(tmp_path / "bad.json")
    with pytest.raises(ProcessGraphError, match="result nodes"):
        flat = {k: {**v, "result": False} for k, v in graph["process_graph"].items()}
        c4o.load_graph(flat)
    with pytest.raises(ProcessGraphError, match="no nodes with a process_id"):
        c4o.load_graph({"process_graph": {"a": {"arguments": {}}}})
    with pytest.raises(ProcessGraphError, match="not int"):
        c4o.load_graph(3)


def test_graph_inputs_needs_a_concrete_graph(shared_data):
    udp = c4o.load_graph(shared_data / "scmap/scmap_composite.udp.json")
    with pytest.raises(ProcessGraphError, match="not a bounding box"):
        graph_inputs(udp["process_graph"])  # still refers to its parameters
