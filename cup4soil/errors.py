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
    "BackendError",
    "BandError",
    "CRSError",
    "CatalogError",
    "ClusterError",
    "CovariateError",
    "Cup4SoilError",
    "IncompleteProductError",
    "ModelError",
    "NoItemsError",
    "OptionalDependencyError",
    "ParameterError",
    "ProcessGraphError",
    "SampleError",
    "StoreError",
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
        self.extra, self.what, self.missing = extra, what, missing
        super().__init__(
            f"{what} needs the '{extra}' extra ({missing} is not installed): "
            f'pip install "cup4soil[{extra}]"'
        )

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.extra, self.what, self.missing))


class ProcessGraphError(Cup4SoilError, ValueError):
    """An openEO process graph is malformed, or uses what a local run cannot provide
    (an unknown collection, a missing parameter, an input not given)."""


class BackendError(Cup4SoilError):
    """An openEO back-end refused a request, failed a job, or returned unusable results."""
