"""Exceptions raised by cup4soil.

A small hierarchy in the style of rioxarray: everything derives from
:class:`Cup4SoilError`, so ``except cup4soil.errors.Cup4SoilError`` catches every
problem cup4soil diagnoses itself. Each message names what is wrong *and* how to
fix it, and never contains a storage key, token or signed URL.
"""

from __future__ import annotations

import logging
import re

__all__ = [
    "AOIError",
    "AssetReadError",
    "BandError",
    "CRSError",
    "CatalogError",
    "ClusterError",
    "CovariateError",
    "Cup4SoilError",
    "IncompleteProductError",
    "ModelError",
    "NoItemsError",
    "ParameterError",
    "SampleError",
    "StoreError",
    "ThresholdError",
    "TimeRangeError",
]

# Query strings of signed URLs carry credentials (Azure SAS ``sig=``, S3 ``X-Amz-Signature``):
# any ``?key=value...`` attached to a URL or path is removed.
_QUERY = re.compile(r"(?P<url>[^\s?'\"]+)\?(?=[^\s'\"]*=)[^\s'\"]*")


def redact(text: str) -> str:
    """Remove query strings (where signing tokens live) from every URL or path in ``text``."""
    return _QUERY.sub(r"\g<url>", text)


class RedactingFilter(logging.Filter):
    """Logging filter that removes signing tokens from log records of third-party readers."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


class Cup4SoilError(Exception):
    """Base class of every error cup4soil raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))


class ParameterError(Cup4SoilError, ValueError):
    """An option has an impossible value (negative resolution, unknown engine, ...)."""


class CatalogError(Cup4SoilError):
    """The catalog is unknown, unreachable or not a STAC catalog."""


class AOIError(Cup4SoilError, ValueError):
    """The area of interest is not a geometry, is empty, or lies outside the catalog."""


class TimeRangeError(Cup4SoilError, ValueError):
    """The time range is malformed or reversed."""


class NoItemsError(Cup4SoilError):
    """A search found nothing, or a cube was asked for from an empty item list."""


class BandError(Cup4SoilError, KeyError):
    """A band is unknown to cup4soil or missing from an item."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class CRSError(Cup4SoilError, ValueError):
    """The output coordinate reference system cannot be decided or is invalid."""


class AssetReadError(Cup4SoilError, OSError):
    """A raster asset could not be read at compute time.

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
    """The PVIR2 threshold cannot be fetched or read, or does not cover the cube."""


class SampleError(Cup4SoilError, ValueError):
    """Soil samples cannot be used as given: missing or non-numeric target, too few rows,
    unusable features, coordinates without a CRS, points off the covariate grid."""


class CovariateError(Cup4SoilError, ValueError):
    """Covariates do not match what a model was trained on (names, order, grid)."""


class ModelError(Cup4SoilError):
    """A saved model cannot be loaded: missing files or an incompatible format/version."""


class IncompleteProductError(Cup4SoilError):
    """A product was opened whose writing never finished (no completion marker)."""


class StoreError(Cup4SoilError, OSError):
    """Storage failed permanently (after retries) for an object of a product.

    Parameters
    ----------
    key
        The object (path inside the store, or URL) that failed; query strings removed.
    reason
        What the storage layer reported, credentials removed.
    """

    def __init__(self, key: str, reason: str) -> None:
        self.key = redact(key)
        self.reason = redact(reason)
        super().__init__(
            f"could not write {self.key}: {self.reason}. Check the endpoint, the bucket and "
            "its permissions, then rerun with mode='resume' (--resume) to keep the regions "
            "already written."
        )

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.key, self.reason))


class ClusterError(Cup4SoilError):
    """A Dask cluster cannot be reached, refuses the credentials, or lacks packages."""


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
