"""Equivalence: SCMaP as an openEO graph, run locally with openeo_processes_dask, equals
cup4soil's native ``scmap.composite`` -- on the sample archive and on held-out random cubes.

cup4soil's exported graph equals it everywhere (counts exactly, reflectances to float32
rounding). DLR's published graph equals it everywhere except its documented defects:
MASK 2 for every pixel that is neither 1 nor 3, and VPC/SRC from bands that are partly
missing.
"""

from __future__ import annotations

import numpy as np
import pytest

import cup4soil
from cup4soil import scmap
from cup4soil.errors import ParameterError, ProcessGraphError
from cup4soil.sample import make_catalog

pytest.importorskip("openeo_processes_dask")

from cup4soil import openeo as c4o

from openeo_cubes import assert_equivalent, random_cube

DLR_UDP = "scmap/scmap_composite.udp.json"
THRESHOLD = "scmap/th_S2_s2cr_buffered_cog.tif"


# ----------------------------------------------------------------------- the sample archive


@pytest.fixture(scope="module")
def small_sample(tmp_path_factory):
    """34 x 34 px at 20 m, 12 scenes over 2021-2022: bare fields, grass, forest, a lake."""
    return make_catalog(tmp_path_factory.mktemp("openeo-sample"), size=64, years=(2021, 2022),
                        scenes_per_year=6, seed=3)


@pytest.fixture(scope="module")
def sample_inputs(small_sample, shared_data):
    items = cup4soil.search(small_sample.bbox, small_sample.time_range,
                            catalog=small_sample.catalog)
    cube = cup4soil.load_s2(items, resolution=20).compute()
    wc = small_sample.truth_on("worldcover", cube.odc.geobox)
    return cube, wc, str(shared_data / THRESHOLD)


@pytest.fixture(scope="module")
def sample_native(sample_inputs):
    cube, wc, thr = sample_inputs
    return scmap.composite(cube, thr, worldcover=wc).compute()


def test_exported_graph_equals_native_on_the_sample(small_sample, sample_inputs, sample_native):
    cube, wc, thr = sample_inputs
    graph = c4o.scmap_graph(temporal_extent=small_sample.time_range, bbox=small_sample.bbox)
    local = c4o.run_local(graph, cube, thr, worldcover=wc)
    assert list(local.data_vars) == list(scmap.PRODUCTS)
    assert_equivalent(local.compute(), sample_native)
    # The sample has every class and bare pixels: the comparison is not vacuous.
    assert set(np.unique(sample_native.MASK.values)) == {0, 1, 2, 3}
    assert (sample_native.BSC.values >= 3).sum() > 100


def test_dlr_graph_equals_native_except_its_mask_defect(shared_data, sample_inputs,
                                                        sample_native):
    cube, wc, thr = sample_inputs
    dlr = c4o.run_local(str(shared_data / DLR_UDP), cube, thr, worldcover=wc).compute()
    assert set(dlr.data_vars) == set(scmap.PRODUCTS) - {"SRC_CI95"}  # DLR has no CI95
    assert_equivalent(dlr, sample_native, skip=("MASK", "SRC_CI95"))
    native = sample_native.MASK.values
    # The defect: round(not(any(PVIR2 < T))) + 2 is never 0, so every pixel that is
    # neither 1 nor 3 becomes 2 -- and only those.
    np.testing.assert_array_equal(dlr.MASK.values, np.where(native == 0, 2, native))
    assert (native == 0).sum() > 50


# --------------------------------------------------------------------- held-out random cubes


@pytest.mark.parametrize("seed", [8101, 8202])
def test_exported_graph_equals_native_on_random_cubes(seed):
    cube, thr, wc = random_cube(seed)
    native = scmap.composite(cube, thr, worldcover=wc).compute()
    assert (native.BSC.values >= 3).sum() > 20 and (native.MASK.values == 2).any()
    graph = c4o.scmap_graph(temporal_extent="2020/2022", bbox=(14.3, 52.6, 14.4, 52.7))
    local = c4o.run_local(graph, cube, thr, worldcover=wc).compute()
    assert_equivalent(local, native)


def test_dlr_graph_on_a_random_cube(shared_data):
    cube, thr, wc = random_cube(8404, partial_nodata=False)
    native = scmap.composite(cube, thr, worldcover=wc).compute()
    dlr = c4o.run_local(str(shared_data / DLR_UDP), cube, thr, worldcover=wc).compute()
    assert_equivalent(dlr, native, skip=("MASK", "SRC_CI95"))
    np.testing.assert_array_equal(dlr.MASK.values,
                                  np.where(native.MASK.values == 0, 2, native.MASK.values))


def test_dlr_graph_counts_observations_with_a_band_missing(shared_data):
    # Difference 4 of docs/openeo.md: an observation whose B11 alone is missing is invalid
    # for cup4soil (both engines: the random-cube tests above have such observations);
    # DLR's graph counts it in VPC (from B02) all the same.
    cube, thr, wc = random_cube(8505, partial_nodata=True)
    native = scmap.composite(cube, thr, worldcover=wc, products=["VPC"]).compute()
    dlr = c4o.run_local(str(shared_data / DLR_UDP), cube, thr, worldcover=wc).compute()
    extra = dlr.VPC.values.astype(int) - native.VPC.values
    b11_lost = (cube.B11 == 0) & (cube.B02 != 0) & cube.SCL.isin([4, 5, 6]) & ~(cube.sza > 70)
    # Extra counts only where such observations are (some of them lie in a cloud buffer).
    assert (extra >= 0).all() and extra.sum() > 0
    assert (extra <= b11_lost.sum("time").values).all()


def test_products_subset_scalar_threshold_no_worldcover():
    cube, _, _ = random_cube(8606)
    products = ["SRC", "VPC", "BSC", "BSF", "MASK"]
    graph = c4o.scmap_graph(temporal_extent="2020/2022", bbox=(14.3, 52.6, 14.4, 52.7),
                            products=products, threshold=0.3, worldcover=False)
    processes = {n["process_id"] for n in graph["process_graph"].values()}
    assert "load_stac" not in processes
    ids = [n["arguments"].get("id") for n in graph["process_graph"].values()
           if n["process_id"] == "load_collection"]
    assert ids == [c4o.CDSE_S2_COLLECTION]
    local = c4o.run_local(graph, cube).compute()  # no threshold, no worldcover needed
    assert list(local.data_vars) == products
    assert_equivalent(local, scmap.composite(cube, 0.3, products=products).compute())


def test_temporal_extent_of_the_graph_selects_scenes():
    cube, thr, wc = random_cube(8707, n_time=12)
    first = str(cube.time.values[4])[:10]
    graph = c4o.scmap_graph(temporal_extent=(first, "2022-12-31"), bbox=(14.3, 52.6, 14.4, 52.7),
                            products=["VPC", "BSC"])
    local = c4o.run_local(graph, cube, thr, worldcover=wc).compute()
    sub = cube.isel(time=slice(4, None))
    assert_equivalent(local, scmap.composite(sub, thr, worldcover=wc,
                                             products=["VPC", "BSC"]).compute())
    assert local.attrs["n_scenes"] == 8


# ----------------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def tiny():
    return random_cube(8808, size=8, n_time=4)


def test_what_a_local_run_cannot_provide_is_named(tiny):
    cube, thr, wc = tiny
    graph = c4o.scmap_graph(temporal_extent="2020/2022", bbox=(14.3, 52.6, 14.4, 52.7),
                            products=["BSC"])
    with pytest.raises(ProcessGraphError, match="worldcover="):
        c4o.run_local(graph, cube, thr)
    with pytest.raises(ProcessGraphError, match="threshold="):
        c4o.run_local(graph, cube, worldcover=wc)
    late = c4o.scmap_graph(temporal_extent="2024/2025", bbox=(14.3, 52.6, 14.4, 52.7),
                           products=["VPC"])
    with pytest.raises(ProcessGraphError, match="temporal extent"):
        c4o.run_local(late, cube)
    far = c4o.scmap_graph(temporal_extent="2020/2022", bbox=(11.1, 48.0, 11.3, 48.2),
                          products=["VPC"])
    with pytest.raises(ProcessGraphError, match="does not overlap the cube"):
        c4o.run_local(far, cube)
    other = {"process_graph": {"l": {"process_id": "load_collection", "result": True,
                                     "arguments": {"id": "SENTINEL1_GRD",
                                                   "spatial_extent": None,
                                                   "temporal_extent": None}}}}
    with pytest.raises(ProcessGraphError, match="SENTINEL1_GRD"):
        c4o.run_local(other, cube)
    with pytest.raises(ParameterError, match="lacks B12"):
        c4o.run_local(graph, cube.drop_vars("B12"), thr, worldcover=wc)
    with pytest.raises(ParameterError, match="worldcover must be"):
        c4o.run_local(graph, cube, thr, worldcover=wc.isel(x=slice(1, None)))


def test_parameters_of_dlr_udp(shared_data):
    cube, thr, wc = random_cube(8909, partial_nodata=False)  # difference 4 aside
    udp = str(shared_data / DLR_UDP)
    with pytest.raises(ProcessGraphError, match="not parameters of the process"):
        c4o.run_local(udp, cube, thr, worldcover=wc, parameters={"sigma": 2})
    # nmad_sigma reaches the callback inside apply_dimension (engine workaround 5).
    strict = c4o.run_local(udp, cube, thr, worldcover=wc, parameters={"nmad_sigma": 0.0})
    native = scmap.composite(cube, thr, worldcover=wc, nmad_sigma=0.0, products=["BSC"])
    default = scmap.composite(cube, thr, worldcover=wc, products=["BSC"])
    np.testing.assert_array_equal(strict.BSC.values, native.BSC.values)
    assert (native.BSC.values != default.BSC.values).any()  # the parameter matters here
