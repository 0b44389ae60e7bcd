"""SCMaP: DLR's Soil Composite Mapping Processor on Dask.

:func:`composite` turns a harmonised Sentinel-2 cube (from :func:`cup4soil.load_s2`) into
the SoilSuite products -- valid and bare-soil counts (VPC, BSC), bare-soil frequency (BSF),
the soil reflectance composite (SRC, SRC_STD, SRC_CI95), the mean reflectance composite
(MREF, MREF_STD) and the MASK -- with the semantics of ``shared/docs/scmap.md``.

Engine. One task per spatial block streams its own time slices twice:

1. SCL (with a halo for the 100 m cloud buffer), B04, B08, B12 and every band's nodata give
   the valid and bare flags of each observation; only B02 and the flags are kept, and the
   per-pixel NMAD outlier limits come from their exact medians;
2. the ten bands are read again, one time slice at a time, into combinable moments
   (count, mean, squared deviations; Welford/Chan, stable in float64).

A block never holds its 11-band time series, and the second pass re-reads its input instead
of keeping the first pass's blocks alive (in one Dask graph shared input blocks would stay in
memory from the first pass to the second, growing with the number of scenes). The block
size is chosen from the number of scenes and a memory budget, so peak memory per task stays
flat as the series grows.
"""

from __future__ import annotations

import math
import os
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox

from ..cube import readplan as _read
from ..errors import BandError, Cup4SoilError, ParameterError
from ..sources.sentinel2 import REFLECTANCE_BANDS, SCL
from . import kernels as _kernels
from .masks import cloud_buffer_pixels

__all__ = [
    "DLR_THRESHOLD_URL", "PRODUCTS", "composite", "observations", "threshold_on", "to_soilsuite",
]

PRODUCTS: tuple[str, ...] = (
    "SRC", "SRC_STD", "SRC_CI95", "MREF", "MREF_STD", "VPC", "BSC", "BSF", "MASK",
)
_BAND_PRODUCTS = ("SRC", "SRC_STD", "SRC_CI95", "MREF", "MREF_STD")
#: DLR's published PVIR2 threshold raster for Europe (EPSG:4326, south-up).
DLR_THRESHOLD_URL = (
    "https://raw.githubusercontent.com/Schiggebam/dlr_scmap_resources/refs/heads/main/"
    "th_S2_s2cr_buffered_cog.tif"
)
#: Environment variable naming a local copy of the DLR threshold raster (offline runs).
THRESHOLD_ENV = "CUP4SOIL_DLR_THRESHOLD"
#: Default memory budget of one block task, bytes.
DEFAULT_TASK_MEMORY = 192 * 2**20
#: Bytes held per pixel and scene through a block task: B02 (2) and two packed flags
#: (1/4), with headroom. The sorts run strip by strip within ``_STRIP_BYTES``.
_BYTES_PER_PIXEL_SCENE = 3
_STRIP_BYTES = 8 * 2**20
#: Working bytes per value of the strip-wise NMAD test (flags, sorted copies, deviations).
_STRIP_BYTES_PER_VALUE = 14


class ThresholdError(Cup4SoilError, ValueError):
    """The PVIR2 threshold cannot be read or does not cover the cube."""


@dataclass(frozen=True)
class _Params:
    """Frozen parameters that travel to every block task."""

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


# ------------------------------------------------------------------------------- threshold


@dataclass(frozen=True)
class _RasterThreshold:
    """A threshold raster held in memory (north-up), reprojected per block."""

    data: np.ndarray
    transform: Any
    crs: str

    def on(self, geobox: GeoBox) -> np.ndarray:
        from rasterio.warp import Resampling, reproject

        out = np.full(geobox.shape, np.nan, dtype=np.float32)
        reproject(
            self.data, out, src_transform=self.transform, src_crs=self.crs, src_nodata=np.nan,
            dst_transform=geobox.affine, dst_crs=str(geobox.crs), dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
        return out


def _dlr_threshold_path() -> Path:
    env = os.environ.get(THRESHOLD_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ThresholdError(f"{THRESHOLD_ENV}={env} does not name a file.")
        return path
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cup4soil"
    path = cache / "th_S2_s2cr_buffered_cog.tif"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        try:
            with urllib.request.urlopen(DLR_THRESHOLD_URL, timeout=60) as resp:
                tmp.write_bytes(resp.read())
        except OSError as exc:
            raise ThresholdError(
                f"could not fetch DLR's threshold raster from {DLR_THRESHOLD_URL} ({exc}). "
                f"Offline, set {THRESHOLD_ENV} to a local copy, or pass threshold=<path|float>."
            ) from None
        tmp.replace(path)  # a complete file or none
    return path


def _read_threshold_raster(source: str | os.PathLike[str]) -> _RasterThreshold:
    import rasterio
    from rasterio.transform import Affine

    try:
        with rasterio.open(source) as src:
            data = src.read(1).astype(np.float32)
            transform, crs, nodata = src.transform, src.crs, src.nodata
    except rasterio.RasterioIOError as exc:
        raise ThresholdError(f"could not read the threshold raster {source}: {exc}") from None
    if nodata is not None:
        data[data == nodata] = np.nan
    if transform.e > 0:
        # DLR's raster is south-up (positive y pixel size): flip it to north-up.
        data = data[::-1].copy()
        transform = Affine(transform.a, transform.b, transform.c, transform.d, -transform.e,
                           transform.f + transform.e * data.shape[0])
    return _RasterThreshold(data, transform, crs.to_string() if crs else "EPSG:4326")


def _check_covers(thr: _RasterThreshold, geobox: GeoBox) -> None:
    from odc.geo.geom import box

    h, w = thr.data.shape
    t = thr.transform
    raster = box(t.c, t.f + t.e * h, t.c + t.a * w, t.f, thr.crs)
    extent = geobox.extent.to_crs(thr.crs)
    if not raster.contains(extent):
        b = raster.boundingbox
        raise ThresholdError(
            f"the threshold raster (covering {b.left:.2f}..{b.right:.2f}, {b.bottom:.2f}.."
            f"{b.top:.2f} in {thr.crs}) does not cover the cube. DLR's raster covers Europe "
            "only; elsewhere pass threshold=<float> or your own raster."
        )


def _resolve_threshold(threshold: Any, geobox: GeoBox) -> Any:
    """A float, a DataArray on the grid of ``geobox``, or a _RasterThreshold."""
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        if not math.isfinite(threshold):
            raise ParameterError(f"threshold={threshold} must be a finite PVIR2 value.")
        return float(threshold)
    if isinstance(threshold, xr.DataArray):
        if _on_grid(threshold, geobox):
            return threshold.astype("float32")
        try:
            return threshold.odc.reproject(geobox, resampling="bilinear").astype("float32")
        except Exception as exc:
            raise ThresholdError(
                f"the threshold DataArray could not be put on the cube grid ({exc}). Give it "
                "a CRS (rioxarray/odc-geo) or the cube's y/x coordinates."
            ) from None
    if isinstance(threshold, (str, os.PathLike)):
        source = _dlr_threshold_path() if str(threshold) == "dlr-europe" else threshold
        raster = _read_threshold_raster(source)
        _check_covers(raster, geobox)
        return raster
    raise ParameterError(
        f"threshold={threshold!r} is not a float, a DataArray, a raster path/URL or "
        "'dlr-europe'."
    )


def threshold_on(geobox: GeoBox, threshold: Any = "dlr-europe") -> xr.DataArray:
    """The PVIR2 threshold on a grid (bilinear), as SCMaP uses it.

    Parameters
    ----------
    geobox
        Target grid (e.g. ``cube.odc.geobox``).
    threshold
        As for :func:`composite`: a float, a raster path/URL or ``"dlr-europe"``.
    """
    from odc.geo.xr import xr_coords

    coords = xr_coords(geobox, crs_coord_name="spatial_ref")
    thr = _resolve_threshold(threshold, geobox)
    if isinstance(thr, xr.DataArray):
        return thr
    data = thr.on(geobox) if isinstance(thr, _RasterThreshold) else np.full(
        geobox.shape, thr, np.float32)
    return xr.DataArray(data, dims=geobox.dimensions, coords=coords, name="threshold",
                        attrs={"long_name": "PVIR2 bare-soil threshold", "units": "1"})


def observations(
    cube: xr.Dataset,
    threshold: Any = "dlr-europe",
    *,
    worldcover: xr.DataArray | None = None,
    max_sun_zenith: float = 70.0,
    buffer_m: float = 100.0,
) -> xr.Dataset:
    """Per-observation SCMaP quantities, lazily: ``PVIR2``, ``valid`` and ``bare`` (before
    the NMAD outlier test) over ``(time, y, x)``. For inspecting bare dates of fields."""
    from . import masks

    _check_cube(cube)
    thr = _resolve_threshold(threshold, cube.odc.geobox)
    if isinstance(thr, _RasterThreshold):
        thr = xr.DataArray(thr.on(cube.odc.geobox), dims=("y", "x"),
                           coords={"y": cube.y, "x": cube.x})
    valid = masks.valid(cube, buffer_m=buffer_m, max_sun_zenith=max_sun_zenith)
    p = xr.apply_ufunc(_kernels.pvir2, cube["B04"], cube["B08"], cube["B12"],
                       dask="parallelized", output_dtypes=[np.float32])
    bare = valid & (p <= thr)
    wc = _check_worldcover(worldcover, cube)
    if wc is not None:
        bare = bare & ~wc.isin(list(_kernels.WC_NOT_BARE))
    return xr.Dataset({"PVIR2": p, "valid": valid, "bare": bare.transpose(*valid.dims)})


def _on_grid(da: xr.DataArray, geobox: GeoBox) -> bool:
    """Whether a (y, x) DataArray has exactly the pixel centres of ``geobox``."""
    from odc.geo.xr import xr_coords

    coords = xr_coords(geobox)
    return (
        da.dims == ("y", "x") and da.shape == geobox.shape
        and np.allclose(da.x.values, coords["x"].values)
        and np.allclose(da.y.values, coords["y"].values)
    )


# ------------------------------------------------------------------------------ block task


class _FlatGraph:
    """A (time, y, x) dask array's graph, fused and materialised once, from which windows
    are cut by chunk index: building all blocks costs one pass over the graph instead of
    one per block (``dask.optimize`` of a sliced array rebuilds the whole cube's graph).
    """

    def __init__(self, name: str, dsk: dict[Any, Any], chunks: tuple[tuple[int, ...], ...],
                 dtype: Any) -> None:
        self.name, self.dsk, self.chunks, self.dtype = name, dsk, chunks, dtype
        self.t_edges = np.concatenate([[0], np.cumsum(chunks[0])])
        self.y_edges = np.concatenate([[0], np.cumsum(chunks[1])])
        self.x_edges = np.concatenate([[0], np.cumsum(chunks[2])])

    @classmethod
    def of(cls, arr: Any) -> _FlatGraph:
        (opt,) = dask.optimize(arr)
        return cls(opt.name, dict(opt.__dask_graph__()), opt.chunks, opt.dtype)

    def window(self, y0: int, y1: int, x0: int, x1: int, t0: int = 0,
               t1: int | None = None) -> Any:
        """The pixels [t0:t1, y0:y1, x0:x1] as a dask array whose graph holds only the
        chunks they touch (and what those depend on)."""
        from dask.optimization import cull
        from dask.task_spec import Alias

        t1 = int(self.t_edges[-1]) if t1 is None else t1
        it0 = int(np.searchsorted(self.t_edges, t0, side="right")) - 1
        it1 = int(np.searchsorted(self.t_edges, t1, side="left"))
        iy0 = int(np.searchsorted(self.y_edges, y0, side="right")) - 1
        iy1 = int(np.searchsorted(self.y_edges, y1, side="left"))
        ix0 = int(np.searchsorted(self.x_edges, x0, side="right")) - 1
        ix1 = int(np.searchsorted(self.x_edges, x1, side="left"))
        want = [(self.name, t, i, j) for t in range(it0, it1) for i in range(iy0, iy1)
                for j in range(ix0, ix1)]
        sub, _ = cull(self.dsk, want)
        name = f"{self.name}-w{it0}.{it1}.{iy0}.{iy1}.{ix0}.{ix1}"
        for t in range(it0, it1):
            for i in range(iy0, iy1):
                for j in range(ix0, ix1):
                    new = (name, t - it0, i - iy0, j - ix0)
                    sub[new] = Alias(new, (self.name, t, i, j))
        arr = dsa.Array(sub, name, chunks=(self.chunks[0][it0:it1], self.chunks[1][iy0:iy1],
                                           self.chunks[2][ix0:ix1]), dtype=self.dtype)
        ot, oy, ox = int(self.t_edges[it0]), int(self.y_edges[iy0]), int(self.x_edges[ix0])
        return arr[t0 - ot:t1 - ot, y0 - oy:y1 - oy, x0 - ox:x1 - ox]


class _SliceSource:
    """What a block task reads through: ``batches`` of consecutive time slices (in
    subclasses), and single slices on top of them."""

    def batches(self, names: Sequence[str], *, start: int = 0, stop: int | None = None,
                size: int | None = None) -> Any:
        raise NotImplementedError

    def read(self, t: int, names: Sequence[str]) -> dict[str, np.ndarray]:
        """One time slice of the named arrays."""
        _, batch = next(self.batches(names, start=t, stop=t + 1))
        return {n: v[0] for n, v in batch.items()}


class _Source(_SliceSource):
    """The lazy arrays of one spatial block, hidden from Dask's dependency tracking so that
    the task reads its time slices itself, one at a time, when it needs them."""

    def __init__(self, arrays: dict[str, Any], *, slice_bytes: dict[str, int] | None = None,
                 batch_bytes: int = 8 * 2**20, read_threads: int = 4) -> None:
        self.arrays = arrays
        # Bytes a read of one time slice materialises: whole source chunks, not the window.
        self.slice_bytes = slice_bytes or {
            n: int(np.prod(a.shape[1:])) * a.dtype.itemsize for n, a in arrays.items()
        }
        self.batch_bytes = batch_bytes
        self.read_threads = read_threads

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.arrays)

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        # Cheap and deterministic: the arrays' names identify their graphs.
        return (type(self).__name__, tuple((n, a.name) for n, a in self.arrays.items()),
                self.batch_bytes)

    def batch_size(self, names: Sequence[str]) -> int:
        """Slices per read that fit ``batch_bytes``."""
        per_slice = sum(self.slice_bytes[n] for n in names)
        return max(1, int(self.batch_bytes // max(per_slice, 1)))

    def batches(
        self, names: Sequence[str], *, start: int = 0, stop: int | None = None,
        size: int | None = None,
    ) -> Any:
        """Yield ``(t0, {name: (k, y, x) array})`` for consecutive slices, as many per read
        as fit ``batch_bytes`` (fewer scheduler round trips, memory still bounded)."""
        first = self.arrays[names[0]]
        stop = first.shape[0] if stop is None else stop
        k = size or self.batch_size(names)
        for t0 in range(start, stop, k):
            t1 = min(stop, t0 + k)
            # Threads: GDAL reads release the GIL, so a block's slices are read in parallel.
            values = dask.compute(*(self.arrays[n][t0:t1] for n in names),
                                  scheduler="threads", num_workers=self.read_threads)
            yield t0, {n: np.asarray(v) for n, v in zip(names, values, strict=True)}


@dataclass(frozen=True)
class _PlanSource(_SliceSource):
    """A block's window read straight from the cube's read plan (:mod:`cup4soil._read`):
    the task holds no cube graph, and building all blocks costs nothing per scene.

    Same interface as :class:`_Source`; the plan arrives as a task argument (one graph
    key) and is attached with :meth:`bind` inside the task.
    """

    bands: tuple[tuple[str, str], ...]  # (cube variable, plan band)
    rows: tuple[int, int]
    cols: tuple[int, int]
    t0: int
    t1: int
    plan: Any = None
    batch_bytes: int = 8 * 2**20
    read_threads: int = 4

    def bind(self, plan: Any) -> _PlanSource:
        return replace(self, plan=plan)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.bands)

    def _band(self, name: str) -> str:
        return dict(self.bands)[name]

    def batch_size(self, names: Sequence[str]) -> int:
        h, w = self.rows[1] - self.rows[0], self.cols[1] - self.cols[0]
        per_slice = sum(
            h * w * np.dtype(self.plan.cfg[self._band(n)].dtype).itemsize for n in names)
        return max(1, int(self.batch_bytes // max(per_slice, 1)))

    def batches(
        self, names: Sequence[str], *, start: int = 0, stop: int | None = None,
        size: int | None = None,
    ) -> Any:
        from concurrent.futures import ThreadPoolExecutor

        stop = self.t1 - self.t0 if stop is None else stop
        k = size or self.batch_size(names)
        # Threads: GDAL reads release the GIL, so a block's slices are read in parallel.
        with ThreadPoolExecutor(self.read_threads) as pool:
            for ta in range(start, stop, k):
                tb = min(stop, ta + k)
                futures = {
                    (n, t): pool.submit(self.plan.read, self._band(n), self.t0 + t, self.rows,
                                        self.cols)
                    for n in names for t in range(ta, tb)
                }
                yield ta, {n: np.stack([futures[n, t].result() for t in range(ta, tb)])
                           for n in names}


def _composite_block(
    source: _SliceSource,
    core: _SliceSource,
    halo: tuple[int, int, int, int],
    threshold: Any,
    worldcover: np.ndarray | None,
    sza: np.ndarray,
    params: _Params,
    plan: Any = None,
) -> dict[str, np.ndarray]:
    """All products of one spatial block (pure NumPy inside; reads through the sources)."""
    if plan is not None:  # read-plan sources: attach the plan this task received
        assert isinstance(source, _PlanSource) and isinstance(core, _PlanSource)
        source, core = source.bind(plan), core.bind(plan)
    top, bottom, left, right = halo
    n_t = len(sza)
    if isinstance(threshold, tuple):  # (raster threshold, block grid)
        threshold = threshold[0].on(threshold[1])
    thr = threshold if isinstance(threshold, np.ndarray) else None
    first = source.read(0, [SCL])[SCL]
    h = first.shape[0] - top - bottom
    w = first.shape[1] - left - right
    core_sl = (slice(top, top + h), slice(left, left + w))
    if thr is None:
        thr = np.full((h, w), threshold, dtype=np.float32)
    not_bare_cover = (
        np.isin(worldcover, _kernels.WC_NOT_BARE) if worldcover is not None
        else np.zeros((h, w), bool)
    )
    # Per scene, only B02 (2 bytes) and two packed flags (2 bits) are kept per pixel.
    b02 = np.zeros((n_t, h, w), dtype=np.uint16)
    valid = _kernels.flags_new(n_t, (h, w))
    bare = _kernels.flags_new(n_t, (h, w))
    vpc_count = np.zeros((h, w), dtype=np.int32)
    below = np.zeros((h, w), dtype=bool)
    # Pass 1: flags and B02 only. SCL comes with its halo (the cloud buffer), the bands
    # without, so that both read whole chunks when blocks follow the cube's chunks.
    # A per-pixel sun zenith (variable "sza") is read with the bands; else one per time.
    per_pixel_sza = "sza" in core.names
    pass1_names = [*params.bands, "sza"] if per_pixel_sza else list(params.bands)
    k = min(source.batch_size([SCL]), core.batch_size(pass1_names))
    pass1 = zip(source.batches([SCL], size=k), core.batches(pass1_names, size=k), strict=True)
    for (t0, scl_batch), (_, batch) in pass1:
        for i in range(scl_batch[SCL].shape[0]):
            t = t0 + i
            clouds = _kernels.cloud_buffer(scl_batch[SCL][i], params.radius)[core_sl]
            scl = scl_batch[SCL][i][core_sl]
            bands = {b: batch[b][i] for b in params.bands}
            v = _kernels.valid_from_parts(scl, clouds, *bands.values())
            # NaN (unknown) sun zenith does not invalidate.
            if per_pixel_sza:
                with np.errstate(invalid="ignore"):
                    v &= ~(batch["sza"][i] > params.max_sun_zenith)
            elif sza[t] > params.max_sun_zenith:
                v[:] = False
            p = _kernels.pvir2(bands["B04"], bands["B08"], bands["B12"])
            with np.errstate(invalid="ignore"):
                _kernels.flags_set(bare, t, v & (p <= thr) & ~not_bare_cover)
                below |= v & (p < thr)
            _kernels.flags_set(valid, t, v)
            vpc_count += v
            b02[t] = bands["B02"]
    vpc = vpc_count.astype(np.uint16)
    # NMAD outlier test, strip by strip of rows: the sort's working copies stay small
    # whatever the number of scenes.
    bsc_raw = np.zeros((h, w), dtype=np.int32)
    strip = max(1, _STRIP_BYTES // max(1, n_t * w * _STRIP_BYTES_PER_VALUE))
    for r0 in range(0, h, strip):
        rows = slice(r0, min(h, r0 + strip))
        series = b02[:, rows]
        keep = _kernels.flags_unpack(bare, n_t, rows)
        keep &= series <= _kernels.nmad_upper_limit(series, keep, params.nmad_sigma)
        bare[:, rows] = _kernels.flags_pack(keep)
        bsc_raw[rows] = keep.sum(axis=0)
        if params.need_mref:
            keep = _kernels.flags_unpack(valid, n_t, rows)
            keep &= series <= _kernels.nmad_upper_limit(series, keep, params.mref_nmad_sigma)
            valid[:, rows] = _kernels.flags_pack(keep)
    del b02
    enough = bsc_raw >= params.min_bare
    out: dict[str, np.ndarray] = {"VPC": vpc}
    out["BSC"] = np.where(enough, bsc_raw, 0).astype(np.uint16)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["BSF"] = np.where(enough & (vpc > 0), bsc_raw / np.maximum(vpc, 1), np.nan).astype(
            np.float32)
    mask = np.zeros((h, w), dtype=np.uint8)
    mask[(vpc > 0) & ~below] = 2
    mask[enough] = 1
    if worldcover is not None:
        mask[np.isin(worldcover, _kernels.WC_OTHER)] = 3
    out["MASK"] = mask

    if params.need_src or params.need_mref:  # pass 2: the bands again, one slice at a time
        shape = (len(params.bands), h, w)
        m_bare = _kernels.Moments(shape)
        m_valid = _kernels.Moments(shape) if params.need_mref else None
        for t0, batch in core.batches(params.bands):
            for i in range(batch[params.bands[0]].shape[0]):
                t = t0 + i
                bare_t = _kernels.flags_get(bare, t)
                valid_t = _kernels.flags_get(valid, t) if m_valid is not None else None
                if not (bare_t.any() or (valid_t is not None and valid_t.any())):
                    continue  # nothing to add
                x = np.stack([batch[b][i] for b in params.bands]).astype(np.float64)
                m_bare.add(x, bare_t)
                if m_valid is not None:
                    m_valid.add(x, valid_t)
        if params.need_src:
            keep = enough[None]
            std = m_bare.std()
            out["SRC"] = np.where(keep, m_bare.mean, np.nan).astype(np.float32)
            out["SRC_STD"] = np.where(keep, std, np.nan).astype(np.float32)
            with np.errstate(invalid="ignore", divide="ignore"):
                ci = 1.96 * std / np.sqrt(np.maximum(m_bare.n, 1))
            out["SRC_CI95"] = np.where(keep, ci, np.nan).astype(np.float32)
        if m_valid is not None:
            has = (m_valid.n > 0)[None]
            out["MREF"] = np.where(has, m_valid.mean, np.nan).astype(np.float32)
            out["MREF_STD"] = np.where(has, m_valid.std(), np.nan).astype(np.float32)
    return out


# ----------------------------------------------------------------------------- orchestration


def _auto_block(n_time: int, shape: tuple[int, int], budget: int) -> int:
    """Side of a square block whose first pass fits the memory budget. Blocks are not made
    smaller than that for parallelism: each block reads every scene twice, so more blocks
    mean more file opens; a block reads its slices with threads instead."""
    pixels = budget / (_BYTES_PER_PIXEL_SCENE * max(n_time, 1))
    side = int(math.sqrt(max(pixels, 1)))
    side = max(16, min(2048, side - side % 16 or 16))
    return min(side, max(shape))


def _aligned_block(arr: Any, side: int) -> tuple[int, int]:
    """Block sides that follow the cube's spatial chunks (whole multiples or divisors of
    them), so each time slice of a block is read without slicing across chunks."""
    if not isinstance(arr, dsa.Array):
        return side, side
    out = []
    for chunks in arr.chunks[1:]:
        c = chunks[0]
        # Whole chunks when the budget allows, else an even split of one chunk.
        out.append(c * (side // c) if side >= c else -(-c // -(-c // side)))
    return out[0], out[1]


def _read_bytes(arr: Any, rows: tuple[int, int], cols: tuple[int, int]) -> int:
    """Bytes of the source chunks a (rows, cols) window of one time slice touches."""
    touched = []
    for (a, b), chunks in zip((rows, cols), arr.chunks[1:], strict=True):
        edges = np.cumsum((0, *chunks))
        first = np.searchsorted(edges, a, side="right") - 1
        last = np.searchsorted(edges, b, side="left")
        touched.append(int(edges[last] - edges[first]))
    return touched[0] * touched[1] * arr.dtype.itemsize


def _splits(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def _check_cube(cube: xr.Dataset) -> None:
    missing = [b for b in (*REFLECTANCE_BANDS, SCL) if b not in cube.data_vars]
    if missing:
        raise BandError(
            f"the cube lacks {', '.join(missing)}, which SCMaP needs. Load it with "
            "cup4soil.load_s2(items) (all ten bands and SCL are the default)."
        )
    for dim in ("time", "y", "x"):
        if dim not in cube.dims:
            raise ParameterError(f"the cube has no '{dim}' dimension; use cup4soil.load_s2.")


def _check_param(name: str, value: float, *, minimum: float = 0.0) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}={value!r} is not a number.") from None
    if not math.isfinite(v) or v < minimum:
        raise ParameterError(f"{name}={value} must be a finite number >= {minimum}.")
    return v


def composite(
    cube: xr.Dataset,
    threshold: Any = "dlr-europe",
    *,
    worldcover: xr.DataArray | None = None,
    nmad_sigma: float = 3.0,
    mref_nmad_sigma: float = 4.0,
    min_bare: int = 3,
    products: Sequence[str] | None = None,
    by: str | None = None,
    max_sun_zenith: float = 70.0,
    buffer_m: float = 100.0,
    chunks: dict[str, int] | None = None,
    task_memory: int = DEFAULT_TASK_MEMORY,
) -> xr.Dataset:
    """SCMaP bare-soil composites of a harmonised Sentinel-2 cube (lazy).

    Parameters
    ----------
    cube
        Dataset from :func:`cup4soil.load_s2`: B02 ... B12 and SCL over ``(time, y, x)``,
        uint16 DN on the pre-04.00 scale, nodata 0; an ``sza`` coordinate (degrees, per time)
        enables the sun-zenith limit.
    threshold
        PVIR2 threshold: a float, a DataArray, a raster path/URL, or ``"dlr-europe"`` (DLR's
        regional raster, fetched once into ``~/.cache/cup4soil``, or read from the file named
        by ``$CUP4SOIL_DLR_THRESHOLD``). Rasters are resampled bilinearly onto the cube grid.
    worldcover
        ESA WorldCover classes on the cube grid: built-up (50) and water (80) are never bare;
        classes 0, 50, 70, 80, 90, 95 are MASK = 3.
    nmad_sigma, mref_nmad_sigma
        Outlier factor of the NMAD test on B02 for the bare (SRC) and valid (MREF) sets.
    min_bare
        Fewest bare observations for a pixel to get SRC and BSC (default 3).
    products
        Subset of :data:`PRODUCTS`; the MREF pass is skipped when not asked for.
    by
        ``"year"``: per-calendar-year products with a ``year`` dimension.
    max_sun_zenith
        Observations with a larger sun zenith angle, degrees, are invalid.
    buffer_m
        Cloud/shadow/cirrus buffer, metres.
    chunks
        Spatial block, e.g. ``{"y": 512, "x": 512}``; default: from the number of scenes and
        ``task_memory``.
    task_memory
        Memory budget of one block task, bytes.

    Returns
    -------
    xarray.Dataset
        ``SRC``, ``SRC_STD``, ``SRC_CI95``, ``MREF``, ``MREF_STD`` (float32, ``(band, y, x)``,
        reflectance x 10000, NaN = nodata), ``VPC`` (uint16), ``BSC`` (uint16, 0 = nodata),
        ``BSF`` (float32 fraction, NaN = nodata), ``MASK`` (uint8: 1 bare soil, 2 permanently
        vegetated, 3 other surface, 0 = nodata). Lazy; CRS and grid of the cube.
    """
    _check_cube(cube)
    if cube.sizes["time"] < 2:
        raise ParameterError(
            "the cube has one time step; SCMaP composites a time series. Search a longer "
            "time range (DLR uses five years)."
        )
    nmad_sigma = _check_param("nmad_sigma", nmad_sigma)
    mref_nmad_sigma = _check_param("mref_nmad_sigma", mref_nmad_sigma)
    max_sun_zenith = _check_param("max_sun_zenith", max_sun_zenith)
    buffer_m = _check_param("buffer_m", buffer_m)
    if int(min_bare) != min_bare or min_bare < 1:
        raise ParameterError(f"min_bare={min_bare} must be a whole number >= 1.")
    chosen = tuple(products) if products is not None else PRODUCTS
    unknown = [p for p in chosen if p not in PRODUCTS]
    if unknown or not chosen:
        raise ParameterError(
            f"products={list(chosen)}: choose from {', '.join(PRODUCTS)}."
        )
    if by not in (None, "year"):
        raise ParameterError(f"by={by!r} is unknown; use None or 'year'.")
    geobox = cube.odc.geobox
    if geobox is None:
        raise ParameterError("the cube has no CRS/grid; build it with cup4soil.load_s2.")
    res = float(abs(geobox.resolution.x))
    params = _Params(
        nmad_sigma=nmad_sigma, mref_nmad_sigma=mref_nmad_sigma, min_bare=int(min_bare),
        max_sun_zenith=max_sun_zenith, radius=cloud_buffer_pixels(res, buffer_m),
        products=chosen,
    )
    thr = _resolve_threshold(threshold, geobox)
    wc = _check_worldcover(worldcover, cube)

    if by == "year" and not cube.indexes["time"].is_monotonic_increasing:
        cube = cube.sortby("time")
    # A cube straight from load_s2 is read through its plan; any other cube (in memory,
    # stackstac, edited) through its graph, flattened once.
    planned = _planned(cube, params)
    flat = None if planned is not None else _flatten(cube, params)
    if by == "year":
        year_of = cube.time.dt.year.values
        years = np.unique(year_of)
        parts = []
        for y in years:
            idx = np.flatnonzero(year_of == y)
            parts.append(_composite_one(cube.isel(time=slice(idx[0], idx[-1] + 1)), thr, wc,
                                        params, geobox, chunks, task_memory,
                                        flat=flat, planned=planned, t0=int(idx[0])))
        out = xr.concat(parts, dim="year", coords="minimal", compat="override",
                        combine_attrs="override")
        out = out.assign_coords(year=("year", years.astype("int32")))
    else:
        out = _composite_one(cube, thr, wc, params, geobox, chunks, task_memory, flat=flat,
                             planned=planned)
    out.attrs.update({
        "title": "SCMaP composites (cup4soil.scmap.composite)",
        "threshold": threshold if isinstance(threshold, (int, float, str)) else "DataArray",
        "time_start": str(cube.time.values.min())[:19],
        "time_end": str(cube.time.values.max())[:19],
        "n_scenes": int(cube.sizes["time"]),
        "by": by or "none",
        "worldcover": worldcover is not None,
        **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(params).items()},
        "buffer_m": buffer_m,
        "std_convention": "sample (n - 1), as openEO's sd",
        "mask_note": "MASK 2 only where the pixel had valid observations and none had "
                     "PVIR2 < threshold (DLR's graph assigns 2 to every remaining pixel)",
        **{k: cube.attrs[k] for k in ("input_items", "processing_baselines")
           if k in cube.attrs},
    })
    return out


def _check_worldcover(worldcover: xr.DataArray | None, cube: xr.Dataset) -> xr.DataArray | None:
    if worldcover is None:
        return None
    if not isinstance(worldcover, xr.DataArray) or worldcover.dims != ("y", "x"):
        raise ParameterError("worldcover must be a (y, x) DataArray of ESA WorldCover classes.")
    if not _on_grid(worldcover, cube.odc.geobox):
        raise ParameterError(
            f"worldcover is on another grid ({worldcover.sizes['y']} x {worldcover.sizes['x']} "
            f"px) than the cube ({cube.sizes['y']} x {cube.sizes['x']} px). Reproject it with "
            "worldcover.odc.reproject(cube.odc.geobox, resampling='nearest')."
        )
    return worldcover


def _arrays(cube: xr.Dataset, params: _Params) -> dict[str, Any]:
    per_pixel = "sza" in cube.data_vars and cube["sza"].ndim == 3
    names = [SCL, *params.bands, *(["sza"] if per_pixel else [])]
    arrays = {n: cube[n].transpose("time", "y", "x").data for n in names}
    return {n: (a if isinstance(a, dsa.Array) else dsa.from_array(a, chunks=(1, -1, -1)))
            for n, a in arrays.items()}


def _flatten(cube: xr.Dataset, params: _Params) -> dict[str, _FlatGraph]:
    return {n: _FlatGraph.of(a) for n, a in _arrays(cube, params).items()}


@dataclass(frozen=True)
class _Planned:
    """The read plan behind every array a composite needs, as one graph key."""

    key: Any  # Delayed of the plan
    bands: tuple[tuple[str, str], ...]  # (cube variable, plan band)


def _planned(cube: xr.Dataset, params: _Params) -> _Planned | None:
    """The cube's read plan if all its SCL and band arrays are exactly a plan's output."""
    found = {}
    for name, arr in _arrays(cube, params).items():
        if (hit := _read.plan_of(arr)) is None:
            return None
        found[name] = hit
    plans = {id(plan) for plan, _ in found.values()}
    if len(plans) != 1:
        return None
    plan = next(iter(found.values()))[0]
    return _Planned(_read.as_key(plan), tuple((n, band) for n, (_, band) in found.items()))


def _composite_one(
    cube: xr.Dataset, thr: Any, wc: xr.DataArray | None, params: _Params, geobox: GeoBox,
    chunks: dict[str, int] | None, task_memory: int,
    flat: dict[str, _FlatGraph] | None = None, t0: int = 0, planned: _Planned | None = None,
) -> xr.Dataset:
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    n_t = cube.sizes["time"]
    if chunks:
        by_, bx_ = int(chunks.get("y", ny)), int(chunks.get("x", nx))
        if by_ < 1 or bx_ < 1:
            raise ParameterError(f"chunks={chunks} must be positive pixel counts.")
    else:
        by_ = bx_ = _auto_block(n_t, (ny, nx), task_memory)
    r = params.radius
    per_pixel = "sza" in cube.data_vars and cube["sza"].ndim == 3
    sza = (np.asarray(cube["sza"].values, dtype=np.float64)
           if "sza" in cube.coords and cube["sza"].dims == ("time",) else np.full(n_t, np.nan))
    names = [SCL, *params.bands, *(["sza"] if per_pixel else [])]
    arrays = _arrays(cube, params)
    if not chunks:
        by_, bx_ = _aligned_block(arrays[SCL], by_)
    n_band = len(params.bands)
    if flat is None and planned is None:
        flat = {n: _FlatGraph.of(a) for n, a in arrays.items()}
    t1 = t0 + n_t
    plan_band = dict(planned.bands) if planned is not None else {}
    blocks: dict[str, list[list[Any]]] = {p: [] for p in params.products}
    for y0, y1 in _splits(ny, by_):
        rows: dict[str, list[Any]] = {p: [] for p in params.products}
        for x0, x1 in _splits(nx, bx_):
            ya, yb, xa, xb = max(0, y0 - r), min(ny, y1 + r), max(0, x0 - r), min(nx, x1 + r)
            halo = (y0 - ya, yb - y1, x0 - xa, xb - x1)
            source: _SliceSource
            core: _SliceSource
            if planned is not None:
                source = _PlanSource(((SCL, plan_band[SCL]),), (ya, yb), (xa, xb), t0, t1)
                core = _PlanSource(tuple((n, plan_band[n]) for n in names if n != SCL),
                                   (y0, y1), (x0, x1), t0, t1)
            else:
                # Each block's arrays carry only their own part of the cube's graph.
                source = _Source({SCL: flat[SCL].window(ya, yb, xa, xb, t0, t1)}, slice_bytes={
                    SCL: _read_bytes(arrays[SCL], (ya, yb), (xa, xb))})
                core_arrays = {n: flat[n].window(y0, y1, x0, x1, t0, t1)
                               for n in names if n != SCL}
                core = _Source(core_arrays, slice_bytes={
                    n: _read_bytes(arrays[n], (y0, y1), (x0, x1)) for n in core_arrays})
            if isinstance(thr, _RasterThreshold):
                # Resampled inside the task: building the graph computes nothing.
                thr_block: Any = (thr, geobox[y0:y1, x0:x1])
            elif isinstance(thr, xr.DataArray):
                thr_block = thr.data[y0:y1, x0:x1]
            else:
                thr_block = thr
            wc_block = wc.data[y0:y1, x0:x1] if wc is not None else None
            task = dask.delayed(_composite_block, pure=True)(
                source, core, halo, thr_block, wc_block, sza, params,
                planned.key if planned is not None else None,
            )
            h, w = y1 - y0, x1 - x0
            for p in params.products:
                shape, dtype = _product_layout(p, n_band, h, w)
                rows[p].append(dsa.from_delayed(task[p], shape=shape, dtype=dtype))
        for p in params.products:
            blocks[p].append(rows[p])
    coords = {"y": cube.y, "x": cube.x}
    if "spatial_ref" in cube.coords:
        coords["spatial_ref"] = cube.spatial_ref
    data_vars = {}
    for p in params.products:
        if p in _BAND_PRODUCTS:
            data_vars[p] = xr.DataArray(_assemble(blocks[p]), dims=("band", "y", "x"),
                                        coords={**coords, "band": list(params.bands)})
        else:
            data_vars[p] = xr.DataArray(_assemble(blocks[p]), dims=("y", "x"), coords=coords)
        data_vars[p].attrs.update(_ATTRS[p])
    return xr.Dataset(data_vars)


def _assemble(rows: list[list[Any]]) -> Any:
    """Tile per-block arrays (rows of blocks) back into one array over the last two axes."""
    return dsa.concatenate([dsa.concatenate(row, axis=-1) for row in rows], axis=-2)


def _product_layout(name: str, n_band: int, h: int, w: int) -> tuple[tuple[int, ...], Any]:
    if name in _BAND_PRODUCTS:
        return (n_band, h, w), np.float32
    return (h, w), {"VPC": np.uint16, "BSC": np.uint16, "BSF": np.float32,
                    "MASK": np.uint8}[name]


_ATTRS: dict[str, dict[str, Any]] = {
    "SRC": {"long_name": "soil reflectance composite: mean of bare observations",
            "units": "1e-4 reflectance", "nodata": float("nan")},
    "SRC_STD": {"long_name": "standard deviation of bare observations (n - 1)",
                "units": "1e-4 reflectance", "nodata": float("nan")},
    "SRC_CI95": {"long_name": "95 % confidence half-width of SRC: 1.96 SRC_STD / sqrt(BSC)",
                 "units": "1e-4 reflectance", "nodata": float("nan")},
    "MREF": {"long_name": "mean reflectance composite: mean of valid observations",
             "units": "1e-4 reflectance", "nodata": float("nan")},
    "MREF_STD": {"long_name": "standard deviation of valid observations (n - 1)",
                 "units": "1e-4 reflectance", "nodata": float("nan")},
    "VPC": {"long_name": "valid pixel count", "units": "1"},
    "BSC": {"long_name": "bare surface count (after NMAD outlier removal)", "units": "1",
            "nodata": 0},
    "BSF": {"long_name": "bare surface frequency BSC / VPC", "units": "1",
            "nodata": float("nan")},
    "MASK": {"long_name": "1 bare soil, 2 permanently vegetated, 3 other surface",
             "units": "1", "nodata": 0, "flag_values": [1, 2, 3],
             "flag_meanings": "bare_soil permanently_vegetated other_surface"},
}


def to_soilsuite(ds: xr.Dataset) -> xr.Dataset:
    """The products named as DLR's SoilSuite bands (``SRC_B02``, ``SRC_STD_B02``, ..., ``VPC``,
    ``BSC``, ``BSF``, ``MASK``), one 2-D variable each, ready for GeoTIFF export."""
    out = {}
    for name, var in ds.data_vars.items():
        if "band" in var.dims:
            for band in var.band.values:
                out[f"{name}_{band}"] = var.sel(band=band, drop=True)
        else:
            out[str(name)] = var
    return xr.Dataset(out, attrs=ds.attrs)
