"""SCMaP's block task: all products of one spatial block, one function per pass.

:func:`composite_block` is what runs in a Dask task. It receives its windows already bound
(:mod:`cup4soil.cube.windows`) and a :class:`~cup4soil.scmap.threshold.Threshold` cut to
the block, and chains the passes, each a plain function of NumPy arrays and the compiled
kernels of :mod:`~cup4soil.scmap.block_kernels`:

1. :func:`first_pass` -- decodes each scene of the block once: SCL first (with a halo for
   the cloud buffer), then the bands of only the scenes with a pixel SCL leaves valid;
   a reader thread decodes the next batch while the kernels work on this one. Per
   observation it applies the observation rule, and it adds the valid and the bare
   observations to exact integer moments. It keeps B02 and the bare flags of every scene
   with a valid pixel, and the other bands of its valid observations, in memory or spilled
   compactly to a scratch file (:mod:`~cup4soil.scmap.scratch`);
2. :func:`nmad_filter` -- SCMaP's outlier test on B02, strip by strip: the limits, the
   bare count, the scenes holding outliers;
3. :func:`counts` -- VPC, BSC, BSF, MASK;
4. :func:`second_pass` -- subtracts the outliers from the moments, reading back only the
   scenes that hold one (from the store: nothing is decoded again);
5. :func:`band_products` -- SRC, SRC_STD, SRC_CI95, MREF, MREF_STD.

A block never holds its 11-band time series: memory is the moments (a fixed amount per
pixel), a few batches, and what is kept of the series up to a fixed amount per pixel
(the rest is spilled), so it does not grow with the number of scenes.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from odc.geo.geobox import GeoBox

from ..cube.windows import READ_THREADS, WindowSource
from ..errors import BandError
from ..sources.sentinel2 import REFLECTANCE_BANDS, SCL
from . import block_kernels as _bk
from . import kernels as _kernels
from .scratch import RecordStore, SeriesStore
from .threshold import Threshold

__all__ = [
    "BAND_PRODUCTS", "BYTES_PER_PIXEL", "BlockWindows", "FirstPass", "HaloStrips", "Outliers",
    "Params", "band_products", "cloud_bits", "composite_block", "counts", "first_pass",
    "nmad_filter", "second_pass",
]

BAND_PRODUCTS: tuple[str, ...] = ("SRC", "SRC_STD", "SRC_CI95", "MREF", "MREF_STD")
#: Bytes a block holds per pixel whatever the series' length: moments of both sets (240),
#: limits and counts, and the products while they are made.
BYTES_PER_PIXEL = 512
#: Bytes per pixel and stored scene: B02 and the packed bare flags.
SERIES_BYTES_PER_SCENE = 2 + 1 / 8
#: Working memory of the batches in flight (one being composited, one being read).
BATCH_OVERHEAD = 48 * 2**20
#: Budget of one strip of the NMAD test read back from a scratch file.
STRIP_BYTES = 8 * 2**20
#: Threads sharing a strip's NMAD test (its sorts take a tenth of a block's time).
KERNEL_THREADS = 2
#: Most bytes per pixel of the B02 series and bare flags kept in memory (about 60 scenes);
#: a longer series goes to the scratch file, so the task's memory does not grow with it.
KEEP_SERIES_BYTES_PER_PIXEL = 128
#: Most bytes per pixel of the valid observations' other bands kept in memory (about 14
#: observations of 9 bands); the rest goes to the scratch file.
KEEP_RECORD_BYTES_PER_PIXEL = 256

_INVALID_LUT = np.zeros(256, bool)
_INVALID_LUT[list(_kernels.INVALID_SCL)] = True
_CLOUD_LUT = np.zeros(256, bool)
_CLOUD_LUT[list(_kernels.CLOUD_SCL)] = True


@dataclass(frozen=True)
class Params:
    """SCMaP's parameters, as they travel to every block task.

    Attributes
    ----------
    nmad_sigma, mref_nmad_sigma
        NMAD outlier factors for the bare (SRC) and valid (MREF) observations.
    min_bare
        Fewest bare observations for SRC and BSC.
    max_sun_zenith
        Largest valid sun zenith angle, degrees.
    radius
        Cloud buffer, pixels.
    products
        Products to make.
    bands
        Reflectance bands, in the order of the band products.
    """

    nmad_sigma: float
    mref_nmad_sigma: float
    min_bare: int
    max_sun_zenith: float
    radius: int
    products: tuple[str, ...]
    bands: tuple[str, ...] = REFLECTANCE_BANDS

    @property
    def need_src(self) -> bool:
        return any(p in self.products for p in ("SRC", "SRC_STD", "SRC_CI95"))

    @property
    def need_mref(self) -> bool:
        return any(p in self.products for p in ("MREF", "MREF_STD"))


@dataclass(frozen=True)
class HaloStrips:
    """Cloud flags of a block's halo, packed 8 pixels to a byte along x (``np.packbits``,
    little bit order), for a window source without one: ``top`` and ``bottom`` span the
    halo's full width, ``left`` and ``right`` the block's rows. Each is ``(time, rows,
    bytes)``, or None where the halo is empty. Dask-backed in the graph, NumPy in the task.
    """

    top: Any
    bottom: Any
    left: Any
    right: Any


@dataclass(frozen=True)
class BlockWindows:
    """What one block reads: SCL (with a halo) and the bands (and a per-pixel ``sza``).

    ``scl`` and ``bands`` may be one source (a lazy graph: everything of a batch is computed
    in one call); then SCL has no halo there, and ``strips`` holds the halo's cloud flags.
    The halo ``(top, bottom, left, right)`` is the cloud buffer's reach into the
    neighbouring pixels (less at the cube's edge).
    """

    scl: WindowSource
    bands: WindowSource
    halo: tuple[int, int, int, int]
    strips: HaloStrips | None = None


class FirstPass(NamedTuple):
    """What the first pass keeps of a block's series."""

    store: SeriesStore  # B02 (0 = not valid) and bare flags of the scenes with a valid pixel
    records: RecordStore | None  # their valid observations' other bands
    sums: dict[str, np.ndarray]  # s1_bare, s2_bare, s1_valid, s2_valid: (h, w, bands)
    vpc: np.ndarray  # (y, x) int32: valid observations
    below: np.ndarray  # (y, x) bool: a valid observation had PVIR2 < threshold
    decoded: np.ndarray  # (time,) bool: scenes whose bands were read


class Outliers(NamedTuple):
    """What the NMAD test finds."""

    limit_bare: np.ndarray  # (y, x) float64: B02 above it is an outlier of the bare set
    limit_valid: np.ndarray  # (y, x) float64: ... of the valid set (MREF)
    bsc: np.ndarray  # (y, x) int32: bare observations after the test
    n_valid: np.ndarray  # (y, x) int32: valid observations after the (MREF) test
    scenes: np.ndarray  # slots of the stored scenes that hold an outlier


# ------------------------------------------------------------------------------ input


def _as_dn(name: str, values: np.ndarray) -> np.ndarray:
    """Reflectance as C-contiguous uint16 DN; NaN (xarray's missing value) is nodata (0).

    Raises :class:`BandError` for values that are not whole DNs 0..65535.
    """
    if values.dtype == np.uint16:
        return np.ascontiguousarray(values)
    if np.issubdtype(values.dtype, np.floating):
        finite = np.isfinite(values)
        if not finite.all():
            values = np.where(finite, values, 0)
    if values.size:
        lo, hi = values.min(), values.max()
        whole = (not np.issubdtype(values.dtype, np.floating)
                 or bool(np.all(values == np.round(values))))
        if lo < 0 or hi > 65535 or not whole:
            raise BandError(
                f"{name} holds values SCMaP cannot use as Sentinel-2 DN (range {lo}..{hi}"
                f"{'' if whole else ', not whole numbers'}). The composite needs surface "
                "reflectance x 10000 as whole numbers 0..65535 (0 = nodata), as load_s2 "
                "gives; scale and round the cube first, e.g. (cube * 10000).round()."
            )
    return np.ascontiguousarray(values, dtype=np.uint16)


def _as_scl(values: np.ndarray) -> np.ndarray:
    """SCL as uint8 classes (as :func:`kernels.scl_in`: clipped to 0..255; NaN is 0)."""
    if values.dtype == np.uint8:
        return values
    if np.issubdtype(values.dtype, np.floating):
        values = np.nan_to_num(values, nan=0.0)
    out: np.ndarray = np.clip(values, 0, 255).astype(np.uint8)
    return out


class _Batch(NamedTuple):
    times: np.ndarray  # the batch's scenes (time indices of the window) with bands read
    scl: np.ndarray  # (k, h, w) uint8
    clouds: np.ndarray  # (k, h, w) bool: within the cloud buffer
    bands: dict[str, np.ndarray]  # (k, h, w) each


def _clouds(scl_window: np.ndarray, halo: tuple[int, int, int, int], radius: int,
            strips: HaloStrips | None, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The block's SCL (core) and its cloud buffer from an SCL window with ``halo`` (or the
    core alone and the halo's packed cloud flags in ``strips``)."""
    top, bottom, left, right = halo
    k = scl_window.shape[0]
    if strips is None:
        h, w = scl_window.shape[1] - top - bottom, scl_window.shape[2] - left - right
        cloud = _CLOUD_LUT[scl_window]
        core = scl_window[:, top:top + h, left:left + w]
    else:
        core = scl_window
        h, w = core.shape[1:]
        cloud = np.zeros((k, top + h + bottom, left + w + right), bool)
        cloud[:, top:top + h, left:left + w] = _CLOUD_LUT[core]
        width = left + w + right

        def unpack(bits: Any, cols: int) -> np.ndarray:
            return np.unpackbits(np.asarray(bits)[times], axis=-1, count=cols,
                                 bitorder="little").astype(bool)

        if top:
            cloud[:, :top] = unpack(strips.top, width)
        if bottom:
            cloud[:, top + h:] = unpack(strips.bottom, width)
        if left:
            cloud[:, top:top + h, :left] = unpack(strips.left, left)
        if right:
            cloud[:, top:top + h, left + w:] = unpack(strips.right, right)
    out = np.empty((k, h, w), bool)
    _bk.dilate_core(cloud, radius, top, left, h, w, out)
    return np.ascontiguousarray(core), out


def cloud_bits(scl: np.ndarray) -> np.ndarray:
    """Cloud, shadow and cirrus flags of an SCL array, packed 8 pixels to a byte along x
    (little bit order): the halo strips of :class:`HaloStrips`."""
    out: np.ndarray = np.packbits(_CLOUD_LUT[_as_scl(np.asarray(scl))], axis=-1,
                                  bitorder="little")
    return out


def _joint(windows: BlockWindows) -> bool:
    """Whether SCL and the bands of a batch are read together (else SCL first)."""
    return windows.scl is windows.bands or not (windows.scl.separable
                                                and windows.bands.separable)


def _batch_edges(windows: BlockWindows, names: list[str]) -> list[int]:
    """The block's batch boundaries ``[0, ..., n_time]``."""
    if _joint(windows):
        return windows.bands.batch_edges([SCL, *names])
    return windows.bands.batch_edges(names)


def _batches(windows: BlockWindows, names: list[str], sza_bad: np.ndarray,
             params: Params, pool: Executor) -> Iterator[_Batch]:
    """The block's batches: SCL read first and the bands only of the scenes it leaves a
    valid pixel, when the sources allow it (separable); else all at once."""
    joint = _joint(windows)
    for ta, tb in itertools.pairwise(_batch_edges(windows, names)):
        times = np.arange(ta, tb)
        if joint:
            data = windows.bands.read([SCL, *names] if windows.scl is windows.bands else names,
                                      times, pool=pool)
            scl_window = (data.pop(SCL) if windows.scl is windows.bands
                          else windows.scl.read([SCL], times, pool=pool)[SCL])
            core, clouds = _clouds(_as_scl(scl_window), windows.halo, params.radius,
                                   windows.strips, times)
            yield _Batch(times, core, clouds, data)
            continue
        scl_window = windows.scl.read([SCL], times, pool=pool)[SCL]
        core, clouds = _clouds(_as_scl(scl_window), windows.halo, params.radius,
                               windows.strips, times)
        # A scene is decoded only if SCL, the cloud buffer and the sun leave a valid pixel.
        possible = ~(_INVALID_LUT[core] | clouds).reshape(len(times), -1).all(axis=1)
        keep = np.flatnonzero(possible & ~sza_bad[times])
        if keep.size == 0:
            continue
        data = windows.bands.read(names, times[keep], pool=pool)
        yield _Batch(times[keep], core[keep], clouds[keep], data)


def _prefetch(produce: Callable[[], Iterator[_Batch]], depth: int = 1) -> Iterator[_Batch]:
    """Run ``produce`` in a thread, ``depth`` batches ahead: decoding the next batch
    overlaps the kernels' work on this one. Errors surface in the consumer."""
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in produce():
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", None))
        except BaseException as exc:
            q.put(("error", exc))

    thread = threading.Thread(target=run, name="cup4soil-block-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)


class _Work:
    """The first pass's per-batch outputs (codes, B02, bare flags, records, valid counts),
    allocated once per block and reused by every batch.

    Fresh arrays per batch (the records alone are 7 MB for 23 slices of 130 x 130 px)
    made glibc's allocator raise its mmap threshold after the first one was freed and
    then serve them from its heaps, which fragmented batch after batch: the task's
    resident memory grew over the first ten batches or so, i.e. with the series' length
    (``benchmarks/scmap.py --memory-only``).
    """

    def __init__(self, h: int, w: int, nb: int, records: bool, k: int = 0) -> None:
        self.h, self.w, self.nb, self.records = h, w, nb, records
        self.k = 0
        self.arrays: tuple[np.ndarray, ...] = ()
        if k:
            self.take(k)  # pages are only taken when written

    def take(self, k: int) -> tuple[np.ndarray, ...]:
        """The buffers for a batch of ``k`` slices (views of the first ``k``)."""
        if k > self.k:
            h, w = self.h, self.w
            self.arrays = ()  # the old ones go before the larger ones are made
            self.arrays = (
                np.empty((k, h, w), np.uint8), np.empty((k, h, w), np.uint16),
                np.empty((k, h, _bk.packed_width(w)), np.uint8),
                np.empty((k, h * w, self.nb - 1) if self.records else (0, 0, 0), np.uint16),
                np.empty(k, np.int64))
            self.k = k
        codes, b02, bare, recs, n_valid = self.arrays
        return codes[:k], b02[:k], bare[:k], (recs[:k] if self.records else recs), n_valid[:k]


# ----------------------------------------------------------------------------- passes


def first_pass(windows: BlockWindows, threshold: np.ndarray, worldcover: np.ndarray | None,
               sza: np.ndarray, params: Params, *, task_memory: int,
               read_threads: int = READ_THREADS) -> FirstPass:
    """Decode each scene once; per observation the rule, the moments, the kept series.

    A per-pixel sun zenith (variable ``sza`` of the bands' window) is read with the bands;
    else ``sza`` holds one angle per time step (degrees, NaN: unknown).
    """
    h, w = threshold.shape
    n_t = windows.bands.n_time
    nb = len(params.bands)
    need_moments = params.need_src or params.need_mref
    per_pixel_sza = "sza" in windows.bands.names
    names = [*params.bands, *(["sza"] if per_pixel_sza else [])]
    with np.errstate(invalid="ignore"):
        sza_bad = np.asarray(sza, dtype=np.float64) > params.max_sun_zenith
    not_bare = (np.isin(worldcover, _kernels.WC_NOT_BARE) if worldcover is not None
                else np.zeros((h, w), bool))
    threshold = np.ascontiguousarray(threshold, dtype=np.float32)

    fixed = BYTES_PER_PIXEL * h * w + BATCH_OVERHEAD
    series = int(n_t * h * w * SERIES_BYTES_PER_SCENE)
    spare = max(0, task_memory - fixed)
    # What is kept in memory is capped per pixel, not only by the budget: else the task's
    # memory would grow with the series up to the budget (the file is in the page cache).
    keep_series = min(spare, KEEP_SERIES_BYTES_PER_PIXEL * h * w)
    store = SeriesStore(n_t, (h, w), in_memory=series <= keep_series)
    records = (RecordStore(nb - 1, min(spare - (series if store.in_memory else 0),
                                       KEEP_RECORD_BYTES_PER_PIXEL * h * w))
               if need_moments else None)
    sums: dict[str, np.ndarray] = {
        "s1_bare": np.zeros((h, w, nb) if params.need_src else (0, 0, 0), np.uint32),
        "s2_bare": np.zeros((h, w, nb) if params.need_src else (0, 0, 0), np.uint64),
        "s1_valid": np.zeros((h, w, nb) if params.need_mref else (0, 0, 0), np.uint32),
        "s2_valid": np.zeros((h, w, nb) if params.need_mref else (0, 0, 0), np.uint64),
    }
    vpc = np.zeros((h, w), np.int32)
    below = np.zeros((h, w), bool)
    decoded = np.zeros(n_t, bool)
    bidx = np.array([params.bands.index(b) for b in ("B02", "B04", "B08", "B12")], np.int64)
    no_px = np.zeros((0, 0, 0), bool)
    # Sized once for the largest batch: no large array made and freed per batch.
    work = _Work(h, w, nb, need_moments,
                 int(max(np.diff(_batch_edges(windows, names)), default=0)))
    with ThreadPoolExecutor(read_threads, thread_name_prefix="cup4soil-read") as pool:
        for batch in _prefetch(lambda: _batches(windows, names, sza_bad, params, pool)):
            k = len(batch.times)
            decoded[batch.times] = True
            bands = tuple(_as_dn(b, batch.bands[b]) for b in params.bands)
            if per_pixel_sza:
                with np.errstate(invalid="ignore"):
                    # Compared in the variable's own dtype, as NumPy (and masks.valid) do.
                    sza_px = np.ascontiguousarray(batch.bands["sza"] > params.max_sun_zenith)
            else:
                sza_px = no_px
            codes, b02, bare, recs, n_valid = work.take(k)
            _bk.observe_batch(batch.scl, batch.clouds, bands, sza_bad[batch.times], sza_px,
                              threshold, not_bare, _INVALID_LUT, bidx, codes, b02, bare, recs,
                              n_valid, vpc, below, need_moments)
            if need_moments:
                _bk.accumulate(codes, bands, sums["s1_bare"], sums["s2_bare"],
                               sums["s1_valid"], sums["s2_valid"], params.need_src,
                               params.need_mref)
            for i in np.flatnonzero(n_valid):
                slot = store.append(int(batch.times[i]), b02[i], bare[i])
                if records is not None:
                    records.append(slot, recs[i, :n_valid[i]])
    return FirstPass(store, records, sums, vpc, below, decoded)


def nmad_filter(first: FirstPass, params: Params) -> Outliers:
    """SCMaP's NMAD outlier test on B02 (bare set with ``nmad_sigma``; valid set with
    ``mref_nmad_sigma`` when MREF is made), strip by strip of the stored series."""
    h, w = first.vpc.shape
    limit_bare = np.full((h, w), np.inf)
    limit_valid = np.full((h, w), np.inf)
    n_bare = np.zeros((h, w), np.int32)
    out_bare = np.zeros((h, w), np.int32)
    out_valid = np.zeros((h, w), np.int32)
    has = np.zeros((KERNEL_THREADS, len(first.store)), bool)  # one row per thread: no shared writes
    budget = min(STRIP_BYTES, KEEP_SERIES_BYTES_PER_PIXEL * h * w)
    # The per-pixel sorts are the block's largest compute after the reads, and nothing is
    # read meanwhile: the rows of each strip are shared by a few threads (nogil kernel).
    with ThreadPoolExecutor(KERNEL_THREADS, thread_name_prefix="cup4soil-nmad") as pool:
        for r0, r1, b02, bare in first.store.strips(budget):
            edges = np.linspace(0, r1 - r0, KERNEL_THREADS + 1).astype(int)
            jobs = [pool.submit(_bk.nmad_limits, b02, bare, params.nmad_sigma,
                                params.mref_nmad_sigma, params.need_mref, 80.0,
                                limit_bare[r0:r1], limit_valid[r0:r1], n_bare[r0:r1],
                                out_bare[r0:r1], out_valid[r0:r1], has[i], int(a), int(b))
                    for i, (a, b) in enumerate(itertools.pairwise(edges)) if b > a]
            for job in jobs:
                job.result()
    return Outliers(limit_bare, limit_valid, n_bare - out_bare, first.vpc - out_valid,
                    np.flatnonzero(has.any(axis=0)))


def counts(vpc: np.ndarray, bsc: np.ndarray, below: np.ndarray,
           worldcover: np.ndarray | None, params: Params) -> dict[str, np.ndarray]:
    """VPC, BSC (0 below ``min_bare``), BSF and MASK of a block."""
    enough = bsc >= params.min_bare
    out: dict[str, np.ndarray] = {"VPC": vpc.astype(np.uint16)}
    out["BSC"] = np.where(enough, bsc, 0).astype(np.uint16)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["BSF"] = np.where(enough & (vpc > 0), bsc / np.maximum(out["VPC"], 1),
                              np.nan).astype(np.float32)
    mask = np.zeros(vpc.shape, dtype=np.uint8)
    mask[(vpc > 0) & ~below] = 2
    mask[enough] = 1
    if worldcover is not None:
        mask[np.isin(worldcover, _kernels.WC_OTHER)] = 3
    out["MASK"] = mask
    return out


def second_pass(first: FirstPass, outliers: Outliers, params: Params) -> None:
    """Subtract the outliers from the moments (in place), reading back from the store only
    the scenes that hold one."""
    if first.records is None:
        return
    i02 = params.bands.index("B02")
    s = first.sums
    for slot in outliers.scenes:
        b02, bare = first.store.scene(int(slot))
        _bk.subtract_outliers(b02, bare, first.records.get(int(slot)), i02,
                              outliers.limit_bare, outliers.limit_valid, params.need_src,
                              params.need_mref, s["s1_bare"], s["s2_bare"], s["s1_valid"],
                              s["s2_valid"])


def band_products(first: FirstPass, outliers: Outliers,
                  params: Params) -> dict[str, np.ndarray]:
    """SRC, SRC_STD, SRC_CI95 (where ``min_bare`` bare observations) and MREF, MREF_STD."""
    h, w = first.vpc.shape
    nb = len(params.bands)
    out: dict[str, np.ndarray] = {}
    s = first.sums
    if params.need_src:
        for p in ("SRC", "SRC_STD", "SRC_CI95"):
            out[p] = np.empty((nb, h, w), np.float32)
        _bk.finish_moments(s["s1_bare"], s["s2_bare"], outliers.bsc,
                           outliers.bsc >= params.min_bare, out["SRC"], out["SRC_STD"],
                           out["SRC_CI95"])
    if params.need_mref:
        out["MREF"] = np.empty((nb, h, w), np.float32)
        out["MREF_STD"] = np.empty((nb, h, w), np.float32)
        _bk.finish_moments(s["s1_valid"], s["s2_valid"], outliers.n_valid,
                           outliers.n_valid > 0, out["MREF"], out["MREF_STD"],
                           np.zeros((0, 0, 0), np.float32))
    return {p: v for p, v in out.items() if p in params.products}


def composite_block(windows: BlockWindows, threshold: Threshold, geobox: GeoBox,
                    worldcover: np.ndarray | None, sza: np.ndarray, params: Params,
                    task_memory: int) -> dict[str, np.ndarray]:
    """All products of one spatial block (the Dask task).

    Parameters
    ----------
    windows
        The block's bound windows.
    threshold
        The PVIR2 threshold (restricted to the block), evaluated on ``geobox``.
    geobox
        The block's grid.
    worldcover
        WorldCover classes of the block, or None.
    sza
        Sun zenith per time step, degrees (NaN: unknown), float64.
    params
        SCMaP's parameters.
    task_memory
        Memory budget of the task, bytes: what does not fit is spilled to scratch.
    """
    first = first_pass(windows, threshold.on(geobox), worldcover, sza, params,
                       task_memory=task_memory)
    try:
        outliers = nmad_filter(first, params)
        out = counts(first.vpc, outliers.bsc, first.below, worldcover, params)
        if params.need_src or params.need_mref:
            second_pass(first, outliers, params)
            out.update(band_products(first, outliers, params))
    finally:
        first.store.close()
        if first.records is not None:
            first.records.close()
    return {p: out[p] for p in params.products}
