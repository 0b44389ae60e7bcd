"""Shared test helpers: a compute-counting scheduler, a call counter for tasks, a free port.

``raise_if_dask_computes`` follows flox's tests: a scheduler that counts how many times a
graph is computed and fails past ``max_computes`` -- so "building the graph computes
nothing" is ``with raise_if_dask_computes(): ...`` and "one compute" is ``max_computes=1``.
:class:`CallCounter` counts calls of a function per argument key, thread-safely, for "each
upstream chunk runs once per pass".
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import dask

__all__ = [
    "CallCounter",
    "CountingScheduler",
    "FakeRasterDriver",
    "FaultyHTTPServer",
    "free_port",
    "objects",
    "raise_if_dask_computes",
]


class CountingScheduler:
    """A Dask scheduler (synchronous) that counts computes and refuses more than allowed."""

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many dask computations were scheduled: {self.total_computes} > "
                f"max_computes={self.max_computes}"
            )
        return dask.get(dsk, keys, **kwargs)


@contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[CountingScheduler]:
    """Fail if Dask computes more than ``max_computes`` times inside the block."""
    scheduler = CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


class CallCounter:
    """Wraps ``func``; counts its calls per ``key(*args, **kwargs)`` (thread-safe)."""

    def __init__(self, func: Callable[..., Any],
                 key: Callable[..., Hashable] | None = None) -> None:
        self.func = func
        self.key = key or (lambda *a, **k: None)
        self.calls: Counter[Hashable] = Counter()
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls[self.key(*args, **kwargs)] += 1
        return self.func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def most(self) -> int:
        """The largest number of calls for any one key (0 if never called)."""
        return max(self.calls.values(), default=0)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- an in-memory raster reader (odc-loader driver) that counts and checks what it reads ---


class FakeRasterDriver:
    """An odc-loader reader driver (the interface of ``odc.loader.RioDriver`` that the read
    plan uses: ``md_parser``, ``capture_env``, ``new_load``, ``restore_env``, ``open(src,
    ctx).read(cfg, gbox)``) serving arrays from memory, after stackstac's ``test_to_dask``.

    It counts opens per asset (``opens``) and records every window read (``windows``:
    ``(uri, rows, cols)`` in the asset's pixels), and fails -- ``AssertionError`` in the
    reading task, also kept in ``violations`` -- when a read does not overlap the asset's
    footprint, when an unknown asset is opened, or when an asset is opened more than
    ``max_opens`` times.

    Parameters
    ----------
    assets
        ``{uri: (array, geobox)}``: each asset's ``(y, x)`` pixels and grid. Reads must be
        asked on that grid (same CRS and pixel size, whole-pixel offsets); no resampling.
    max_opens
        Most opens allowed per asset (None: no limit).
    """

    md_parser = None

    def __init__(self, assets: dict[str, tuple[Any, Any]], *, max_opens: int | None = None) -> None:
        self.assets = dict(assets)
        self.max_opens = max_opens
        self.opens: Counter[str] = Counter()
        self.windows: list[tuple[str, tuple[int, int], tuple[int, int]]] = []
        self.violations: list[str] = []
        self._lock = threading.Lock()

    def _fail(self, message: str) -> None:
        with self._lock:
            self.violations.append(message)
        raise AssertionError(message)

    def capture_env(self) -> dict[str, Any]:
        return {}

    def new_load(self, geobox: Any, *, chunks: Any = None) -> None:
        return None

    @contextmanager
    def restore_env(self, env: dict[str, Any], load_state: Any) -> Iterator[None]:
        yield None

    def open(self, src: Any, ctx: Any) -> _FakeReader:
        uri = str(src.uri)
        if uri not in self.assets:
            self._fail(f"opened an unknown asset {uri}")
        with self._lock:
            self.opens[uri] += 1
            n = self.opens[uri]
        if self.max_opens is not None and n > self.max_opens:
            self._fail(f"opened {uri} {n} times (at most {self.max_opens} expected)")
        return _FakeReader(self, uri)

    def opens_of(self, needle: str) -> dict[str, int]:
        """Opens per asset whose URI contains ``needle``."""
        return {k: v for k, v in self.opens.items() if needle in k}


class _FakeReader:
    def __init__(self, driver: FakeRasterDriver, uri: str) -> None:
        self.driver, self.uri = driver, uri

    def read(self, cfg: Any, dst_geobox: Any, *, dst: Any = None,
             selection: Any = None) -> tuple[tuple[slice, slice], Any]:
        import numpy as np

        data, gbox = self.driver.assets[self.uri]
        col, row = ~gbox.affine * (dst_geobox.affine.c, dst_geobox.affine.f)
        r0, c0 = round(row), round(col)
        if (dst_geobox.crs != gbox.crs or dst_geobox.resolution != gbox.resolution
                or abs(row - r0) > 1e-6 or abs(col - c0) > 1e-6):
            self.driver._fail(f"read of {self.uri} asked on another grid: {dst_geobox}")
        h, w = dst_geobox.shape.yx
        rows = (max(r0, 0), min(r0 + h, data.shape[0]))
        cols = (max(c0, 0), min(c0 + w, data.shape[1]))
        if rows[0] >= rows[1] or cols[0] >= cols[1]:
            self.driver._fail(f"read a window of {self.uri} outside its footprint: rows "
                              f"{r0}..{r0 + h}, cols {c0}..{c0 + w} of {data.shape}")
        with self.driver._lock:
            self.driver.windows.append((self.uri, rows, cols))
        roi = (slice(rows[0] - r0, rows[1] - r0), slice(cols[0] - c0, cols[1] - c0))
        pix = np.asarray(data[rows[0]:rows[1], cols[0]:cols[1]], dtype=cfg.dtype)
        return roi, pix


# --- a fault-injecting HTTP server on 127.0.0.1 (range requests, 5xx, resets, truncation) ---


class FaultyHTTPServer:
    """Serves a folder over HTTP on 127.0.0.1 as cloud storage does for COGs (``HEAD``,
    single and multiple byte ranges), and injects transient faults into a share of the
    requests: the failures a long run over a public archive meets.

    Fault kinds (``faults``):

    - ``"5xx"``: the answer is HTTP 500 or 503 (alternating), as an overloaded server's;
    - ``"reset"``: the connection is reset (TCP RST) before any answer;
    - ``"truncate"``: the status and headers announce the whole body, then the connection
      closes after half of it (a truncated response);
    - ``"delay"``: the answer comes ``delay`` seconds late.

    Parameters
    ----------
    root
        Folder to serve.
    faults
        Fault kinds to draw from (empty: none).
    rate
        Share of the requests that get a fault, 0..1 (1: every request).
    delay
        Seconds of a ``"delay"`` fault.
    suffixes
        Only paths with these endings get faults (default: every path).
    seed
        Seed of the draws.

    Attributes
    ----------
    requests
        Requests answered (or failed), by path.
    injected
        Faults injected, by kind.
    """

    def __init__(self, root: Any, *, faults: tuple[str, ...] = (), rate: float = 0.0,
                 delay: float = 2.0, suffixes: tuple[str, ...] = (), seed: int = 0) -> None:
        import http.server
        import random
        from pathlib import Path

        unknown = set(faults) - {"5xx", "reset", "truncate", "delay"}
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.root = Path(root)
        self.faults, self.rate, self.delay, self.suffixes = tuple(faults), rate, delay, suffixes
        self.requests: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                owner._answer(self, body=False)

            def do_GET(self) -> None:
                owner._answer(self, body=True)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the served folder."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def set_faults(self, faults: tuple[str, ...] = (), rate: float = 0.0) -> None:
        """Change the faults injected from now on."""
        with self._lock:
            self.faults, self.rate = tuple(faults), rate

    def __enter__(self) -> FaultyHTTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _draw(self, path: str) -> str | None:
        with self._lock:
            self.requests[path] += 1
            if not self.faults or (self.suffixes and not path.endswith(self.suffixes)):
                return None
            if self._random.random() >= self.rate:
                return None
            kind = self._random.choice(self.faults)
            self.injected[kind] += 1
            return kind

    def _answer(self, handler: Any, *, body: bool) -> None:
        import socket
        import struct
        import time
        from urllib.parse import unquote, urlparse

        path = unquote(urlparse(handler.path).path)
        file = (self.root / path.lstrip("/")).resolve()
        if self.root.resolve() not in file.parents or not file.is_file():
            handler.send_error(404)
            return
        fault = self._draw(path)
        if fault == "reset":
            # SO_LINGER 0: close() sends a TCP RST, as a dropped connection does.
            handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                          struct.pack("ii", 1, 0))
            handler.close_connection = True
            handler.connection.close()
            return
        if fault == "5xx":
            code = 503 if self.injected["5xx"] % 2 else 500
            handler.send_response(code)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if fault == "delay":
            time.sleep(self.delay)
        data = file.read_bytes()
        status, headers, payload = _ranged(data, handler.headers.get("Range"))
        handler.send_response(status)
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(payload)))
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        if not body:
            return
        if fault == "truncate":
            handler.wfile.write(payload[: len(payload) // 2])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        handler.wfile.write(payload)


def _ranged(data: bytes, header: str | None) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a GET of ``data`` with an HTTP ``Range`` header (single
    ranges, and several as ``multipart/byteranges``)."""
    size = len(data)
    if not header or not header.startswith("bytes="):
        return 200, {"Content-Type": "application/octet-stream"}, data
    spans = []
    for part in header[len("bytes="):].split(","):
        first, _, last = part.strip().partition("-")
        if first:
            a, b = int(first), (int(last) if last else size - 1)
        else:
            a, b = max(0, size - int(last)), size - 1
        b = min(b, size - 1)
        if a > b:
            return 416, {"Content-Range": f"bytes */{size}"}, b""
        spans.append((a, b))
    if len(spans) == 1:
        a, b = spans[0]
        return 206, {"Content-Range": f"bytes {a}-{b}/{size}",
                     "Content-Type": "application/octet-stream"}, data[a:b + 1]
    boundary = "cup4soil-fault-boundary"
    chunks = []
    for a, b in spans:
        chunks.append(f"--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                      f"Content-Range: bytes {a}-{b}/{size}\r\n\r\n".encode())
        chunks.append(data[a:b + 1] + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return 206, {"Content-Type": f"multipart/byteranges; boundary={boundary}"}, b"".join(chunks)


def objects(url: str, options: dict[str, Any] | None) -> dict[str, bytes]:
    """Every object below ``url`` (a local folder or ``s3://...``) by its relative path,
    listed afresh (fsspec caches listings per process)."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, **(options or {}))
    fs.invalidate_cache()
    return {p[len(root):]: fs.cat_file(p) for p in fs.find(root)}
