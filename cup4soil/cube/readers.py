"""The cube's raster readers: odc-loader's and stackstac's, made safe for long runs.

Both readers (:class:`SafeRioDriver` for odc-stac read plans, :class:`SafeStackstacReader`
for stackstac) add three things to what they wrap:

- **Errors that name the asset.** Any failure is an :class:`~cup4soil.errors.AssetReadError`
  naming the asset without its query string (signing tokens).
- **Files that are what their items say.** The first read of an asset in a process opens it
  once more to check it (cheap: GDAL caches the header; measured in ``docs/benchmarks.md``):
  a file without georeferencing (a PNG or JPEG picture), floating-point values where
  Sentinel-2 digital numbers are expected (reflectance 0-1 read as DN would all become 0),
  or another CRS than its item's ``proj:`` metadata declares raise
  :class:`~cup4soil.errors.AssetFormatError` instead of an empty or all-zero scene.
- **Transient network failures retried, within a budget.** GDAL retries HTTP 5xx answers and
  connection resets itself (``GDAL_HTTP_MAX_RETRY`` times, waiting
  ``GDAL_HTTP_RETRY_DELAY`` seconds, doubled each time), but not a truncated response (the
  TIFF decoder then reports a short read, and GDAL's cache keeps the short bytes) nor a
  stalled one. cup4soil retries a failed read of a remote asset that failed for such a
  transient reason (HTTP 408/425/429/5xx, reset, truncation, time-out), bypassing GDAL's cache
  for that asset, waiting as GDAL does (from ``GDAL_HTTP_RETRY_DELAY``, doubling, at most
  10 s), until :data:`READ_RETRY_ENV` (``CUP4SOIL_READ_RETRY_SECONDS``, default
  :data:`DEFAULT_READ_RETRY_SECONDS`) seconds have passed since the read began; then it
  raises :class:`~cup4soil.errors.AssetRetryError` with the asset, the last status seen and
  the number of tries. Local files and permanent failures (404, 403, a file that is not a
  raster) are never retried.

GDAL's own retry settings default to :data:`GDAL_READ_DEFAULTS` unless set in the
environment or a ``rasterio.Env``: odc-loader's defaults (10 retries from 0.5 s, doubling
with jitter) let one request wait for up to 13 minutes between its last two tries, and GDAL
by itself never times out a stalled transfer.

Why hand-written: neither odc-loader nor stackstac retries reads (stackstac issue #18 asks
for it), and GDAL's retries miss truncation and have no total budget.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
from odc.geo.geobox import GeoBox
from odc.loader import (
    RasterLoadParams,
    RasterSource,
    RioDriver,
    RioReader,
    resolve_dst_nodata,
    resolve_src_nodata,
)
from stackstac.rio_reader import AutoParallelRioReader

from ..errors import AssetFormatError, AssetReadError, AssetRetryError, ParameterError, redact
from ..sources import signing as _signing
from . import kernels as _cube_kernels

__all__ = [
    "DEFAULT_READ_RETRY_SECONDS", "GDAL_READ_DEFAULTS", "READ_RETRY_ENV", "SUSPECT_TRIES",
    "SafeRioDriver", "SafeRioReader", "SafeStackstacReader", "SuspectFileError", "check_asset",
    "gdal_read_options", "may_align", "read_aligned", "read_retry_seconds", "stackstac_env",
    "suspect_status",
    "transient_status", "with_retries",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Environment variable: seconds a read of one asset may spend retrying transient failures.
READ_RETRY_ENV = "CUP4SOIL_READ_RETRY_SECONDS"
DEFAULT_READ_RETRY_SECONDS = 60.0
#: Longest wait between two tries, seconds.
MAX_RETRY_WAIT = 10.0

#: GDAL settings of cup4soil's reads over HTTP and object storage, where the user set none:
#: GDAL retries 5xx answers and resets 3 times from 0.5 s (about 4 s in all), and a
#: transfer that moves less than a byte a second for 30 s is a time-out.
GDAL_READ_DEFAULTS: dict[str, str] = {
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_CONNECTTIMEOUT": "15",
    "GDAL_HTTP_LOW_SPEED_TIME": "30",
    "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
}
# odc-loader's defaults when nothing is configured: replaced by cup4soil's.
_ODC_RETRY_KEYS = ("GDAL_HTTP_MAX_RETRY", "GDAL_HTTP_RETRY_DELAY")

_REMOTE = re.compile(r"^(?:https?|s3|gs|gcs|az|abfs|azure|/vsicurl|/vsis3|/vsigs|/vsiaz)[:/]",
                     re.IGNORECASE)
_HTTP_CODE = re.compile(r"HTTP (?:response|error) code:? *(\d{3})", re.IGNORECASE)
_RESET = re.compile(r"reset by peer|connection reset|connection was reset|recv failure|"
                    r"send failure|empty reply from server|connection aborted|"
                    r"remotedisconnected|broken pipe", re.IGNORECASE)
_TIMEOUT = re.compile(r"too slow|timed out|timeout was reached|time-out", re.IGNORECASE)
# curl or the TIFF decoder saying the answer had fewer bytes than announced
_TRUNCATED = re.compile(r"transfer closed with|partial file|got \d+ bytes, expected \d+|"
                        r"unexpected end of (?:file|data)|short read", re.IGNORECASE)
# a file that could not be decoded: a bad file, or an answer cut short or garbled
_UNDECODABLE = re.compile(r"TIFF\w*:|TIFF\w*\(\)|IReadBlock failed|read error at|"
                          r"not recognized as (?:a |being in a )?supported file format|"
                          r"failed to read directory|cannot read TIFF header", re.IGNORECASE)


def is_remote(href: str) -> bool:
    """Whether ``href`` is read over the network (HTTP or object storage)."""
    return bool(_REMOTE.match(href))


def _chain_text(exc: BaseException) -> str:
    """The messages of ``exc`` and of the exceptions it was raised from."""
    parts, seen = [], set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        parts.append(f"{type(node).__name__}: {node}")
        node = node.__cause__ or node.__context__
    return " | ".join(parts)


#: Failures of a remote read that a truncated or corrupted answer can cause as well as a bad
#: file (a TIFF header cut short parses without its georeferencing; readers then fail in
#: their own code): retried, at most :data:`SUSPECT_TRIES` times in all.
_SUSPECT_TYPES = (AssertionError, AttributeError, TypeError, IndexError, KeyError)
SUSPECT_TRIES = 6
#: Status of a truncated response.
TRUNCATED = "truncated response (fewer bytes than announced)"


class SuspectFileError(AssetFormatError):
    """A remote file that read as something other than what it should be (no
    georeferencing): a bad file, or a truncated answer -- only another try tells."""


def transient_status(href: str, exc: BaseException) -> str | None:
    """The transient failure ``exc`` reports for a read of ``href`` (``"HTTP 503"``,
    ``"connection reset"``, ``"truncated response ..."``, ``"timed out"``), or None if it
    is not one (a local file, HTTP 404, a file that is not a raster)."""
    if not is_remote(href) or isinstance(exc, AssetFormatError):
        return None
    text = _chain_text(exc)
    codes = [int(c) for c in _HTTP_CODE.findall(text)]
    final = [c for c in codes if c != 0]  # GDAL says "code 0" for a reset connection
    if final:
        code = final[-1]
        return f"HTTP {code}" if code in (408, 425, 429) or 500 <= code <= 599 else None
    if _RESET.search(text):
        return "connection reset"
    if _TIMEOUT.search(text):
        return "timed out"
    if _TRUNCATED.search(text):
        # The TIFF decoder got fewer bytes than the file declares.
        return TRUNCATED
    return None


def suspect_status(href: str, exc: BaseException) -> str | None:
    """For a remote ``href``: the status of a failure that may come from a truncated or
    corrupted answer as well as from a bad file, or None."""
    if not is_remote(href):
        return None
    if isinstance(exc, SuspectFileError) or _UNDECODABLE.search(_chain_text(exc)) or (
            isinstance(exc, _SUSPECT_TYPES) and not isinstance(exc, AssetReadError)):
        first = _chain_text(exc).split(" | ")[0]
        return f"truncated or corrupt response ({first[:200]})"
    return None


def read_retry_seconds() -> float:
    """The retry budget per asset read, seconds (``$CUP4SOIL_READ_RETRY_SECONDS``)."""
    raw = os.environ.get(READ_RETRY_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_READ_RETRY_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ParameterError(
            f"{READ_RETRY_ENV}={raw!r} is not a number of seconds >= 0 (0: no retries by "
            f"cup4soil; default {DEFAULT_READ_RETRY_SECONDS:g}).")
    return value


def _first_wait() -> float:
    try:
        return max(0.0, float(os.environ.get("GDAL_HTTP_RETRY_DELAY",
                                             GDAL_READ_DEFAULTS["GDAL_HTTP_RETRY_DELAY"])))
    except ValueError:
        return float(GDAL_READ_DEFAULTS["GDAL_HTTP_RETRY_DELAY"])


def _vsi_path(href: str) -> str:
    """GDAL's name of a remote ``href`` (the prefix its cache is keyed by)."""
    scheme, sep, rest = href.partition("://")
    if not sep:
        return href
    prefix = {"http": "/vsicurl/", "https": "/vsicurl/", "s3": "/vsis3/", "gs": "/vsigs/",
              "gcs": "/vsigs/", "az": "/vsiaz/", "azure": "/vsiaz/", "abfs": "/vsiaz/"}
    kind = prefix.get(scheme.lower())
    if kind is None:
        return href
    return f"{kind}{href}" if kind == "/vsicurl/" else f"{kind}{rest}"


def with_retries(href: str, attempt: Callable[[], T], *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """``attempt()``, tried again while it fails for a transient reason
    (:func:`transient_status`) and the asset's budget (:func:`read_retry_seconds`) lasts.

    Tries after the first bypass GDAL's cache of the asset (``CPL_VSIL_CURL_NON_CACHED``):
    it would keep the bytes of a truncated response. Failures that a truncated answer may
    cause as well as a bad file (:func:`suspect_status`) are tried at most
    :data:`SUSPECT_TRIES` times.

    Raises
    ------
    AssetRetryError
        The budget is spent; names the asset, the last status and the number of tries.
    """
    import rasterio

    budget = read_retry_seconds()
    start = clock()
    wait = _first_wait()
    tries = 0
    while True:
        tries += 1
        try:
            if tries == 1:
                return attempt()
            with rasterio.Env(CPL_VSIL_CURL_NON_CACHED=_vsi_path(href)):
                return attempt()
        except Exception as exc:
            status = transient_status(href, exc)
            if status is None:
                status = suspect_status(href, exc)
                if status is None:
                    raise
                if tries >= SUSPECT_TRIES:  # the same every time: the file itself
                    raise AssetRetryError(href, status, tries, clock() - start) from None
            spent = clock() - start
            if spent + wait > budget:
                raise AssetRetryError(href, status, tries, spent) from None
            log.warning("reading %s failed (%s); try %d in %.1f s", redact(href), status,
                        tries + 1, wait)
            sleep(wait)
            wait = min(MAX_RETRY_WAIT, max(wait * 2, 0.05))


def gdal_read_options() -> dict[str, str]:
    """:data:`GDAL_READ_DEFAULTS`, each replaced by this process's environment variable of
    the same name where one is set.

    The values are passed explicitly to every read's ``rasterio.Env`` rather than left to
    GDAL's own look-up of the environment: leaving its outermost ``Env``, rasterio turns
    every option it found set (environment variables included) into a process-wide GDAL
    configuration option, which from then on hides a change of the environment variable.
    """
    return {k: os.environ.get(k, v) for k, v in GDAL_READ_DEFAULTS.items()}


# ------------------------------------------------------------------------ file checks

#: Assets checked in this process (by URL without query string); bounded.
_CHECKED: OrderedDict[str, None] = OrderedDict()
_CHECKED_MAX = 100_000
_CHECKED_LOCK = threading.Lock()
#: GDAL drivers of pictures: no georeferencing, never a Sentinel-2 band.
_PICTURES = frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP"})


def check_asset(href: str, *, declared_crs: Any = None, integer: bool = True) -> None:
    """Open ``href`` once per process and check it is what the cube expects.

    Parameters
    ----------
    href
        The asset.
    declared_crs
        The CRS its item's ``proj:`` metadata declares (None: not declared).
    integer
        Whether integer values (Sentinel-2 DN, SCL classes) are expected.

    Raises
    ------
    AssetFormatError
        A picture without georeferencing, floating-point values where integers are
        expected, or another CRS than declared.
    """
    import rasterio

    key = href.split("?", 1)[0]
    with _CHECKED_LOCK:
        if key in _CHECKED:
            _CHECKED.move_to_end(key)
            return
    with rasterio.open(href) as ds:
        driver, crs, dtype = ds.driver, ds.crs, np.dtype(ds.dtypes[0])
        georeferenced = crs is not None or not ds.transform.is_identity or bool(ds.gcps[0])
    if driver not in _PICTURES and not georeferenced and is_remote(href):
        # A TIFF whose header was cut short reads without georeferencing, too.
        raise SuspectFileError(
            href, f"read as a {driver} file without a CRS or geotransform",
            "If the file is complete, it is not georeferenced: point the item's asset at "
            "the band's GeoTIFF/COG.")
    if driver in _PICTURES or not georeferenced:
        raise AssetFormatError(
            href, f"is not a georeferenced raster (GDAL reads it as {driver}, without a CRS "
            "or geotransform: a picture such as a thumbnail)",
            "Point the item's band asset at the GeoTIFF/COG (or JPEG 2000) of the band, not "
            "at a preview image.")
    if integer and not np.issubdtype(dtype, np.integer):
        raise AssetFormatError(
            href, f"holds {dtype} values where Sentinel-2 L2A digital numbers (integers: "
            "reflectance x 10000, SCL classes) are expected; read as DN, reflectance 0-1 "
            "would all become 0",
            "Convert the file to DN (round(reflectance * 10000), uint16), or load a "
            "collection that stores DN.")
    if declared_crs is not None and crs is not None and not _same_crs(crs, declared_crs):
        raise AssetFormatError(
            href, f"is in {_crs_name(crs)} but its item's proj: metadata declares "
            f"{_crs_name(declared_crs)}",
            "Correct the item's proj:code / proj:epsg (or drop the projection metadata so "
            "that the file's own CRS is used).")
    with _CHECKED_LOCK:
        _CHECKED[key] = None
        while len(_CHECKED) > _CHECKED_MAX:
            _CHECKED.popitem(last=False)


def _crs_name(crs: Any) -> str:
    epsg = getattr(crs, "epsg", None)
    if epsg is None and hasattr(crs, "to_epsg"):
        epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else str(crs)


def _same_crs(a: Any, b: Any) -> bool:
    from odc.geo.crs import CRS

    try:
        return bool(CRS(str(a) if not hasattr(a, "to_wkt") else a.to_wkt()) == CRS(b))
    except Exception:  # an unparsable declaration is not a contradiction we can prove
        return True


def _failed(href: str, exc: Exception) -> AssetReadError:
    """The :class:`AssetReadError` of a failed read: the reader's message, and the first
    cause's (rasterio says "See previous exception for details")."""
    if isinstance(exc, AssetReadError):
        return exc
    parts = _chain_text(exc).split(" | ")
    return AssetReadError(href, parts[0] if len(parts) == 1 else f"{parts[0]} ({parts[-1]})")


# --------------------------------------------------------------------------- odc-loader


class SafeRioReader(RioReader):
    """odc-loader's rasterio reader: file checks, retries, errors naming the asset."""

    def __init__(self, src: RasterSource, ctx: Any) -> None:
        super().__init__(src, ctx)
        self._uri = src.uri

    def read(self, cfg: RasterLoadParams, dst_geobox: GeoBox, *, dst: np.ndarray | None = None,
             selection: Any = None) -> tuple[tuple[slice, slice], np.ndarray]:
        declared = self._src.geobox.crs if self._src.geobox is not None else None
        integer = bool(np.issubdtype(np.dtype(cfg.dtype), np.integer))

        def attempt() -> tuple[tuple[slice, slice], np.ndarray]:
            check_asset(self._uri, declared_crs=declared, integer=integer)
            if dst is None and selection is None and may_align(self._src, cfg, dst_geobox):
                got = read_aligned(self._uri, self._src.band, cfg, dst_geobox)
                if got is not None:
                    return got
            return super(SafeRioReader, self).read(cfg, dst_geobox, dst=dst,
                                                   selection=selection)

        try:
            return with_retries(self._uri, attempt)
        except Exception as exc:
            raise _failed(self._uri, exc) from None


def _whole(x: float, tol: float = 1e-6) -> int | None:
    r = round(x)
    return int(r) if abs(x - r) <= tol else None


def may_align(src: RasterSource, cfg: RasterLoadParams, dst_geobox: GeoBox) -> bool:
    """Whether :func:`read_aligned` may read ``src`` onto ``dst_geobox``, from the item's
    metadata alone (True when it declares no grid; the file decides then).

    A reprojection (a continental run's EEA grid) is known from the metadata: no file is
    opened twice for it.
    """
    if cfg.use_overviews:
        return False
    grid = src.geobox
    affine = getattr(grid, "affine", None)
    if grid is None or affine is None:
        return True
    if grid.crs != dst_geobox.crs or affine.b or affine.d or not affine.a:
        return False
    k = _whole(dst_geobox.affine.a / affine.a)
    return k is not None and (k == 1 or (k > 1 and cfg.resampling == "average"))


def read_aligned(uri: str, band: int, cfg: RasterLoadParams, dst_geobox: GeoBox
                 ) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Integer pixels read onto a grid that shares the file's pixel edges, ``k`` times
    coarser: a window read, and for ``k`` >= 2 with ``average`` resampling (Sentinel-2's
    10 m bands onto 20 m) :func:`cup4soil.cube.kernels.block_mean`. None for any other
    grid, dtype or resampling: the caller then reads through odc-loader (GDAL's warper).

    Returns what odc-loader's reader returns: the destination pixels that overlap the file
    and their values, the file's nodata replaced by the load's fill value.

    Why not odc-loader's read, which calls GDAL's warper for any change of resolution: the
    warper costs 2.5x the decode of the 10 m band itself (``benchmarks/decode_limit.py``),
    and its area weights carry the rounding noise of its approximate transformer -- on the
    sample archive about 1 in 3000 exact halves rounds down instead of up, and pixels just
    outside the file get a value; here the mean is exact, halves round up. For ``k = 1``
    odc-loader pastes the same window too; doing it here spares its per-read planning
    (about a third of a read's fixed cost, measured in the same benchmark).
    """
    import rasterio
    from odc.geo.crs import CRS
    from rasterio.windows import Window

    if cfg.use_overviews:
        return None
    with rasterio.open(uri, "r", sharing=False) as ds:
        if not isinstance(band, int) or not 1 <= band <= ds.count or ds.crs is None:
            return None
        dtype = np.dtype(ds.dtypes[band - 1])
        out_dtype = np.dtype(cfg.dtype) if cfg.dtype else dtype
        if dtype.kind not in "iu" or dtype.itemsize > 4 or out_dtype != dtype:
            return None
        s, d = ds.transform, dst_geobox.affine
        if s.b or s.d or d.b or d.d or not (s.a > 0 and s.e < 0):
            return None
        k = _whole(d.a / s.a)
        if k is None or k < 1 or _whole(d.e / s.e) != k or (k > 1
                                                             and cfg.resampling != "average"):
            return None
        col0, row0 = _whole((d.c - s.c) / s.a), _whole((d.f - s.f) / s.e)
        if col0 is None or row0 is None or CRS(ds.crs.to_wkt()) != dst_geobox.crs:
            return None
        ny, nx = dst_geobox.shape.yx
        # output rows whose k source rows meet the file's rows [0, height)
        r_lo, r_hi = max(0, (-row0) // k), min(ny, -((row0 - ds.height) // k))
        c_lo, c_hi = max(0, (-col0) // k), min(nx, -((col0 - ds.width) // k))
        if r_lo >= r_hi or c_lo >= c_hi:
            return np.s_[0:0, 0:0], np.empty((0, 0), dtype)
        top, left = row0 + k * r_lo, col0 + k * c_lo
        y0, x0 = max(0, top), max(0, left)
        y1 = min(ds.height, top + k * (r_hi - r_lo))
        x1 = min(ds.width, left + k * (c_hi - c_lo))
        pix = ds.read(band, window=Window(x0, y0, x1 - x0, y1 - y0))
        src_nodata = resolve_src_nodata(ds.nodatavals[band - 1], cfg)
    dst_nodata = resolve_dst_nodata(dtype, cfg, src_nodata)
    fill = 0 if dst_nodata is None or not float(dst_nodata).is_integer() else int(dst_nodata)
    roi = np.s_[r_lo:r_hi, c_lo:c_hi]
    if k > 1:
        return roi, _cube_kernels.block_mean(pix, k, (r_hi - r_lo, c_hi - c_lo),
                                             row0=top - y0, col0=left - x0,
                                             nodata=src_nodata, fill=fill)
    if (src_nodata is not None and dst_nodata is not None and float(src_nodata).is_integer()
            and src_nodata != dst_nodata):
        pix[pix == int(src_nodata)] = fill  # as odc-loader: the file's nodata to the fill
    return roi, pix


class SafeRioDriver(RioDriver):
    """odc-loader's rasterio driver whose readers are :class:`SafeRioReader`, and whose
    captured GDAL options include :data:`GDAL_READ_DEFAULTS` where none are set."""

    def open(self, src: RasterSource, ctx: Any) -> SafeRioReader:
        return SafeRioReader(src, ctx)

    def capture_env(self) -> dict[str, Any]:
        env: dict[str, Any] = dict(super().capture_env())
        if _uncustomised(env):
            for k in _ODC_RETRY_KEYS:
                env.pop(k, None)
        for k, v in gdal_read_options().items():
            env.setdefault(k, v)
        return env


def _uncustomised(env: dict[str, Any]) -> bool:
    """Whether odc-loader captured its own defaults (nothing configured by the user)."""
    from .._compat import odc_cloud_defaults

    return env == odc_cloud_defaults()


# ----------------------------------------------------------------------------- stackstac


def stackstac_env() -> Any:
    """stackstac's GDAL environment (a ``LayeredEnv``) with :data:`GDAL_READ_DEFAULTS`
    where none are set."""
    from .._compat import stackstac_gdal_env

    return stackstac_gdal_env(gdal_read_options())


class SafeStackstacReader(AutoParallelRioReader):  # type: ignore[misc]
    """stackstac's reader with file checks, retries and errors naming the asset (without
    tokens); signed URLs are renewed when near expiry (readers are made at compute time)."""

    def __init__(self, *, url: str, **kwargs: Any) -> None:
        super().__init__(url=_signing.fresh_href(url), **kwargs)

    def read(self, window: Any, **kwargs: Any) -> Any:
        integer = bool(np.issubdtype(np.dtype(self.dtype), np.integer))

        def attempt() -> Any:
            with self.gdal_env.open:
                check_asset(self.url, integer=integer)
            try:
                return super(SafeStackstacReader, self).read(window, **kwargs)
            except Exception:
                self.close()  # the next try opens the asset afresh
                raise

        try:
            return with_retries(self.url, attempt)
        except Exception as exc:
            raise _failed(self.url, exc) from None
