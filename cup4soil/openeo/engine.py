"""Run an openEO process graph locally with ``openeo_processes_dask`` on a cup4soil cube.

:func:`run_local` executes every process with the implementations of
``openeo_processes_dask`` (through ``openeo_pg_parser_networkx``, which parses each node and
its callbacks). Three processes are given data instead of reaching a back-end:
``load_collection`` of CDSE's ``SENTINEL2_L2A`` returns the user's cube with CDSE's band
names, ``load_collection`` of ESA WorldCover returns the ``worldcover`` raster, and
``load_stac`` returns the PVIR2 ``threshold`` on the cube's grid.

The engine (``openeo_processes_dask`` 2026.9 with ``openeo_pg_parser_networkx`` 2026.3)
cannot run DLR's graph as it is. Each workaround lives here, in this one adapter, and
``tests/test_openeo_engine.py`` has one test per workaround that fails once the engine is
fixed (so the workaround can go):

1. ``merge_cubes`` does not broadcast a cube without a time dimension over the other's
   time steps (openEO's merge of a threshold raster onto a time series); it asks for an
   overlap resolver although no label overlaps. :func:`_merge_cubes` broadcasts first.
2. ``apply_dimension`` calls its process with ``keepdims=False``, so a reducer inside it
   (``median(data)``) drops the dimension the process keeps, and ``data - median(data)``
   cannot broadcast. :func:`_apply_dimension` runs the process with ``keepdims=True``.
3. ``apply_dimension`` loses the time labels of the kept dimension (it compares instead of
   assigning them), so a later ``mask`` refuses the cube. They are put back.
4. ``resample_spatial`` of a cube already at the requested resolution and CRS re-grids it
   from its footprint, with one more row and column on each side (a 34 x 34 px cube at
   20 m comes back 36 x 36). Such a cube is returned unchanged, as a back-end does.
5. Parameters of a user-defined process are not visible inside callbacks (DLR's
   ``nmad_sigma`` in ``apply_dimension``); they are substituted by value before the run.
6. ``openeo_pg_parser_networkx`` unflattens a graph into a tree, once per path from the
   result: DLR's 79 nodes have 13,773 paths and become 21,159 parsed nodes, and the walk
   scans all of them for every node (minutes before any pixel is touched). This adapter
   walks the flat graph itself, in dependency order, and has the parser parse one node
   (and its callbacks) at a time: the same process implementations, linear time.
7. The nan-reductions behind ``median`` and ``sd`` warn for every block with a pixel
   without data, a normal case for composites ("All-NaN slice encountered", "invalid
   value encountered in divide"), and fail runs with warnings as errors. The engine's
   functions run per block (the reduced axis whole); slices with too few values are
   reduced as zeros and set to NaN, as the engine would, so nothing warns.
8. ``reduce_dimension`` over text labels (bands) takes ``min()`` of the labels, fails, and
   names ``numpy.core._exceptions`` in its ``except`` clause: NumPy 2 deprecated
   ``numpy.core``, so every reduction over bands warns, and fails with warnings as errors.

Reflectance is handed to the engine as float64 with nodata (0) as NaN, as CDSE masks it:
the NMAD limits then come out bit for bit as in cup4soil's float64 kernel.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ParameterError, ProcessGraphError
from ..scmap import threshold_on
from ..scmap.masks import sun_zenith
from ..sources.sentinel2 import REFLECTANCE_BANDS, SCL
from ._deps import require
from .graph import (
    CDSE_S2_COLLECTION,
    CDSE_WORLDCOVER_COLLECTION,
    SUN_ZENITH_BAND,
    WORLDCOVER_BAND,
    bind_parameters,
    load_graph,
    parameter_values,
)
from .results import to_composite

__all__ = ["ENGINE_MODULES", "execute", "local_registry", "run_local"]

_WHAT = "openeo.run_local"
#: The packages a local run imports (all in the ``openeo`` extra).
ENGINE_MODULES = ("openeo_processes_dask", "openeo_pg_parser_networkx")
#: Prefix of the parameters that carry the values of other nodes into a node's run.
_NODE_PARAM = "__cup4soil_node_"


def _import_engine() -> tuple[Any, Any, Any, Any, Any]:
    """The engine's modules; its import logs that ML processes are missing, which they are
    on purpose (not needed), so that one message is kept out of the user's terminal."""
    log = logging.getLogger("openeo_processes_dask.process_implementations")
    level = log.level
    log.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        # Import-time noise of third-party code, not the user's concern: the engine's spec
        # loader json.load()s open() files it never closes, stac_validator announces its
        # deprecation, planetary_computer uses pydantic's class-based config.
        warnings.simplefilter("ignore", ResourceWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            impls = require("openeo_processes_dask.process_implementations", _WHAT)
            specs = require("openeo_processes_dask.specs", _WHAT)
            core = require("openeo_processes_dask.process_implementations.core", _WHAT)
            parser = require("openeo_pg_parser_networkx", _WHAT)
            registry = require("openeo_pg_parser_networkx.process_registry", _WHAT)
        finally:
            log.setLevel(level)
    return impls, specs, core, parser, registry


# ------------------------------------------------------------------------------ workarounds


def _merge_cubes(engine: Callable[..., Any]) -> Callable[..., Any]:
    """Workaround 1: broadcast a cube lacking a dimension (time) before merging."""

    def merge_cubes(cube1: Any, cube2: Any, overlap_resolver: Any = None,
                    context: Any = None) -> Any:
        only1 = [d for d in cube1.dims if d not in cube2.dims]
        only2 = [d for d in cube2.dims if d not in cube1.dims]
        if overlap_resolver is None and (only1 or only2):
            if only1:
                cube2 = cube2.expand_dims({d: cube1[d].values for d in only1}).transpose(
                    *cube1.dims)
            if only2:
                cube1 = cube1.expand_dims({d: cube2[d].values for d in only2}).transpose(
                    *cube2.dims)
        return engine(cube1, cube2, overlap_resolver=overlap_resolver, context=context)

    return merge_cubes


def _apply_dimension(engine: Callable[..., Any]) -> Callable[..., Any]:
    """Workarounds 2 and 3: reducers in the process keep the dimension; labels restored."""

    def apply_dimension(data: Any, process: Callable[..., Any], dimension: str,
                        target_dimension: str | None = None, context: Any = None) -> Any:
        def keeping(*args: Any, **kwargs: Any) -> Any:
            kwargs["keepdims"] = True
            return process(*args, **kwargs)

        out = engine(data, keeping, dimension, target_dimension=target_dimension,
                     context=context)
        same = target_dimension in (None, dimension)
        if (same and dimension in out.dims and dimension in data.coords
                and out.sizes[dimension] == data.sizes[dimension]):
            out = out.assign_coords({dimension: data[dimension].values})
        return out

    return apply_dimension


def _resample_spatial(engine: Callable[..., Any]) -> Callable[..., Any]:
    """Workaround 4: a cube already at the requested resolution and CRS is unchanged."""

    def resample_spatial(data: Any, projection: Any = None, resolution: Any = 0,
                         method: str = "near", align: str = "upper-left") -> Any:
        geobox = data.odc.geobox
        if geobox is not None and projection in (None, geobox.crs, str(geobox.crs)):
            res = resolution if isinstance(resolution, (list, tuple)) else [resolution] * 2
            have = (abs(float(geobox.resolution.x)), abs(float(geobox.resolution.y)))
            if all(float(r) in (0.0, h) for r, h in zip(res, have, strict=True)):
                return data
        return engine(data, projection=projection, resolution=resolution, method=method,
                      align=align)

    return resample_spatial


def _quiet_reducer(min_count: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Workaround 7: the engine's nan-reduction, block by block (the reduced axis whole),
    without empty-slice warnings: a slice with fewer than ``min_count`` values (1 for the
    median, 2 for the sample deviation) is reduced as zeros and its result set to NaN, which
    is what the engine gives it. Not by silencing the warnings: ``warnings.catch_warnings``
    is global state, and dask runs blocks in threads."""

    def wrap(engine: Callable[..., Any]) -> Callable[..., Any]:
        def run(block: Any, **kwargs: Any) -> Any:
            arr = np.asarray(block)
            if not np.issubdtype(arr.dtype, np.floating):
                return engine(block, **kwargs)
            ax = kwargs["axis"]
            few = np.count_nonzero(~np.isnan(arr), axis=ax, keepdims=True) < min_count
            if not few.any():
                return engine(arr, **kwargs)
            out = engine(np.where(few, 0.0, arr), **kwargs)
            return np.where(few if kwargs.get("keepdims") else np.squeeze(few, axis=ax),
                            np.nan, out)

        def reducer(data: Any, ignore_nodata: bool = True, axis: Any = None,
                    keepdims: bool = False) -> Any:
            import dask.array as dsa

            if not isinstance(axis, (int, np.integer)):
                return engine(data, ignore_nodata=ignore_nodata, axis=axis, keepdims=keepdims)
            arr: Any = data  # dask is untyped
            ax = int(axis) % arr.ndim
            kw = {"ignore_nodata": ignore_nodata, "axis": ax, "keepdims": keepdims}
            if not isinstance(data, dsa.Array):
                return run(arr, **kw)
            arr = arr.rechunk({ax: -1})
            dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
            if keepdims:
                chunks = tuple((1,) if i == ax else c for i, c in enumerate(arr.chunks))
                return arr.map_blocks(run, dtype=dtype, chunks=chunks, **kw)
            return arr.map_blocks(run, dtype=dtype, drop_axis=ax, **kw)

        reducer.__name__ = getattr(engine, "__name__", "reducer")
        return reducer

    return wrap


def _reduce_dimension(engine: Callable[..., Any]) -> Callable[..., Any]:
    """Workaround 8: reducing over text labels without NumPy's ``numpy.core`` warning."""

    def reduce_dimension(data: Any, reducer: Callable[..., Any], dimension: str,
                         context: Any = None) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="numpy.core is deprecated",
                                    category=DeprecationWarning)
            return engine(data, reducer, dimension, context=context)

    return reduce_dimension


#: Engine processes replaced by a workaround around the engine's own implementation.
_WORKAROUNDS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "merge_cubes": _merge_cubes,
    "apply_dimension": _apply_dimension,
    "resample_spatial": _resample_spatial,
    "reduce_dimension": _reduce_dimension,
    "median": _quiet_reducer(1),
    "sd": _quiet_reducer(2),
}


def local_registry(*, workarounds: bool = True) -> Any:
    """The engine's process registry (``openeo_pg_parser_networkx.ProcessRegistry``) with
    the workarounds of this module; ``workarounds=False`` gives the engine as it is (for
    the tests that watch for a fixed engine, and for comparisons)."""
    impls, specs, core, _parser, registry = _import_engine()
    reg = registry.ProcessRegistry(wrap_funcs=[core.process])
    for name, engine in inspect.getmembers(impls, inspect.isfunction):
        spec = getattr(specs, name, None)
        if spec is None:
            continue
        key = name.strip("_")
        func: Callable[..., Any] = engine
        if workarounds and key in _WORKAROUNDS:
            func = _WORKAROUNDS[key](engine)
        reg[key] = registry.Process(spec=spec, implementation=func)
    return reg


# --------------------------------------------------------------------------- graph walking


def _refs(value: Any, top: bool = True) -> Iterator[tuple[str, bool]]:
    """Nodes a node's argument refers to (``from_node``), and whether as a whole argument.
    Callbacks (``process_graph``) are their own scope and are not entered."""
    if isinstance(value, Mapping):
        if "from_node" in value:
            yield str(value["from_node"]), top
        elif "process_graph" not in value:
            for v in value.values():
                yield from _refs(v, top=False)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v, top=False)


def _order(flat: Mapping[str, Any], result: str) -> list[str]:
    """The nodes the result needs, each after the nodes it refers to."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if name not in flat:
            raise ProcessGraphError(f"the process graph refers to a node {name!r} it lacks.")
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise ProcessGraphError(f"the process graph has a cycle through node {name!r}.")
        state[name] = 1
        for arg in flat[name].get("arguments", {}).values():
            for ref, _ in _refs(arg):
                visit(ref)
        state[name] = 2
        order.append(name)

    visit(result)
    return order


def execute(flat: Mapping[str, Any], registry: Any) -> Any:
    """Run a flat process graph (parameters bound) with a process registry, node by node.

    Workaround 6: each node (with its callbacks) is parsed on its own and run with the
    results of the nodes it refers to, in dependency order; a ``save_result`` at the end is
    left out (its data is the result).

    Parameters
    ----------
    flat
        ``{node: {"process_id": ..., "arguments": ...}}`` with one ``"result": true``.
    registry
        An ``openeo_pg_parser_networkx.ProcessRegistry`` (see :func:`local_registry`).
    """
    parser = _import_engine()[3]
    result = next(k for k, n in flat.items() if n.get("result"))
    if flat[result]["process_id"] == "save_result":
        ref = flat[result]["arguments"].get("data", {})
        if not (isinstance(ref, Mapping) and "from_node" in ref):
            raise ProcessGraphError("save_result has no data node to run locally.")
        result = str(ref["from_node"])
    values: dict[str, Any] = {}
    for name in _order(flat, result):
        node = flat[name]
        args = {}
        for key, arg in node.get("arguments", {}).items():
            refs = list(_refs(arg))
            if any(not whole for _, whole in refs):
                raise ProcessGraphError(
                    f"node {name!r} ({node['process_id']}) refers to another node inside its "
                    f"argument {key!r}; a local run supports node references as whole "
                    "arguments only.")
            args[key] = ({"from_parameter": _NODE_PARAM + refs[0][0]} if refs else arg)
        if node["process_id"] == "save_result":
            raise ProcessGraphError(f"node {name!r}: save_result is only allowed as the result.")
        single = {"process_graph": {name: {"process_id": node["process_id"],
                                           "arguments": args, "result": True}}}
        params = {_NODE_PARAM + r: values[r] for arg in node.get("arguments", {}).values()
                  for r, _ in _refs(arg)}
        try:
            graph = parser.OpenEOProcessGraph(single)
            values[name] = graph.to_callable(registry, parameters=params)(
                named_parameters=params)
        except ProcessGraphError:
            raise
        except Exception as exc:  # the engine's own exceptions carry no common base
            raise ProcessGraphError(
                f"node {name!r} ({node['process_id']}) failed in openeo_processes_dask: "
                f"{type(exc).__name__}: {exc}") from None
    return values[result]


# ---------------------------------------------------------------------------- local inputs


def _as_datetime(value: Any) -> np.datetime64 | None:
    value = getattr(value, "root", value)
    if value is None:
        return None
    try:
        return np.datetime64(str(value).replace("Z", "").split("+")[0], "ns")
    except ValueError:
        raise ProcessGraphError(f"temporal_extent bound {value!r} is not a date.") from None


def _bounds(extent: Any) -> tuple[float, float, float, float, Any] | None:
    if extent is None:
        return None
    def get(key: str) -> Any:
        return extent.get(key) if isinstance(extent, Mapping) else getattr(extent, key)

    try:
        return (float(get("west")), float(get("south")), float(get("east")),
                float(get("north")), get("crs") or 4326)
    except (TypeError, ValueError, AttributeError):
        raise ProcessGraphError(
            "a local run takes spatial_extent as a bounding box {west, south, east, north, "
            f"crs}}, not {str(extent)[:80]}.") from None


class _LocalData:
    """The data the graph's load processes return in a local run."""

    def __init__(self, cube: xr.Dataset, threshold: Any, worldcover: xr.DataArray | None):
        # The sun angle under any spelling SCMaP honours (a (time,) data variable, an
        # elevation, radians) becomes ``sza``, or is refused: never ignored.
        cube = sun_zenith(cube)
        self.cube, self.threshold, self.worldcover = cube, threshold, worldcover
        self.geobox = cube.odc.geobox
        self.n_scenes = 0  # scenes the graph loaded

    def _check_extent(self, extent: Any, what: str) -> None:
        from odc.geo.geom import box

        b = _bounds(extent)
        if b is None:
            return
        area = box(b[0], b[1], b[2], b[3], b[4] if not isinstance(b[4], int)
                   else f"EPSG:{b[4]}")
        if not area.to_crs(self.geobox.crs).intersects(self.geobox.extent):
            raise ProcessGraphError(
                f"{what}: the graph's spatial extent ({b[0]:.4f}, {b[1]:.4f}, {b[2]:.4f}, "
                f"{b[3]:.4f}) does not overlap the cube. Build the cube for the graph's "
                "area (cup4soil openeo run-local does).")

    def load_collection(self, id: str, spatial_extent: Any = None, temporal_extent: Any = None,
                        bands: Any = None, properties: Any = None) -> xr.DataArray:
        if id == CDSE_S2_COLLECTION:
            self._check_extent(spatial_extent, f"load_collection({id})")
            return self._sentinel2(temporal_extent, bands)
        if id == CDSE_WORLDCOVER_COLLECTION:
            return self._worldcover(bands)
        raise ProcessGraphError(
            f"load_collection({id!r}): a local run provides {CDSE_S2_COLLECTION} (the cube) "
            f"and {CDSE_WORLDCOVER_COLLECTION} (worldcover=) only.")

    def load_stac(self, url: str, spatial_extent: Any = None, temporal_extent: Any = None,
                  bands: Any = None, properties: Any = None, resolution: Any = None,
                  projection: Any = None, resampling: Any = None) -> xr.DataArray:
        if self.threshold is None:
            raise ProcessGraphError(
                f"the graph loads {url} with load_stac (the PVIR2 threshold): pass "
                "threshold= to run_local (a number, a raster path, a DataArray or "
                "'dlr-europe'; --threshold on the command line).")
        thr = threshold_on(self.geobox, self.threshold).astype("float64")
        label = next(iter(bands)) if bands else "threshold"
        da = thr.expand_dims(t=[self.cube.time.values[0]], bands=[label])
        return self._georef(da.chunk({"t": -1, "bands": -1}))

    def _georef(self, da: xr.DataArray) -> xr.DataArray:
        da = da.drop_vars([c for c in da.coords if c not in ("t", "bands", "y", "x")])
        out: xr.DataArray = da.rio.write_crs(self.geobox.crs.to_wkt())
        return out

    def _sentinel2(self, temporal_extent: Any, bands: Any) -> xr.DataArray:
        cube = self.cube
        names = list(bands) if bands else [*REFLECTANCE_BANDS, SCL, SUN_ZENITH_BAND]
        known = {*REFLECTANCE_BANDS, SCL, SUN_ZENITH_BAND}
        unknown = [b for b in names if b not in known]
        if unknown:
            raise ProcessGraphError(
                f"load_collection({CDSE_S2_COLLECTION}) asks for {unknown}; the local cube "
                f"provides {', '.join(sorted(known))}.")
        if temporal_extent is not None:
            start, end = (_as_datetime(v) for v in temporal_extent)
            t = cube.time.values
            keep = np.ones(t.shape, bool)
            if start is not None:
                keep &= t >= start
            if end is not None:
                keep &= t < end  # openEO's interval is half-open
            if not keep.any():
                raise ProcessGraphError(
                    f"no scene of the cube ({str(t.min())[:10]} .. {str(t.max())[:10]}) falls "
                    f"in the graph's temporal extent [{start}, {end}).")
            cube = cube.isel(time=np.flatnonzero(keep))
        self.n_scenes = max(self.n_scenes, int(cube.sizes["time"]))
        layers = []
        for name in names:
            if name in REFLECTANCE_BANDS:
                # CDSE masks nodata (0); cup4soil's cube keeps it as 0.
                da = cube[name].astype("float64")
                layers.append(da.where(cube[name] != 0))
            elif name == SCL:
                layers.append(cube[SCL].astype("float64"))
            elif "sza" in cube.data_vars:
                layers.append(cube["sza"].astype("float64"))
            elif "sza" in cube.coords:
                layers.append(cube["sza"].astype("float64").broadcast_like(cube[SCL]))
            else:
                layers.append(xr.full_like(cube[SCL], np.nan, dtype="float64"))
        da = xr.concat([x.drop_vars("sza", errors="ignore") for x in layers], dim="bands")
        da = da.assign_coords(bands=names).rename(time="t").transpose("t", "bands", "y", "x")
        chunks = {"t": -1, "bands": -1}
        # Read once: the engine computes intermediate masks while it builds its graph,
        # which would read a lazy cube again each time.
        return self._georef(da.compute().chunk(chunks))

    def _worldcover(self, bands: Any) -> xr.DataArray:
        if self.worldcover is None:
            raise ProcessGraphError(
                f"the graph loads {CDSE_WORLDCOVER_COLLECTION}: pass worldcover= (ESA "
                "WorldCover classes on the cube's grid) to run_local, or export the graph "
                "with worldcover=False.")
        label = next(iter(bands)) if bands else WORLDCOVER_BAND
        da = self.worldcover.astype("float64").expand_dims(
            t=[np.datetime64("2021-01-01", "ns")], bands=[label])
        return self._georef(da.chunk({"t": -1, "bands": -1}))


def _check_inputs(cube: xr.Dataset, worldcover: xr.DataArray | None) -> None:
    missing = [b for b in (*REFLECTANCE_BANDS, SCL) if b not in cube.data_vars]
    if missing:
        raise ParameterError(
            f"the cube lacks {', '.join(missing)}; build it with cup4soil.load_s2(items) "
            "(all ten bands and SCL are the default).")
    for dim in ("time", "y", "x"):
        if dim not in cube.dims:
            raise ParameterError(f"the cube has no '{dim}' dimension; use cup4soil.load_s2.")
    if cube.odc.geobox is None:
        raise ParameterError("the cube has no CRS/grid; build it with cup4soil.load_s2.")
    if worldcover is not None and (
            not isinstance(worldcover, xr.DataArray) or worldcover.dims != ("y", "x")
            or worldcover.shape != (cube.sizes["y"], cube.sizes["x"])
            or not np.allclose(worldcover.x.values, cube.x.values)
            or not np.allclose(worldcover.y.values, cube.y.values)):
        raise ParameterError(
            "worldcover must be a (y, x) DataArray on the cube's grid; reproject it with "
            "worldcover.odc.reproject(cube.odc.geobox, resampling='nearest').")


def _cube_extents(cube: xr.Dataset) -> tuple[list[str], dict[str, Any]]:
    """The cube's own time range (half-open) and lon/lat bounds, as openEO values."""
    t = cube.time.values
    end = t.max() + np.timedelta64(1, "s")
    w, s, e, n = cube.odc.geobox.extent.to_crs("EPSG:4326").boundingbox
    return ([str(t.min())[:19] + "Z", str(end)[:19] + "Z"],
            {"west": w, "south": s, "east": e, "north": n, "crs": 4326})


def run_local(
    graph: Any,
    cube: xr.Dataset,
    threshold: Any = None,
    *,
    worldcover: xr.DataArray | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Execute an openEO process graph with ``openeo_processes_dask`` on a cup4soil cube.

    Parameters
    ----------
    graph
        A process graph (from :func:`scmap_graph`, DLR's user-defined process, a JSON file
        or string, or an openEO client ``DataCube``).
    cube
        Dataset from :func:`cup4soil.load_s2` for the graph's area (and time): it is what
        ``load_collection("SENTINEL2_L2A")`` returns, with CDSE's band names, reflectance as
        float64 with nodata as NaN, filtered to the graph's temporal extent.
    threshold
        What ``load_stac`` of the PVIR2 threshold returns, as for
        :func:`cup4soil.scmap.composite`: a number, a raster path, a DataArray or
        ``"dlr-europe"``, resampled bilinearly onto the cube's grid (not needed by a graph
        with a constant threshold).
    worldcover
        ESA WorldCover classes on the cube's grid: what
        ``load_collection("ESA_WORLDCOVER_10M_2021_V2")`` returns.
    parameters
        Values of a user-defined process's parameters (e.g. DLR's ``nmad_sigma``); defaults
        otherwise, and the cube's own time range and bounds for temporal and spatial
        extents that are not given.

    Returns
    -------
    xarray.Dataset
        The result in :func:`cup4soil.scmap.composite`'s layout (``SRC``, ``SRC_STD``, ...
        over ``(band, y, x)``; ``VPC``, ``BSC``, ``BSF``, ``MASK`` over ``(y, x)``) with the
        cube's grid; lazy where the engine is (it computes some masks while building).
    """
    for module in ENGINE_MODULES:
        require(module, _WHAT)
    doc = load_graph(graph)
    if not isinstance(cube, xr.Dataset):
        raise ParameterError(f"cube must be an xarray Dataset from cup4soil.load_s2, not "
                             f"{type(cube).__name__}.")
    _check_inputs(cube, worldcover)
    # Workaround 5: the process's parameters as values, also inside callbacks.
    time, bbox = _cube_extents(cube)
    values = parameter_values(doc, parameters, temporal_extent=time, bbox=bbox)
    flat = bind_parameters(doc, values)
    data = _LocalData(cube, threshold, worldcover)
    reg = local_registry()
    _, specs, _, _, registry = _import_engine()
    reg["load_collection"] = registry.Process(spec=specs.load_collection,
                                              implementation=data.load_collection)
    reg["load_stac"] = registry.Process(spec=specs.load_stac, implementation=data.load_stac)
    out = execute(flat, reg)
    if not isinstance(out, xr.DataArray):
        raise ProcessGraphError(
            f"the graph's result is a {type(out).__name__}, not a raster cube.")
    ds = to_composite(out)
    ds.attrs.update({
        "title": "SCMaP composites (openEO process graph run locally with "
                 "openeo_processes_dask)",
        "n_scenes": data.n_scenes,
        **{k: cube.attrs[k] for k in ("input_items", "processing_baselines")
           if k in cube.attrs},
    })
    return ds
