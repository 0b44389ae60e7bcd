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
    "CallCounter", "CountingScheduler", "FakeRasterDriver", "free_port", "raise_if_dask_computes",
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
