"""The write lease of a product: one writer at a time, with an owner and a timeout.

A writer holds the lease object (``lease.json`` in the product's sidecar) from before it
touches anything until it has written the completion marker. The object names its owner
(host, process, a random token), when it was taken and when it expires; a thread of the
writer renews it every ``timeout / 4`` seconds. A second writer finds it held and refuses
(:class:`~cup4soil.errors.ProductLockedError`, naming the owner and when the lease expires).

A lease is free when there is none, when its writer released it, when it expired (its
writer stopped renewing: killed, or its machine gone), or when its writer was a process
of this machine that no longer runs (a killed writer can be resumed at once).

Every change of the lease object is a compare-and-swap, so two writers can never both take
it:

- **S3** (s3fs): conditional requests -- ``If-None-Match: *`` to create, ``If-Match: <ETag>``
  to renew, take over and release (AWS S3 since 2024; MinIO; moto).
- **Local disk**: the read-compare-write runs under an exclusive ``flock`` of a lock file
  beside the lease; the lease itself is replaced atomically (temporary file, then rename).
- **Other fsspec file systems**: create with ``mode="create"``, then read-compare-write;
  atomic only where the file system makes exclusive creation atomic (gcsfs does). A debug
  log line says so.

Hand-written: no maintained library offers leases on object storage; ``filelock`` covers
local files only.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ProductLockedError, redact

__all__ = ["DEFAULT_TIMEOUT", "Lease"]

log = logging.getLogger(__name__)

#: Seconds a lease lives without renewal.
DEFAULT_TIMEOUT = 300.0


def _now() -> float:
    return time.time()


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat(timespec="seconds")


def _process_start(pid: int) -> str | None:
    """Start time of a process (Linux ``/proc``), to tell a reused pid from its owner."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    """Whether process ``pid`` of this machine runs (and is the one that started then)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, under another user
        return True
    return started is None or _process_start(pid) in (None, started)


@dataclass(frozen=True)
class _Seen:
    """A lease object as read: its record and its version (ETag, or the bytes locally)."""

    record: dict[str, Any] | None
    version: Any


class _Backend:
    """Compare-and-swap of one small object (generic fsspec: best effort)."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs, self.path = fs, path

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        yield

    def read(self) -> _Seen:
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return _Seen(None, None)
        try:
            return _Seen(json.loads(data), data)
        except ValueError:  # a torn write of a best-effort backend: a free lease
            return _Seen({"released": True}, data)

    def create(self, data: bytes) -> bool:
        try:
            self.fs.pipe_file(self.path, data, mode="create")
        except FileExistsError:
            return False
        return True

    def replace(self, data: bytes, seen: _Seen) -> bool:
        if self.read().version != seen.version:
            return False
        self.fs.pipe_file(self.path, data)
        return True

    def delete(self, seen: _Seen) -> bool:
        if self.read().version != seen.version:
            return False
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path)
        return True


class _Local(_Backend):
    """Local disk: every step under an exclusive ``flock`` of ``<lease>.lock``."""

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        import fcntl

        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _write(self, data: bytes) -> None:
        tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def create(self, data: bytes) -> bool:
        if os.path.exists(self.path):
            return False
        self._write(data)
        return True

    def replace(self, data: bytes, seen: _Seen) -> bool:
        if self.read().version != seen.version:
            return False
        self._write(data)
        return True

    def delete(self, seen: _Seen) -> bool:
        if self.read().version != seen.version:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
        return True


def _conflict(exc: BaseException) -> bool:
    """An S3 precondition failure (another writer changed the object first)."""
    return isinstance(exc, FileExistsError) or "recondition" in str(exc)


class _S3(_Backend):
    """S3: conditional requests on the object's ETag."""

    def __init__(self, fs: Any, path: str) -> None:
        super().__init__(fs, path)
        self.bucket, self.key = path.split("/", 1)

    def read(self) -> _Seen:
        # The ETag first, then the bytes: if the object changes in between, the ETag is the
        # older one and the compare-and-swap fails (safe side).
        try:
            head = self.fs.call_s3("head_object", Bucket=self.bucket, Key=self.key)
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return _Seen(None, None)
        return _Seen(json.loads(data), head["ETag"])

    def _put(self, data: bytes, **condition: str) -> bool:
        try:
            self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=data,
                            **condition)
        except Exception as exc:
            if _conflict(exc):
                return False
            raise
        finally:
            self.fs.invalidate_cache(self.path)
        return True

    def create(self, data: bytes) -> bool:
        return self._put(data, IfNoneMatch="*")

    def replace(self, data: bytes, seen: _Seen) -> bool:
        return self._put(data, IfMatch=seen.version)

    def delete(self, seen: _Seen) -> bool:
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.key,
                            IfMatch=seen.version)
        except FileNotFoundError:
            return True
        except Exception as exc:
            if _conflict(exc):
                return False
            raise
        finally:
            self.fs.invalidate_cache(self.path)
        return True


def _backend(fs: Any, path: str) -> _Backend:
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    if "file" in protocols or "local" in protocols:
        return _Local(fs, path)
    if "s3" in protocols and hasattr(fs, "call_s3"):
        return _S3(fs, path)
    log.debug("the lease on %s is best effort: %s has no compare-and-swap", redact(path),
              protocols[0])
    return _Backend(fs, path)


class Lease:
    """The write lease of one product (a context manager).

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The product's file system.
    path : str
        Path of the lease object (in the product's sidecar).
    url : str
        The product's URL, for messages.
    timeout : float
        Seconds the lease lives without renewal; renewed every ``timeout / 4`` seconds.
    """

    def __init__(self, fs: Any, path: str, url: str, *,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        if not timeout > 0:
            from ..errors import ParameterError

            raise ParameterError(f"lease_timeout={timeout}: must be a positive number of "
                                 "seconds.")
        self._backend = _backend(fs, path)
        self.url = redact(url)
        self.timeout = float(timeout)
        pid = os.getpid()
        self.owner: dict[str, Any] = {"host": socket.gethostname(), "pid": pid,
                      "started": _process_start(pid), "token": uuid.uuid4().hex}
        self._seen: _Seen | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # --- the record ---------------------------------------------------------------------

    def _record(self, acquired: float | None = None) -> bytes:
        now = _now()
        return json.dumps({
            **self.owner, "owner": f"{self.owner['host']}:{self.owner['pid']}",
            "acquired": _iso(acquired or now), "acquired_at": acquired or now,
            "renewed": _iso(now), "expires": _iso(now + self.timeout),
            "expires_at": now + self.timeout, "timeout": self.timeout,
        }).encode()

    def _mine(self, record: dict[str, Any] | None) -> bool:
        return bool(record) and record.get("token") == self.owner["token"]  # type: ignore[union-attr]

    def _free(self, record: dict[str, Any]) -> bool:
        if record.get("released") or float(record.get("expires_at", 0)) < _now():
            return True
        if record.get("host") == self.owner["host"] and isinstance(record.get("pid"), int):
            return not _alive(record["pid"], record.get("started"))
        return False

    def _refusal(self, record: dict[str, Any]) -> ProductLockedError:
        return ProductLockedError(
            f"{self.url} is being written by another writer ({record.get('owner', '?')}, "
            f"since {record.get('acquired', '?')}; its lease expires at "
            f"{record.get('expires', '?')} unless renewed). Wait for it to finish, then "
            "open the product or resume it; if that writer is gone (its machine stopped), "
            "rerun after the lease has expired.")

    # --- acquire, renew, release --------------------------------------------------------

    def acquire(self) -> Lease:
        """Take the lease, or raise :class:`ProductLockedError` naming its holder."""
        b = self._backend
        for _ in range(5):  # another writer may change the object between read and swap
            with b.exclusive():
                seen = b.read()
                if seen.record is None:
                    if b.create(self._record()):
                        break
                    continue
                if not self._free(seen.record):
                    raise self._refusal(seen.record)
                if b.replace(self._record(), seen):
                    break
        else:
            raise ProductLockedError(f"{self.url}: other writers keep taking its lease; "
                                     "run one writer at a time.")
        self._seen = b.read()
        if not self._mine(self._seen.record):  # pragma: no cover - taken in between
            raise self._refusal(self._seen.record or {})
        self._thread = threading.Thread(target=self._heartbeat, daemon=True,
                                        name=f"cup4soil-lease-{str(self.owner['token'])[:8]}")
        self._thread.start()
        return self

    def renew(self) -> None:
        """Extend the lease by ``timeout`` seconds (or note that it was lost)."""
        b = self._backend
        with self._lock, b.exclusive():
            if self._lost or self._seen is None:
                return
            seen = b.read()
            if not self._mine(seen.record):
                holder = (seen.record or {}).get("owner", "nobody")
                self._lost = f"its lease was taken over by {holder}"
                return
            acquired = float((seen.record or {}).get("acquired_at", _now()))
            if b.replace(self._record(acquired), seen):
                self._seen = b.read()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.timeout / 4):
            try:
                self.renew()
            except Exception as exc:  # a transient storage failure: try again next beat
                log.warning("could not renew the lease of %s: %s", self.url,
                            redact(f"{type(exc).__name__}: {exc}"))

    def check(self) -> None:
        """Raise :class:`ProductLockedError` if the lease was lost while writing."""
        self.renew()
        if self._lost:
            raise ProductLockedError(
                f"{self.url}: {self._lost} while this write ran (it paused longer than the "
                f"lease timeout of {self.timeout:g} s?); this write stopped before marking "
                "the product complete. Let the other writer finish, then check the product.")

    def release(self) -> None:
        """Give the lease up (only if it is still this writer's)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        b = self._backend
        with self._lock, b.exclusive():
            if self._seen is None:
                return
            seen = b.read()
            if self._mine(seen.record):
                b.delete(seen)
            self._seen = None

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
