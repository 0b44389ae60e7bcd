"""Renewing signed asset URLs before their token expires.

Planetary Computer signs Azure Blob URLs with SAS tokens that expire (about an hour for
anonymous users). A search signs the items once, but a five-year composite of a tile can
run for hours, so readers call :func:`fresh_href` when they open an asset, on the worker,
at compute time: a URL whose ``se=`` expiry is closer than :data:`MARGIN_S` is signed again
with a new token (planetary-computer's token service, ``PC_SDK_SAS_URL`` and
``PC_SDK_SUBSCRIPTION_KEY`` as on the client; :mod:`cup4soil.cluster` forwards them).
"""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

from ..errors import AssetReadError

__all__ = ["MARGIN_S", "expiry", "fresh_href", "fresh_source"]

#: Renew a token when it has less than this many seconds left (a long COG read or a slow
#: retry must not outlive it). Override with ``CUP4SOIL_RESIGN_MARGIN`` (seconds).
MARGIN_S = 600.0
_AZURE_BLOB = ".blob.core.windows.net"


def _margin() -> float:
    try:
        return float(os.environ.get("CUP4SOIL_RESIGN_MARGIN", MARGIN_S))
    except ValueError:
        return MARGIN_S


def expiry(href: str) -> datetime | None:
    """Expiry (UTC) of the SAS token in an Azure Blob URL, or None if it carries none."""
    parts = urlsplit(href)
    if not parts.netloc.endswith(_AZURE_BLOB) or "se=" not in parts.query:
        return None
    values = parse_qs(parts.query).get("se")
    if not values:
        return None
    try:
        when = datetime.fromisoformat(values[0].replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def fresh_href(href: str, *, margin_s: float | None = None) -> str:
    """``href``, signed again if its token expires within ``margin_s`` seconds.

    URLs without a SAS expiry (local files, S3, Earth Search, CDSE) are returned unchanged.

    Raises
    ------
    AssetReadError
        The token is (nearly) expired and a new one cannot be obtained.
    """
    when = expiry(href)
    margin = _margin() if margin_s is None else margin_s
    if when is None or (when - datetime.now(UTC)).total_seconds() > margin:
        return href
    parts = urlsplit(href)
    unsigned = urlunsplit(parts._replace(query=""))
    try:
        from planetary_computer.sas import TOKEN_CACHE, get_token
        from planetary_computer.settings import Settings
        from planetary_computer.utils import parse_blob_url

        account, container = parse_blob_url(urlsplit(unsigned))
        token = get_token(account, container, retry_total=3)
        if token.ttl() < margin:
            # planetary-computer's cache renews only under 60 s left: ask for a new one.
            TOKEN_CACHE.pop(f"{Settings.get().sas_url}/{account}/{container}", None)
            token = get_token(account, container, retry_total=3)
        return str(token.sign(unsigned).href)
    except Exception as exc:  # network, HTTP status, bad response
        raise AssetReadError(
            unsigned,
            f"its signing token expires at {when:%Y-%m-%d %H:%M} UTC and a new one could not "
            f"be obtained ({type(exc).__name__}). Check that the workers reach the Planetary "
            "Computer token service (PC_SDK_SAS_URL) and have PC_SDK_SUBSCRIPTION_KEY if you "
            "use one",
        ) from None


class _Source(Protocol):
    """A dataclass with a ``uri``, such as odc-loader's ``RasterSource``."""

    uri: str
    __dataclass_fields__: ClassVar[dict[str, Any]]


_S = TypeVar("_S", bound=_Source)


def fresh_source(src: _S) -> _S:
    """An odc-loader ``RasterSource`` whose URI is :func:`fresh_href`'s."""
    if "se=" not in src.uri:
        return src
    uri = fresh_href(src.uri)
    return src if uri == src.uri else dataclasses.replace(src, uri=uri)
