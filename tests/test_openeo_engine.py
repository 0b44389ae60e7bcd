"""The engine workarounds of cup4soil/openeo/engine.py, one test each.

Each test shows the defect on the engine as installed (``local_registry(workarounds=False)``,
or the parser itself) and that the workaround removes it. When an engine release fixes a
defect, the first half of its test fails: remove that workaround (and the test) then.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("openeo_processes_dask")

from cup4soil.errors import ProcessGraphError
from cup4soil.openeo.engine import execute, local_registry
from cup4soil.openeo.graph import bind_parameters

local_registry()  # imports the engine quietly: its spec loader leaves files open
from openeo_pg_parser_networkx import OpenEOProcessGraph  # noqa: E402
from openeo_pg_parser_networkx.process_registry import Process  # noqa: E402
from openeo_processes_dask import specs  # noqa: E402
from openeo_processes_dask.process_implementations.exceptions import (  # noqa: E402
    OverlapResolverMissing,
    ProcessParameterMissing,
)

TIMES = np.array(["2021-05-01", "2021-06-01", "2021-07-01", "2021-08-01"], "datetime64[ns]")
FIXED = "the engine is fixed: remove this workaround from cup4soil/openeo/engine.py"


def _cube(values: np.ndarray, bands: list[str] | None = None) -> xr.DataArray:
    """A (t, bands, y, x) cube in UTM at 20 m."""
    t, b, h, w = values.shape
    da = xr.DataArray(values, dims=("t", "bands", "y", "x"), coords={
        "t": TIMES[:t], "bands": bands or [f"b{i}" for i in range(b)],
        "y": 5_830_590.0 - 20 * np.arange(h), "x": 455_630.0 + 20 * np.arange(w)})
    return da.rio.write_crs("EPSG:32633")


def _with_input(registry, cube: xr.DataArray):
    def load_collection(id, spatial_extent=None, temporal_extent=None, bands=None,
                        properties=None):
        return cube

    registry["load_collection"] = Process(spec=specs.load_collection,
                                          implementation=load_collection)
    return registry


def _load(extra: dict) -> dict:
    graph = {"load": {"process_id": "load_collection",
                      "arguments": {"id": "X", "spatial_extent": None,
                                    "temporal_extent": None}}}
    graph.update(extra)
    return graph


def test_1_merge_cubes_broadcasts_a_cube_without_time():
    cube = _cube(np.arange(2 * 1 * 3 * 3, dtype=float).reshape(2, 1, 3, 3), ["A"])
    static = cube.isel(t=0, drop=True).assign_coords(bands=["B"]) * 0 + 7.0
    raw = local_registry(workarounds=False)["merge_cubes"].implementation
    with pytest.raises(OverlapResolverMissing):
        raw(cube1=cube, cube2=static)
        pytest.fail(FIXED)
    out = local_registry()["merge_cubes"].implementation(cube1=cube, cube2=static)
    assert out.dims == ("t", "bands", "y", "x") and list(out.bands.values) == ["A", "B"]
    np.testing.assert_array_equal(out.sel(bands="A").values, cube.sel(bands="A").values)
    assert (out.sel(bands="B").values == 7.0).all() and (out.t.values == cube.t.values).all()


def _anomaly_graph() -> dict:
    """apply_dimension over time of ``data - median(data)``: keeps the dimension."""
    return _load({"anomaly": {"process_id": "apply_dimension", "result": True, "arguments": {
        "data": {"from_node": "load"}, "dimension": "t", "process": {"process_graph": {
            "med": {"process_id": "median", "arguments": {"data": {"from_parameter": "data"}}},
            "sub": {"process_id": "subtract", "result": True, "arguments": {
                "x": {"from_parameter": "data"}, "y": {"from_node": "med"}}}}}}}})


def test_2_apply_dimension_keeps_the_dimension_its_reducers_reduce():
    rng = np.random.default_rng(2)
    cube = _cube(rng.integers(100, 200, (4, 1, 3, 3)).astype(float))
    with pytest.raises(ProcessGraphError, match="broadcast"):
        execute(_anomaly_graph(), _with_input(local_registry(workarounds=False), cube))
        pytest.fail(FIXED)
    out = execute(_anomaly_graph(), _with_input(local_registry(), cube))
    expected = cube - cube.median("t")
    np.testing.assert_allclose(out.transpose(*cube.dims).values, expected.values)


def test_3_apply_dimension_keeps_the_time_labels():
    cube = _cube(np.arange(4 * 1 * 2 * 2, dtype=float).reshape(4, 1, 2, 2))
    graph = _load({"abs": {"process_id": "apply_dimension", "result": True, "arguments": {
        "data": {"from_node": "load"}, "dimension": "t", "process": {"process_graph": {
            "a": {"process_id": "absolute", "result": True,
                  "arguments": {"x": {"from_parameter": "data"}}}}}}}})
    raw = execute(graph, _with_input(local_registry(workarounds=False), cube))
    assert "t" not in raw.coords or not np.array_equal(raw.t.values, cube.t.values), FIXED
    out = execute(graph, _with_input(local_registry(), cube))
    np.testing.assert_array_equal(out.t.values, cube.t.values)


def test_4_resample_spatial_onto_the_same_resolution_keeps_the_grid():
    cube = _cube(np.ones((1, 1, 34, 34)))
    raw = local_registry(workarounds=False)["resample_spatial"].implementation
    assert raw(data=cube, resolution=20, method="average").shape != cube.shape, FIXED
    out = local_registry()["resample_spatial"].implementation(data=cube, resolution=20,
                                                                method="average")
    assert out is cube
    # Another resolution still goes to the engine.
    coarse = local_registry()["resample_spatial"].implementation(data=cube, resolution=40,
                                                                   method="average")
    assert coarse.sizes["x"] < cube.sizes["x"]


def test_5_process_parameters_reach_callbacks():
    cube = _cube(np.full((2, 1, 2, 2), 3.0))
    udp = {"parameters": [{"name": "factor", "schema": {"type": "number"}}],
           "process_graph": _load({"scaled": {
               "process_id": "apply", "result": True, "arguments": {
                   "data": {"from_node": "load"}, "process": {"process_graph": {"m": {
                       "process_id": "multiply", "result": True, "arguments": {
                           "x": {"from_parameter": "x"}, "y": {"from_parameter": "factor"}}}}}}}})}
    registry = _with_input(local_registry(), cube)
    with pytest.raises(ProcessParameterMissing, match="factor"):
        OpenEOProcessGraph(udp).to_callable(registry, parameters={"factor": 2})(
            named_parameters={"factor": 2})
        pytest.fail(FIXED)
    out = execute(bind_parameters(udp, {"factor": 2}), registry)
    assert (out.values == 6.0).all()


def _diamonds(k: int) -> dict:
    """k diamonds in a row: 2**k paths from the result to the first node."""
    graph = _load({})
    prev = "load"
    for i in range(1, k + 1):
        for side in "ab":
            graph[f"{side}{i}"] = {"process_id": "apply", "arguments": {
                "data": {"from_node": prev}, "process": {"process_graph": {"m": {
                    "process_id": "multiply", "result": True,
                    "arguments": {"x": {"from_parameter": "x"}, "y": 1}}}}}}
        graph[f"n{i}"] = {"process_id": "merge_cubes", "arguments": {
            "cube1": {"from_node": f"a{i}"}, "cube2": {"from_node": f"b{i}"},
            "overlap_resolver": {"process_graph": {"sum": {
                "process_id": "add", "result": True,
                "arguments": {"x": {"from_parameter": "x"}, "y": {"from_parameter": "y"}}}}}}}
        prev = f"n{i}"
    graph[prev]["result"] = True
    return graph


def test_6_graph_walk_is_linear(monkeypatch):
    import openeo_pg_parser_networkx as parser

    k = 8
    graph = _diamonds(k)
    linear = len(graph) + 3 * k  # every node and callback node once
    whole = OpenEOProcessGraph({"process_graph": graph}).G.number_of_nodes()
    assert whole > 10 * linear, FIXED  # the parser's tree: exponential in k
    parsed = []

    class Counting(parser.OpenEOProcessGraph):
        def __init__(self, pg_data):
            super().__init__(pg_data)
            parsed.append(self.G.number_of_nodes())

    monkeypatch.setattr(parser, "OpenEOProcessGraph", Counting)
    cube = _cube(np.ones((1, 1, 2, 2)))
    out = execute(graph, _with_input(local_registry(), cube))
    assert sum(parsed) == linear and len(parsed) == len(graph)
    assert (out.values == 2.0**k).all()


def test_7_nan_reductions_do_not_warn_for_empty_pixels():
    import dask.array as dsa

    rng = np.random.default_rng(7)
    values = rng.uniform(0, 1, (5, 6, 6))
    values[:, :3] = np.nan  # no data at all
    values[1:, 3, :] = np.nan  # one value: no sample deviation
    data = dsa.from_array(values, chunks=(1, 3, 3))  # several blocks: dask's threads
    raw = local_registry(workarounds=False)
    ours = local_registry()
    for name, message, ref in (("median", "All-NaN slice", np.nanmedian),
                               ("sd", "Degrees of freedom|invalid value", lambda a, axis: np.nanstd(
                                   a, axis=axis, ddof=1))):
        # "DID NOT WARN" here: the engine is fixed, remove this workaround.
        with pytest.warns(RuntimeWarning, match=message):
            np.asarray(raw[name].implementation(data=data, axis=0))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = np.asarray(ours[name].implementation(data=data, axis=0))
            kept = np.asarray(ours[name].implementation(data=data, axis=0, keepdims=True))
            eager = ours[name].implementation(data=values, axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = ref(values, axis=0)
        np.testing.assert_array_equal(out, expected, err_msg=name)
        np.testing.assert_array_equal(kept[0], expected, err_msg=name)
        np.testing.assert_array_equal(eager, expected, err_msg=name)
        assert np.isnan(out[:3]).all() and np.isfinite(out[4]).all()


def test_8_reducing_over_bands_does_not_touch_numpy_core():
    cube = _cube(np.ones((2, 2, 2, 2)), ["B02", "B04"])
    graph = _load({"first": {"process_id": "reduce_dimension", "result": True, "arguments": {
        "data": {"from_node": "load"}, "dimension": "bands", "reducer": {"process_graph": {
            "e": {"process_id": "array_element", "result": True,
                  "arguments": {"data": {"from_parameter": "data"}, "index": 0}}}}}}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ProcessGraphError, match=r"numpy\.core is deprecated"):
            execute(graph, _with_input(local_registry(workarounds=False), cube))
            pytest.fail(FIXED)
        out = execute(graph, _with_input(local_registry(), cube))
    assert out.dims == ("t", "y", "x") and (out.values == 1).all()
