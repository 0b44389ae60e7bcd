"""SCMaP's block engine (issue 15): the compiled passes against the slow per-pixel reference,
without Dask, in memory and spilled to scratch; the exact integer moments; and a generic lazy
cube whose upstream chunks are each computed a bounded number of times."""

from __future__ import annotations

import threading
from collections import Counter

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st
from test_scmap_kernels import CLOUD, INVALID, make_cube, reference, scenes

from cup4soil import scmap
from cup4soil.cube.windows import FlatGraph, window_source
from cup4soil.scmap import block_kernels as _bk
from cup4soil.scmap import engine
from cup4soil.sources.sentinel2 import REFLECTANCE_BANDS, SCL


def _block(scl, bands, sza, thr, wc, *, radius, core, task_memory, batch_bytes):
    """All products of the block ``core = (y0, y1, x0, x1)`` by the engine's passes, the
    cloud buffer's halo read from the neighbouring pixels."""
    t, h, w = scl.shape
    y0, y1, x0, x1 = core
    ya, yb, xa, xb = max(0, y0 - radius), min(h, y1 + radius), max(0, x0 - radius), min(
        w, x1 + radius)
    arrays = {SCL: scl.astype(np.uint8)}
    arrays.update({b: bands[i].astype(np.uint16) for i, b in enumerate(REFLECTANCE_BANDS)})
    flat = FlatGraph.of_many(arrays)
    windows = engine.BlockWindows(
        window_source(flat, {SCL: (ya, yb, xa, xb, 0, t)}, batch_bytes=batch_bytes),
        window_source(flat, {b: (y0, y1, x0, x1, 0, t) for b in REFLECTANCE_BANDS},
                      batch_bytes=batch_bytes),
        (y0 - ya, yb - y1, x0 - xa, xb - x1))
    params = engine.Params(3.0, 4.0, 3, 70.0, radius, scmap.PRODUCTS)
    wc_core = None if wc is None else wc[y0:y1, x0:x1]
    first = engine.first_pass(windows, thr[y0:y1, x0:x1], wc_core, np.asarray(sza, float),
                              params, task_memory=task_memory)
    try:
        outliers = engine.nmad_filter(first, params)
        out = engine.counts(first.vpc, outliers.bsc, first.below, wc_core, params)
        engine.second_pass(first, outliers, params)
        out.update(engine.band_products(first, outliers, params))
        spilled = not first.store.in_memory
    finally:
        first.store.close()
        if first.records is not None:
            first.records.close()
    return out, first.decoded, spilled


@given(case=scenes(), radius=st.sampled_from([0, 1, 2]), data=st.data(),
       spill=st.booleans(), one_slice_batches=st.booleans())
def test_block_passes_match_reference(case, radius, data, spill, one_slice_batches):
    # Ties, NMAD = 0, bright outliers, nodata bands, NaN and low sun, 0..t bare observations
    # come from the strategy; the block is any sub-rectangle (its halo from the neighbours),
    # its series kept in memory or spilled to scratch, read in one batch or slice by slice.
    scl, bands, sza, thr, wc = case
    _, h, w = scl.shape
    y0 = data.draw(st.integers(0, h - 1))
    y1 = data.draw(st.integers(y0 + 1, h))
    x0 = data.draw(st.integers(0, w - 1))
    x1 = data.draw(st.integers(x0 + 1, w))
    got, decoded, spilled = _block(scl, bands, sza, thr, wc, radius=radius,
                                   core=(y0, y1, x0, x1), task_memory=0 if spill else 2**30,
                                   batch_bytes=1 if one_slice_batches else 2**30)
    assert spilled == spill
    ref = reference(scl, bands, sza, thr, wc, radius=radius)
    for name in ("VPC", "BSC", "MASK"):
        np.testing.assert_array_equal(got[name], ref[name][y0:y1, x0:x1], err_msg=name)
    for name in ("BSF", "SRC", "SRC_STD", "SRC_CI95", "MREF", "MREF_STD"):
        np.testing.assert_allclose(got[name], ref[name][..., y0:y1, x0:x1], rtol=2e-6,
                                   atol=1e-3, equal_nan=True, err_msg=name)
    # A scene's bands are decoded exactly when SCL, the cloud buffer and the sun leave it a
    # pixel that may be valid in the block.
    from scipy.ndimage import maximum_filter

    clouds = maximum_filter(np.isin(scl, CLOUD), size=(1, 2 * radius + 1, 2 * radius + 1),
                            mode="constant")
    possible = ~(np.isin(scl, INVALID) | clouds)[:, y0:y1, x0:x1]
    with np.errstate(invalid="ignore"):
        sun_ok = ~(np.asarray(sza, float) > 70)
    np.testing.assert_array_equal(decoded, possible.any(axis=(1, 2)) & sun_ok)


def test_exact_moments_for_bright_series():
    # 2000 observations of DN near 65 000 with a spread of a few DN: float sums of squares
    # would cancel; the integer moments give NumPy's float64 std of the series exactly.
    rng = np.random.default_rng(1)
    k, nb = 2000, 10
    x = (65000 + rng.integers(-3, 4, (nb, k, 1, 2))).astype(np.uint16)
    codes = np.full((k, 1, 2), _bk.VALID | _bk.BARE, np.uint8)
    s1 = np.zeros((1, 2, nb), np.uint32)
    s2 = np.zeros((1, 2, nb), np.uint64)
    none32, none64 = np.zeros((0, 0, 0), np.uint32), np.zeros((0, 0, 0), np.uint64)
    for part in np.array_split(np.arange(k), 7):  # in batches, as a block task does
        _bk.accumulate(np.ascontiguousarray(codes[part]),
                       tuple(np.ascontiguousarray(x[b][part]) for b in range(nb)),
                       s1, s2, none32, none64, True, False)
    mean, std, ci = (np.empty((nb, 1, 2), np.float32) for _ in range(3))
    n = np.full((1, 2), k, np.int32)
    _bk.finish_moments(s1, s2, n, np.ones((1, 2), bool), mean, std, ci)
    xf = x.astype(np.float64)
    np.testing.assert_array_equal(mean, xf.mean(axis=1).astype(np.float32))
    np.testing.assert_allclose(std, xf.std(axis=1, ddof=1), rtol=1e-6)
    np.testing.assert_allclose(ci, 1.96 * xf.std(axis=1, ddof=1) / np.sqrt(k), rtol=1e-6)


@given(h=st.integers(1, 12), w=st.integers(1, 12), radius=st.integers(0, 4),
       seed=st.integers(0, 2**31 - 1), data=st.data())
def test_dilate_core_matches_scipy(h, w, radius, seed, data):
    from scipy.ndimage import maximum_filter

    cloud = np.random.default_rng(seed).random((2, h, w)) < data.draw(st.floats(0, 0.3))
    top, left = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    ch, cw = data.draw(st.integers(1, h - top)), data.draw(st.integers(1, w - left))
    out = np.empty((2, ch, cw), bool)
    _bk.dilate_core(cloud, radius, top, left, ch, cw, out)
    want = maximum_filter(cloud, size=(1, 2 * radius + 1, 2 * radius + 1), mode="constant")
    np.testing.assert_array_equal(out, want[:, top:top + ch, left:left + cw])


# ------------------------------------------------------------------------- generic lazy cubes


def _generic_cube(t=20, size=64, chunks=(10, 32, 32), seed=7):
    """A cube whose 11 variables come from one loader task per chunk (as a user's own
    loader, or an ``odc.stac.load`` with all bands fused), and the loader's call counter."""
    rng = np.random.default_rng(seed)
    scl = rng.choice(np.array([4, 5, 5, 6, 9, 8], np.uint8), (t, size, size))
    soil = rng.integers(1500, 4000, (10, 1, size, size))
    bands = (soil + rng.integers(-300, 300, (10, t, size, size))).astype(np.uint16)
    bands[6] = np.where(rng.random((t, size, size)) < 0.4, 3500, bands[6])  # some vegetation
    full = np.concatenate([scl[None].astype(np.uint16), bands])  # (11, t, y, x)
    calls: Counter[tuple[int, int, int]] = Counter()
    lock = threading.Lock()

    def load(ti: int, yi: int, xi: int) -> np.ndarray:
        with lock:
            calls[(ti, yi, xi)] += 1
        ct, cy, cx = chunks
        return full[:, ti * ct:(ti + 1) * ct, yi * cy:(yi + 1) * cy, xi * cx:(xi + 1) * cx].copy()

    nt, ny, nx = t // chunks[0], size // chunks[1], size // chunks[2]
    blocks = [[[dsa.from_delayed(dask.delayed(load)(ti, yi, xi),
                                 (11, *chunks), dtype=np.uint16)
                for xi in range(nx)] for yi in range(ny)] for ti in range(nt)]
    stack = dsa.block([blocks])  # (11, t, y, x): each variable a slice of the same tasks
    cube = make_cube(np.zeros((t, size, size), np.uint8), np.zeros((10, t, size, size)),
                     np.full(t, 40.0))
    data = {SCL: (("time", "y", "x"), stack[0].astype(np.uint8))}
    for i, b in enumerate(REFLECTANCE_BANDS):
        data[b] = (("time", "y", "x"), stack[i + 1])
    lazy = xr.Dataset(data, coords=cube.coords)
    in_memory = xr.Dataset({SCL: (("time", "y", "x"), scl),
                            **{b: (("time", "y", "x"), bands[i])
                               for i, b in enumerate(REFLECTANCE_BANDS)}}, coords=cube.coords)
    return lazy, in_memory, calls, nt * ny * nx


@pytest.mark.parametrize("products", [None, ["VPC", "BSC", "MASK"]])
def test_generic_lazy_cube_computes_each_chunk_at_most_twice(products):
    # The case: 20 scenes, 11 variables from one task per chunk, 8 chunks (2 in time,
    # 2 x 2 in space). Each chunk is computed once by its own block and once more for its
    # neighbours' cloud-buffer halos (packed cloud flags), never per variable or per pass.
    lazy, in_memory, calls, n_chunks = _generic_cube()
    out = scmap.composite(lazy, 0.137, products=products)
    assert not calls  # building the graph computes nothing
    got = out.compute()
    assert set(calls) == {(ti, yi, xi) for ti in range(2) for yi in range(2) for xi in range(2)}
    assert max(calls.values()) <= 2 and sum(calls.values()) <= 2 * n_chunks
    want = scmap.composite(in_memory, 0.137, products=products).compute()
    for name in got.data_vars:
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)


@pytest.mark.parametrize("t", [4, 40])
def test_graph_window_batches_see_only_their_own_tasks(t):
    # A block of a generic lazy cube computes its window batch by batch; each batch's graph
    # is culled from the window's, so what the scheduler handles per batch (and keeps while
    # it runs) does not grow with the number of time steps.
    from dask.callbacks import Callback

    arr = dsa.from_array(np.arange(t * 4 * 4, dtype=np.uint16).reshape(t, 4, 4),
                         chunks=(1, 4, 4)) + 1
    flat = FlatGraph.of_many({"a": arr, "b": arr * 2})
    src = window_source(flat, {"a": (1, 3, 0, 4, 0, t), "b": (1, 3, 0, 4, 0, t)},
                        batch_bytes=2 * 2 * 4 * 2)  # one time chunk per batch
    sizes = []
    with Callback(start=lambda dsk: sizes.append(len(dsk))):
        got = [src.read(["a", "b"], range(ta, tb)) for ta, tb in
               zip(src.batch_edges(["a", "b"])[:-1], src.batch_edges(["a", "b"])[1:],
                   strict=True)]
    assert len(got) == t
    assert max(sizes) <= 12  # 2 arrays x (chunk, +1, x2, window alias, slice): not ~ t
    want = (np.arange(t * 16, dtype=np.uint16).reshape(t, 4, 4) + 1)[:, 1:3]
    np.testing.assert_array_equal(np.concatenate([g["a"] for g in got]), want)
    np.testing.assert_array_equal(np.concatenate([g["b"] for g in got]), want * 2)


def test_first_pass_reuses_its_batch_buffers(monkeypatch):
    # The per-batch outputs of the first pass (codes, B02, bare flags, records) are made once
    # per block: fresh multi-MB arrays per batch let glibc's heaps fragment batch after
    # batch, so a task's memory grew with the series' length. Reusing them must not change
    # what is kept of earlier batches (the stores copy).
    rng = np.random.default_rng(5)
    t, h, w = 12, 6, 7
    scl = rng.choice(np.array([4, 5, 6, 8], np.uint8), size=(t, h, w), p=[0.4, 0.3, 0.2, 0.1])
    bands = rng.integers(500, 3000, size=(len(REFLECTANCE_BANDS), t, h, w)).astype(np.uint16)
    bands[REFLECTANCE_BANDS.index("B08")] = bands[REFLECTANCE_BANDS.index("B04")] + rng.integers(
        0, 300, size=(t, h, w)).astype(np.uint16)  # PVIR2 near 0: many bare observations
    sza = np.full(t, 30.0)
    thr = np.full((h, w), 0.137, np.float32)
    pointers = []
    observe = _bk.observe_batch

    def spy(scl_, clouds, bands_, sza_bad, sza_px, thr_, nb, lut, bidx, codes, b02, bare,
            recs, n_valid, vpc, below, keep):
        pointers.append(tuple(a.__array_interface__["data"][0]
                              for a in (codes, b02, bare, recs, n_valid)))
        observe(scl_, clouds, bands_, sza_bad, sza_px, thr_, nb, lut, bidx, codes, b02, bare,
                recs, n_valid, vpc, below, keep)

    monkeypatch.setattr(_bk, "observe_batch", spy)
    per_slice = h * w * 2 * len(REFLECTANCE_BANDS)
    got, _, _ = _block(scl, bands, sza, thr, None, radius=1, core=(0, h, 0, w),
                       task_memory=2**30, batch_bytes=5 * per_slice)
    assert len(pointers) == 3  # batches of 5, 5, 2 slices
    assert len(set(pointers)) == 1
    pointers.clear()
    whole, _, _ = _block(scl, bands, sza, thr, None, radius=1, core=(0, h, 0, w),
                         task_memory=2**30, batch_bytes=2**30)
    assert len(pointers) == 1
    for name in got:
        np.testing.assert_array_equal(got[name], whole[name], err_msg=name)
