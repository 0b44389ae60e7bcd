"""Exceptions raised by cup4soil, and the redaction of secrets from messages and logs.

A small hierarchy in the style of rioxarray: everything derives from
:class:`Cup4SoilError`, so ``except cup4soil.errors.Cup4SoilError`` catches every
problem cup4soil diagnoses itself. Each message is one line that names what is wrong *and*
how to fix it, and never contains a storage key, token, password or signed URL.

- :func:`redact` removes what may be a secret from a text: query strings of URLs (Azure SAS
  ``sig=``, S3 ``X-Amz-Signature``), user information of URLs
  (``http://user:password@host`` -> ``http://***@host``), ``Authorization`` headers,
  ``password=``/``token=``/``secret=``-like pairs and AWS access key ids.
- **Errors that survive a cluster.** Every :class:`Cup4SoilError` pickles as its class, its
  message and its (picklable) attributes, whatever its ``__init__`` takes, so it reaches a
  Dask client as itself. The exception it was raised from (rasterio's, botocore's) is not
  shipped: distributed pickles ``__cause__``/``__context__`` along (tblib), a dependency's
  exception may not unpickle on the client (the client then got a bare ``Exception``), and
  its message may hold a signed URL. A cup4soil error's message already says, redacted, what
  its cause reported; only causes that are cup4soil errors themselves stay visible.
- **Logs.** :func:`install_log_redaction` (run when cup4soil is imported, in the client and
  in every Dask worker that runs cup4soil tasks) redacts every log record of the loggers in
  :data:`REDACTED_LOGGERS` and their children -- message, arguments, exception text --
  when the record is made. A filter on a logger would miss its children's records
  (``stackstac.timer`` logs signed URLs at DEBUG) and the exception text.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from typing import Any

__all__ = [
    "REDACTED_LOGGERS",
    "AOIError",
    "AssetReadError",
    "BackendError",
    "BandError",
    "CRSError",
    "CatalogError",
    "ClusterError",
    "CollectionError",
    "CovariateError",
    "CoverageError",
    "Cup4SoilError",
    "GridMismatchError",
    "IncompleteProductError",
    "LayerError",
    "ModelError",
    "NoItemsError",
    "NotAProductError",
    "OptionalDependencyError",
    "ParameterError",
    "ProcessGraphError",
    "ProductLockedError",
    "SampleError",
    "StorageFullError",
    "StoreError",
    "ThresholdError",
    "TileCodeError",
    "TilingError",
    "TimeRangeError",
    "install_log_redaction",
    "redact",
]

# Query strings of signed URLs carry credentials (Azure SAS ``sig=``, S3 ``X-Amz-Signature``):
# any ``?key=value...`` attached to a URL or path is removed.
_QUERY = re.compile(r"(?P<url>[^\s?'\"]+)\?(?=[^\s'\"]*=)[^\s'\"]*")
# User information of a URL: ``scheme://user:password@host`` (also once a path
# normalisation has made the ``//`` a ``/``).
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*:/{1,2})[^/\s@'\"<>]+@")
# ``Authorization: Basic ...`` and other credential-carrying headers or ``name=value`` pairs
# (also as quoted dict items, as libraries log request headers and options).
_PAIR = re.compile(
    r"(?P<name>(?<![A-Za-z0-9])(?:authorization|proxy-authorization|x-amz-security-token|"
    r"x-amz-credential|x-amz-signature|x-ms-sas|signature|credential|password|passwd|"
    r"secret(?:_access_key|_key)?|aws_secret_access_key|aws_session_token|session_token|"
    r"sas_token|account_key|token|api[_-]?key|access[_-]?token|client_secret|sig)"
    r"['\"]?\s*[:=]\s*(?:b(?=['\"]))?['\"]?)"
    r"(?:(?:basic|bearer|digest|aws4-hmac-sha256|token)\s+)?"
    r"[^'\"\s,;&)}\]]+", re.IGNORECASE)
# ``'key': '...'`` / ``'secret': '...'`` as fsspec storage options print
_QUOTED_KEY = re.compile(r"(?P<name>['\"](?:key|secret|token|password|sas)['\"]\s*:\s*['\"])"
                         r"[^'\"]+")
# AWS access key ids
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b")
# Longest message kept: distributed rebuilds longer ones as a bare Exception.
_MAX_MESSAGE = 4000


def redact(text: str) -> str:
    """``text`` without what may be a secret.

    Removes query strings (where signing tokens live) from every URL or path, the user
    information of URLs (``http://user:password@host/`` -> ``http://***@host/``),
    credential headers and ``password=``/``token=``/``secret=``-like values, and AWS
    access key ids.
    """
    text = _QUERY.sub(r"\g<url>", text)
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _PAIR.sub(r"\g<name>***", text)
    text = _QUOTED_KEY.sub(r"\g<name>***", text)
    return _AWS_KEY_ID.sub("***", text)


def _one_line(text: str) -> str:
    """A message on one line, of bounded length."""
    text = re.sub(r"\s*\n\s*", " ", text).strip()
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE - 3] + "..."


def _redact_record(record: logging.LogRecord) -> None:
    """Redact a log record in place: message with its arguments, exception and stack text."""
    try:
        message = record.getMessage()
    except Exception:  # a malformed record: logging itself reports it, unformatted
        return
    record.msg, record.args = redact(message), None
    if record.exc_info and record.exc_info[1] is not None:
        text = "".join(traceback.format_exception(*record.exc_info))
        record.exc_text, record.exc_info = redact(text.rstrip("\n")), None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class RedactingFilter(logging.Filter):
    """Logging filter that redacts records (message, exception text) it sees.

    A filter on a logger sees only that logger's own records, not its children's: use
    :func:`install_log_redaction` for whole logger trees.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


#: Loggers (with their children) whose records are redacted: cup4soil and the libraries
#: that log URLs, request headers or pickled errors at some level.
REDACTED_LOGGERS: tuple[str, ...] = (
    "cup4soil", "stackstac", "rasterio", "odc", "distributed", "dask", "dask_gateway",
    "pystac", "pystac_client", "planetary_computer", "fsspec", "s3fs", "aiobotocore",
    "botocore", "boto3", "urllib3", "requests", "aiohttp", "zarr", "xarray", "tornado",
    "fiona", "pyogrio", "py.warnings",
)
_installed: dict[str, Any] = {}


def install_log_redaction(loggers: tuple[str, ...] | None = None) -> None:
    """Redact every record of ``loggers`` (default :data:`REDACTED_LOGGERS`) and of their
    children when it is made (idempotent; wraps the current log record factory).

    Parameters
    ----------
    loggers : tuple of str, optional
        Logger names to add to the redacted ones.
    """
    names = tuple(sorted(set(REDACTED_LOGGERS) | set(loggers or ())))
    _installed["names"] = names
    _installed["prefixes"] = tuple(f"{n}." for n in names)
    if "factory" in _installed:
        return
    previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        name = record.name
        if name in _installed["names"] or name.startswith(_installed["prefixes"]):
            _redact_record(record)
        return record

    _installed["factory"] = factory
    logging.setLogRecordFactory(factory)


def _restore(cls: type[Cup4SoilError], args: tuple[Any, ...],
             state: dict[str, Any]) -> Cup4SoilError:
    """Unpickle a cup4soil error without calling its ``__init__`` (whatever it takes)."""
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


def _picklable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool | type(None) | tuple | list | dict)


_CAUSE = BaseException.__dict__["__cause__"]
_CONTEXT = BaseException.__dict__["__context__"]


class Cup4SoilError(Exception):
    """Base class of every error cup4soil raises on purpose.

    The message is redacted (:func:`redact`) and made one line. Instances pickle as their
    class, message and simple attributes; the exceptions they were raised from are visible
    only when they are cup4soil errors too (see the module's documentation).
    """

    def __init__(self, message: str) -> None:
        super().__init__(_one_line(redact(str(message))))

    def __reduce__(self) -> tuple[Any, ...]:
        state = {k: v for k, v in self.__dict__.items() if _picklable(v)}
        return (_restore, (type(self), self.args, state))

    # The chain as Python code (tblib, traceback, IPython) sees it: cup4soil errors only.
    @property
    def __cause__(self) -> BaseException | None:
        cause = _CAUSE.__get__(self, type(self))
        return cause if isinstance(cause, Cup4SoilError) else None

    @__cause__.setter
    def __cause__(self, value: BaseException | None) -> None:
        _CAUSE.__set__(self, value)

    @property
    def __context__(self) -> BaseException | None:
        context = _CONTEXT.__get__(self, type(self))
        return context if isinstance(context, Cup4SoilError) else None

    @__context__.setter
    def __context__(self, value: BaseException | None) -> None:
        _CONTEXT.__set__(self, value)


class ParameterError(Cup4SoilError, ValueError):
    """An option has an impossible value (negative resolution, unknown engine, ...).

    Fix: the message names the option and the values it accepts; pass one of them.
    """


class CatalogError(Cup4SoilError):
    """The catalog is unknown, unreachable or not a STAC catalog.

    Fix: use a named catalog (``"planetary-computer"``, ``"earth-search"``, ``"cdse"``), the
    URL of a STAC API or the path of a static ``catalog.json``; check the network.
    """


class AOIError(Cup4SoilError, ValueError):
    """The area of interest is not a geometry, is empty, or lies outside the catalog.

    Fix: pass a bbox ``(west, south, east, north)`` in degrees, a GeoJSON geometry or file,
    or a known name such as ``"oderbruch"``.
    """


class TimeRangeError(Cup4SoilError, ValueError):
    """The time range is malformed or reversed.

    Fix: ``"2018/2022"``, ``"2021-03-01/2021-10-31"`` or a pair of dates, start first.
    """


class NoItemsError(Cup4SoilError):
    """A search found nothing, or a cube was asked for from an empty item list.

    Fix: widen the time range or the AOI, raise ``max_cloud_cover``, or check the collection.
    """


class BandError(Cup4SoilError, KeyError):
    """A band is unknown to cup4soil or missing from an item.

    Fix: use Sentinel-2 band names (``B02`` ... ``B12``, ``SCL``) or their common aliases
    (``red``, ``nir``, ``swir16``); the message lists what the item has.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CRSError(Cup4SoilError, ValueError):
    """The output coordinate reference system cannot be decided or is invalid.

    Fix: pass ``crs="EPSG:32633"`` (``--crs``) or another projected CRS in metres.
    """


class AssetReadError(Cup4SoilError, OSError):
    """A raster asset could not be read at compute time.

    Fix: check that the file exists and is reachable from every Dask worker; for Planetary
    Computer assets, search again to get freshly signed URLs.

    Parameters
    ----------
    href
        The asset's URL or path; any query string (signing token) is removed.
    reason
        What the reader reported.
    """

    def __init__(self, href: str, reason: str) -> None:
        self.href = redact(href)
        self.reason = redact(reason)
        super().__init__(
            f"could not read asset {self.href}: {self.reason}. Check that the file exists and is "
            "reachable from every Dask worker; for Planetary Computer assets, search again to get "
            "freshly signed URLs."
        )

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Travels back from Dask workers intact.
        return (type(self), (self.href, self.reason))


class ThresholdError(Cup4SoilError, ValueError):
    """The PVIR2 threshold cannot be fetched or read, or does not cover the cube.

    Fix: offline, set ``CUP4SOIL_DLR_THRESHOLD`` to a local copy of DLR's raster, or pass a
    number or your own raster; outside Europe, DLR's raster has no value: pass a number.
    """


class SampleError(Cup4SoilError, ValueError):
    """Soil samples cannot be used as given: missing or non-numeric target, too few rows,
    unusable features, coordinates without a CRS, points off the covariate grid.

    Fix: see the samples file template (the site's "Your own samples"): a numeric target
    column, ``x``/``y`` or ``lon``/``lat`` columns or a geometry, and the CRS (``crs=``).
    """


class CovariateError(Cup4SoilError, ValueError):
    """Covariates do not match what a model was trained on (names, order, grid).

    Fix: predict on the covariates the model card lists, built on one grid.
    """


class ModelError(Cup4SoilError):
    """A saved model cannot be loaded: missing files or an incompatible format/version.

    Fix: point at the folder ``SoilModel.save`` wrote, or train the model again with this
    version.
    """


class IncompleteProductError(Cup4SoilError):
    """A product was opened whose writing never finished (no completion marker).

    Fix: rerun the command that wrote it with ``--resume`` (``mode="resume"``); it writes
    only the missing regions.
    """


class StoreError(Cup4SoilError, OSError):
    """Storage failed permanently (after retries) for an object of a product.

    Fix: the message says what (``hint``); usually check the endpoint, the bucket and its
    permissions, then rerun with ``--resume`` to keep the regions already written.

    Parameters
    ----------
    key
        The object (path inside the store, or URL) that failed; query strings removed.
    reason
        What the storage layer reported, credentials removed.
    hint
        What to do about it; default: check the endpoint, bucket and permissions, then
        resume.
    action
        What failed: ``"write"`` (default) or ``"read"``.
    """

    def __init__(self, key: str, reason: str, *, hint: str | None = None,
                 action: str = "write") -> None:
        self.key = redact(key)
        self.reason = redact(reason)
        self.hint = hint or ("Check the endpoint, the bucket and its permissions, then rerun "
                             "with mode='resume' (--resume) to keep the regions already "
                             "written.")
        super().__init__(f"could not {action} {self.key}: {self.reason}. {self.hint}")


class ClusterError(Cup4SoilError):
    """A Dask cluster cannot be reached, refuses the credentials, or lacks packages.

    Fix: check the address and the gateway's ``auth``; install cup4soil in the workers'
    image when the message names a missing package.
    """


class CollectionError(Cup4SoilError, ValueError):
    """A collection cannot serve what was asked of it: Sentinel-1 in SAR geometry, items
    without the assets or metadata a covariate needs, a layer of the wrong kind."""


class CoverageError(Cup4SoilError, ValueError):
    """A layer (a DEM, a user raster) does not cover the grid it is needed on."""


class LayerError(Cup4SoilError, ValueError):
    """A raster cannot be used as asked: a categorical raster as continuous (or a float
    raster as categorical), no CRS metadata, values that are not what the metadata says."""


class GridMismatchError(CovariateError):
    """Covariates are not on the composite's grid (another CRS, size, or an offset of a
    fraction of a pixel)."""


class NotAProductError(ParameterError):
    """The URL holds something that is not a cup4soil product: a file, a folder of other
    files, or a Zarr store another tool wrote. cup4soil neither opens it as a product nor
    writes into it, and never deletes it.

    Fix: choose another ``--out`` (an empty or new location).
    """


class ProductLockedError(Cup4SoilError):
    """Another writer holds the product's lease (it is being written right now), or took
    it over while this write was running.

    Fix: wait for the other writer to finish, or after a crash wait for its lease to expire
    and ``--resume``.
    """


class StorageFullError(StoreError):
    """The disk or quota filled up while writing; the product is left incomplete and can be
    resumed once space is freed.

    Fix: free space (or raise the quota) and rerun with ``--resume``.
    """


class OptionalDependencyError(Cup4SoilError, ImportError):
    """A feature needs packages of an optional extra that is not installed.

    Parameters
    ----------
    extra
        The ``cup4soil[...]`` extra that provides them.
    what
        The feature that needs them.
    missing
        The module that could not be imported.
    """

    def __init__(self, extra: str, what: str, missing: str) -> None:
        self.extra, self.what, self.missing = redact(extra), redact(what), redact(missing)
        super().__init__(
            f"{what} needs the '{extra}' extra ({missing} is not installed): "
            f'pip install "cup4soil[{extra}]"'
        )


class ProcessGraphError(Cup4SoilError, ValueError):
    """An openEO process graph is malformed, or uses what a local run cannot provide
    (an unknown collection, a missing parameter, an input not given)."""


class BackendError(Cup4SoilError):
    """An openEO back-end refused a request, failed a job, or returned unusable results."""


class TooLargeError(ParameterError):
    """A cube, composite or prediction is larger than one call should do (pixels, bytes or
    tasks): refused at plan time, with the numbers and the ways to make it smaller (a coarser
    resolution, tiles, larger chunks) or to override the limit (``max_pixels=``)."""


class ItemError(Cup4SoilError, ValueError):
    """A STAC item's metadata contradicts itself or cannot be what it claims: projection
    metadata that puts the raster somewhere else than the item's geometry, an asset that is
    not a raster (``image/png``), reflectance as floating point where digital numbers are
    expected, a sun angle outside 0-180 degrees."""


class AssetFormatError(AssetReadError):
    """A raster asset was read, but it is not what its item declares: another CRS than its
    ``proj:`` metadata, floating-point values where Sentinel-2 digital numbers (integers)
    are expected, or no georeferencing at all (a PNG or JPEG picture).

    Parameters
    ----------
    href
        The asset's URL or path; any query string (signing token) is removed.
    reason
        What is wrong with the file.
    fix
        How to fix it.
    """

    def __init__(self, href: str, reason: str, fix: str = "") -> None:
        self.href = redact(href)
        self.reason = redact(reason)
        self.fix = fix
        Cup4SoilError.__init__(self, f"asset {self.href} {self.reason}. {fix}".rstrip())

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:  # type: ignore[override]
        return (type(self), (self.href, self.reason, self.fix))


class AssetRetryError(AssetReadError):
    """Reading a raster asset kept failing with transient network errors (HTTP 5xx,
    connection resets, truncated responses, timeouts) until the retry budget of the asset
    (``CUP4SOIL_READ_RETRY_SECONDS``) was spent.

    Parameters
    ----------
    href
        The asset's URL or path; any query string (signing token) is removed.
    status
        The last failure seen (``"HTTP 503"``, ``"connection reset"``, ``"truncated
        response"``, ``"timed out"``).
    tries
        How many times cup4soil read the asset (each read is retried by GDAL too, up to
        ``GDAL_HTTP_MAX_RETRY`` times per request).
    seconds
        Seconds spent retrying.
    """

    def __init__(self, href: str, status: str, tries: int, seconds: float) -> None:
        self.href = redact(href)
        self.status = redact(status)
        self.reason = self.status
        self.tries = int(tries)
        self.seconds = float(seconds)
        Cup4SoilError.__init__(
            self,
            f"could not read asset {self.href}: {self.status}, still after {self.tries} "
            f"tries over {self.seconds:.0f} s. The server or the network is failing; try "
            "again later, or allow more time per asset with the environment variable "
            "CUP4SOIL_READ_RETRY_SECONDS (seconds; set it on the Dask workers too).")

    def __reduce__(  # type: ignore[override]
            self) -> tuple[type, tuple[str, str, int, float]]:
        return (type(self), (self.href, self.status, self.tries, self.seconds))


__all__ += ["AssetFormatError", "AssetRetryError", "ItemError", "TooLargeError"]


class TileCodeError(ParameterError):
    """A name is not a cell code of the EEA reference grid (``10kmE432N321`` or
    ``CRS3035RES10000mN3210000E4320000``)."""


class TilingError(Cup4SoilError):
    """A continental run's plan or tile state cannot be used: an unknown plan version, a plan
    that does not match the product being resumed, or tiles that failed."""


# Redact third-party logs from the moment cup4soil is imported (in clients and workers).
install_log_redaction()
