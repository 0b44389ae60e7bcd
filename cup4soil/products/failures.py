"""What a storage failure means, said in one :class:`~cup4soil.errors.StoreError`.

The storage layers (local files, s3fs/botocore, zarr) raise their own exceptions; the user
needs the object that failed, what happened and what to do. :func:`storage_error` picks
the diagnosis from the exception's type, errno and message:

- disk or quota full (``ENOSPC``, ``EDQUOT``): :class:`~cup4soil.errors.StorageFullError`,
  free space and resume;
- no credentials, refused credentials or permissions, a missing bucket, an unreachable
  endpoint: the storage options to set;
- a file where a folder must be: choose another URL;
- anything else: check the endpoint, bucket and permissions, then resume.

Credentials never reach the message: values of secret-named storage options are blanked and
the text is redacted (:func:`cup4soil.errors.redact`).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterable
from typing import Any

from ..errors import StorageFullError, StoreError, redact

__all__ = ["is_storage_failure", "storage_error"]

# Modules whose exceptions are storage failures (besides OSError and its kin).
_STORAGE_MODULES = ("botocore", "aiobotocore", "s3fs", "aiohttp", "fsspec", "gcsfs", "adlfs",
                    "azure", "google", "zarr", "urllib3", "requests")


def is_storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the storage (to say so), not from a bug (to let through)."""
    return isinstance(exc, OSError | TimeoutError | ConnectionError) or \
        type(exc).__module__.split(".")[0] in _STORAGE_MODULES

_RESUME = "then rerun with mode='resume' (--resume) to keep the regions already written."
_CREDENTIALS = ("pass them in storage_options (e.g. {'key': ..., 'secret': ...}; on the "
                "command line --storage-option key=... --storage-option secret=...), set "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an AWS profile, or use anon=True "
                "(--storage-option anon=true) for a public bucket")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (zarr and s3fs wrap their causes)."""
    out: list[BaseException] = []
    seen = exc
    while seen is not None and len(out) < 8 and all(seen is not e for e in out):
        out.append(seen)
        nxt = BaseException.__dict__["__cause__"].__get__(seen)
        seen = nxt if nxt is not None else BaseException.__dict__["__context__"].__get__(seen)
    return out


def _hint(exc: BaseException, text: str, action: str) -> tuple[str, bool]:
    """(what to do, whether the disk is full) for ``exc``."""
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    codes = {getattr(e, "errno", None) for e in chain}
    if codes & {errno.ENOSPC, errno.EDQUOT} or re.search(r"No space left|quota exceeded",
                                                         text, re.I):
        return ("The disk (or quota) is full: free space, " + _RESUME), True
    if names & {"NoCredentialsError", "PartialCredentialsError"} or re.search(
            r"Unable to locate credentials|Partial credentials found", text, re.I):
        return f"No credentials were found for this storage: {_CREDENTIALS}.", False
    if names & {"PermissionError"} or codes & {errno.EACCES, errno.EPERM} or re.search(
            r"AccessDenied|Forbidden|\b403\b|InvalidAccessKeyId|SignatureDoesNotMatch",
            text):
        return ("Access was refused: check the credentials (storage_options key/secret or "
                "the AWS_* variables) and that they may "
                f"{'write to' if action == 'write' else 'read'} this bucket and prefix."), False
    if re.search(r"NoSuchBucket|bucket does not exist|specified bucket", text, re.I):
        return "The bucket does not exist: check its name, or create it first.", False
    if names & {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError",
                "ConnectionRefusedError", "ConnectionError", "ServerDisconnectedError"} \
            or re.search(r"Could not connect|Connection refused|Name or service not known",
                         text, re.I):
        return ("The storage endpoint cannot be reached: check endpoint_url "
                "(--storage-option endpoint_url=...) and the network, " + _RESUME), False
    if names & {"NotADirectoryError", "FileExistsError"} or codes & {errno.ENOTDIR,
                                                                      errno.EEXIST}:
        return ("A file is in the way where the product needs a folder: choose another "
                "URL (--out)."), False
    if action == "write":
        return "Check the endpoint, the bucket and its permissions, " + _RESUME, False
    return "Check the URL, the endpoint and the credentials.", False


def storage_error(key: str, exc: BaseException, *, secrets: Iterable[str] = (),
                  action: str = "write") -> StoreError:
    """The :class:`StoreError` (or :class:`StorageFullError`) that says what went wrong
    with object ``key`` and what to do.

    Parameters
    ----------
    key : str
        The object or URL that failed.
    exc : BaseException
        What the storage layer raised.
    secrets : iterable of str
        Values to blank out of the message (credentials from storage options).
    action : str
        ``"write"``, ``"read"`` or ``"open"``: what was being done.
    """
    reason = f"{type(exc).__name__}: {exc}"
    for s in secrets:
        reason = reason.replace(s, "***")
    reason = redact(reason)
    hint, full = _hint(exc, reason, action)
    cls: Any = StorageFullError if full else StoreError
    err: StoreError = cls(key, reason, hint=hint, action=action)
    return err
